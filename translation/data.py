"""Unpaired photo / style data for the translators, with random crops and flips.

Photos and style images are read with ``toonlab.data``'s readers (folder, zip, LMDB or
``synthetic:NAME``; unreadable items are skipped and listed) at a load size a little larger than the
crop (short side resized, centre crop), then randomly cropped to ``size`` and flipped. Style items
also yield their grayscale version and their edge-smoothed version — read from a pre-made SMOOTH_DIR
(``python translation/edges.py STYLE_DIR --out SMOOTH_DIR``) when given, else computed on the fly.

Batches are a pure function of (seed, stream, step) (``toonlab.samplers``): each epoch's order is a
seeded permutation and each item's crop/flip comes from its own seeded generator, so a run resumed at
step k sees exactly the batches a straight run sees from step k on, whatever the number of workers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from losses.translation import grayscale
from toonlab.data import DatasetError, ImageFolder, MissingSizeError, UnreadableImageWarning, open_dataset
from toonlab.errors import UserInputError
from toonlab.images import ImageError, load_image, resize_center_crop, to_tensor, to_uint8, uint8_to_tensor
from toonlab.samplers import item_key, step_loader

__all__ = ["edge_smooth", "PhotoCrops", "StyleCrops", "TranslationData", "open_translation_data",
           "SYNTHETIC_PHOTOS", "SYNTHETIC_STYLE"]

SYNTHETIC_PHOTOS = "synthetic:photo"
SYNTHETIC_STYLE = "synthetic:webtoon"
SYNTHETIC_LENGTH = 1000
_SYNTHETIC_MAX = 512


def edge_smooth(img_uint8_hwc: np.ndarray) -> np.ndarray:
    """CartoonGAN's edge-smoothed cartoon: Gaussian blur applied only around edges.

    Canny(100, 200) on the grayscale image → dilate with a 5×5 kernel → 5×5 Gaussian (σ from the
    size, as OpenCV's ``sigma=0``) replaces the pixels under the dilated edges; the rest is unchanged.
    Input and output: uint8 RGB ``(H, W, 3)`` (a 2-D grayscale image is accepted and returned 2-D).
    """
    import cv2

    img = np.asarray(img_uint8_hwc)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3)):
        raise ValueError(f"edge_smooth needs a uint8 (H, W, 3) or (H, W) image, got {img.dtype} {img.shape}")
    squeeze = img.ndim == 3 and img.shape[2] == 1
    if squeeze:
        img = img[..., 0]
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    edges = cv2.Canny(np.ascontiguousarray(gray), 100, 200)
    mask = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
    blurred = cv2.GaussianBlur(img, (5, 5), 0)
    out = img.copy()
    out[mask] = blurred[mask]
    return out[..., None] if squeeze else out


def _crop_flip(rng: np.random.Generator, size: int, *ts: Tensor) -> list[Tensor]:
    """The same random ``size`` crop and left/right flip applied to every tensor."""
    h, w = ts[0].shape[-2:]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    flip = bool(rng.integers(0, 2))
    out = []
    for t in ts:
        t = t[..., top:top + size, left:left + size]
        out.append(t.flip(-1).contiguous() if flip else t.contiguous())
    return out


def _open_reader(spec: str, load_size: int, min_size: int, synthetic_seed: int = 0) -> Dataset:
    """A toonlab reader at ``load_size`` (flips off: we flip with our own seeded generator)."""
    spec = str(spec)
    if spec.startswith("synthetic:"):
        return open_dataset(spec, min(load_size, _SYNTHETIC_MAX), flip=False, seed=synthetic_seed)
    try:
        return open_dataset(spec, load_size, flip=False)
    except MissingSizeError as e:
        # An LMDB holds fixed sizes and says which; use the smallest one the crop fits in.
        fits = sorted(v for v in e.sizes if v >= min_size)
        if not fits:
            raise
        return open_dataset(spec, fits[0], flip=False)


class _Crops(Dataset):
    # Synthetic photos and style faces come from different seeds: different people, truly unpaired.
    synthetic_seed = 0

    def __init__(self, spec: str, size: int, load_size: int) -> None:
        self.spec = str(spec)
        self.size = int(size)
        self.reader = _open_reader(self.spec, load_size, self.size, self.synthetic_seed)
        rs = getattr(self.reader, "size", load_size)
        if rs < self.size:
            raise DatasetError(f"{self.spec}: images are {rs} px, smaller than the crop size {self.size}")

    def __len__(self) -> int:
        return len(self.reader)

    def describe(self) -> str:
        d = self.reader.describe() if hasattr(self.reader, "describe") else self.spec
        return f"{d}, random {self.size} px crops"

    def _crop(self, seed: int | None, *ts: Tensor) -> list[Tensor]:
        if seed is None:  # fixed sample photos: centre crop, no flip
            h, w = ts[0].shape[-2:]
            t, l = (h - self.size) // 2, (w - self.size) // 2
            return [x[..., t:t + self.size, l:l + self.size].contiguous() for x in ts]
        return _crop_flip(np.random.default_rng(seed), self.size, *ts)


class PhotoCrops(_Crops):
    """Photos as ``[3, size, size]`` tensors in [-1, 1]."""

    def __getitem__(self, key: Any) -> Tensor:
        i, seed = item_key(key)
        return self._crop(seed, self.reader[i])[0]


class StyleCrops(_Crops):
    """Style images as ``(style, gray, smooth)``, each ``[3, size, size]`` in [-1, 1], cropped alike.

    smooth_dir: pre-made edge-smoothed images matched to a style *folder* by relative path (any image
    extension); a style file without one (or with an unreadable one) is smoothed on the fly.
    """

    synthetic_seed = 1

    def __init__(self, spec: str, size: int, load_size: int, smooth_dir: str | None = None) -> None:
        super().__init__(spec, size, load_size)
        self.smooth_dir = smooth_dir
        self.smooth_files: list[Path | None] | None = None
        self.smooth_missing = 0
        self.skipped: list[str] = []  # unreadable style files met while pairing with smooth_dir
        self._bad: set[int] = set()
        if smooth_dir is not None:
            if not isinstance(self.reader, ImageFolder):
                raise UserInputError(f"--smooth needs --style to be a folder (got {self.spec}); "
                                     "leave --smooth out to smooth edges on the fly")
            smooth = ImageFolder(smooth_dir, load_size)  # scans (and validates) the folder
            sroot = smooth.root.resolve()
            if sroot.is_relative_to(self.reader.root.resolve()):  # SMOOTH_DIR inside STYLE_DIR: not style images
                self.reader.files = [p for p in self.reader.files if not p.resolve().is_relative_to(sroot)]
                if not self.reader.files:
                    raise DatasetError(f"no style images in {self.spec} outside {smooth_dir}")
            by_rel = {str(p.relative_to(smooth.root).with_suffix("")): p for p in smooth.files}
            self.smooth_files = [by_rel.get(str(p.relative_to(self.reader.root).with_suffix("")))
                                 for p in self.reader.files]
            self.smooth_missing = sum(p is None for p in self.smooth_files)
            if self.smooth_missing == len(self.smooth_files):
                raise UserInputError(f"--smooth {smooth_dir}: no file matches a style image of {self.spec} "
                                     "(names must mirror the style folder)")

    def describe(self) -> str:
        if self.smooth_files is None:
            how = "edges smoothed on the fly"
        else:
            how = f"edge-smoothed from {self.smooth_dir}"
            if self.smooth_missing:
                how += f" ({self.smooth_missing:,} missing: smoothed on the fly)"
        return f"{super().describe()}, {how}"

    def _read_pair(self, i: int) -> tuple[Tensor, Tensor | None]:
        """Style item ``i`` and its pre-made smoothed version; walks past unreadable style files like the readers."""
        rd: ImageFolder = self.reader  # type: ignore[assignment]
        n = len(rd.files)
        for step in range(n):
            j = (i + step) % n
            if j in self._bad:
                continue
            try:
                style = to_tensor(resize_center_crop(load_image(rd.files[j]), rd.size))
            except ImageError as e:
                self._bad.add(j)
                self.skipped.append(str(rd.files[j]))
                warnings.warn(f"skipping unreadable image {e}", UnreadableImageWarning)
                continue
            sp = self.smooth_files[j]  # type: ignore[index]
            smooth = None
            if sp is not None:
                try:
                    smooth = to_tensor(resize_center_crop(load_image(sp), rd.size))
                except ImageError as e:
                    warnings.warn(f"unreadable smoothed image {e}; smoothing on the fly", UnreadableImageWarning)
            return style, smooth
        raise DatasetError(f"no readable images in {self.spec}")

    def __getitem__(self, key: Any) -> tuple[Tensor, Tensor, Tensor]:
        i, seed = item_key(key)
        if self.smooth_files is not None:
            style, smooth = self._read_pair(i)
        else:
            style, smooth = self.reader[i], None
        if smooth is not None:
            style, smooth = self._crop(seed, style, smooth)
        else:
            (style,) = self._crop(seed, style)
            smooth = uint8_to_tensor(edge_smooth(to_uint8(style)))
        return style, grayscale(style[None])[0], smooth


@dataclass
class TranslationData:
    """Unpaired photos and style images; ``synthetic`` when the built-in faces stand in for both."""

    photos: PhotoCrops
    style: StyleCrops
    synthetic: bool = False

    def describe(self) -> str:
        head = "built-in synthetic photo → webtoon faces; " if self.synthetic else ""
        return f"{head}photos: {self.photos.describe()}; style: {self.style.describe()}"

    def iters_per_epoch(self, batch: int) -> int:
        """One pass over the larger of the two sets (AnimeGAN's epoch)."""
        return max(1, math.ceil(max(len(self.photos), len(self.style)) / batch))

    def skip_log(self, path: Path) -> None:
        """Record unreadable items of both domains in ``path`` (the run's ``skipped.txt``)."""
        for crops in (self.photos, self.style):
            if hasattr(crops.reader, "skip_log"):
                crops.reader.skip_log = path

    def batches(self, batch: int, seed: int = 0, start_step: int = 0, workers: int = 0) -> Iterator[tuple[Tensor, ...]]:
        """Infinite ``(photo, style, style_gray, style_smooth)`` batches from step ``start_step`` on.

        Photos are stream 0 and style images stream 1 of ``toonlab.samplers``: every batch, crop and
        flip is a function of (seed, stream, step), whatever the number of workers.
        """
        # The two streams share the worker budget (each stream needs at least one to run in the background).
        pw = max(1, workers // 2) if workers > 0 else 0
        sw = max(1, workers - pw) if workers > 0 else 0
        photos = step_loader(self.photos, batch, seed, start_step, pw, stream=0)
        style = step_loader(self.style, batch, seed, start_step, sw, stream=1)
        while True:
            p = next(photos)
            s, g, e = next(style)
            yield p, s, g, e

    def fixed_photos(self, n: int) -> Tensor:
        """The first ``n`` photos, centre-cropped: the inputs of every sample grid."""
        n = max(1, min(n, len(self.photos)))
        return torch.stack([self.photos[i] for i in range(n)])


def open_translation_data(
    photos: str | None,
    style: str | None,
    smooth: str | None = None,
    size: int = 256,
    load_size: int | None = None,
    synthetic_length: int = SYNTHETIC_LENGTH,
) -> TranslationData:
    """Open the two domains; with neither ``photos`` nor ``style`` the synthetic faces are used.

    load_size: the side images are resized/centre-cropped to before the random crop
    (default ``size + size // 8``).
    """
    if (photos is None) != (style is None):
        missing = "--style" if style is None else "--photos"
        raise UserInputError(f"give both --photos and --style (missing {missing}), or neither for the built-in "
                             "synthetic faces")
    if size < 32 or size % 8:
        raise UserInputError(f"crop size {size} must be a multiple of 8 and ≥ 32")
    load = int(load_size) if load_size else size + size // 8
    if load < size:
        raise UserInputError(f"load size {load} is smaller than the crop size {size}")
    synthetic = photos is None
    if synthetic:
        if smooth is not None:
            raise UserInputError("--smooth needs --style (the synthetic style images are smoothed on the fly)")
        photos = f"{SYNTHETIC_PHOTOS}:{synthetic_length}"
        style = f"{SYNTHETIC_STYLE}:{synthetic_length}"
    return TranslationData(PhotoCrops(photos, size, load), StyleCrops(style, size, load, smooth), synthetic)
