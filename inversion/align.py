"""FFHQ-style face alignment from dlib's 68 landmarks.

    python inversion/align.py photo.jpg --size 256 --out aligned.png
    toonlab align photo.jpg group.jpg --all --out faces/

The crop follows the FFHQ recipe (REFERENCE.md §5): eyes and mouth fix an oriented square
centred a little below the eyes, the photo is shrunk when the face is much larger than the output,
cropped with a border, reflect-padded (blurred, median-filled) where the square leaves the photo,
then resampled with a supersampled quad transform.  Unlike the common script it picks the most
confident face (not the last one), says "no face found" instead of crashing, and uses LANCZOS.

dlib comes from the ``dlib-bin`` wheel; the landmark model from the PyPI package
``face_recognition_models``, located without importing it (its ``__init__`` needs the removed
``pkg_resources``).  The iBUG 300-W landmark model is licensed for non-commercial use only.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
from PIL import Image, ImageFilter

from toonlab.atomic import save_image_atomic
from toonlab.errors import ToonlabError, UserInputError, one_line_warnings, user_errors
from toonlab.images import MAX_PIXELS, ImageError, downscaled_from, load_image, parse_pixels
from toonlab.options import ToonCommand

LANDMARK_MODEL = "shape_predictor_68_face_landmarks.dat"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
DETECT_MAX_SIDE = 1024  # larger photos are downscaled for detection only
SMALL_FACE_UPSCALE = 2.0  # warn when the crop square is upscaled more than this (a 100-px face to 256 px)


class NoFaceError(UserInputError):
    """dlib found no face in the photo."""


@dataclass(frozen=True)
class Face:
    """One detected face: its detector box and score, and 68 landmarks (x, y) in photo pixels."""

    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    landmarks: np.ndarray  # [68, 2] float

    @property
    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.landmarks[36:42].mean(0), self.landmarks[42:48].mean(0)

    @property
    def mouth(self) -> np.ndarray:
        return (self.landmarks[48] + self.landmarks[54]) / 2


def landmark_model_path(explicit: str | os.PathLike | None = None) -> Path:
    """Where ``shape_predictor_68_face_landmarks.dat`` is: ``explicit`` or face_recognition_models."""
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise UserInputError(f"landmark model {p} does not exist")
        return p
    looked = []
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            p = Path(root) / "models" / LANDMARK_MODEL
            looked.append(str(p.parent))
            if p.is_file():
                return p
    where = f" in {', '.join(looked)}" if looked else " (the face_recognition_models package is not installed)"
    raise UserInputError(f"dlib landmark model {LANDMARK_MODEL} not found{where}; "
                         "pip install face_recognition_models or pass --landmarks PATH")


@lru_cache(maxsize=2)
def _dlib_models(model_path: str):
    try:
        import dlib
    except ImportError:
        raise UserInputError("dlib is not installed: pip install dlib-bin") from None
    try:
        predictor = dlib.shape_predictor(model_path)
    except RuntimeError as e:  # dlib's deserialiser on a file that is not a shape predictor
        raise UserInputError(f"{model_path}: not a dlib shape predictor ({str(e).splitlines()[0][:80]}); "
                             f"pass --landmarks {LANDMARK_MODEL}") from None
    return dlib.get_frontal_face_detector(), predictor


def detect_faces(photo: Image.Image, landmarks: str | os.PathLike | None = None,
                 detect_max_side: int = DETECT_MAX_SIDE, upsample: int = 1) -> list[Face]:
    """All faces dlib finds, most confident first.

    Detection runs on a copy no larger than ``detect_max_side`` (HOG detection on a 6000-px photo
    takes minutes); the landmarks are then fitted on the full-resolution photo.
    """
    detector, predictor = _dlib_models(str(landmark_model_path(landmarks)))
    import dlib

    rgb = np.asarray(photo.convert("RGB"))
    scale = min(1.0, detect_max_side / max(photo.size))
    small = rgb
    if scale < 1.0:
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        # reducing_gap: an integer box reduction first, LANCZOS for the rest (12000 px: ~10x faster).
        small = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0))
    rects, scores, _ = detector.run(small, upsample, 0.0)
    faces = []
    for r, s in zip(rects, scores):
        box = tuple(int(round(v / scale)) for v in (r.left(), r.top(), r.right(), r.bottom()))
        shape = predictor(rgb, dlib.rectangle(*box))
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        faces.append(Face(box=box, score=float(s), landmarks=pts))
    faces.sort(key=lambda f: -f.score)
    return faces


def face_quad(face: Face) -> tuple[np.ndarray, float]:
    """The FFHQ crop square as 4 corners (TL, BL, BR, TR) and its side length, in photo pixels."""
    eye_l, eye_r = face.eyes
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = face.mouth - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]  # "right" axis, tilted by the mouth
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def align_face(photo: Image.Image, face: Face, size: int = 256, supersample: int = 4,
               pad_mode: str = "reflect") -> Image.Image:
    """Crop and rotate ``face`` out of ``photo`` the FFHQ way; return a ``size``² RGB image."""
    if size < 8 or size & (size - 1):
        raise UserInputError(f"--size must be a power of two >= 8, got {size}")
    img = photo.convert("RGB")
    quad, qsize = face_quad(face)
    transform_size = size * supersample

    # Shrink first when the face is far larger than the output (speed and less aliasing).
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS, reducing_gap=3.0)
        quad /= shrink
        qsize /= shrink

    # Crop to the quad plus a border.
    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, img.width), min(crop[3] + border, img.height))
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= crop[0:2]

    # Pad where the quad leaves the photo: mirror the photo, then fade the mirrored band into a
    # blurred copy and the median colour so the seam does not read as a second face edge.
    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - img.width + border, 0), max(pad[3] - img.height + border, 0))
    if max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), pad_mode)
        h, w, _ = arr.shape
        yy, xx = np.ogrid[:h, :w]
        dist = np.minimum(
            np.minimum(np.float32(xx) / pad[0] if pad[0] else np.inf, np.float32(w - 1 - xx) / pad[2] if pad[2] else np.inf),
            np.minimum(np.float32(yy) / pad[1] if pad[1] else np.inf, np.float32(h - 1 - yy) / pad[3] if pad[3] else np.inf),
        )
        # 1 at the outer edge, 0 where the photo starts, negative inside it.
        mask = (1.0 - dist)[..., None]
        blur_radius = qsize * 0.02
        blurred = np.float32(Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255))).filter(
            ImageFilter.GaussianBlur(blur_radius)))
        arr += (blurred - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad += pad[:2]

    # Supersampled quad transform, then a LANCZOS downscale to the output size.
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD,
                        (quad + 0.5).flatten(), Image.Resampling.BILINEAR)
    if transform_size != size:
        img = img.resize((size, size), Image.Resampling.LANCZOS)
    return img


def load_photo(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Load a photo (EXIF orientation, any mode) or raise a one-line ``UserInputError``.

    Photos above ``max_pixels`` are downscaled on load, with one warning line saying so: a face
    needs far fewer pixels, and a 12000x12000 photo would otherwise cost minutes and gigabytes.
    """
    try:
        img = load_image(path, max_pixels=max_pixels)
    except ImageError as e:
        raise UserInputError(str(e)) from None
    was = downscaled_from(img)
    if was is not None:
        warnings.warn(f"{os.fspath(path)}: {was[0]}x{was[1]} ({was[0] * was[1] / 1e6:.0f} MP) is above --max-pixels "
                      f"{max_pixels / 1e6:g} MP; downscaled to {img.width}x{img.height} (--max-pixels 0: no limit)",
                      stacklevel=2)
    return img


