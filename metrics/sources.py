"""Image sources for the metrics: a dataset's first N images, N samples of a StyleGAN2 generator with
fixed seeds, a translator applied to a dataset, or images already in memory.

Every source yields uint8 batches ``[B, 3, H, W]``; ``fingerprint()`` keys the statistics cache
(None: never cached).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from toonlab.checkpoint import sha256_file
from toonlab.errors import UserInputError
from toonlab.images import check_finite_images, tensor_to_uint8, uint8_to_float
from toonlab.runtime import autocast

__all__ = ["DatasetSource", "GeneratorSource", "ImageSource", "TensorSource", "TranslatorSource", "native_size",
           "open_source", "looks_like_checkpoint"]

_NOISE_CHUNK = 8  # random noise maps are drawn per 8 images, so images do not depend on the batch size


class ImageSource:
    """N images as uint8 batches [B, 3, H, W]; ``fingerprint()`` (None = never cached) keys the cache."""

    n: int = 0
    label: str = ""

    def __len__(self) -> int:
        return self.n

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any] | None:
        return None

    def describe(self) -> str:
        return self.label

    @property
    def skipped(self) -> list[str]:
        return []


def _synthetic_renderer_hash() -> str:
    import toonlab.synthetic as syn

    return sha256_file(syn.__file__)[:16]


def _listing_hash(rows: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


class _Items(torch.utils.data.Dataset):
    """uint8 items of a toonlab dataset; an unreadable item comes back flagged (skipped and listed,
    not replaced by a neighbour as the training datasets do)."""

    def __init__(self, ds: Any, n: int) -> None:
        self.ds, self.n = ds, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, bool, str]:
        from toonlab.images import ImageError, resize_center_crop
        from toonlab.synthetic import SyntheticFaces, render

        ds = self.ds
        try:
            if isinstance(ds, SyntheticFaces):
                arr = render(ds.params(i), ds.domain, ds.size)
            elif hasattr(ds, "read_image"):
                arr = np.asarray(resize_center_crop(ds.read_image(i), ds.size))
            else:
                return tensor_to_uint8(ds[i]), True, ""
        except ImageError as e:
            return torch.zeros(3, ds.size, ds.size, dtype=torch.uint8), False, str(e)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), True, ""


class DatasetSource(ImageSource):
    """The first ``n`` images (sorted order) of a folder / zip / LMDB / ``synthetic:NAME[:N]`` at ``size`` px."""

    def __init__(self, spec: str, size: int | None = None, n: int | None = None, workers: int = 0) -> None:
        from toonlab.data import open_dataset

        self.spec = str(spec)
        size = size or native_size(self.spec)
        self.ds = open_dataset(self.spec, size, flip=False)  # DatasetError (a UserInputError) when unusable
        self.size = size
        self.n = len(self.ds) if n is None else min(int(n), len(self.ds))
        self.workers = workers
        self._skipped: list[str] = []
        self.label = f"{self.spec}: {self.n:,} of {len(self.ds):,} images at {size} px"

    @property
    def skipped(self) -> list[str]:
        return self._skipped

    def fingerprint(self) -> dict[str, Any]:
        from toonlab.data import ImageFolder, LMDBImages, ZipImages
        from toonlab.synthetic import SyntheticFaces

        ds = self.ds
        if isinstance(ds, SyntheticFaces):
            fp: dict[str, Any] = dict(kind="synthetic", domain=ds.domain, seed=ds.seed, length=len(ds),
                                      renderer=_synthetic_renderer_hash())
        elif isinstance(ds, ImageFolder):
            rows = []
            for f in ds.files:
                st = f.stat()
                rows.append(f"{f.relative_to(ds.root)}\t{st.st_size}\t{st.st_mtime_ns}")
            fp = dict(kind="folder", root=str(ds.root.resolve()), files=_listing_hash(rows))
        elif isinstance(ds, ZipImages):
            st = ds.path.stat()
            fp = dict(kind="zip", path=str(ds.path.resolve()), bytes=st.st_size, mtime=st.st_mtime_ns,
                      members=_listing_hash(ds.names))
        elif isinstance(ds, LMDBImages):
            st = (ds.path / "data.mdb").stat()
            fp = dict(kind="lmdb", path=str(ds.path.resolve()), bytes=st.st_size, mtime=st.st_mtime_ns)
        else:
            raise UserInputError(f"cannot fingerprint {type(ds).__name__} for the statistics cache")
        return dict(source=fp, n=self.n, size=self.size, crop="lanczos-center-crop")

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        self._skipped = []
        loader = torch.utils.data.DataLoader(
            _Items(self.ds, self.n), batch_size=batch, shuffle=False, num_workers=self.workers,
            pin_memory=device.type == "cuda", generator=torch.Generator())  # own generator: global RNG untouched
        for imgs, ok, errs in loader:
            if not bool(ok.all()):
                self._skipped.extend(e for e, good in zip(errs, ok.tolist()) if not good)
                imgs = imgs[ok]
            if len(imgs):
                yield imgs


def native_size(spec: str) -> int:
    """The working size of a dataset when none is given: its first image's short side, an LMDB's
    largest stored size, 256 for synthetic domains."""
    from toonlab.data import DatasetError, open_dataset

    if str(spec).startswith("synthetic:"):
        return 256
    path = Path(spec).expanduser()
    if path.is_dir() and ((path / "data.mdb").is_file() or path.suffix.lower() == ".lmdb") or path.name == "data.mdb":
        from toonlab.data import lmdb_sizes

        root = path.parent if path.name == "data.mdb" else path
        sizes = lmdb_sizes(root)
        if not sizes:
            raise DatasetError(f"no images found in {root}")
        return max(sizes)
    ds = open_dataset(spec, 8, flip=False)  # scanning only; images are decoded lazily
    from toonlab.images import ImageError

    for i in range(min(len(ds), 16)):  # the first readable image
        try:
            return min(ds.read_image(i).size)
        except ImageError:
            continue
    raise DatasetError(f"no readable images among the first {min(len(ds), 16)} of {spec}")


class GeneratorSource(ImageSource):
    """``n`` images of a StyleGAN2 generator with fixed seeds.

    z for image i is row i of ``randn(n, D)`` from a CPU generator seeded with ``seed`` (the same on
    every device); per-image noise maps (``noise_mode="random"``) come from a generator on the
    sampling device seeded with ``seed + 1``, drawn per 8 images so the batch size does not change
    the images. The global RNG is never touched (safe inside a training loop).
    """

    def __init__(self, generator: str | Path | nn.Module, n: int, truncation: float = 1.0, seed: int = 0,
                 noise_mode: str = "random", precision: str = "fp32", device: str | torch.device = "cpu") -> None:
        from stylegan2.networks import NOISE_MODES

        if noise_mode not in NOISE_MODES:
            raise UserInputError(f"noise mode {noise_mode!r} not one of {', '.join(NOISE_MODES)}")
        if n < 1:
            raise UserInputError(f"need at least one image, got n={n}")
        self.device = torch.device(device)
        if isinstance(generator, nn.Module):
            self.G, self.path = generator, None
            name = "generator (in memory)"
        else:
            from stylegan2.checkpoint import load_generator

            self.path = Path(generator)
            self.G = load_generator(self.path, device=self.device)
            name = f"gen:{self.path}"
        self.n, self.truncation, self.seed = int(n), float(truncation), int(seed)
        self.noise_mode, self.precision = noise_mode, precision
        self.size = int(self.G.size)
        self.label = (f"{name}: {self.n:,} samples at {self.size} px, truncation {self.truncation:g}, "
                      f"seed {self.seed}, noise {noise_mode}, {precision}")

    def fingerprint(self) -> dict[str, Any] | None:
        if self.path is None:
            return None  # a network in memory (EMA during training) changes under us: never cached
        return dict(source=dict(kind="generator", sha256=sha256_file(self.path)), n=self.n,
                    truncation=self.truncation, seed=self.seed, noise_mode=self.noise_mode,
                    precision=self.precision, device=self.device.type)

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        G, dev = self.G, self.device
        batch = max(_NOISE_CHUNK, batch - batch % _NOISE_CHUNK)
        z_all = torch.randn(self.n, G.style_dim, generator=torch.Generator().manual_seed(self.seed))
        noise_gen = torch.Generator(device=dev).manual_seed(self.seed + 1)
        ndtype = torch.bfloat16 if self.precision == "bf16" and dev.type == "cuda" else torch.float32
        for start in range(0, self.n, batch):
            b = min(batch, self.n - start)
            z = z_all[start:start + b].to(dev)
            noise = None
            if self.noise_mode == "random":
                chunks = [[torch.randn(min(_NOISE_CHUNK, b - c), 1, r, r, generator=noise_gen, device=dev)
                           for r in G.noise_shapes()] for c in range(0, b, _NOISE_CHUNK)]
                noise = [torch.cat([ch[k] for ch in chunks]).to(ndtype) for k in range(len(G.noise_shapes()))]
            with autocast(dev, self.precision):
                w = G.mapping(z, truncation=self.truncation)
                img = G.synthesis(w, noise=noise, noise_mode=self.noise_mode).image
            # NaN images would become black uint8 and give a plausible-looking FID.
            yield tensor_to_uint8(check_finite_images(img, f"generator {self.label.split(': ')[0]}")).to(device)


class TranslatorSource(ImageSource):
    """A translator (``[-1, 1]`` images in and out) applied to a dataset's images.

    ``translator_id`` (e.g. the checkpoint's sha256) makes the statistics cacheable; without it
    they are recomputed every time.
    """

    def __init__(self, data: DatasetSource, translator: Callable[[Tensor], Tensor], translator_id: str | None = None,
                 label: str = "translator", precision: str = "fp32") -> None:
        self.data, self.translator, self.translator_id = data, translator, translator_id
        self.n, self.precision = data.n, precision
        self.label = f"{label} applied to {data.describe()}"

    @property
    def skipped(self) -> list[str]:
        return self.data.skipped

    def fingerprint(self) -> dict[str, Any] | None:
        if self.translator_id is None:
            return None
        return dict(translator=self.translator_id, data=self.data.fingerprint(), precision=self.precision)

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        for u8 in self.data.batches(batch, device):
            x = uint8_to_float(u8.to(device, non_blocking=True))
            with autocast(device, self.precision):
                y = self.translator(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            yield tensor_to_uint8(y)


def looks_like_checkpoint(spec: str) -> bool:
    return spec.startswith("gen:") or (Path(spec).suffix.lower() in (".pt", ".pth") and Path(spec).is_file())


def open_source(spec: str, *, n: int = 50000, size: int | None = None, truncation: float = 1.0, seed: int = 0,
                noise_mode: str = "random", precision: str = "fp32", device: str | torch.device = "cpu",
                translator: str | Path | None = None, workers: int = 0) -> ImageSource:
    """A CLI-style spec → an ImageSource: ``gen:G.pt`` / ``*.pt`` (generator), else a dataset
    spec; ``translator`` (a translation checkpoint) is then applied to the dataset's images."""
    spec = str(spec)
    if looks_like_checkpoint(spec):
        if translator is not None:
            raise UserInputError("--translator applies to a dataset of photos, not to a generator checkpoint")
        path = spec[4:] if spec.startswith("gen:") else spec
        if not Path(path).is_file():
            raise UserInputError(f"generator checkpoint not found: {path}")
        return GeneratorSource(path, n, truncation, seed, noise_mode, precision, device)
    data = DatasetSource(spec, size, n, workers)
    if translator is None:
        return data
    from translation.models import (
        load_generator as load_translator,  # only when asked for
    )

    T, meta = load_translator(translator)
    T = T.to(device).eval().requires_grad_(False)
    return TranslatorSource(data, T, translator_id=sha256_file(translator), label=f"translator {translator}",
                            precision=precision)


class TensorSource(ImageSource):
    """Images already in memory (uint8 ``[N, 3, H, W]``), e.g. generated outputs; never cached."""

    def __init__(self, images: Tensor, label: str) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"TensorSource needs uint8 [N, 3, H, W] images, got {images.dtype} {tuple(images.shape)}")
        self.images, self.n, self.label = images, len(images), label

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        for i in range(0, self.n, batch):
            yield self.images[i:i + batch].to(device)
