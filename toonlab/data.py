"""Dataset readers for toonlab: image folders, zip archives and StyleGAN2 LMDBs.

Every dataset yields ``float32`` tensors of shape ``[3, size, size]`` in
``[-1, 1]`` (the range StyleGAN2's generator and discriminator are trained in),
optionally randomly flipped left/right.

Real-world face datasets are messy: scraped folders contain zero-byte files,
truncated downloads, HTML error pages saved as ``.jpg``, CMYK JPEGs, 16-bit
PNGs and phone photos whose pixels are stored sideways with an EXIF rotation
tag. :func:`load_image` normalises all of these to 8-bit RGB, and the datasets
skip (and report) whatever cannot be decoded instead of killing a training run
hours in.

The LMDB layout is the one written by rosinality's ``stylegan2-pytorch``
``prepare_data.py`` (``f"{size}-{index:05d}"`` -> JPEG bytes, ``b"length"`` ->
ASCII int), so LMDBs built by either tool are interchangeable.
"""

from __future__ import annotations

import operator
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset

from toonlab.errors import UserInputError
from toonlab.images import IMAGE_EXTENSIONS, ImageError, load_image, one_line, resize_center_crop, to_tensor

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "MissingSizeError",
    "ImageError",
    "ImageFolder",
    "LMDBImages",
    "UnreadableImageWarning",
    "ZipImages",
    "infinite_loader",
    "load_image",
    "open_dataset",
    "resize_center_crop",
    "to_tensor",
]


# A UserInputError (a ValueError): CLIs turn it into a one-line exit-2 error.
class DatasetError(UserInputError):
    """A dataset as a whole is unusable: missing, empty, unreadable or of unknown format."""


class MissingSizeError(DatasetError):
    """An LMDB lacks the asked resolution; ``sizes`` lists the ones it holds."""

    def __init__(self, message: str, sizes: list[int]) -> None:
        super().__init__(message)
        self.sizes = list(sizes)


class UnreadableImageWarning(UserWarning):
    """Issued once per item that a dataset skipped because it could not be decoded."""


# --------------------------------------------------------------------------- scanning


def _is_hidden(parts: tuple[str, ...]) -> bool:
    """True for dotfiles and macOS ``__MACOSX``/``._*`` resource forks.

    Zips made on macOS carry ``__MACOSX/._face.jpg`` entries with image
    extensions that are not images; dropping them silently at scan time avoids
    thousands of spurious "unreadable" warnings.
    """
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def scan_folder(root: Path) -> tuple[list[Path], list[Path], int]:
    """Return (images, zero-byte images, number of ignored non-image files), sorted.

    Follows symlinked directories (datasets are often symlinked in from other
    disks) but guards against symlink loops.
    """
    images: list[Path] = []
    empty: list[Path] = []
    ignored = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not _is_hidden((d,))]
        for fn in filenames:
            path = Path(dirpath, fn)
            if _is_hidden((fn,)) or path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored += 1
                continue
            try:
                size = path.stat().st_size
            except OSError:  # dangling symlink etc.: let load time report it
                size = -1
            (empty if size == 0 else images).append(path)
    images.sort()
    empty.sort()
    return images, empty, ignored