def align_photo(path: str | os.PathLike, size: int = 256, face_index: int | None = None,
                all_faces: bool = False, landmarks: str | os.PathLike | None = None,
                photo: Image.Image | None = None, max_pixels: int | None = MAX_PIXELS) -> list[tuple[Image.Image, Face]]:
    """Detect and align the face(s) of one photo.

    Default: the most confident face (a warning names how many others there are).
    ``face_index`` picks the i-th most confident one, ``all_faces`` returns every face. A face
    upscaled more than 2x to ``size`` warns (it will be blurry). Raises ``NoFaceError``
    ("no face found in photo.jpg").
    """
    photo = photo if photo is not None else load_photo(path, max_pixels)
    faces = detect_faces(photo, landmarks)
    name = os.fspath(path)
    if not faces:
        raise NoFaceError(f"no face found in {name}")
    if all_faces:
        chosen = faces
    else:
        i = face_index or 0
        if i >= len(faces):
            raise UserInputError(f"--face-index {i}: only {len(faces)} face(s) found in {name}")
        chosen = [faces[i]]
        if len(faces) > 1 and face_index is None:
            warnings.warn(f"{name}: {len(faces)} faces found, using the most confident one; --all for every one, "
                          "--face-index N for another", stacklevel=2)
    out = []
    for face in chosen:
        _, qsize = face_quad(face)
        if qsize < size / SMALL_FACE_UPSCALE:
            warnings.warn(f"{name}: the face is only {qsize:.0f} px across; upscaled {size / qsize:.1f}x to the "
                          f"{size}-px crop, it will be blurry", stacklevel=2)
        out.append((align_face(photo, face, size), face))
    return out


