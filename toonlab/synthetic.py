"""Built-in procedural face domains: ``synthetic:photo``, ``synthetic:webtoon``, ...

Every face is drawn from one parameter space (:class:`FaceParams`) and can be
rendered in any domain. The geometry (head outline, eyes, brows, nose, mouth,
hair, neck, shoulders) is computed once in face-local units and shared by all
renderers, so the same parameters give the same face structure in every style;
only the rendering differs:

* ``photo``   -- soft-lit, smoothly shaded, textured, slightly blurred: the
  offline stand-in for FFHQ.
* ``webtoon`` -- flat saturated fills, dark outlines, big eyes with highlights,
  one hard cel-shadow tone.
* ``sketch``  -- graphite lines on paper with hatched shadows and hair.
* ``pastel``  -- soft pastel fills, thin light outlines, paper grain.

Everything is deterministic per ``(domain, index, seed)`` and needs no
downloads. Wherever toonlab accepts a dataset path, ``synthetic:<domain>``
selects one of these domains (see :func:`dataset_from_spec`).

    python -m toonlab.synthetic --grid docs/images/synthetic_grid.png --size 128 --n 8
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

try:  # the renderer is usable without torch; only the Dataset classes need it
    import torch
    from torch.utils.data import Dataset as _TorchDataset

    from toonlab.images import uint8_to_tensor
except ImportError:  # pragma: no cover - torch is a project dependency
    torch = None  # type: ignore[assignment]
    _TorchDataset = object  # type: ignore[assignment,misc]

__all__ = [
    "background_mask",
    "DOMAINS",
    "HAIR_STYLES",
    "GEOMETRY_FIELDS",
    "GEOMETRY_RANGES",
    "VECTOR_FIELDS",
    "PARAM_DIM",
    "MIN_SIZE",
    "MAX_SIZE",
    "SYNTHETIC_PREFIX",
    "FaceParams",
    "sample_params",
    "render",
    "SyntheticFaces",
    "SyntheticPairs",
    "make_grid_image",
    "is_synthetic_spec",
    "dataset_from_spec",
]

DOMAINS: tuple[str, ...] = ("photo", "webtoon", "sketch", "pastel")
HAIR_STYLES: tuple[str, ...] = ("short", "long", "bob", "bun", "buzz")
MIN_SIZE, MAX_SIZE = 32, 512
SYNTHETIC_PREFIX = "synthetic:"

# Continuous geometry parameters, in to_vector() order, with the range that
# sample_params() draws them from; to_vector() maps each range onto [0, 1].
# Lengths are in units of the face half-height h (head top to chin is 2h),
# positions/size as fractions of the image side, angles in degrees.
GEOMETRY_RANGES: dict[str, tuple[float, float]] = {
    "face_aspect": (0.68, 0.86),      # head half-width / half-height
    "jaw_roundness": (0.0, 1.0),      # 0 = pointed V chin, 1 = round jaw
    "center_x": (0.43, 0.57),         # head centre, fraction of width
    "center_y": (0.47, 0.55),         # head centre, fraction of height
    "face_size": (0.50, 0.64),        # head height (2h), fraction of height
    "roll": (-12.0, 12.0),            # in-plane tilt, degrees, clockwise
    "eye_y": (-0.02, 0.14),           # eye line below head centre
    "eye_spacing": (0.26, 0.34),      # eye centre to face midline
    "eye_size": (0.12, 0.17),         # eye half-width
    "eye_openness": (0.3, 1.0),       # 0 = closed slit, 1 = wide open
    "brow_height": (0.16, 0.27),      # brow centre above eye centre
    "brow_thickness": (0.025, 0.065),
    "brow_angle": (-14.0, 14.0),      # degrees, + raises the outer ends
    "nose_length": (0.28, 0.42),      # eye line to nose tip
    "nose_width": (0.08, 0.14),       # nostril half-spread
    "mouth_width": (0.16, 0.27),      # mouth half-width
    "mouth_smile": (-0.4, 1.0),       # corner lift; < 0 frowns
    "mouth_openness": (0.0, 1.0),
    "hair_volume": (0.0, 1.0),        # how far the hair stands off the skull
}
GEOMETRY_FIELDS: tuple[str, ...] = tuple(GEOMETRY_RANGES)

_COLOR_FIELDS: tuple[str, ...] = ("skin_rgb", "iris_rgb", "hair_rgb", "clothes_rgb", "bg_top_rgb", "bg_bottom_rgb")
# Full to_vector() layout: normalised geometry, colours in [0, 1], light
# direction mapped to [0, 1], then a one-hot hair style.
VECTOR_FIELDS: tuple[str, ...] = (
    GEOMETRY_FIELDS
    + tuple(f"{name[:-4]}_{c}" for name in _COLOR_FIELDS for c in "rgb")
    + ("light_x",)
    + tuple(f"hair_{s}" for s in HAIR_STYLES)
)
PARAM_DIM = len(VECTOR_FIELDS)


@dataclass(frozen=True)
class FaceParams:
    """One synthetic face, independent of the domain it is rendered in.

    Geometry fields are documented (with their ranges) in ``GEOMETRY_FIELDS`` /
    ``GEOMETRY_RANGES``; colours are sRGB triples in [0, 1]. ``light_x`` is the
    horizontal key-light direction (-1 = from the image's left). ``texture_seed``
    picks the noise texture only; it is not part of :meth:`to_vector`.
    """

    face_aspect: float
    jaw_roundness: float
    center_x: float
    center_y: float
    face_size: float
    roll: float
    eye_y: float
    eye_spacing: float
    eye_size: float
    eye_openness: float
    brow_height: float
    brow_thickness: float
    brow_angle: float
    nose_length: float
    nose_width: float
    mouth_width: float
    mouth_smile: float
    mouth_openness: float
    hair_volume: float
    hair_style: int
    skin_rgb: tuple[float, float, float]
    iris_rgb: tuple[float, float, float]
    hair_rgb: tuple[float, float, float]
    clothes_rgb: tuple[float, float, float]
    bg_top_rgb: tuple[float, float, float]
    bg_bottom_rgb: tuple[float, float, float]
    light_x: float
    texture_seed: int = 0

    def to_vector(self) -> np.ndarray:
        """Float32 vector of length ``PARAM_DIM`` laid out as ``VECTOR_FIELDS``.

        The first ``len(GEOMETRY_FIELDS)`` entries are the geometry normalised
        to [0, 1] over the sampling ranges -- the regression target for
        "does the cartoon keep the face's structure".
        """
        out = np.empty(PARAM_DIM, dtype=np.float32)
        for i, (name, (lo, hi)) in enumerate(GEOMETRY_RANGES.items()):
            out[i] = (getattr(self, name) - lo) / (hi - lo)
        j = len(GEOMETRY_FIELDS)
        for name in _COLOR_FIELDS:
            out[j:j + 3] = getattr(self, name)
            j += 3
        out[j] = (self.light_x + 1.0) / 2.0
        out[j + 1:] = 0.0
        out[j + 1 + self.hair_style] = 1.0
        return out

    def geometry_vector(self) -> np.ndarray:
        """Just the normalised geometry part of :meth:`to_vector`."""
        return self.to_vector()[: len(GEOMETRY_FIELDS)]

    @classmethod
    def from_vector(cls, vector: Sequence[float] | np.ndarray, texture_seed: int = 0) -> "FaceParams":
        """Inverse of :meth:`to_vector` (hair style = argmax of its one-hot block)."""
        v = np.asarray(vector, dtype=np.float64).reshape(-1)
        if v.shape[0] != PARAM_DIM:
            raise ValueError(f"expected a vector of length {PARAM_DIM}, got {v.shape[0]}")
        kw: dict[str, Any] = {}
        for i, (name, (lo, hi)) in enumerate(GEOMETRY_RANGES.items()):
            kw[name] = float(lo + v[i] * (hi - lo))
        j = len(GEOMETRY_FIELDS)
        for name in _COLOR_FIELDS:
            kw[name] = tuple(float(x) for x in v[j:j + 3])
            j += 3
        kw["light_x"] = float(v[j] * 2.0 - 1.0)
        kw["hair_style"] = int(np.argmax(v[j + 1:]))
        return cls(texture_seed=int(texture_seed), **kw)

    def asdict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly once tuples become lists); see :meth:`from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FaceParams":
        """Inverse of :meth:`asdict`; accepts lists for colours (as JSON gives them)."""
        kw = dict(d)
        for name in _COLOR_FIELDS:
            kw[name] = tuple(float(x) for x in kw[name])
        kw["hair_style"] = int(kw["hair_style"])
        kw["texture_seed"] = int(kw.get("texture_seed", 0))
        return cls(**kw)

    def flipped(self) -> "FaceParams":
        """Parameters of the horizontally mirrored face.

        The face model is left/right symmetric, so only the horizontal position,
        the tilt and the light direction change sign.
        """
        return dataclasses.replace(self, center_x=1.0 - self.center_x, roll=-self.roll, light_x=-self.light_x)


# --------------------------------------------------------------------------- sampling

_SKIN_TONES = np.array([  # light to dark; a face's tone interpolates between neighbours
    (0.97, 0.84, 0.75), (0.94, 0.77, 0.65), (0.87, 0.67, 0.53),
    (0.77, 0.56, 0.41), (0.60, 0.42, 0.30), (0.42, 0.29, 0.21),
])
_HAIR_COLORS = np.array([
    (0.07, 0.06, 0.06), (0.20, 0.13, 0.08), (0.40, 0.26, 0.15),
    (0.55, 0.24, 0.11), (0.83, 0.68, 0.42), (0.62, 0.61, 0.60),
])
_HAIR_WEIGHTS = np.array([0.3, 0.25, 0.18, 0.09, 0.12, 0.06])
_IRIS_COLORS = np.array([
    (0.36, 0.21, 0.10), (0.16, 0.10, 0.07), (0.32, 0.50, 0.74),
    (0.32, 0.50, 0.32), (0.50, 0.40, 0.20), (0.50, 0.56, 0.62),
])


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (float(r), float(g), float(b))


def _jitter(rgb: Sequence[float], u: Sequence[float], amount: float) -> tuple[float, float, float]:
    a = 2.0 * amount
    return tuple(min(max(c + (x - 0.5) * a, 0.0), 1.0) for c, x in zip(rgb, u))  # type: ignore[return-value]


_GEO_LO = np.array([lo for lo, _ in GEOMETRY_RANGES.values()])
_GEO_SPAN = np.array([hi - lo for lo, hi in GEOMETRY_RANGES.values()])
_HAIR_CDF = np.cumsum(_HAIR_WEIGHTS) / _HAIR_WEIGHTS.sum()


def sample_params(index: int, seed: int = 0) -> FaceParams:
    """The ``index``-th face of the stream selected by ``seed`` (pure function of both)."""
    if index < 0 or seed < 0:
        raise ValueError(f"index and seed must be >= 0, got index={index}, seed={seed}")
    # One batch of uniforms per face; plain floats from here on (numpy scalars are slow).
    u = np.random.default_rng([int(seed), int(index), 0x700F]).random(48)
    ng = len(GEOMETRY_FIELDS)
    kw: dict[str, Any] = dict(zip(GEOMETRY_FIELDS, (_GEO_LO + u[:ng] * _GEO_SPAN).tolist()))
    r = u[ng:].tolist()
    kw["hair_style"] = min(int(r[0] * len(HAIR_STYLES)), len(HAIR_STYLES) - 1)
    tone = r[1] * (len(_SKIN_TONES) - 1)
    i0 = min(int(tone), len(_SKIN_TONES) - 2)
    skin = (_SKIN_TONES[i0] + (tone - i0) * (_SKIN_TONES[i0 + 1] - _SKIN_TONES[i0])).tolist()
    kw["skin_rgb"] = _jitter(skin, r[2:5], 0.035)
    iris_i = min(int(r[5] * len(_IRIS_COLORS)), len(_IRIS_COLORS) - 1)
    kw["iris_rgb"] = _jitter(_IRIS_COLORS[iris_i].tolist(), r[6:9], 0.05)
    hair_i = min(int(np.searchsorted(_HAIR_CDF, r[9])), len(_HAIR_COLORS) - 1)  # weighted choice
    kw["hair_rgb"] = _jitter(_HAIR_COLORS[hair_i].tolist(), r[10:13], 0.045)
    kw["clothes_rgb"] = _hsv(r[13], 0.15 + 0.55 * r[14], 0.2 + 0.65 * r[15])
    bg_h, bg_s, bg_v = r[16], 0.05 + 0.40 * r[17], 0.35 + 0.57 * r[18]
    kw["bg_top_rgb"] = _hsv(bg_h, bg_s, bg_v)
    kw["bg_bottom_rgb"] = _hsv(bg_h + 0.16 * (r[19] - 0.5), bg_s * (0.6 + 0.7 * r[20]), bg_v * (0.55 + 0.45 * r[21]))
    kw["light_x"] = float(2.0 * r[22] - 1.0)
    kw["texture_seed"] = int(r[23] * 2**31)
    return FaceParams(**kw)


# --------------------------------------------------------------------------- geometry
# All shapes are built in face-local units (u right, v down, unit = half head
# height h, origin = head centre) and mapped to canvas pixels by one rotation +
# scale + translation, so every renderer draws exactly the same layout.


@lru_cache(maxsize=None)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.cos(t), np.sin(t)


def _xy(u: np.ndarray | float, v: np.ndarray | float, n: int | None = None) -> np.ndarray:
    # np.stack costs ~10 us a call; filling a preallocated array is several times cheaper.
    out = np.empty((n if n is not None else len(u), 2))  # type: ignore[arg-type]
    out[:, 0] = u
    out[:, 1] = v
    return out


def _ellipse(cu: float, cv: float, ru: float, rv: float, n: int = 24) -> np.ndarray:
    c, s = _unit_circle(n)
    return _xy(cu + ru * c, cv + rv * s, n)


_NECK_SIDE = np.linspace(0.0, 1.0, 7)
_NECK_ARC_C, _NECK_ARC_S = np.cos(np.linspace(0.0, np.pi, 13)[1:-1]), np.sin(np.linspace(0.0, np.pi, 13)[1:-1])
_X_EYE = np.linspace(-1.0, 1.0, 13)
_EYE_UP = (1.0 - _X_EYE**2) ** 0.65
_EYE_LO = (1.0 - _X_EYE**2) ** 0.9
_X_BROW = np.linspace(0.0, 1.0, 9)
_X_MOUTH = np.linspace(-1.0, 1.0, 15)


class _Layout:
    """All face shapes of one FaceParams in canvas pixels, plus the local->canvas map."""

    def __init__(self, p: FaceParams, canvas: int, size: int):
        self.p = p
        self.canvas = canvas
        self.h = p.face_size * 0.5 * canvas  # pixels per local unit
        th = math.radians(p.roll)
        c, s = math.cos(th), math.sin(th)
        self._m = np.array([[c, s], [-s, c]]) * self.h  # row-vector form: xy = uv @ m + t
        self._t = np.array([p.center_x * canvas, p.center_y * canvas])
        A = p.face_aspect

        # Head: an ellipse whose lower half narrows towards the chin; a pointier
        # chin for low jaw_roundness.
        # Vertex count follows the output size (not the canvas) so every domain gets the same outline.
        cc, ss = _unit_circle(48 if size <= 128 else 96)
        taper = 1.0 - (0.10 + 0.30 * (1.0 - p.jaw_roundness)) * np.clip(ss, 0.0, None) ** 2
        self.face = _xy(A * cc * taper, ss)
        # Neck: slightly flaring sides and a rounded collar line; densely sampled
        # so that clip_to_face() can cut the chin's shadow out of it.
        side = _xy((0.36 + 0.04 * _NECK_SIDE) * A, 0.4 + 0.82 * _NECK_SIDE)
        self.neck = np.concatenate([side, _xy(0.40 * A * _NECK_ARC_C, 1.22 + 0.26 * _NECK_ARC_S),
                                    side[::-1] * np.array([-1.0, 1.0])])
        self.torso = _ellipse(0.0, 2.25, 1.75, 0.95, 40)
        ev = p.eye_y + 0.08
        self.ears = [_ellipse(sd * 0.97 * A, ev, 0.10, 0.19, 16) for sd in (-1.0, 1.0)]
        self.hair_back, self.hair_front, self.hairline, self.shell = _hair_shapes(p)
        # The head outline in polar form about its centre (it is star-shaped),
        # for clipping shapes to the face without raster masks.
        ang = np.arctan2(self.face[:, 1], self.face[:, 0])
        order = np.argsort(ang)
        self._face_ang = ang[order]
        self._face_rad = np.hypot(self.face[:, 0], self.face[:, 1])[order]
        self.nose_tip_v = p.eye_y + p.nose_length
        self.mouth_v = self.nose_tip_v + 0.36 * (0.95 - self.nose_tip_v)

    # -- mapping
    def canvas_xy(self, uv: np.ndarray) -> np.ndarray:
        """Local points -> (n, 2) canvas pixel coordinates."""
        xy = np.dot(uv, self._m)
        xy += self._t
        return xy

    def pts(self, uv: np.ndarray, origin: tuple[int, int] | None = None) -> list[float]:
        """Flat ``[x0, y0, x1, ...]`` canvas coordinates (relative to ``origin`` if given), as PIL wants."""
        xy = np.dot(uv, self._m)
        xy += self._t
        if origin is not None:
            xy -= origin
        return xy.ravel().tolist()

    def batch(self, *shapes: np.ndarray) -> list[list[float]]:
        """``[self.pts(s) for s in shapes]`` with one transform: per-call numpy overhead dominated small shapes."""
        flat = (np.dot(np.concatenate(shapes), self._m) + self._t).ravel().tolist()
        out, i = [], 0
        for a in shapes:
            j = i + 2 * len(a)
            out.append(flat[i:j])
            i = j
        return out

    def shift(self, uv: np.ndarray, du: float, dv: float, origin: tuple[int, int] | None = None) -> list[float]:
        return self.pts(uv + np.array([du, dv]), origin)

    def box(self, *shapes: np.ndarray) -> tuple[int, int, int, int]:
        """Integer canvas bounding box of local shapes (plus 2 px), clipped to the canvas."""
        return _box(self.canvas_xy(np.concatenate(shapes)), self.canvas)

    def px(self, length: float) -> float:
        return length * self.h

    # -- clipping and cel-shadow shapes (local units)
    def clip_to_face(self, uv: np.ndarray) -> np.ndarray:
        """Pull points outside the head outline radially onto it.

        For a dense polygon this approximates its intersection with the (convex)
        head: 10x cheaper than intersecting raster masks.
        """
        u, v = uv[:, 0], uv[:, 1]
        r = np.hypot(u, v)
        rf = np.interp(np.arctan2(v, u), self._face_ang, self._face_rad, period=2.0 * np.pi)
        k = np.minimum(1.0, rf / np.maximum(r, 1e-9))
        return uv * k[:, None]

    def cel_shapes(self) -> dict[str, np.ndarray]:
        """One hard shadow tone: ``lit`` is the part of the face facing the light
        (face minus the face shifted away from the light), ``fringe`` the band the
        front hair shades on the forehead, ``neck`` the chin's shadow on the neck."""
        p = self.p
        lx, ly = p.light_x, -0.6
        n = 0.16 / math.hypot(lx, ly)
        lit = self.clip_to_face(self.face + np.array([lx * n, ly * n]))
        hl = self.hairline
        fringe = self.clip_to_face(np.concatenate([hl + np.array([0.02, 0.07]), hl[::-1]]))
        # neck ∩ (face shifted down): clip in the shifted face's own frame.
        down = np.array([0.0, 0.16])
        neck = self.clip_to_face(self.neck - down) + down
        return {"lit": lit, "fringe": fringe, "neck": neck}

    def hair_ring(self) -> np.ndarray:
        """The anime 'angel ring' highlight band, kept inside the hair: clipped
        radially to the hair shell and vertically above the hairline."""
        band = _ellipse(-0.2 * self.p.light_x, -0.8, 0.5, 0.06, 20)
        ou, ov = self.shell
        q = np.hypot(band[:, 0] / ou, band[:, 1] / ov)
        band *= np.minimum(1.0, 0.97 / np.maximum(q, 1e-9))[:, None]
        hl = self.hairline[::-1]  # left to right, increasing u
        band[:, 1] = np.minimum(band[:, 1], np.interp(band[:, 0], hl[:, 0], hl[:, 1]) - 0.01)
        return band

    # -- features (scale enlarges a domain's eyes about the shared centres)
    def eye(self, side: float, scale: float = 1.0, tall: float = 1.0, iris: float = 0.5) -> dict[str, Any]:
        """One eye (side -1 = image left): lids, almond outline, iris/pupil clipped to the opening.

        ``scale``/``tall`` enlarge a domain's eyes about the shared centre.
        """
        p = self.p
        cu, cv = side * p.eye_spacing, p.eye_y
        ew = p.eye_size * scale
        eh = ew * (0.14 + 0.40 * p.eye_openness) * tall
        x = _X_EYE
        lift = -0.10 * ew * x  # outer corners slightly higher
        up = lift - eh * _EYE_UP
        lo = lift + 0.65 * eh * _EYE_LO
        u = cu + side * x * ew
        outline = np.concatenate([_xy(u, cv + up), _xy(u[::-1], cv + lo[::-1])])
        upper = _xy(u, cv + up)
        lower = _xy(u, cv + lo)

        def clipped(r: float, n: int = 20) -> np.ndarray:
            # Circle clipped to the eye opening: the almond is vertically convex,
            # so clamping each point's v between the lids is the exact intersection.
            c = _ellipse(cu, cv + 0.1 * eh, r, r, n)
            xl = np.clip((c[:, 0] - cu) * side / ew, -1.0, 1.0)
            lo_v = np.interp(xl, x, up) + cv
            hi_v = np.interp(xl, x, lo) + cv
            c[:, 1] = np.clip(c[:, 1], lo_v, np.maximum(hi_v, lo_v))
            return c

        ri = ew * iris
        return {
            "outline": outline, "upper": upper, "lower": lower,
            "iris": clipped(ri), "pupil": clipped(ri * 0.45, 14),
            "center": (cu, cv + 0.1 * eh), "ri": ri, "ew": ew, "eh": eh,
        }

    def brow(self, side: float) -> np.ndarray:
        """Tapered, arched brow band above eye ``side``, rotated by ``brow_angle`` (mirrored per side)."""
        p = self.p
        x = _X_BROW
        cu = side * p.eye_spacing
        length = 2.0 * p.eye_size + 0.04
        u = cu + side * (-0.45 * length + x * length)
        tilt = -math.tan(math.radians(p.brow_angle)) * (x - 0.5) * length
        mid = p.eye_y - p.brow_height - 0.035 * np.sin(np.pi * x) + tilt
        t = p.brow_thickness * (1.0 - 0.55 * x)
        return np.concatenate([_xy(u, mid - 0.5 * t), _xy(u[::-1], (mid + 0.5 * t)[::-1])])

    def mouth(self) -> dict[str, Any]:
        """Mouth line, lip outline, inner (open) region and teeth; ``open`` is the opening height."""
        p = self.p
        x = _X_MOUTH
        w = p.mouth_width
        base = self.mouth_v - p.mouth_smile * 0.075 * x * x
        o = p.mouth_openness * 0.11
        bell = 1.0 - x * x
        top_in = base - 0.25 * o * bell
        bot_in = base + o * bell ** 0.8
        u = x * w
        bow = 0.012 * np.exp(-((np.abs(x) - 0.28) ** 2) / 0.02)  # cupid's bow peaks
        top_out = top_in - (0.030 + 0.012 * bell) * bell ** 0.5 - bow * bell
        bot_out = bot_in + 0.055 * bell ** 0.7
        return {
            "line": _xy(u, base),
            "inner": np.concatenate([_xy(u, top_in), _xy(u[::-1], bot_in[::-1])]),
            "lips": np.concatenate([_xy(u, top_out), _xy(u[::-1], bot_out[::-1])]),
            "teeth": np.concatenate([_xy(u * 0.8, top_in * 0.999 + 0.001 * base),
                                     _xy(u[::-1] * 0.8, (top_in + 0.35 * (bot_in - top_in))[::-1])]),
            "open": o,
        }

    def nose(self) -> dict[str, Any]:
        p = self.p
        tip = self.nose_tip_v
        nw = p.nose_width
        return {
            "nostrils": [_ellipse(sd * nw * 0.55, tip + 0.005, 0.04, 0.022, 12) for sd in (-1.0, 1.0)],
            "ball": _ellipse(0.0, tip - 0.03, nw * 0.75, 0.065, 16),
        }


# (fringe centre v, side v, inner half-width factor, fringe shape exponent,
#  wave amplitude) per style: where the front hair ends on the forehead and
#  how far it comes down the sides of the face.
_HAIR_FRONT = {
    0: (-0.55, -0.02, 0.93, 1.6, 0.035),   # short
    1: (-0.80, 0.95, 0.93, 1.3, 0.0),      # long, middle part, curtains
    2: (-0.32, 0.70, 0.94, 5.0, 0.012),    # bob with straight bangs
    3: (-0.78, -0.18, 0.94, 1.4, 0.0),     # bun, slicked back
    4: (-0.74, -0.22, 0.95, 1.3, 0.0),     # buzz cut
}


_t = np.linspace(np.pi * 1.04, np.pi * 1.96, 25)
_ARC_C, _ARC_S = np.cos(_t), np.sin(_t)
_t = np.linspace(np.pi * 0.93, np.pi * 2.07, 33)
_CAP_C, _CAP_S = np.cos(_t), np.sin(_t)
_t = np.linspace(np.pi / 2, -np.pi / 2, 29)
_PHI_S = np.sin(_t)
_PHI_DROP = {k: (1.0 - np.cos(_t)) ** v[3] for k, v in _HAIR_FRONT.items()}
_PHI_WAVE = np.cos(_t * 9.0) * np.cos(_t)  # even in u, so mirrored faces match flipped()
del _t


def _hair_shapes(p: FaceParams) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, tuple[float, float]]:
    """Back (behind the head) and front (over the forehead) hair polygons, the
    hairline (right to left) and the outer shell's half-axes, local units."""
    A = p.face_aspect
    style = p.hair_style
    vol = (0.03 + 0.04 * p.hair_volume) if style in (3, 4) else (0.06 + 0.14 * p.hair_volume)
    ou, ov = A + vol, 1.0 + vol * 1.2  # outer hair shell

    fv, sv, inset, expo, wave = _HAIR_FRONT[style]
    # Outer contour: the shell over the top, then straight down to the side ends.
    arc = _xy(ou * _ARC_C, ov * _ARC_S)
    end_v = max(sv, float(arc[0, 1]))
    # Inner contour (hairline), from the right side over the forehead to the left.
    inner = _xy(A * inset * _PHI_S, fv + (sv - fv) * _PHI_DROP[style] + wave * _PHI_WAVE)
    front = np.concatenate([[[-ou, end_v]], arc, [[ou, end_v]], inner])

    cap = _xy(ou * _CAP_C, ov * _CAP_S)  # ends a bit below the ear tops
    if style == 1:  # long: falls past the shoulders
        w = ou + 0.22
        back = [np.concatenate([cap, [[ou + 0.05, 0.6], [w, 1.55], [w * 0.55, 1.75], [-w * 0.55, 1.75], [-w, 1.55],
                                      [-ou - 0.05, 0.6]]])]
    elif style == 2:  # bob: rounded, ends at the jaw
        w = ou + 0.06
        back = [np.concatenate([cap, [[w, 0.45], [w * 0.95, 0.78], [w * 0.7, 0.9], [-w * 0.7, 0.9],
                                      [-w * 0.95, 0.78], [-w, 0.45]]])]
    elif style == 3:  # bun on top
        back = [cap, _ellipse(0.0, -ov - 0.16, 0.33, 0.27, 24)]
    else:
        back = [cap]
    return back, [front], inner, (ou, ov)