def scan_zip(path: Path) -> tuple[list[str], list[str], int]:
    """Return (image members, zero-byte image members, ignored members) of a zip, sorted."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"not a readable zip file: {path} ({one_line(exc)})") from None
    images: list[str] = []
    empty: list[str] = []
    ignored = 0
    for info in infos:
        if info.is_dir():
            continue
        parts = tuple(p for p in info.filename.split("/") if p)
        if not parts or _is_hidden(parts) or Path(parts[-1]).suffix.lower() not in IMAGE_EXTENSIONS:
            ignored += 1
            continue
        (empty if info.file_size == 0 else images).append(info.filename)
    images.sort()
    empty.sort()
    return images, empty, ignored


# --------------------------------------------------------------------------- datasets


class _ImageDataset(Dataset):
    """Shared behaviour: decoding, resizing, flipping and skipping bad items.

    ``skipped`` lists the names of items that failed to decode *in this
    process*; with DataLoader workers each worker has its own copy, and the
    warnings (issued from the workers) are the authoritative record.
    """

    kind = "dataset"

    def __init__(self, location: Path, size: int, flip: bool = True) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.location = location
        self.size = int(size)
        self.flip = bool(flip)
        self.skipped: list[str] = []
        self._bad: set[int] = set()

    # subclasses implement these two
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_image(self, index: int) -> Image.Image:  # pragma: no cover - abstract
        """Decode item ``index`` to RGB; raise ImageError if it cannot be read."""
        raise NotImplementedError

    def _name(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    #: Where skipped items are appended (one ``name\treason`` line each) so the process that owns a
    #: run can summarise what its loader workers skipped (``skip_summary``); None: not recorded.
    skip_log: Path | None = None

    def _skip(self, name: str, reason: str | None = None) -> None:
        """Record and warn about one unreadable item (called once per item and process)."""
        self.skipped.append(name)
        msg = reason if reason and reason.startswith(name) else f"{name}: {reason or 'unreadable'}"
        if self.skip_log is not None:
            try:
                with open(self.skip_log, "a") as f:  # one short append: atomic between processes
                    f.write(f"{name}\t{one_line(msg)}\n")
            except OSError:
                pass
        warnings.warn(f"skipping unreadable image {msg}", UnreadableImageWarning, stacklevel=3)

    def __getitem__(self, key: Any) -> torch.Tensor:
        from toonlab.samplers import item_key

        if isinstance(key, (tuple, list)):
            index, item_seed = item_key(key)
        else:
            index, item_seed = operator.index(key), None  # accept numpy/torch integer indices from samplers
        n = len(self)
        if n == 0:
            raise DatasetError(f"no images found in {self.location}")
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} images")
        index %= n
        # Walk forward (wrapping) past unreadable items so one bad file never
        # stops a run; remembered bad indices are skipped without re-decoding.
        for step in range(n):
            i = (index + step) % n
            if i in self._bad:
                continue
            try:
                img = self.read_image(i)
            except ImageError as exc:
                self._bad.add(i)
                self._skip(self._name(i), str(exc))
                continue
            t = to_tensor(resize_center_crop(img, self.size))
            # A sampler's key carries the flip (its seed's low bit); plain indexing draws it from torch.
            flip = bool(item_seed & 1) if item_seed is not None else bool(torch.rand(()) < 0.5)
            if self.flip and flip:
                t = t.flip(2)
            return t
        raise DatasetError(f"no readable images in {self.location} ({n} items, all unreadable)")

    def describe(self) -> str:
        """One line, e.g. ``folder /x/y: 1,234 images at 256 px``."""
        extra = f" ({len(self.skipped):,} skipped)" if self.skipped else ""
        return f"{self.kind} {self.location}: {len(self):,} images at {self.size} px{extra}"

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


class ImageFolder(_ImageDataset):
    """All images under ``root`` (recursive, sorted by path).

    Non-image files (by extension) and hidden files are ignored; zero-byte
    images are skipped at scan time (warned and listed in ``skipped``).
    """

    kind = "folder"

    def __init__(self, root: str | os.PathLike[str], size: int, flip: bool = True) -> None:
        root = Path(root).expanduser()
        super().__init__(root, size, flip)
        if not root.exists():
            raise DatasetError(f"dataset not found: {root}")
        if not root.is_dir():
            raise DatasetError(f"not a directory: {root}")
        self.root = root
        files, empty, self.ignored = scan_folder(root)
        for p in empty:
            self._skip(str(p), "zero-byte file")
        if not files:
            raise DatasetError(f"no images found in {root}")
        self.files: list[Path] = files

    def __len__(self) -> int:
        return len(self.files)

    def _name(self, index: int) -> str:
        return str(self.files[index])

    def read_image(self, index: int) -> Image.Image:
        return load_image(self.files[index])


class ZipImages(_ImageDataset):
    """All images inside a zip archive (sorted by member name).

    The ``ZipFile`` handle is opened lazily and re-opened in each process: a
    handle shares one file offset, so using it from several DataLoader workers
    (forked after it was opened) returns garbage or CRC errors.
    """

    kind = "zip"

    def __init__(self, path: str | os.PathLike[str], size: int, flip: bool = True) -> None:
        path = Path(path).expanduser()
        super().__init__(path, size, flip)
        if not path.exists():
            raise DatasetError(f"dataset not found: {path}")
        if not path.is_file():
            raise DatasetError(f"not a zip file: {path}")
        self.path = path
        names, empty, self.ignored = scan_zip(path)
        for n in empty:
            self._skip(f"{path}:{n}", "zero-byte file")
        if not names:
            raise DatasetError(f"no images found in {path}")
        self.names: list[str] = names
        self._zip: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def _name(self, index: int) -> str:
        return f"{self.path}:{self.names[index]}"

    def _handle(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip_pid != os.getpid():
            # Never close a handle inherited from the parent: its fd is shared.
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def read_image(self, index: int) -> Image.Image:
        name = self._name(index)
        try:
            data = self._handle().read(self.names[index])
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, KeyError) as exc:
            # Bad CRC, encrypted member, unsupported compression, truncated archive.
            raise ImageError(f"{name}: {one_line(exc)}") from None
        return load_image(data, name=name)

    def __getstate__(self) -> dict[str, Any]:
        # Handles cannot be pickled (spawn-started workers); reopen lazily.
        state = self.__dict__.copy()
        state["_zip"] = None
        state["_zip_pid"] = None
        return state

    def __del__(self) -> None:
        zf = getattr(self, "_zip", None)
        if zf is not None and self._zip_pid == os.getpid():
            try:
                zf.close()
            except Exception:
                pass


# One environment per LMDB file per process, keyed by the data file's (device, inode).
# py-lmdb refuses to open the same file twice in a process ("already open"), so several
# LMDBImages on one file (e.g. two sizes) must share it; and an environment inherited
# through fork() must not be used (LMDB forbids it) nor block opening a fresh one.
_ENVS: dict[tuple[int, int], tuple[int, Any]] = {}


def _lmdb_env(path: Path) -> Any:
    """This process's read-only environment for the LMDB at ``path``.

    Opened as the community reader does: lock=False (read-only readers need no
    lock file, and the data may sit on read-only storage), readahead=False
    (random access over a dataset bigger than RAM would otherwise thrash the
    page cache), meminit=False (no need to zero buffers).
    """
    import lmdb  # imported lazily: only LMDB users need the package

    subdir = path.is_dir()
    st = os.stat(path / "data.mdb" if subdir else path)
    ident = (st.st_dev, st.st_ino)
    cached = _ENVS.get(ident)
    if cached is not None:
        pid, env = cached
        if pid == os.getpid():
            return env
        # Inherited from the parent through fork: close our copy (read-only and
        # lock-free, so this only unmaps it in this process), then reopen.
        try:
            env.close()
        except Exception:
            pass
        del _ENVS[ident]
    env = lmdb.open(
        str(path),
        readonly=True,
        lock=False,
        readahead=False,
        meminit=False,
        subdir=subdir,
        max_readers=2048,
    )
    try:
        check_lmdb_complete(env, path / "data.mdb" if subdir else path)
    except DatasetError:
        env.close()
        raise
    _ENVS[ident] = (os.getpid(), env)
    return env


def check_lmdb_complete(env: Any, data_file: Path) -> None:
    """Raise ``DatasetError`` when ``data_file`` is shorter than the pages ``env``'s meta page uses.

    LMDB reads through a memory map: a page past the end of a truncated file (a partial copy, a
    full disk during ``cp``) is not an error but a SIGBUS that kills the process, or a data
    loader worker, without a message. The meta page (at the start, so it survives truncation)
    records the last page in use; the file must reach it.
    """
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    have = os.path.getsize(data_file)
    if have < need:
        raise DatasetError(f"LMDB {data_file} is truncated: the file has {have:,} bytes, its index needs "
                           f"{need:,} (an incomplete copy or a full disk?); copy it again or re-run prepare")


def lmdb_sizes(path: str | os.PathLike[str]) -> list[int]:
    """Resolutions stored in the LMDB at ``path`` (a ``DatasetError`` when it cannot be opened)."""
    path = Path(path).expanduser()
    try:
        with _lmdb_env(path).begin(write=False) as txn:
            return _lmdb_sizes(txn)
    except DatasetError:
        raise
    except Exception as e:  # lmdb.Error / OSError: not an LMDB, permissions, ...
        raise DatasetError(f"cannot open LMDB {path}: {one_line(e)}") from None


def _lmdb_sizes(txn: Any) -> list[int]:
    """Sizes present in an LMDB, found by seeking past each ``"{size}-"`` key run.

    Costs one cursor seek per size, not a scan of every key.
    """
    sizes: list[int] = []
    cur = txn.cursor()
    found = cur.first()
    while found:
        key = bytes(cur.key())
        prefix, sep, _ = key.partition(b"-")
        if sep and prefix.isdigit():
            sizes.append(int(prefix))
            # b"." sorts right after b"-", so this lands on the first key of the next run.
            found = cur.set_range(prefix + b".")
        else:
            found = cur.next()
    return sorted(sizes)


class LMDBImages(_ImageDataset):
    """A StyleGAN2 LMDB (rosinality ``prepare_data.py`` format) at one resolution.

    Keys ``f"{size}-{index:05d}"`` hold encoded JPEG/PNG bytes; ``b"length"``
    holds the image count as ASCII. Each process (DataLoader worker) opens its
    own environment on first read: LMDB environments must not be used across fork.
    """

    kind = "lmdb"

    def __init__(self, path: str | os.PathLike[str], size: int, flip: bool = True) -> None:
        path = Path(path).expanduser()
        if path.name == "data.mdb" and path.is_file():
            path = path.parent  # accept the data file itself, use its directory
        super().__init__(path, size, flip)
        if not path.exists():
            raise DatasetError(f"dataset not found: {path}")
        self.path = path
        try:
            env = _lmdb_env(path)
        except DatasetError:
            raise
        except Exception as exc:  # lmdb.Error / OSError: not an LMDB, permissions, ...
            raise DatasetError(f"cannot open LMDB {path}: {one_line(exc)}") from None
        with env.begin(write=False) as txn:
            raw = txn.get(b"length")
            if raw is None:
                raise DatasetError(f"not a StyleGAN2 LMDB (no 'length' key): {path}")
            try:
                length = int(bytes(raw).decode("ascii").strip())
            except ValueError:
                raise DatasetError(f"bad 'length' value {bytes(raw)[:20]!r} in {path}") from None
            if length <= 0:
                raise DatasetError(f"no images found in {path}")
            if txn.get(self._key(0)) is None:
                present = _lmdb_sizes(txn)
                have = ", ".join(map(str, present)) if present else "none"
                raise MissingSizeError(f"size {self.size} not in LMDB {path} (sizes present: {have})", present)
            self.sizes_present: list[int] = _lmdb_sizes(txn)
        self.length = length
        self._env: Any = env
        self._env_pid: int | None = os.getpid()

    def _key(self, index: int) -> bytes:
        return f"{self.size}-{index:05d}".encode()

    def __len__(self) -> int:
        return self.length

    def _name(self, index: int) -> str:
        return f"{self.path}:{self._key(index).decode()}"

    def read_image(self, index: int) -> Image.Image:
        if self._env is None or self._env_pid != os.getpid():
            # Lazily, per process: DataLoader workers each get their own environment.
            self._env = _lmdb_env(self.path)
            self._env_pid = os.getpid()
        with self._env.begin(write=False) as txn:
            data = txn.get(self._key(index))
            if data is None:
                raise ImageError(f"{self._name(index)}: key missing from LMDB")
            data = bytes(data)  # copy out before the transaction ends
        return load_image(data, name=self._name(index))

    def describe(self) -> str:
        sizes = ", ".join(map(str, self.sizes_present))
        return f"{super().describe()} (sizes in file: {sizes})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None
        state["_env_pid"] = None
        return state


# --------------------------------------------------------------------------- entry points


def open_dataset(spec: str, size: int, flip: bool = True, **kw: Any) -> Dataset:
    """Open a dataset from a command-line style spec.

    * ``synthetic:NAME`` or ``synthetic:NAME:LENGTH`` -> ``toonlab.synthetic.SyntheticFaces``
      (length defaults to 70,000, seed to 0);
    * a directory containing ``data.mdb``, or a path ending in ``.lmdb`` -> :class:`LMDBImages`;
    * any other directory -> :class:`ImageFolder`;
    * a ``.zip`` file -> :class:`ZipImages`.

    Extra keyword arguments are passed to the dataset constructor.

    Raises:
        DatasetError: missing path, empty dataset or unknown format.
    """
    spec = str(spec)
    if spec.startswith("synthetic:"):
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1]:
            raise DatasetError(f"bad synthetic dataset spec {spec!r} (expected synthetic:NAME[:LENGTH])")
        length = 70000
        if len(parts) == 3:
            try:
                length = int(parts[2].replace("_", "").replace(",", ""))
            except ValueError:
                length = -1
            if length <= 0:
                raise DatasetError(f"bad synthetic dataset length in {spec!r} (expected a positive integer)")
        # Lazy import: the synthetic module is optional for every other format.
        from toonlab.synthetic import SyntheticFaces

        seed = kw.pop("seed", 0)
        try:
            return SyntheticFaces(parts[1], size, length=length, seed=seed, flip=flip, **kw)
        except ValueError as e:  # unknown domain, size out of range: the user's input, one line
            raise DatasetError(f"{spec}: {e}") from None

    path = Path(spec).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    if path.is_dir():
        if (path / "data.mdb").is_file() or path.suffix.lower() == ".lmdb":
            return LMDBImages(path, size, flip=flip, **kw)
        return ImageFolder(path, size, flip=flip, **kw)
    if path.suffix.lower() == ".lmdb" or path.name == "data.mdb":
        return LMDBImages(path, size, flip=flip, **kw)
    if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return ZipImages(path, size, flip=flip, **kw)
    raise DatasetError(
        f"unknown dataset format: {path} (expected a folder, .zip, LMDB or synthetic:NAME)"
    )


def skip_summary(log: str | Path, limit: int = 5) -> str | None:
    """One line listing the items a run skipped (from a dataset's ``skip_log``), or None."""
    try:
        rows = Path(log).read_text().splitlines()
    except OSError:
        return None
    names = list(dict.fromkeys(r.split("\t", 1)[0] for r in rows if r.strip()))
    if not names:
        return None
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return f"skipped {len(names)} unreadable image{'s' if len(names) != 1 else ''}: {', '.join(names[:limit])}{more}" \
           f" (all listed in {log})"


def infinite_loader(dataset: Dataset, batch_size: int, workers: int, seed: int, start: int = 0, rank: int = 0,
                    world: int = 1, distributed: bool = False) -> Iterator[torch.Tensor]:
    """Endless batches of ``dataset`` (``toonlab.samplers.step_loader``): the order and every flip are
    a function of (seed, step), so a run resumed at ``start`` sees what a straight run sees.

    ``distributed`` takes rank and world size from ``torch.distributed``; every rank gets its own
    ``batch_size`` items of each global batch. Raises ``DatasetError`` when the dataset is smaller
    than one global batch (a batch would repeat images).
    """
    from toonlab.samplers import step_loader

    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    n = len(dataset)  # type: ignore[arg-type]
    if n < batch_size * world:
        where = f" for {world} ranks" if world > 1 else ""
        raise DatasetError(f"dataset has {n:,} images but the batch size is {batch_size}{where}: "
                           "not enough for one batch")
    loader = step_loader(dataset, batch_size, seed, start, workers, rank=rank, world=world)

    def batches() -> Iterator[torch.Tensor]:  # a generator: ``close()`` shuts the workers down
        yield from loader

    return batches()
