"""Image tensors ↔ files, and labelled grids."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from toonlab.atomic import atomic_path


def to_uint8(images: Tensor) -> np.ndarray:
    """[N,3,H,W] or [3,H,W] in [-1, 1] → uint8 array [N,H,W,3] / [H,W,3]."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    x = x.movedim(-3, -1).cpu().numpy()
    return x


def to_pil(image: Tensor) -> Image.Image:
    """One [3,H,W] image in [-1, 1] → PIL RGB."""
    return Image.fromarray(to_uint8(image))


def save_atomic(img: Image.Image, path: str | Path, **save_kw) -> Path:
    """Write through a temporary file in the same folder + rename: a killed run never leaves half a PNG."""
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, format=_format_for(path), **save_kw)
    return path


def _format_for(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}.get(ext, "PNG")


def make_grid(
    images: Sequence[Image.Image] | Tensor,
    cols: int | None = None,
    padding: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
    col_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
) -> Image.Image:
    """Tile images into a grid, optionally with column/row labels (for comparison figures)."""
    if isinstance(images, Tensor):
        images = [Image.fromarray(a) for a in to_uint8(images)]
    images = list(images)
    if not images:
        raise ValueError("make_grid needs at least one image")
    n = len(images)
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    w, h = images[0].size
    font = ImageFont.load_default()
    top = 14 if col_labels else 0
    left = 6 * max((len(s) for s in row_labels), default=0) + 6 if row_labels else 0
    grid = Image.new("RGB", (left + cols * (w + padding) + padding, top + rows * (h + padding) + padding), background)
    draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(im.convert("RGB").resize((w, h)), (left + padding + c * (w + padding), top + padding + r * (h + padding)))
    for c, label in enumerate(col_labels or []):
        draw.text((left + padding + c * (w + padding) + 2, 1), label, fill=(0, 0, 0), font=font)
    for r, label in enumerate(row_labels or []):
        draw.text((2, top + padding + r * (h + padding) + h // 2 - 5), label, fill=(0, 0, 0), font=font)
    return grid