# --------------------------------------------------------------------------- caches


@lru_cache(maxsize=16)
def _textures(size: int) -> dict[str, np.ndarray]:
    """Noise tiles (2x the image, random crops pick the per-face texture) and grids."""
    rng = np.random.default_rng(1234 + size)
    n = 2 * size

    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]

    def blurred(sigma_x: float, sigma_y: float) -> np.ndarray:
        # Gaussian-filtered white noise via FFT (PIL cannot blur float images).
        spec = np.fft.rfft2(rng.normal(0.0, 1.0, (n, n)))
        spec *= np.exp(-2.0 * np.pi**2 * ((fx * sigma_x) ** 2 + (fy * sigma_y) ** 2))
        a = np.fft.irfft2(spec, s=(n, n)).astype(np.float32)
        return (a - a.mean()) / (a.std() + 1e-6)

    scale = size / 64.0
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size  # pixel centres
    return {
        "fine": blurred(0.5 * scale, 0.5 * scale),
        "blotch": blurred(2.5 * scale, 2.5 * scale),
        "cloud": blurred(7.0 * scale, 7.0 * scale),
        "strand": blurred(0.35 * scale, 3.0 * scale),
        "xx": xx,
        "yy": yy,
        "vignette": 1.0 - 0.22 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2) * 2.0,
    }


