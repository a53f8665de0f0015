"""Images: decoding any file users have into 8-bit RGB, the one image <-> tensor conversion, colour
spaces, and labelled grids.

Convention everywhere in toonlab: an image tensor is float ``[3, H, W]`` (or ``[N, 3, H, W]``) RGB in
``[-1, 1]``; uint8 arrays are ``[H, W, 3]`` (or ``[N, H, W, 3]``).
"""

from __future__ import annotations

import io
import math
import os
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps
from torch import Tensor

from toonlab.errors import UserInputError

#: File extensions (lower case, with dot) treated as images by the folder and zip readers.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
)


class ImageError(UserInputError):
    """A single file could not be decoded as an image (one-line message: ``NAME: reason``)."""


class NonFiniteOutputError(UserInputError):
    """A network produced NaN/Inf pixels: a broken (NaN) checkpoint or an overflow, never a picture."""


def check_finite_images(x: Tensor, source: str = "the generator") -> Tensor:
    """``x`` unchanged, or ``NonFiniteOutputError`` when any value is NaN/Inf.

    Without it a NaN image becomes black (uint8 conversion clamps NaN to 0) and the command
    exits 0 having written garbage. One reduction per batch; on a GPU it synchronises, so the
    translation fast path checks on its asynchronous copy instead.
    """
    if not bool(torch.isfinite(x).all()):
        raise non_finite_error(x, source)
    return x


def non_finite_error(x: Tensor, source: str = "the generator") -> NonFiniteOutputError:
    bad = int((~torch.isfinite(x.reshape(x.shape[0], -1))).any(1).sum()) if x.ndim > 1 else 1
    return NonFiniteOutputError(
        f"non-finite output: {source} produced NaN/Inf pixels in {bad} of {x.shape[0] if x.ndim > 1 else 1} "
        "images (are its weights NaN? with bf16/fp16, try --precision fp32); stopped before using them")