@click.command(name="align", cls=ToonCommand)
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--size", type=click.IntRange(8, 4096), default=256, show_default=True,
              help="Output size in pixels (a power of two).")
@click.option("--out", "out", type=click.Path(), default=None,
              help="Output file (one photo, one face) or folder. Default: <photo>_aligned.png beside each photo.")
@click.option("--face-index", type=click.IntRange(0), default=None,
              help="Pick the i-th most confident face (default: the most confident).")
@click.option("--all", "all_faces", is_flag=True, help="Align every face found (NAME_face0.png, ...).")
@click.option("--landmarks", type=click.Path(dir_okay=False), default=None,
              help=f"dlib {LANDMARK_MODEL} (default: from the face_recognition_models package).")
@click.option("--max-pixels", default=str(MAX_PIXELS), show_default="40M",
              help="Downscale larger photos on load (e.g. 40M, 100000000; 0: no limit), with a note.")
def main(photos: tuple[str, ...], size: int, out: str | None, face_index: int | None, all_faces: bool,
         landmarks: str | None, max_pixels: str) -> None:
    """Align the face in each photo the FFHQ way (dlib 68 landmarks)."""
    with user_errors():
        one_line_warnings()
        if size & (size - 1):
            raise ToonlabError(f"--size must be a power of two, got {size}")
        try:
            limit = parse_pixels(max_pixels)
        except ValueError:
            raise ToonlabError(f"--max-pixels takes a pixel count like 40M or 40000000, got {max_pixels!r}") from None
        # An --out with an image suffix is a file name, never a folder: with several faces or
        # photos it becomes a pattern (all.png -> all_0.png, all_1.png, ...).
        out_file = out is not None and Path(out).suffix.lower() in IMAGE_SUFFIXES
        failed, written = [], []
        for photo in photos:
            try:
                results = align_photo(photo, size, face_index, all_faces, landmarks, max_pixels=limit or None)
            except UserInputError as e:
                if len(photos) == 1:
                    raise
                failed.append(str(e))
                continue
            for k, (img, face) in enumerate(results):
                stem = Path(photo).stem + (f"_face{k}" if all_faces else "_aligned")
                if out_file:
                    dest = Path(out)
                    if len(photos) > 1 or all_faces:
                        dest = dest.with_name(f"{dest.stem}_{len(written)}{dest.suffix}")
                elif out is not None:
                    dest = Path(out) / f"{stem}.png"
                else:
                    dest = Path(photo).with_name(f"{stem}.png")
                save_image_atomic(img, dest)
                written.append(dest)
                click.echo(f"{photo}: face score {face.score:.2f} -> {dest}")
        for line in failed:
            click.echo(f"skipped: {line}", err=True)
        if out_file and len(written) > 1:
            click.echo(f"note: --out {out} is a file name; {len(written)} faces were written as "
                       f"{written[0].name} … {written[-1].name}", err=True)
        if not written:
            raise ToonlabError(failed[0] if len(failed) == 1 else f"no face aligned in {len(photos)} photos")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("align")