@lru_cache(maxsize=8)
def _hatch(canvas: int, period: float, cross: bool, ink: int) -> Image.Image:
    """Diagonal (or cross) pencil hatching on white, as an 'L' image."""
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    line = np.abs(((xx + yy) % period) - period / 2) < period * 0.16
    if cross:
        line |= np.abs(((xx - yy) % period) - period / 2) < period * 0.13
    return Image.fromarray(np.where(line, ink, 255).astype(np.uint8))


def _crop(tile: np.ndarray, size: int, seed: int, salt: int) -> np.ndarray:
    # Cheap integer hash -> offset: a fresh-looking texture per face with no RNG setup cost.
    h = (seed * 2654435761 + salt * 40503) & 0xFFFFFFFF
    oy, ox = (h >> 3) % size, (h >> 17) % size
    return tile[oy:oy + size, ox:ox + size]


def _supersample(size: int, soft: bool = False) -> int:
    # Polygons are rasterised without anti-aliasing; drawing at 2-4x and
    # box-reducing gives smooth edges. 3x at 64 px keeps within the speed budget;
    # ``soft`` renders (photo) are blurred afterwards and need less.
    if soft:
        return 4 if size <= 40 else 2
    return 4 if size <= 48 else 3 if size <= 96 else 2


# --------------------------------------------------------------------------- colour helpers


