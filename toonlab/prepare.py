"""Build StyleGAN2 LMDBs from a folder or zip of images.

The output is the community format written by rosinality's
``stylegan2-pytorch/prepare_data.py`` — one LMDB holding every requested size,
keys ``f"{size}-{index:05d}"`` -> JPEG bytes and ``b"length"`` -> ASCII count —
so it can be read by :class:`toonlab.data.LMDBImages` and by the community
training scripts alike.

Differences from the community script, all about robustness:

* unreadable files (zero-byte, truncated, corrupt, not images) are skipped
  with a warning and listed in the report, and the index sequence has no holes
  (the community reader assumes keys ``0..length-1`` all exist);
* the LMDB is built in ``OUT.tmp-<pid>`` and renamed into place at the end, so
  an interrupted run never leaves a half-written dataset at ``OUT``;
* the map size is estimated from the input and grown on demand instead of a
  fixed 1 TiB;
* the output is locked (``.OUT.lock`` beside it, ``toonlab.lock``) while it is built: a second
  ``prepare`` into the same OUT stops with one line naming the first, and the temporaries of
  killed runs (``OUT.tmp-<pid>``) are removed once the lock is held;
* the free space is checked before every transaction, so a full disk is one line
  (``OUT: No space left on device``) instead of ``lmdb.Error`` or, on tmpfs, a SIGBUS from the
  memory-mapped file; any other ``lmdb.Error`` is one line too.
"""

from __future__ import annotations

import errno
import io
import multiprocessing
import os
import shutil
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toonlab.data import DatasetError, UnreadableImageWarning, scan_folder, scan_zip
from toonlab.errors import UserInputError
from toonlab.images import ImageError, load_image, resize_center_crop
from toonlab.lock import FolderLock

__all__ = ["PrepareError", "PrepareReport", "is_power_of_two", "prepare_lmdb"]

# Images per write transaction: bounds memory held in Python and the work lost
# (and redone) when the map has to grow.
_TXN_IMAGES = 256


class PrepareError(UserInputError):
    """The LMDB cannot be written (bad arguments, output already exists, ...)."""


@dataclass
class PrepareReport:
    """What :func:`prepare_lmdb` did."""

    out: Path
    sizes: tuple[int, ...]
    written: int
    skipped: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0

    def summary(self, max_listed: int = 20) -> str:
        """One line: ``wrote N images × K sizes (...) to OUT; skipped M: a, b``."""
        sizes = ", ".join(map(str, self.sizes))
        line = (
            f"wrote {self.written:,} images × {len(self.sizes)} size"
            f"{'s' if len(self.sizes) != 1 else ''} ({sizes}) to {self.out} "
            f"[{self.bytes / 2**20:,.1f} MiB, {self.seconds:.1f}s]; skipped {len(self.skipped)}"
        )
        if self.skipped:
            listed = ", ".join(self.skipped[:max_listed])
            more = len(self.skipped) - max_listed
            line += f": {listed}" + (f", … and {more:,} more" if more > 0 else "")
        return line


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    kind: str  # "folder" or "zip"
    path: Path
    items: tuple[str, ...]  # file paths (folder) or member names (zip)
    empty: tuple[str, ...]  # zero-byte image files, skipped at scan time

    def label(self, item: str) -> str:
        return item if self.kind == "folder" else f"{self.path}:{item}"


def _open_source(src: Path) -> _Source:
    if not src.exists():
        raise DatasetError(f"dataset not found: {src}")
    if src.is_dir():
        files, empty, _ = scan_folder(src)
        source = _Source("folder", src, tuple(map(str, files)), tuple(map(str, empty)))
    elif src.suffix.lower() == ".zip" or zipfile.is_zipfile(src):
        names, empty_names, _ = scan_zip(src)
        source = _Source("zip", src, tuple(names), tuple(empty_names))
    else:
        raise DatasetError(f"unknown dataset format: {src} (expected a folder or .zip of images)")
    if not source.items and not source.empty:
        raise DatasetError(f"no images found in {src}")
    return source


# --------------------------------------------------------------------------- workers

# Per-process zip handle: a ZipFile must not be shared across processes (one
# shared file offset), so every worker opens its own, once.
_zip_cache: dict[str, tuple[int, zipfile.ZipFile]] = {}


def _zip_handle(path: str) -> zipfile.ZipFile:
    cached = _zip_cache.get(path)
    if cached is None or cached[0] != os.getpid():
        cached = (os.getpid(), zipfile.ZipFile(path))
        _zip_cache[path] = cached
    return cached[1]