def one_line(text: object) -> str:
    """Collapse an exception message to one line so errors stay greppable in logs."""
    return " ".join(str(text).split()) or "unknown error"


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
    """Scale a 16/32-bit single-channel image to 8-bit RGB.

    ``Image.convert("L")`` *clips* values above 255, which turns every normal
    16-bit photo into a white sheet; we rescale the full range instead.
    """
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        # Float images ("F" mode) conventionally hold [0, 1]; anything else is clipped.
        hi = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        arr8 = np.clip(np.nan_to_num(arr) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    else:
        arr = arr.astype(np.int64)
        # "I" is 32-bit, but Pillow uses it for 16-bit sources (PNG, TIFF, I;16
        # conversions), so assume a 16-bit range unless the data says otherwise.
        hi = max(65535, int(arr.max(initial=0)))
        arr8 = ((np.clip(arr, 0, None) * 255 + hi // 2) // hi).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr8)).convert("RGB")


def _alpha_onto_white(img: Image.Image) -> Image.Image:
    """Composite an RGBA image onto white.

    Transparent pixels often carry arbitrary (commonly black) colour values;
    simply dropping alpha would give cartoon cut-outs black halos or black
    backgrounds. White matches the typical sticker/illustration background.
    """
    background = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, img).convert("RGB")


def _cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """Convert CMYK using its embedded ICC profile when present (print-oriented
    CMYK files look badly off with the naive formula), else Pillow's naive conversion."""
    icc = img.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            return ImageCms.profileToProfile(img, src, dst, outputMode="RGB")
        except Exception:  # broken/unsupported profile: fall back rather than drop the image
            pass
    return img.convert("RGB")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Normalise any Pillow mode to 8-bit RGB (see :func:`load_image`)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P":
        # Palette images may declare a transparent index (GIF/PNG); go through RGBA
        # so those pixels become white instead of whatever colour the index holds.
        if "transparency" in img.info:
            return _alpha_onto_white(img.convert("RGBA"))
        return img.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _alpha_onto_white(img.convert("RGBA"))
    if mode == "CMYK":
        return _cmyk_to_rgb(img)
    if mode in ("1", "L", "YCbCr", "HSV", "RGBX"):
        return img.convert("RGB")
    if mode.startswith("I") or mode == "F":
        return _sixteen_bit_to_rgb(img)
    if mode == "LAB":
        # Pillow has no direct LAB->RGB conversion; go through an ICC transform.
        from PIL import ImageCms

        transform = ImageCms.buildTransformFromOpenProfiles(
            ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
        )
        return ImageCms.applyTransform(img, transform)
    return img.convert("RGB")  # anything else Pillow knows how to convert


#: Default ``--max-pixels`` of align and translate: photos above it are downscaled on load (40 MP is
#: a 7300x5500 photo; a 12000x12000 scan would otherwise take minutes and gigabytes).
MAX_PIXELS = 40_000_000


def parse_pixels(value: str | int) -> int:
    """``40000000``, ``40M`` or ``40MP`` → pixels; ``0`` = no limit. ``ValueError`` otherwise."""
    text = str(value).strip().upper().removesuffix("P")
    scale = 1_000_000 if text.endswith("M") else 1
    number = float(text.removesuffix("M"))
    if number < 0:
        raise ValueError(f"{value!r} is negative")
    return int(number * scale)


def downscaled_from(img: Image.Image) -> tuple[int, int] | None:
    """The original size of an image :func:`load_image` downscaled for ``max_pixels``, else None."""
    return img.info.get("toonlab_original_size")


def _decode(fp: Any, max_pixels: int | None) -> tuple[Image.Image, tuple[int, int] | None]:
    """Open, decode (JPEG at a reduced DCT scale when far above ``max_pixels``), orient, convert to RGB."""
    original = None
    with Image.open(fp) as img:
        w, h = img.size
        if max_pixels and w * h > max_pixels:
            original = (w, h)
            f = math.sqrt(w * h / max_pixels)
            if img.format == "JPEG":
                img.draft("RGB", (math.ceil(w / f), math.ceil(h / f)))  # DCT scaling: no full decode
        # Decode now, inside the caller's try: Image.open is lazy and truncation or
        # corruption would otherwise surface later, far from the file name.
        img.load()
        img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
        rgb.load()
    if max_pixels and rgb.width * rgb.height > max_pixels:
        k = math.ceil(math.sqrt(rgb.width * rgb.height / max_pixels))
        rgb = rgb.reduce(k)  # box filter over k x k blocks: fast, alias-free enough for faces
    if original is not None:
        rgb.info["toonlab_original_size"] = original
    return rgb, original


def load_image(src: str | os.PathLike[str] | bytes, name: str | None = None,
               max_pixels: int | None = None) -> Image.Image:
    """Decode an image file (path or raw bytes) into an 8-bit RGB ``PIL.Image``.

    Applies the EXIF orientation tag (phone photos are stored sideways), and
    converts grayscale, palette (with transparency), RGBA/LA (composited onto
    white), CMYK, 16-bit (rescaled, not clipped), YCbCr and other modes.

    Args:
        src: a file path, or the encoded bytes of an image.
        name: how to refer to the image in error messages (defaults to the path,
            or ``"<bytes>"``).
        max_pixels: downscale larger images to at most this many pixels (JPEGs
            decode at 1/2, 1/4 or 1/8 scale directly, which is fast; others
            by an integer box reduction); :func:`downscaled_from` then gives
            the original size. None or 0: no limit (Pillow's own 179 MP cap).

    Raises:
        ImageError: zero-byte, missing, truncated, corrupt or non-image input.
            The message is one line naming the file and the reason, so callers
            can skip the file and log it.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        label = name or "<bytes>"
        data = bytes(src)
        if not data:
            raise ImageError(f"{label}: zero-byte file")
        fp: Any = io.BytesIO(data)
    else:
        label = name or os.fspath(src)
        try:
            if os.path.getsize(src) == 0:
                raise ImageError(f"{label}: zero-byte file")
        except OSError as exc:
            raise ImageError(f"{label}: {one_line(exc.strerror or exc)}") from exc
        fp = src
    try:
        with warnings.catch_warnings():
            if max_pixels:
                # We bound the size ourselves; Pillow's "decompression bomb" warning would only
                # repeat it as a Python warning with a source line.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            rgb, original = _decode(fp, max_pixels)
    except ImageError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageError(f"{label}: not an image (unrecognised format)") from None
    except Exception as exc:  # noqa: BLE001
        # Pillow's decoders raise a zoo of exception types on bad data (OSError,
        # SyntaxError, EOFError, struct.error, IndexError, DecompressionBombError,
        # ...). For the caller all of them mean "skip this file".
        reason = one_line(exc)
        if "truncated" in reason.lower():
            reason = f"truncated file ({reason})"
        raise ImageError(f"{label}: {reason}") from exc
    if rgb.mode != "RGB":  # defensive: a conversion path we did not anticipate
        raise ImageError(f"{label}: unsupported image mode {rgb.mode}")
    return rgb


def resize_center_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize so the short side equals ``size`` (LANCZOS), then centre-crop to ``size``×``size``.

    Matches torchvision's ``Resize(size) + CenterCrop(size)`` used by the
    community ``prepare_data.py`` (so our LMDBs contain the same crops).
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    w, h = img.size
    if (w, h) == (size, size):
        return img
    short, long = min(w, h), max(w, h)
    if short != size:
        # torchvision's rule: the short side becomes `size`, the long side is truncated.
        new_long = max(size, int(size * long / short))
        new = (size, new_long) if w <= h else (new_long, size)
        img = img.resize(new, Image.Resampling.LANCZOS)
        w, h = img.size
    # torchvision's CenterCrop rounds the offset (not floor) -- keep identical crops.
    left = int(round((w - size) / 2.0))
    top = int(round((h - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def to_tensor(img: Image.Image) -> Tensor:
    """PIL image -> ``float32`` tensor ``[3, H, W]`` in ``[-1, 1]``."""
    if img.mode != "RGB":
        img = _to_rgb(img)
    return uint8_to_tensor(np.asarray(img, dtype=np.uint8))


def uint8_to_float(t: Tensor) -> Tensor:
    """A uint8 tensor (any layout) → float32 of the same shape in [-1, 1]."""
    return t.to(torch.float32).div_(127.5).sub_(1.0)


def uint8_to_tensor(arr: np.ndarray | Tensor) -> Tensor:
    """uint8 ``[H, W, 3]`` (or ``[N, H, W, 3]``) → float32 ``[3, H, W]`` (``[N, 3, H, W]``) in [-1, 1]."""
    # copy(): np.asarray of a PIL image may be read-only, which torch warns about.
    t = arr if isinstance(arr, Tensor) else torch.from_numpy(np.array(arr, dtype=np.uint8, copy=True))
    return uint8_to_float(t.movedim(-1, -3).contiguous())


def tensor_to_uint8(images: Tensor) -> Tensor:
    """Float images in [-1, 1] → uint8 tensor of the same shape (channels stay first), on their device."""
    return images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def to_uint8(images: Tensor) -> np.ndarray:
    """[N,3,H,W] or [3,H,W] in [-1, 1] → uint8 array [N,H,W,3] / [H,W,3]."""
    return tensor_to_uint8(images).movedim(-3, -1).cpu().numpy()


def to_pil(image: Tensor) -> Image.Image:
    """One [3,H,W] image in [-1, 1] → PIL RGB."""
    return Image.fromarray(to_uint8(image))


# --------------------------------------------------------------------------- colour

#: RGB in [0, 1] → YUV (BT.601 luma; U, V centred on 0): the matrix of AnimeGAN's colour loss (REFERENCE §6).
RGB_TO_YUV = (
    (0.299, 0.587, 0.114),
    (-0.14714119, -0.28886916, 0.43601035),
    (0.61497538, -0.51496512, -0.10001026),
)
_YUV_TO_RGB = torch.linalg.inv(torch.tensor(RGB_TO_YUV, dtype=torch.float64))


def _apply3(m: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", m.to(x.device, x.dtype), x)


def rgb_to_yuv(x: Tensor) -> Tensor:
    """``[N,3,H,W]`` RGB in [-1, 1] → YUV of the image mapped to [0, 1] (Y in [0, 1], U/V centred on 0).

    Computed in float32 at least (half inputs are upcast).
    """
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    return _apply3(torch.tensor(RGB_TO_YUV, dtype=torch.float64), (x + 1.0) * 0.5)


def yuv_to_rgb(yuv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_yuv` (exact matrix inverse, not the rounded textbook one): RGB in [-1, 1]."""
    return _apply3(_YUV_TO_RGB, yuv) * 2.0 - 1.0


def _fit_label(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont, text: str, width: int) -> list[str]:
    """``text`` as lines no wider than ``width`` px: wrapped at spaces, over-long words cut with '…'."""
    def fits(t: str) -> bool:
        return draw.textlength(t, font=font) <= width

    def cut(word: str) -> str:
        while len(word) > 1 and not fits(word + "…"):
            word = word[:-1]
        return word + "…"

    lines: list[str] = []
    for word in text.split():
        word = word if fits(word) else cut(word)
        if lines and fits(f"{lines[-1]} {word}"):
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def make_grid(
    images: Sequence[Image.Image] | Tensor,
    cols: int | None = None,
    padding: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
    col_labels: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    fit_labels: bool = False,
) -> Image.Image:
    """Tile images into a grid, optionally with column/row labels (for comparison figures).

    ``fit_labels`` wraps (and word by word shortens) column labels to their column's width so a long
    label never runs into the next one (the projection grid: "photo (aligned)" over a 64-px tile);
    off, every label is one line 14 px high, as the paper figures' layout expects.
    """
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
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # Column labels are wrapped (and, word by word, shortened) to their column's width, so a long
    # label never runs into the next one.
    wrapped = [_fit_label(measure, font, s, w - 2) if fit_labels else [s] for s in (col_labels or [])]
    line_h = 11
    top = line_h * max((len(x) for x in wrapped), default=1) + 3 if col_labels else 0
    left = 6 * max((len(s) for s in row_labels), default=0) + 6 if row_labels else 0
    grid = Image.new("RGB", (left + cols * (w + padding) + padding, top + rows * (h + padding) + padding), background)
    draw = ImageDraw.Draw(grid)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        grid.paste(im.convert("RGB").resize((w, h)), (left + padding + c * (w + padding), top + padding + r * (h + padding)))
    for c, lines in enumerate(wrapped):
        for k, line in enumerate(lines):
            draw.text((left + padding + c * (w + padding) + 1 + (not fit_labels), 1 + k * line_h), line,
                      fill=(0, 0, 0), font=font)
    for r, label in enumerate(row_labels or []):
        draw.text((2, top + padding + r * (h + padding) + h // 2 - 5), label, fill=(0, 0, 0), font=font)
    return grid