def _c8(rgb: Sequence[float], alpha: int | None = None) -> tuple[int, ...]:
    r, g, b = rgb
    c = (min(255, max(0, int(r * 255.0 + 0.5))), min(255, max(0, int(g * 255.0 + 0.5))),
         min(255, max(0, int(b * 255.0 + 0.5))))
    return c if alpha is None else c + (alpha,)


def _mix(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, float, float]:
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t)


def _scale(a: Sequence[float], k: float) -> tuple[float, float, float]:
    return (a[0] * k, a[1] * k, a[2] * k)


def _sat(rgb: Sequence[float], s_mul: float = 1.0, s_min: float = 0.0, v_mul: float = 1.0, v_min: float = 0.0,
         v_max: float = 1.0) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    return _hsv(h, max(s * s_mul, s_min), min(max(v * v_mul, v_min), v_max))


def _luma(rgb: Sequence[float]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _mask(box: tuple[int, int, int, int], *polys: list[float]) -> Image.Image:
    """'L' mask of the polygons (given relative to the box origin) over just ``box``."""
    m = Image.new("L", (max(1, box[2] - box[0]), max(1, box[3] - box[1])), 0)
    d = ImageDraw.Draw(m)
    for poly in polys:
        d.polygon(poly, fill=255)
    return m


def _box(xy: np.ndarray, canvas: int) -> tuple[int, int, int, int]:
    """Integer bounding box of canvas points (plus 2 px), clipped to the canvas; never empty."""
    x0, y0 = xy.min(axis=0).tolist()
    x1, y1 = xy.max(axis=0).tolist()
    x0, y0 = min(max(int(x0) - 2, 0), canvas - 1), min(max(int(y0) - 2, 0), canvas - 1)
    return (x0, y0, max(min(int(x1) + 3, canvas), x0 + 1), max(min(int(y1) + 3, canvas), y0 + 1))


def _closed(poly: list[float]) -> list[float]:
    return poly + poly[:2]


# --------------------------------------------------------------------------- photo


def _render_photo(p: FaceParams, size: int, noise_seed: int) -> np.ndarray:
    ss = _supersample(size, soft=True)
    C = size * ss
    L = _Layout(p, C, size)
    skin = p.skin_rgb
    hair = p.hair_rgb
    im = Image.new("RGB", (C, C), _c8(p.bg_top_rgb))
    mk = Image.new("RGB", (C, C), (0, 0, 0))  # coverage: R skin, G hair, B clothes
    # Opaque fills go through a plain Draw: PIL's blending Draw is 2-4x slower per polygon.
    d, da = ImageDraw.Draw(im), ImageDraw.Draw(im, "RGBA")
    dm = ImageDraw.Draw(mk)

    torso = L.pts(L.torso)
    d.polygon(torso, fill=_c8(p.clothes_rgb))
    dm.polygon(torso, fill=(0, 0, 255))
    hair_c = _c8(hair)
    for poly in L.hair_back:
        q = L.pts(poly)
        d.polygon(q, fill=hair_c)
        dm.polygon(q, fill=(0, 255, 0))
    q = L.pts(L.neck)
    d.polygon(q, fill=_c8(_scale(skin, 0.86)))
    dm.polygon(q, fill=(255, 0, 0))
    for ear in L.ears:
        q = L.pts(ear)
        d.polygon(q, fill=_c8(_scale(skin, 0.93)))
        dm.polygon(q, fill=(255, 0, 0))
    face = L.pts(L.face)
    d.polygon(face, fill=_c8(skin))
    dm.polygon(face, fill=(255, 0, 0))

    # Soft, low-alpha features: at 64 px they should read as shading, not as drawings.
    dark = _scale(skin, 0.55)
    lip = _mix(_scale(skin, 0.85), (0.70, 0.28, 0.30), 0.45)
    da.polygon(L.pts(_ellipse(0.0, L.nose_tip_v + 0.06, p.nose_width * 0.9, 0.035, 16)), fill=_c8(dark, 60))
    socket_c, white_c, iris_c = _c8(dark, 45), _c8(_mix(skin, (0.9, 0.88, 0.86), 0.7)), _c8(p.iris_rgb)
    brow_c, lid_c = _c8(_scale(hair, 0.8), 190), _c8(dark, 70)
    lash_w, lid_w = max(1, round(L.px(0.022))), max(1, round(L.px(0.012)))
    for side in (-1.0, 1.0):
        e = L.eye(side, iris=0.56)
        cu, cv = e["center"]
        ri, ew, eh = e["ri"], e["ew"], e["eh"]
        socket, white, iris, pupil, glint, upper, lower, brow = L.batch(
            _ellipse(cu, cv - 0.02, ew * 1.35, eh * 1.6 + 0.05, 20), e["outline"], e["iris"], e["pupil"],
            _ellipse(cu - 0.35 * ri, cv - 0.35 * ri, ri * 0.22, ri * 0.22, 8), e["upper"], e["lower"], L.brow(side))
        da.polygon(socket, fill=socket_c)  # soft eye-socket shadow
        d.polygon(white, fill=white_c)
        d.polygon(iris, fill=iris_c)
        d.polygon(pupil, fill=(18, 12, 10))
        da.polygon(glint, fill=(255, 255, 255, 200))
        da.line(upper, fill=(30, 20, 18, 210), width=lash_w)
        da.line(lower, fill=lid_c, width=lid_w)
        da.polygon(brow, fill=brow_c)
    nz = L.nose()
    shade_side = 1.0 if p.light_x < 0 else -1.0  # the side of the nose away from the light
    tip = L.nose_tip_v
    da.polygon(L.pts(np.array([[0.0, p.eye_y + 0.05], [shade_side * 0.05, p.eye_y + 0.05],
                              [shade_side * p.nose_width * 0.8, tip - 0.02], [shade_side * 0.01, tip]])),
              fill=_c8(dark, 55))
    da.polygon(L.pts(nz["ball"]), fill=_c8(_mix(skin, (1.0, 0.95, 0.9), 0.25), 60))
    for n in nz["nostrils"]:
        da.polygon(L.pts(n), fill=_c8(_scale(skin, 0.35), 150))
    m = L.mouth()
    da.polygon(L.pts(m["lips"]), fill=_c8(lip, 235))
    if float(m["open"]) > 0.012:
        d.polygon(L.pts(m["inner"]), fill=(60, 18, 20))
        da.polygon(L.pts(m["teeth"]), fill=(225, 218, 205, 220))
    else:
        da.line(L.pts(m["line"]), fill=_c8(_scale(lip, 0.45), 200), width=max(1, round(L.px(0.015))))
    for poly in L.hair_front:
        q = L.pts(poly)
        d.polygon(q, fill=hair_c)
        dm.polygon(q, fill=(0, 255, 0))

    tex = _textures(size)
    img = np.asarray(im.reduce(ss) if ss > 1 else im, dtype=np.float32) * (1.0 / 255.0)
    cov = np.asarray(mk.reduce(ss) if ss > 1 else mk, dtype=np.float32) * (1.0 / 255.0)
    # Per-pixel gain, all on HxW planes: shading, then multiplicative skin/hair
    # texture (additive noise reads as dirt on dark skin), then vignette.
    skin_tex = _crop(tex["fine"], size, noise_seed, 1) * 0.01 + _crop(tex["blotch"], size, noise_seed, 2) * 0.012
    gain = _photo_shading(p, tex, cov)
    gain *= 1.0 + cov[..., 0] * skin_tex + cov[..., 1] * (_crop(tex["strand"], size, noise_seed, 3) * 0.16)
    gain *= tex["vignette"]
    img *= gain[..., None]
    # Background: vertical gradient plus soft out-of-focus blotches where nothing is drawn.
    bg = np.maximum(1.0 - cov[..., 0] - cov[..., 1] - cov[..., 2], 0.0) * tex["vignette"]
    bg_grad = np.asarray(p.bg_bottom_rgb, np.float32) - np.asarray(p.bg_top_rgb, np.float32)
    img += (bg * tex["yy"])[..., None] * bg_grad
    img += (bg * _crop(tex["cloud"], size, noise_seed, 4) * 0.035)[..., None]
    # Camera softness: FFHQ downsampled to 64 px has no hard edges, yet at 256 px it is sharp.
    img = _soften(img, 0.45 * math.sqrt(size / 64.0))
    return _to_u8(img)


def _to_u8(img: np.ndarray) -> np.ndarray:
    """[0, 1] float image -> uint8, rounding, in place on ``img``."""
    img *= 255.0
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    return img.astype(np.uint8)


def _ellipsoid_lambert(a: np.ndarray, b: np.ndarray, lu: float, lv: float, lz: float) -> np.ndarray:
    """Lambert term of an ellipsoid seen head-on, in its normalised coordinates (a, b).

    Outside the silhouette the normal is taken as the rim normal, so shading
    stays continuous where anti-aliased coverage spills over.
    """
    r2 = a * a + b * b
    k = 1.0 / np.sqrt(np.maximum(r2, 1.0))
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    return np.maximum(a * (k * lu) + b * (k * lv) + nz * lz, 0.0)


def _photo_shading(p: FaceParams, tex: dict[str, np.ndarray], cov: np.ndarray) -> np.ndarray:
    """Per-pixel brightness factor: analytic ellipsoid/cylinder normals for head,
    hair, neck and torso, lit by one soft key light, weighted by region coverage.

    Using the known geometry (not image-space blurs) is both cheaper and keeps
    the shading consistent with the face structure.
    """
    th = math.radians(p.roll)
    c, s = math.cos(th), math.sin(th)
    inv = 1.0 / (p.face_size * 0.5)
    dx = (tex["xx"] - p.center_x) * inv
    dy = (tex["yy"] - p.center_y) * inv
    u = dx * c + dy * s  # face-local coordinates of every pixel
    v = dy * c - dx * s
    lx, ly, lz = p.light_x, -0.55, 0.85
    n = 1.0 / math.sqrt(lx * lx + ly * ly + lz * lz)
    lu, lv, lz = (c * lx + s * ly) * n, (c * ly - s * lx) * n, lz * n  # light in the face frame

    A = p.face_aspect
    head = _ellipsoid_lambert(u * (1.0 / A), v, lu, lv, lz)
    neck = _ellipsoid_lambert(u * (1.0 / (0.42 * A)), 0.0, lu, lv, lz)  # type: ignore[arg-type]
    w = np.clip((v - 0.8) * 5.0, 0.0, 1.0)
    skin = 0.52 + 0.5 * (head + w * (0.8 * neck - head))
    # Key-light hot spot on the lit side of the forehead/cheek.
    hu, hv = -0.3 * p.light_x, p.eye_y - 0.12
    skin += 0.10 * np.exp(((u - hu) ** 2 + (v - hv) ** 2) * -6.0)

    ho = 1.0 + 0.06 + 0.14 * p.hair_volume
    hair = 0.45 + 0.6 * _ellipsoid_lambert(u * (1.0 / (A + ho - 0.9)), np.minimum(v, 0.0) * (1.0 / ho), lu, lv, lz)
    hair += 0.25 * np.exp(((v + 0.8) * 9.0) ** 2 * -1.0)  # glossy sheen band
    torso = 0.5 + 0.5 * _ellipsoid_lambert(u * (1.0 / 1.75), (v - 2.25) * (1.0 / 0.95), lu, lv, lz)
    bg = np.maximum(1.0 - cov[..., 0] - cov[..., 1] - cov[..., 2], 0.0)
    return cov[..., 0] * skin + cov[..., 1] * hair + cov[..., 2] * torso + bg


def _soften(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (edge-clamped) of an HxWx3 float image.

    Plain numpy slicing: PIL's GaussianBlur costs ~0.2 ms at 64 px and ~5 ms at
    256 px here, and scipy.ndimage is slower still on HxWx3 arrays.
    """
    r = max(1, int(math.ceil(2.0 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k = (k / k.sum()).tolist()
    for axis in (0, 1):
        src = img if axis == 0 else img.swapaxes(0, 1)
        out = src * k[r]
        for j in range(1, r + 1):
            kj = k[r + j]
            out[j:] += src[:-j] * kj
            out[:-j] += src[j:] * kj
            # Clamp at the borders: missing neighbours repeat the edge row.
            out[:j] += src[:1] * kj
            out[-j:] += src[-1:] * kj
        img = out if axis == 0 else out.swapaxes(0, 1)
    return img


# --------------------------------------------------------------------------- toon styles (webtoon / pastel / sketch)


@dataclass(frozen=True)
class _ToonStyle:
    """How a flat-fill cartoon domain draws the shared layout."""

    eye_scale: float          # eye width multiplier about the shared eye centre
    eye_tall: float           # extra eye height
    iris: float               # iris radius / eye half-width
    outline: float            # line width, local units
    color: Callable[[tuple[float, float, float]], tuple[float, float, float]]  # palette transform
    ink: Callable[[tuple[float, float, float]], tuple[float, float, float]]  # outline colour from fill
    bg: Callable[["FaceParams"], tuple[float, float, float]]
    shadow: float             # multiplier for the cel-shadow tone
    blush: int                # blush alpha
    paper: bool               # soften + paper grain afterwards


def _webtoon_color(c: tuple[float, float, float]) -> tuple[float, float, float]:
    return _sat(c, s_mul=1.35, v_mul=1.08)


def _pastel_color(c: tuple[float, float, float]) -> tuple[float, float, float]:
    # Pastel = light and softly tinted: compress value up, keep some chroma even for greys.
    h, s, v = colorsys.rgb_to_hsv(*c)
    return _hsv(h, 0.18 + 0.35 * s, 0.62 + 0.38 * v)


_WEBTOON = _ToonStyle(
    eye_scale=1.3, eye_tall=1.45, iris=0.62, outline=0.040,
    color=_webtoon_color,
    ink=lambda c: (0.10, 0.07, 0.08),
    bg=lambda p: _sat(p.bg_top_rgb, s_mul=2.0, s_min=0.55, v_min=0.85),
    shadow=0.80, blush=90, paper=False,
)
_PASTEL = _ToonStyle(
    eye_scale=1.15, eye_tall=1.25, iris=0.56, outline=0.022,
    color=_pastel_color,
    ink=lambda c: _sat(c, s_mul=1.3, v_mul=0.68),
    bg=lambda p: _mix(_sat(p.bg_top_rgb, s_mul=0.7, s_min=0.12), (1.0, 0.98, 0.95), 0.6),
    shadow=0.92, blush=60, paper=True,
)


def _render_toon(p: FaceParams, size: int, style: _ToonStyle, noise_seed: int) -> np.ndarray:
    ss = _supersample(size)
    C = size * ss
    L = _Layout(p, C, size)
    col = style.color
    skin = col(p.skin_rgb)
    skin_sh = _sat(_scale(skin, style.shadow), s_mul=1.15)
    hair = col(p.hair_rgb)
    clothes = col(p.clothes_rgb)
    w = max(1, round(L.px(style.outline)))
    im = Image.new("RGB", (C, C), _c8(style.bg(p)))
    d, da = ImageDraw.Draw(im), ImageDraw.Draw(im, "RGBA")  # plain Draw for opaque fills: much faster

    def shape(poly: np.ndarray, fill: tuple[float, float, float]) -> None:
        q = L.pts(poly)
        d.polygon(q, fill=_c8(fill))
        d.line(_closed(q), fill=_c8(style.ink(fill)), width=w)

    shape(L.torso, clothes)
    for poly in L.hair_back:
        shape(poly, _scale(hair, 0.85))
    shape(L.neck, skin)
    cel = L.cel_shapes()
    shadow_c = _c8(skin_sh)
    d.polygon(L.pts(cel["neck"]), fill=shadow_c)
    for ear in L.ears:
        shape(ear, skin)
    # Cel shading by painter's order: face in the shadow tone, the lit part on top.
    face, lit, fringe = L.batch(L.face, cel["lit"], cel["fringe"])
    d.polygon(face, fill=shadow_c)
    d.polygon(lit, fill=_c8(skin))
    d.polygon(fringe, fill=shadow_c)
    d.line(_closed(face), fill=_c8(style.ink(skin)), width=w)

    ink = _c8(style.ink(skin))
    if style.blush:
        for side in (-1.0, 1.0):
            da.polygon(L.pts(_ellipse(side * (p.eye_spacing + 0.04), p.eye_y + 0.27, 0.12, 0.055, 16)),
                       fill=(255, 110, 120, style.blush))
    iris = col(p.iris_rgb)
    iris_dark, iris_c, pupil_c = _c8(_scale(iris, 0.6)), _c8(iris, 200), _c8(_scale(iris, 0.2))
    lash_c, brow_c = _c8(style.ink(_scale(hair, 0.5))), _c8(_scale(hair, 0.75))
    lash_w, lid_w = max(1, round(2.2 * w)), max(1, round(0.6 * w))
    for side in (-1.0, 1.0):
        e = L.eye(side, style.eye_scale, style.eye_tall, style.iris)
        cu, cv = e["center"]
        ri = e["ri"]
        white, iris_o, iris_in, pupil, hl1, hl2, upper, lower, brow = L.batch(
            e["outline"], e["iris"], _ellipse(cu, cv + 0.25 * ri, ri * 0.75, ri * 0.6, 16), e["pupil"],
            _ellipse(cu - 0.35 * ri * side, cv - 0.3 * ri, ri * 0.3, ri * 0.3, 12),
            _ellipse(cu + 0.3 * ri * side, cv + 0.35 * ri, ri * 0.14, ri * 0.14, 8),
            e["upper"], e["lower"][3:-3], L.brow(side))
        d.polygon(white, fill=(255, 255, 255))
        d.polygon(iris_o, fill=iris_dark)
        da.polygon(iris_in, fill=iris_c)  # lighter lower iris, as anime eyes are drawn
        d.polygon(pupil, fill=pupil_c)
        d.polygon(hl1, fill=(255, 255, 255))
        d.polygon(hl2, fill=(255, 255, 255))
        d.line(upper, fill=lash_c, width=lash_w)
        d.line(lower, fill=ink, width=lid_w)
        d.polygon(brow, fill=brow_c)
    tip = L.nose_tip_v
    sd = 1.0 if p.light_x < 0 else -1.0
    nw = p.nose_width
    nose_hook = np.array([[sd * nw * 0.35, tip - 0.07], [sd * nw * 0.15, tip], [-sd * 0.02, tip + 0.01]])
    d.line(L.pts(nose_hook), fill=ink, width=w)
    m = L.mouth()
    if float(m["open"]) > 0.012:
        d.polygon(L.pts(m["inner"]), fill=(120, 30, 40))
        d.polygon(L.pts(_ellipse(0.0, float(m["inner"][:, 1].max()) - float(m["open"]) * 0.3,
                                 p.mouth_width * 0.45, float(m["open"]) * 0.35, 16)), fill=(235, 110, 120))
        d.line(_closed(L.pts(m["inner"])), fill=ink, width=w)
    else:
        d.line(L.pts(m["line"]), fill=ink, width=w)
    for poly in L.hair_front:
        shape(poly, hair)
    d.polygon(L.pts(L.hair_ring()), fill=_c8(_mix(hair, (1.0, 1.0, 1.0), 0.2)))  # anime "angel ring"

    out = im.reduce(ss) if ss > 1 else im
    if style.paper:
        tex = _textures(size)
        a = _soften(np.asarray(out, dtype=np.float32) * (1.0 / 255.0), 0.3 * size / 64.0)
        a *= 1.0 + 0.012 * _crop(tex["fine"], size, noise_seed, 5)[..., None]  # paper grain
        return _to_u8(a)
    return np.array(out)  # a writable copy, like the other renderers return


def _render_sketch(p: FaceParams, size: int, noise_seed: int) -> np.ndarray:
    ss = _supersample(size)
    C = size * ss
    L = _Layout(p, C, size)
    paper = 246
    w = max(1, round(L.px(0.022)))
    lead = 80  # graphite grey, not black
    im = Image.new("L", (C, C), paper)
    d = ImageDraw.Draw(im)
    # Hatch spacing follows the canvas, not the face, so the pattern is cached per size.
    period = max(3.0, round(C * 0.025 * 2) / 2)
    light = _hatch(C, period, False, 150)
    dense = _hatch(C, period * 0.8, True, 110)
    # A second, slightly offset pass reads as a sketchy double stroke; the
    # offset is part of the texture (noise_seed), not of the geometry.
    jit = L.px(0.012)
    rng_j = ((noise_seed * 2654435761) >> 7) & 0xFF
    dx = jit * (((rng_j >> 1) & 3) - 1.5) / 1.5
    dy = jit * (((rng_j >> 3) & 3) - 1.5) / 1.5

    jitter = np.array([dx, dy])

    def stroke(xy: np.ndarray, width: int = w, tone: int = lead, closed: bool = False) -> None:
        if closed:
            xy = np.concatenate([xy, xy[:1]])
        d.line(xy.ravel().tolist(), fill=tone, width=width)
        d.line((xy + jitter).ravel().tolist(), fill=min(255, tone + 90), width=max(1, width // 2))

    def fill_shape(poly: np.ndarray, texture: Image.Image | None) -> None:
        xy = L.canvas_xy(poly)
        d.polygon(xy.ravel().tolist(), fill=paper)
        if texture is not None:
            b = _box(xy, C)
            im.paste(texture.crop(b), b, _mask(b, (xy - b[:2]).ravel().tolist()))
        stroke(xy, closed=True)

    hair_tex = dense if _luma(p.hair_rgb) < 0.35 else light
    fill_shape(L.torso, light if _luma(p.clothes_rgb) < 0.45 else None)
    for poly in L.hair_back:
        fill_shape(poly, hair_tex)
    fill_shape(L.neck, None)
    cel = L.cel_shapes()
    nb = L.box(cel["neck"])
    im.paste(light.crop(nb), nb, _mask(nb, L.pts(cel["neck"], nb[:2])))
    for ear in L.ears:
        fill_shape(ear, None)
    face = L.canvas_xy(L.face)
    d.polygon(face.ravel().tolist(), fill=paper)
    # Hatch the cel-shadow region: face, minus the lit part, plus the fringe band.
    fb = _box(face, C)
    o = fb[:2]
    sh = Image.new("L", (fb[2] - fb[0], fb[3] - fb[1]), 0)
    ds = ImageDraw.Draw(sh)
    ds.polygon(L.pts(L.face, o), fill=255)
    ds.polygon(L.pts(cel["lit"], o), fill=0)
    ds.polygon(L.pts(cel["fringe"], o), fill=255)
    im.paste(light.crop(fb), fb, sh)
    stroke(face, closed=True)

    iris_c = int(60 + 150 * _luma(p.iris_rgb))
    for side in (-1.0, 1.0):
        e = L.eye(side, 1.1, 1.15, 0.55)
        cu, cv = e["center"]
        ri = e["ri"]
        white, iris, pupil, hl, lower, brow = L.batch(
            e["outline"], e["iris"], e["pupil"],
            _ellipse(cu - 0.3 * ri * side, cv - 0.3 * ri, ri * 0.25, ri * 0.25, 10),
            e["lower"][2:-2], L.brow(side))
        d.polygon(white, fill=paper)
        d.polygon(iris, fill=iris_c)
        d.polygon(pupil, fill=40)
        d.polygon(hl, fill=paper)
        stroke(L.canvas_xy(e["upper"]), max(1, round(1.8 * w)), 50)
        d.line(lower, fill=lead + 40, width=max(1, w // 2))
        d.polygon(brow, fill=115, outline=lead)  # shaded-in brow
    tip = L.nose_tip_v
    sd = 1.0 if p.light_x < 0 else -1.0
    nw = p.nose_width
    stroke(L.canvas_xy(np.array([[sd * 0.04, p.eye_y + 0.1], [sd * nw * 0.5, tip - 0.04],
                                 [sd * nw * 0.2, tip + 0.01], [-sd * nw * 0.4, tip]])))
    m = L.mouth()
    if float(m["open"]) > 0.012:
        q = L.canvas_xy(m["inner"])
        d.polygon(q.ravel().tolist(), fill=90)
        stroke(q, closed=True)
    else:
        stroke(L.canvas_xy(m["line"]))
    d.line(L.pts(m["lips"][len(_X_MOUTH):][3:-3]), fill=lead + 70, width=max(1, w // 2))
    for poly in L.hair_front:
        fill_shape(poly, hair_tex)

    g = np.asarray(im.reduce(ss) if ss > 1 else im, dtype=np.float32)
    tex = _textures(size)
    g = g + 6.0 * _crop(tex["fine"], size, noise_seed, 7)  # paper grain
    paper_rgb = np.array([1.0, 0.975, 0.93], dtype=np.float32)  # warm paper tint
    return np.clip(g[..., None] * paper_rgb + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- public rendering API


def _check_domain(domain: str) -> None:
    if domain not in DOMAINS:
        raise ValueError(f"unknown synthetic domain {domain!r}; choose from {', '.join(DOMAINS)}")


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"synthetic image size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")


def render(params: FaceParams, domain: str, size: int, *, noise_seed: int | None = None) -> np.ndarray:
    """Draw ``params`` in ``domain`` as a ``size`` x ``size`` x 3 uint8 RGB array.

    ``noise_seed`` selects the texture (skin/hair/paper noise); ``None`` uses
    ``params.texture_seed`` so the result is a pure function of the params.
    """
    _check_domain(domain)
    _check_size(size)
    size = int(size)
    seed = params.texture_seed if noise_seed is None else int(noise_seed)
    if domain == "photo":
        return _render_photo(params, size, seed)
    if domain == "webtoon":
        return _render_toon(params, size, _WEBTOON, seed)
    if domain == "pastel":
        return _render_toon(params, size, _PASTEL, seed)
    return _render_sketch(params, size, seed)


def background_mask(params: FaceParams, domain: str, size: int, image: np.ndarray | None = None) -> np.ndarray:
    """``size`` x ``size`` bool: the pixels of ``render(params, domain, size)`` that are background.

    Exact, not estimated: the face is drawn once more with every background channel moved by half its
    range (so each differs by 0.5 whatever the colour), and the pixels that change (anti-aliased rims
    included) are the background's. Sketch draws no background colour (paper only), so its mask is
    empty. ``image``: the first render, if at hand."""
    first = render(params, domain, size) if image is None else image
    flip = {k: tuple(c - 0.5 if c >= 0.5 else c + 0.5 for c in getattr(params, k))
            for k in ("bg_top_rgb", "bg_bottom_rgb")}
    other = render(dataclasses.replace(params, **flip), domain, size)
    return np.abs(first.astype(np.int16) - other.astype(np.int16)).max(-1) > 2


class SyntheticFaces(_TorchDataset):
    """``length`` procedural faces of one domain as float32 ``[3, size, size]`` tensors in [-1, 1].

    Item ``i`` is ``render(sample_params(i, seed), domain, size)``. With
    ``flip=True`` each item is mirrored with probability 1/2 (torch RNG, so
    DataLoader worker seeding applies); returned params are then the mirrored
    face's params (:meth:`FaceParams.flipped`), so they always describe the
    returned image. With ``return_params=True`` an item is ``(image, vector)``
    with ``vector`` = ``FaceParams.to_vector()`` as a float32 tensor.
    """

    def __init__(self, domain: str, size: int, length: int = 70000, seed: int = 0, flip: bool = False,
                 return_params: bool = False):
        _check_domain(domain)
        _check_size(size)
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        self.domain, self.size, self.length, self.seed = domain, int(size), int(length), int(seed)
        self.flip, self.return_params = bool(flip), bool(return_params)

    def __len__(self) -> int:
        return self.length

    def params(self, i: int) -> FaceParams:
        """Unflipped parameters of item ``i`` (negative indices count from the end)."""
        i = int(i)
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for {self.length} synthetic faces")
        return sample_params(i % self.length, self.seed)

    def __getitem__(self, key):  # noqa: ANN001, ANN204 - index or (index, item_seed); tensor or (tensor, tensor)
        from toonlab.samplers import item_key

        i, item_seed = item_key(key)
        p = self.params(i)
        # A sampler's key carries the flip (its seed's low bit); plain indexing draws it from torch.
        flip = bool(item_seed & 1) if item_seed is not None else bool(torch.rand(()) < 0.5)
        if self.flip and flip:
            # Render the mirrored params rather than flipping pixels: the item is
            # then exactly render(returned params), which paired/regression uses rely on.
            p = p.flipped()
        img = uint8_to_tensor(render(p, self.domain, self.size))
        if self.return_params:
            return img, torch.from_numpy(p.to_vector())
        return img

    def describe(self) -> str:
        """One line, e.g. ``synthetic:photo: 70,000 images at 64 px (seed 0)``."""
        return f"{SYNTHETIC_PREFIX}{self.domain}: {self.length:,} images at {self.size} px (seed {self.seed})"

    def __repr__(self) -> str:
        return f"<SyntheticFaces {self.describe()}>"


class SyntheticPairs(_TorchDataset):
    """Aligned ``(a, b)`` pairs: the same face rendered in ``domain_a`` and ``domain_b`` (for paired translators)."""

    def __init__(self, domain_a: str, domain_b: str, size: int, length: int = 70000, seed: int = 0,
                 flip: bool = False, return_params: bool = False):
        self.a = SyntheticFaces(domain_a, size, length, seed)
        self.b = SyntheticFaces(domain_b, size, length, seed)
        self.flip, self.return_params = bool(flip), bool(return_params)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, i: int):  # noqa: ANN204
        p = self.a.params(int(i))
        if self.flip and bool(torch.rand(()) < 0.5):
            p = p.flipped()
        a = uint8_to_tensor(render(p, self.a.domain, self.a.size))
        b = uint8_to_tensor(render(p, self.b.domain, self.b.size))
        if self.return_params:
            return a, b, torch.from_numpy(p.to_vector())
        return a, b


def is_synthetic_spec(path: object) -> bool:
    """True for dataset paths of the form ``synthetic:<domain>``."""
    return isinstance(path, str) and path.startswith(SYNTHETIC_PREFIX)


def dataset_from_spec(spec: str, size: int, **kwargs: Any) -> SyntheticFaces:
    """``"synthetic:webtoon"`` -> ``SyntheticFaces("webtoon", size, **kwargs)``."""
    if not is_synthetic_spec(spec):
        raise ValueError(f"not a synthetic dataset spec: {spec!r} (expected {SYNTHETIC_PREFIX}<domain>)")
    return SyntheticFaces(spec[len(SYNTHETIC_PREFIX):], size, **kwargs)


def make_grid_image(domains: Sequence[str] = DOMAINS, n: int = 8, size: int = 128, seed: int = 0, *,
                    pad: int = 2, labels: bool = True) -> Image.Image:
    """Rows = domains, columns = the same ``n`` faces, so the kept structure is visible at a glance."""
    for dom in domains:
        _check_domain(dom)
    _check_size(size)
    left = 64 if labels else 0
    W = left + n * size + (n + 1) * pad
    H = len(domains) * size + (len(domains) + 1) * pad
    grid = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(grid)
    params = [sample_params(i, seed) for i in range(n)]
    for r, dom in enumerate(domains):
        y = pad + r * (size + pad)
        if labels:
            d.text((4, y + size // 2 - 5), dom, fill=(0, 0, 0))
        for c, p in enumerate(params):
            grid.paste(Image.fromarray(render(p, dom, size)), (left + pad + c * (size + pad), y))
    return grid


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m toonlab.synthetic --grid OUT.png [--size 128 --n 8 --seed 0 --domains photo,webtoon]``."""
    ap = argparse.ArgumentParser(prog="python -m toonlab.synthetic",
                                 description="Write a grid of synthetic faces: rows = domains, columns = same faces.")
    ap.add_argument("--grid", required=True, help="PNG to write: rows = domains, columns = the same faces")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated, default: all")
    a = ap.parse_args(argv)
    domains = [s.strip() for s in a.domains.split(",") if s.strip()]
    for dom in domains:
        if dom not in DOMAINS:
            ap.error(f"unknown synthetic domain {dom!r}; choose from {', '.join(DOMAINS)}")
    if not MIN_SIZE <= a.size <= MAX_SIZE:
        ap.error(f"--size must be in {MIN_SIZE}..{MAX_SIZE}")
    if a.n < 1:
        ap.error("--n must be >= 1")
    img = make_grid_image(domains, a.n, a.size, a.seed)
    from toonlab.atomic import save_image_atomic

    save_image_atomic(img, a.grid, optimize=True)
    print(f"wrote {a.grid} ({img.width}x{img.height})")


if __name__ == "__main__":
    main()