def _encode_one(job: tuple[str, str, str, tuple[int, ...], int]) -> tuple[list[bytes] | None, str]:
    """Decode one source image and JPEG-encode it at every size.

    Returns ``(encoded per size, "")`` or ``(None, reason)``. Runs in pool
    workers, so it is a module-level function and never raises for bad input.
    """
    kind, path, item, sizes, quality = job
    label = item if kind == "folder" else f"{path}:{item}"
    try:
        if kind == "folder":
            img = load_image(item)
        else:
            try:
                data = _zip_handle(path).read(item)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError, KeyError) as exc:
                raise ImageError(f"{label}: {' '.join(str(exc).split())}") from None
            img = load_image(data, name=label)
        out = []
        for size in sizes:
            buf = io.BytesIO()
            # Pillow's default JPEG settings at quality 100, like the community
            # script, so our LMDBs hold the same bytes-level content style.
            resize_center_crop(img, size).save(buf, format="JPEG", quality=quality)
            out.append(buf.getvalue())
        return out, ""
    except ImageError as exc:
        return None, str(exc)


def _results(jobs: list[Any], workers: int) -> Iterator[tuple[list[bytes] | None, str]]:
    """Encode jobs in input order, in a process pool when ``workers > 1``."""
    if workers <= 1 or len(jobs) < 2:
        for job in jobs:
            yield _encode_one(job)
        return
    # imap (not imap_unordered): results come back in input order, so the
    # index assigned to each image is deterministic regardless of timing.
    chunksize = max(1, min(16, len(jobs) // (workers * 8)))
    with multiprocessing.Pool(workers) as pool:  # __exit__ terminates workers on error
        yield from pool.imap(_encode_one, jobs, chunksize=chunksize)


# --------------------------------------------------------------------------- writing


def _estimate_map_size(n_images: int, sizes: Sequence[int]) -> int:
    """Initial LMDB map size: generous for q100 JPEG (≈ up to raw RGB size) plus slack.

    The map is only address space (the file grows as data is written on Linux),
    and MapFullError triggers a resize anyway, so overestimating is cheap.
    """
    raw = n_images * sum(3 * s * s for s in sizes)
    return max(64 * 2**20, int(raw * 1.25) + 16 * 2**20)


#: Room kept free beyond a transaction's payload (LMDB pages, meta pages, copy-on-write of the tree).
_ROOM_SLACK = 256 * 2**10


def _check_room(folder: Path, out: Path, items: list[tuple[bytes, bytes]]) -> None:
    """Raise ENOSPC (naming ``out``) unless ``folder``'s disk can take ``items`` twice over plus slack.

    LMDB writes through a memory map: on tmpfs a write past the free space is a SIGBUS that kills
    the process without a word, on a disk ``mdb_txn_commit`` fails with EIO. Checking first makes
    both a one-line error; twice the payload covers LMDB's page overhead and copy-on-write.
    """
    need = 2 * sum(len(k) + len(v) for k, v in items) + _ROOM_SLACK
    free = shutil.disk_usage(folder).free
    if free < need:
        raise OSError(errno.ENOSPC, f"No space left on device ({free / 2**20:.1f} MiB free, about "
                      f"{need / 2**20:.1f} MiB needed for the next images)", str(out))


def _put_all(env: Any, items: list[tuple[bytes, bytes]], folder: Path | None = None,
             out: Path | None = None) -> None:
    """Write ``items`` in one transaction, doubling the map size until they fit."""
    import lmdb

    if folder is not None:
        _check_room(folder, out or folder, items)
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            # The failed transaction was aborted by the context manager; grow and redo it.
            env.set_mapsize(env.info()["map_size"] * 2)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_lmdb(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    sizes: Sequence[int],
    workers: int = 2,
    quality: int = 100,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Convert a folder (recursive) or zip of images to a multi-size StyleGAN2 LMDB.

    Each image is resized (short side, LANCZOS) and centre-cropped to every
    size in ``sizes`` and stored as JPEG at ``quality``. Unreadable images are
    skipped with an :class:`~toonlab.data.UnreadableImageWarning`, listed in
    the report, and take no index.

    Args:
        src: folder or ``.zip`` of images.
        out: LMDB directory to create.
        sizes: output resolutions (e.g. ``[256, 128]``); duplicates are ignored.
        workers: decode/encode processes (``<= 1`` runs in this process).
        quality: JPEG quality, 1–100 (100 matches the community format).
        overwrite: replace an existing ``out`` (only after the new one is complete).
        progress: show a tqdm progress bar on stderr.

    Raises:
        DatasetError: ``src`` is missing, of unknown format, has no (readable) images.
        PrepareError: bad ``sizes``/``quality``, or ``out`` exists and not ``overwrite``.
    """
    import lmdb

    t0 = time.monotonic()
    src_path = Path(src).expanduser()
    out_path = Path(out).expanduser()
    try:
        size_list = tuple(sorted({int(s) for s in sizes}))
    except (TypeError, ValueError):
        raise PrepareError(f"sizes must be integers, got {sizes!r}") from None
    if not size_list or size_list[0] < 1:
        raise PrepareError(f"sizes must be positive integers, got {list(sizes)!r}")
    if not 1 <= int(quality) <= 100:
        raise PrepareError(f"JPEG quality must be in 1..100, got {quality}")
    if out_path.resolve() == src_path.resolve():
        raise PrepareError(f"output would replace the source: {out_path}")
    source = _open_source(src_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # One writer per OUT: two runs would both rename their LMDB into place, the later one winning
    # silently. The lock lives beside OUT (OUT itself only appears, complete, at the end).
    lock = FolderLock(out_path.parent, what="LMDB output", name=f".{out_path.name}.lock",
                      subject=str(out_path)).acquire()
    try:
        if (out_path.exists() or out_path.is_symlink()) and not overwrite:
            raise PrepareError(
                f"output already exists: {out_path} (pass --overwrite / overwrite=True to replace it)"
            )
        # Temporaries of killed runs (any pid: the lock says none of them is still writing).
        for pattern in (f"{out_path.name}.tmp-*", f"{out_path.name}.old-*"):
            for stale in out_path.parent.glob(pattern):
                _remove(stale)
        return _prepare_locked(source, src_path, out_path, size_list, int(workers), int(quality), progress, t0)
    except lmdb.Error as e:
        cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PrepareError(f"could not write the LMDB {out_path}: {cause}") from None
    finally:
        lock.release()


def _prepare_locked(source: _Source, src_path: Path, out_path: Path, size_list: tuple[int, ...], workers: int,
                    quality: int, progress: bool, t0: float) -> PrepareReport:
    """The body of :func:`prepare_lmdb`, run while OUT's lock is held."""
    import lmdb
    from tqdm import tqdm

    report = PrepareReport(out=out_path, sizes=size_list, written=0)
    for name in source.empty:
        label = source.label(name)
        report.skipped.append(label)
        report.reasons[label] = f"{label}: zero-byte file"
        warnings.warn(
            f"skipping unreadable image {label}: zero-byte file", UnreadableImageWarning, stacklevel=2
        )

    # Same directory as OUT so the final rename is atomic (same filesystem).
    tmp = out_path.with_name(f"{out_path.name}.tmp-{os.getpid()}")
    _remove(tmp)  # leftover from a crashed run that happened to have our pid
    jobs = [(source.kind, str(source.path), item, size_list, quality) for item in source.items]
    map_size = _estimate_map_size(len(jobs), size_list)
    env = lmdb.open(str(tmp), map_size=map_size, readahead=False, meminit=False)
    try:
        pending: list[tuple[bytes, bytes]] = []
        bar = tqdm(
            total=len(jobs), unit="img", desc=f"prepare {out_path.name}",
            disable=not progress, dynamic_ncols=True,
        )
        with bar:
            for job, (encoded, reason) in zip(jobs, _results(jobs, workers)):
                bar.update(1)
                label = source.label(job[2])
                if encoded is None:
                    report.skipped.append(label)
                    report.reasons[label] = reason
                    warnings.warn(f"skipping unreadable image {reason}", UnreadableImageWarning, stacklevel=2)
                    continue
                # Index = count of images written so far, so skips leave no holes.
                index = report.written
                for size, data in zip(size_list, encoded):
                    pending.append((f"{size}-{index:05d}".encode(), data))
                    report.bytes += len(data)
                report.written += 1
                if report.written % _TXN_IMAGES == 0:
                    _put_all(env, pending, out_path.parent, out_path)
                    pending = []
        if report.written == 0:
            raise DatasetError(
                f"no readable images in {src_path} ({len(report.skipped):,} files skipped)"
            )
        # "length" goes in the final transaction: a reader never sees a count
        # that is ahead of the data.
        pending.append((b"length", str(report.written).encode("ascii")))
        _put_all(env, pending, out_path.parent, out_path)
        env.sync(True)
        env.close()
        if out_path.exists() or out_path.is_symlink():
            # An LMDB is a directory, which os.replace cannot swap over a non-empty
            # one: move the old aside first, so OUT is missing only for an instant
            # and never half-written.
            old = out_path.with_name(f"{out_path.name}.old-{os.getpid()}")
            _remove(old)
            os.replace(out_path, old)
            os.replace(tmp, out_path)
            _remove(old)
        else:
            os.replace(tmp, out_path)
    except BaseException:
        # Includes KeyboardInterrupt: never leave a half-built LMDB behind.
        env.close()
        _remove(tmp)
        raise
    report.seconds = time.monotonic() - t0
    return report


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ... (StyleGAN2 resolutions)."""
    return n > 0 and (n & (n - 1)) == 0
