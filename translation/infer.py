"""Turn photos, folders and videos into cartoons with a trained translator (AnimeGAN v1/v2, CartoonGAN).

    python translation/infer.py photos/ clip.mp4 --ckpt paprika.pt --out out/
    python translation/infer.py big.jpg --ckpt G.pt --out out/ --retain-color --max-side 2048
    python translation/infer.py --ckpt G.pt --export-onnx G.onnx

Images keep their size. Generators that accept any size (AnimeGAN v1, and v2 / the port layout
with its default ``align_corners=True`` decoder — it resizes to the encoder's recorded sizes) run
at the input's own size, so a port file gives the port's image at every size; the others
(CartoonGAN, CycleGAN, v2 with ``align_corners=False``: transposed convs or ×2 resizes need sides
divisible by 4; unknown modules: 32) get each side reflect-padded up to their multiple and cropped
back. Padding changes the global statistics of normalisation layers, which is why it is not done
where it is not needed. Sides under 32 px are padded to 32 for every model. Images larger than ``--max-side`` are cut into overlapping tiles whose seams are
blended with a cosine ramp, so memory stays bounded. Videos keep fps, frame count and audio.
Unreadable inputs are skipped and listed at the end; the exit code is 2 only when nothing could
be processed. Every output is written atomically, under the input's relative path.

The fast path (``Translator``) keeps the model in half precision on GPUs (fp16 or bf16 weights,
not autocast: autocast would run every GroupNorm in fp32 and cast around it), in channels-last
layout, with GroupNorm(1)+LeakyReLU and reflection padding swapped for fused, memory-light
versions (at 1080p the v2 generator is bound by memory traffic, not by its convolutions), frames
uploaded as uint8 through pinned memory and the next batch queued on the GPU while the previous
one is copied back; decoding and encoding of video run in their own threads. H100, v2, 1080p,
batch 1: 22 ms per frame in fp16 (port-style eager fp32: 52 ms), 43 fps end to end on video.
"""

from __future__ import annotations

import copy
import math
import os
import sys
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from toonlab.atomic import atomic_path
from toonlab.data import IMAGE_EXTENSIONS, ImageError, load_image
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.images import save_atomic
from toonlab.runtime import autocast as _autocast
from toonlab.runtime import enable_tf32, pick_device, progress
from translation.video import VIDEO_EXTENSIONS, VideoError, VideoResult, transform_video

__all__ = [
    "MULTIPLE",
    "PRECISIONS",
    "MIN_SIDE",
    "Job",
    "Report",
    "TranslateOptions",
    "Translator",
    "collect_jobs",
    "export_onnx",
    "fuse_for_inference",
    "load_model",
    "match_brightness",
    "pad_to_multiple",
    "retain_color",
    "rgb_to_yuv",
    "size_multiple",
    "tile_spans",
    "tile_weights",
    "translate_image",
    "translate_paths",
    "translate_tiled",
    "yuv_to_rgb",
    "main",
]

#: Side multiple for generators that do not say what they need (``size_multiple``); also the
#: granularity of tiles.
MULTIPLE = 32
#: Smaller sides are padded up to this for every model (a 7×7 reflect pad needs a few pixels at
#: the coarsest of the generators' scales).
MIN_SIDE = 32
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


# --------------------------------------------------------------------------- sizes and padding


def round_up(n: int, multiple: int = MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def size_multiple(G: nn.Module) -> int:
    """The side multiple ``G`` needs to return an image of its input's size (1 = any size).

    Read from the generator's ``size_multiple`` attribute; modules without one get ``MULTIPLE``.
    """
    m = getattr(G, "size_multiple", None)
    return int(m) if m else MULTIPLE


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE, min_side: int = 0) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Pad ``[N,C,H,W]`` so H and W are multiples of ``multiple`` (and at least ``min_side``);
    returns it and (left, right, top, bottom).

    Reflect padding (split over both sides) instead of resizing: no resampling blur, and cropping
    the pad off again gives exactly the input's size. Sides too short to reflect are replicated.
    """
    h, w = x.shape[-2:]
    ph = round_up(max(h, min_side), multiple) - h
    pw = round_up(max(w, min_side), multiple) - w
    pads = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pads
    mode = "reflect" if max(pads[:2]) < w and max(pads[2:]) < h else "replicate"
    return F.pad(x, pads, mode=mode), pads


def crop_padding(y: Tensor, pads: tuple[int, int, int, int]) -> Tensor:
    """Undo :func:`pad_to_multiple` on an output of the padded size."""
    left, right, top, bottom = pads
    h, w = y.shape[-2:]
    return y[..., top : h - bottom, left : w - right]


# --------------------------------------------------------------------------- colour


# YUV from RGB in [0, 1] (REFERENCE.md §6; the AnimeGAN colour loss uses the same matrix).
_RGB2YUV = torch.tensor(
    [[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035], [0.61497538, -0.51496512, -0.10001026]],
    dtype=torch.float64,
)
_YUV2RGB = torch.linalg.inv(_RGB2YUV)


def _apply3(m: Tensor, x: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", m.to(x.device, x.dtype), x)


def rgb_to_yuv(x01: Tensor) -> Tensor:
    """``[N,3,H,W]`` RGB in [0, 1] → YUV (Y in [0, 1], U/V centred on 0)."""
    return _apply3(_RGB2YUV, x01)


def yuv_to_rgb(yuv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_yuv` (exact matrix inverse, not the rounded textbook one)."""
    return _apply3(_YUV2RGB, yuv)


def retain_color(out: Tensor, inp: Tensor) -> Tensor:
    """Keep the output's luma (the cartoon's shading and lines) with the input's chroma (its colours).

    Both ``[N,3,H,W]`` in [-1, 1]; the result is clipped back into range.
    """
    yo = rgb_to_yuv(out.float().add(1).mul(0.5))
    yi = rgb_to_yuv(inp.to(out.device).float().add(1).mul(0.5))
    return yuv_to_rgb(torch.cat([yo[:, :1], yi[:, 1:]], 1)).clamp(0, 1).mul(2).sub(1)


def match_brightness(out: Tensor, inp: Tensor) -> Tensor:
    """Scale each output image so its mean luma equals the input's (AnimeGAN outputs tend to darken).

    A gain rather than an offset, so black stays black. Both ``[N,3,H,W]`` in [-1, 1].
    """
    o = out.float().add(1).mul(0.5)
    i = inp.to(out.device).float().add(1).mul(0.5)
    yo = rgb_to_yuv(o)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    yi = rgb_to_yuv(i)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    return o.mul(yi / yo.clamp_min(1e-3)).clamp(0, 1).mul(2).sub(1)


def _postprocess(y: Tensor, x: Tensor, retain: bool, brightness: bool) -> Tensor:
    if retain:
        y = retain_color(y, x)
    if brightness:
        y = match_brightness(y, x)
    return y


# --------------------------------------------------------------------------- the fast path


class FusedGroupNorm1(nn.Module):
    """Inference-only GroupNorm(1, C) (+ optional LeakyReLU) in three memory passes instead of ~10.

    PyTorch's group norm with one group per image reduces each image in a single CUDA block and
    runs its affine and the activation as separate passes; at 1080p the v2 generator then spends
    more time there than in its convolutions. Here: one split reduction (``var_mean``, fp32
    accumulation), the per-channel scale/shift folded with the statistics, one ``addcmul`` and an
    in-place LeakyReLU. Same weights, same result up to rounding.
    """

    def __init__(self, norm: nn.GroupNorm, slope: float | None) -> None:
        super().__init__()
        self.eps = norm.eps
        self.slope = slope
        c = norm.num_channels
        w = norm.weight if norm.affine else torch.ones(c)
        b = norm.bias if norm.affine else torch.zeros(c)
        self.register_buffer("weight", w.detach().clone().reshape(1, c, 1, 1))
        self.register_buffer("bias", b.detach().clone().reshape(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, correction=0)
        scale = self.weight.float() * torch.rsqrt(var.float() + self.eps)
        shift = self.bias.float() - mean.float() * scale
        y = torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype))
        return F.leaky_relu_(y, self.slope) if self.slope is not None else y


class FastReflectionPad2d(nn.Module):
    """ReflectionPad2d from slices and one concatenation per axis: same values, and about twice
    as fast as PyTorch's reflection kernel on large CUDA feature maps (layout-agnostic, too)."""

    def __init__(self, pad: nn.ReflectionPad2d) -> None:
        super().__init__()
        self.padding = tuple(int(p) for p in pad.padding)  # left, right, top, bottom

    def forward(self, x: Tensor) -> Tensor:
        left, right, top, bottom = self.padding
        if max(left, right) >= x.shape[-1] or max(top, bottom) >= x.shape[-2]:
            return F.pad(x, self.padding, mode="reflect")  # let PyTorch raise its usual error
        x = _reflect_cat(x, left, right, -1)
        return _reflect_cat(x, top, bottom, -2)


def _reflect_cat(x: Tensor, before: int, after: int, dim: int) -> Tensor:
    if not (before or after):
        return x
    n = x.shape[dim]
    parts = [x]
    if before:  # a one-pixel border needs no flip: one kernel fewer, which counts at small sizes
        b = x.narrow(dim, 1, before)
        parts.insert(0, b.flip(dim) if before > 1 else b)
    if after:
        a = x.narrow(dim, n - after - 1, after)
        parts.append(a.flip(dim) if after > 1 else a)
    return torch.cat(parts, dim)


def fuse_for_inference(G: nn.Module) -> nn.Module:
    """Swap (in place) GroupNorm(1)[+LeakyReLU] and ReflectionPad2d for the fused versions above.

    Only modules inside ``nn.Sequential`` containers are touched (that is how the AnimeGAN and
    CartoonGAN blocks are built); everything else, and the state dict's values, stay as they are.
    Returns ``G``.
    """
    for seq in [m for m in G.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for i, name in enumerate(names):
            m = seq._modules[name]
            if isinstance(m, nn.GroupNorm) and m.num_groups == 1:
                nxt = seq._modules[names[i + 1]] if i + 1 < len(names) else None
                if isinstance(nxt, nn.LeakyReLU):
                    seq._modules[name] = FusedGroupNorm1(m, nxt.negative_slope)
                    seq._modules[names[i + 1]] = nn.Identity()
                else:
                    seq._modules[name] = FusedGroupNorm1(m, None)
            elif isinstance(m, nn.ReflectionPad2d):
                seq._modules[name] = FastReflectionPad2d(m)
    return G


class _PinnedRing:
    """A few reusable page-locked host buffers per shape: asynchronous copies need pinned memory,
    and allocating it per frame costs more than the copy. Each slot carries the event of the last
    copy that used it and is only handed out again once that copy has finished."""

    def __init__(self, slots: int = 3) -> None:
        self.slots = slots
        self._bufs: dict[tuple, list[list]] = {}
        self._next: dict[tuple, int] = {}

    def get(self, shape: tuple[int, ...], dtype: torch.dtype) -> list:
        key = (tuple(shape), dtype)
        if key not in self._bufs:
            if len(self._bufs) > 8:  # many frame sizes (a folder of photos): don't hoard pinned memory
                self._bufs.clear()
                self._next.clear()
            self._bufs[key] = [[torch.empty(shape, dtype=dtype, pin_memory=True), None] for _ in range(self.slots)]
            self._next[key] = 0
        i = self._next[key]
        self._next[key] = (i + 1) % self.slots
        slot = self._bufs[key][i]
        if slot[1] is not None:
            slot[1].synchronize()
        return slot


class Translator:
    """A generator prepared for fast inference on one device.

    ``precision``: ``fp32``; ``fp16``/``bf16`` (on CUDA the weights are cast, on the CPU it runs
    under autocast); ``auto`` = fp16 on CUDA, fp32 on the CPU. ``channels_last``: None = ``default_channels_last``.
    ``compile``: wrap the model with ``torch.compile`` (first-use failures fall back to eager with
    one warning). ``fuse``: use :func:`fuse_for_inference` (on by default; the caller's module is
    never modified). ``small_plain``: run batches below ``small_pixels`` through the unfused NCHW
    module instead (None: on CUDA only). The model's input and output are RGB in [-1, 1]; any H, W work:
    ``multiple`` None = what the model needs (:func:`size_multiple`; 1 = run at the input's size),
    sides are reflect-padded to a multiple of it (and to ``MIN_SIDE``) and the output cropped back.
    """

    #: Memory layout used when ``channels_last`` is None (chosen from bench/translate.py on an H100).
    default_channels_last: bool = True
    #: Below this many pixels per batch (N·H·W) a CUDA forward is bound by kernel launches, not
    #: memory traffic; the plain module (fewer, larger kernels, NCHW) is faster there (H100: 7.3 vs
    #: 9.6 ms at 512², fp16) while the fused one wins at 1080p (22 vs 51 ms).
    small_pixels: int = 640 * 640

    def __init__(
        self,
        G: nn.Module,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        compile: bool = False,
        multiple: int | None = None,
        fuse: bool = True,
        small_plain: bool | None = None,
    ) -> None:
        self.device = pick_device(device) if isinstance(device, str) else torch.device(device)
        if precision not in PRECISIONS:
            raise UserInputError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
        cuda = self.device.type == "cuda"
        if precision == "auto":
            precision = "fp16" if cuda else "fp32"
        if cuda and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise UserInputError("--precision bf16 needs a GPU with bfloat16 support (Ampere or newer)")
        self.precision = precision
        self.multiple = size_multiple(G) if multiple is None else int(multiple)
        self.channels_last = self.default_channels_last if channels_last is None else channels_last
        # Weights in half precision on GPUs; on the CPU half-precision convs are slow or missing,
        # so reduced precision there goes through autocast instead.
        self.dtype = _DTYPES[precision] if cuda else torch.float32
        if cuda:
            enable_tf32()
        # A copy: Module.to() works in place, and the caller's model must keep its device and dtype.
        G0 = G
        G = copy.deepcopy(G0).eval().requires_grad_(False)
        if fuse:
            G = fuse_for_inference(G)
        G = G.to(self.device, dtype=self.dtype)
        self._plain: nn.Module | None = None
        if fuse and (cuda if small_plain is None else small_plain):
            self._plain = copy.deepcopy(G0).eval().requires_grad_(False).to(self.device, dtype=self.dtype)
        if self.channels_last:
            G = G.to(memory_format=torch.channels_last)
        self.G = G
        self._autocast = (lambda: _autocast(self.device, precision)) if not cuda and precision != "fp32" else None
        self._compiled: Callable[[Tensor], Tensor] | None = None
        if compile:
            try:
                self._compiled = torch.compile(G, dynamic=False)
            except Exception as e:  # noqa: BLE001 - no compiler on this machine: eager is correct, only slower
                warnings.warn(f"torch.compile unavailable ({type(e).__name__}); running eagerly", stacklevel=2)
        self._pinned_in = _PinnedRing()
        self._pinned_out = _PinnedRing()

    # The raw forward: x on the device, model dtype, H and W multiples of `self.multiple`.
    def _forward(self, x: Tensor) -> Tensor:
        if self._plain is not None and self._compiled is None and x.shape[0] * x.shape[2] * x.shape[3] < self.small_pixels:
            return self._run(self._plain, x.contiguous())
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self._compiled is not None:
            try:
                return self._compiled(x)
            except Exception as e:  # noqa: BLE001 - compile errors surface on first call
                warnings.warn(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); "
                              "running eagerly", stacklevel=2)
                self._compiled = None
        return self._run(self.G, x)

    def _run(self, G: nn.Module, x: Tensor) -> Tensor:
        if self._autocast is not None:
            with self._autocast():
                return G(x)
        return G(x)

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> Tensor:
        """``[N,3,H,W]`` in [-1, 1] (any device, dtype, size) → same size, float32, on ``self.device``."""
        x = x.to(self.device, dtype=self.dtype, non_blocking=True)
        xp, pads = pad_to_multiple(x, self.multiple, MIN_SIDE)
        return crop_padding(self._forward(xp), pads).float()

    def upload(self, frames: np.ndarray) -> Tensor:
        """RGB uint8 ``[N,H,W,3]`` → ``[N,3,H,W]`` in [-1, 1] on the device (model dtype).

        Uploads uint8 (4× fewer bytes than float) and converts on the device; the NHWC buffer
        viewed as NCHW already is the channels-last layout the convolutions want.
        """
        arr = np.ascontiguousarray(frames)
        if not arr.flags.writeable:  # PIL-backed arrays are read-only; torch warns on those
            arr = arr.copy()
        t = torch.from_numpy(arr)
        if self.device.type == "cuda":
            slot = self._pinned_in.get(t.shape, torch.uint8)
            slot[0].copy_(t)
            t = slot[0].to(self.device, non_blocking=True)
            slot[1] = torch.cuda.Event()
            slot[1].record()
        else:
            t = t.to(self.device)
        return t.permute(0, 3, 1, 2).to(self.dtype).mul_(1 / 127.5).sub_(1)

    def download(self, y: Tensor) -> Callable[[], np.ndarray]:
        """``[N,3,H,W]`` in [-1, 1] on the device → a callable returning RGB uint8 ``[N,H,W,3]``.

        The copy back is asynchronous: the caller can queue the next batch before waiting. Host
        buffers are recycled, so collect a result before queuing two more batches of its shape.
        """
        u8 = y.float().clamp(-1, 1).add_(1).mul_(127.5).round_().to(torch.uint8).permute(0, 2, 3, 1)
        if self.device.type != "cuda":
            arr = u8.contiguous().cpu().numpy()
            return lambda: arr
        slot = self._pinned_out.get(tuple(u8.shape), torch.uint8)
        slot[0].copy_(u8, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        slot[1] = ev
        buf = slot[0]

        def finish() -> np.ndarray:
            ev.synchronize()
            return buf.numpy().copy()  # the pinned slot is reused a few batches later

        return finish

    @torch.inference_mode()
    def translate_uint8(
        self, frames: np.ndarray, retain: bool = False, brightness: bool = False
    ) -> Callable[[], np.ndarray]:
        """RGB uint8 ``[N,H,W,3]`` → callable returning the translated uint8 frames (same size)."""
        x = self.upload(frames)
        y = self(x)
        if retain or brightness:
            y = _postprocess(y, x, retain, brightness)
        return self.download(y)


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e).lower()


# --------------------------------------------------------------------------- tiling


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Split ``[0, length)`` into equal, evenly spread spans of at most ``tile`` overlapping by ≥ ``overlap``.

    The span length is rounded up to a multiple of 32 (so tiles need no padding) but never above
    ``tile``; neighbours overlap by at least ``overlap`` and non-neighbours not at all (given
    ``overlap`` ≤ ``tile``/4).
    """
    if length <= tile:
        return [(0, length)]
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, round_up(math.ceil((length + (n - 1) * overlap) / n)))
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    return [(s, s + size) for s in starts]


def _ramp_up(o: int) -> Tensor:
    """Blend weights across an overlap of ``o`` pixels: 0 on the outer quarter, where a tile's own
    padding pollutes its output, a cosine ramp across the middle half, 1 on the inner quarter."""
    d = o // 4
    m = o - 2 * d
    r = torch.zeros(o, dtype=torch.float64)
    t = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    r[d : d + m] = 0.5 - 0.5 * torch.cos(math.pi * t)
    r[d + m :] = 1.0
    return r


def tile_weights(spans: Sequence[tuple[int, int]]) -> list[Tensor]:
    """1-D blend weights per span; neighbours' weights sum to exactly 1 over their overlap."""
    out = []
    for i, (s, e) in enumerate(spans):
        w = torch.ones(e - s, dtype=torch.float64)
        if i > 0 and spans[i - 1][1] > s:
            o = spans[i - 1][1] - s
            w[:o] *= _ramp_up(o)
        if i + 1 < len(spans) and e > spans[i + 1][0]:
            o = e - spans[i + 1][0]
            w[e - s - o :] *= 1 - _ramp_up(o)
        out.append(w)
    return out


@torch.inference_mode()
def translate_tiled(
    tr: Translator, image: np.ndarray, tile: int = 1024, overlap: int = 128, batch: int = 4
) -> Tensor:
    """Translate a large RGB uint8 ``[H,W,3]`` image tile by tile; returns ``[3,H,W]`` float32 on the CPU.

    Tiles overlap by ≥ ``overlap`` pixels and are blended with :func:`tile_weights`, so a network
    whose receptive field fits in a quarter of the overlap gives exactly its untiled result, and
    the global statistics of LayerNorm-style generators change smoothly rather than at a seam.
    """
    h, w = image.shape[:2]
    ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    wy, wx = tile_weights(ys), tile_weights(xs)
    acc = torch.zeros(3, h, w, dtype=torch.float32)
    boxes = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    for k in range(0, len(boxes), batch):
        chunk = boxes[k : k + batch]
        crops = np.stack([image[ys[i][0] : ys[i][1], xs[j][0] : xs[j][1]] for i, j in chunk])
        out = tr(tr.upload(crops)).cpu()
        for (i, j), o in zip(chunk, out):
            wgt = (wy[i][:, None] * wx[j][None, :]).float()
            acc[:, ys[i][0] : ys[i][1], xs[j][0] : xs[j][1]].add_(o * wgt)
    # The weights already sum to 1; dividing by their actual sum guards against rounding.
    sy = torch.zeros(h, dtype=torch.float64)
    sx = torch.zeros(w, dtype=torch.float64)
    for (s, e), wt in zip(ys, wy):
        sy[s:e] += wt
    for (s, e), wt in zip(xs, wx):
        sx[s:e] += wt
    return acc.div_((sy[:, None] * sx[None, :]).float())


def translate_image(
    tr: Translator,
    image: np.ndarray | Image.Image,
    *,
    max_side: int = 1536,
    tile: int | None = None,
    overlap: int = 128,
    retain: bool = False,
    brightness: bool = False,
    batch: int = 4,
) -> np.ndarray:
    """Translate one RGB image (uint8 ``[H,W,3]`` or PIL) to a uint8 ``[H,W,3]`` image of the same size.

    Images with a side above ``max_side`` are tiled (tiles of at most ``tile`` = ``max_side``);
    a GPU out-of-memory error retries with tiles half the size, down to 256 pixels.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    tile = round_up(tile or max_side)
    if max(arr.shape[:2]) <= max_side:
        try:
            return tr.translate_uint8(arr[None], retain, brightness)()[0]
        except RuntimeError as e:
            if not _is_oom(e) or tr.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            tile = max(256, round_up(max(arr.shape[:2]) // 2))
    while True:
        try:
            y = translate_tiled(tr, arr, tile, min(overlap, tile // 4), batch)
            break
        except RuntimeError as e:
            if not _is_oom(e) or tile <= 256:
                raise
            torch.cuda.empty_cache()
            tile, batch = max(256, round_up(tile // 2)), 1
    if retain or brightness:
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        y = _postprocess(y[None], x, retain, brightness)[0]
    return y.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- inputs and outputs

# Formats we write back as themselves; anything else (gif, tiff) becomes a PNG.
_KEEP_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class Job:
    """One input file, what it is, and where its output goes."""

    src: Path
    dst: Path
    kind: str  # "image" | "video"


def _out_rel(rel: Path, kind: str) -> Path:
    if kind == "video":
        return rel.with_suffix(".mp4")
    return rel if rel.suffix.lower() in _KEEP_EXT else rel.with_suffix(".png")


def _walk(root: Path, exclude: Path) -> Iterator[Path]:
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if d.resolve() == exclude:  # the output folder inside an input folder: not an input
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n != "__MACOSX")
        for fn in sorted(filenames):
            if not fn.startswith(".") and Path(fn).suffix.lower() in wanted:
                yield d / fn


def collect_jobs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> tuple[list[Job], list[tuple[str, str]]]:
    """Expand files and folders (recursively) into jobs; returns (jobs, skipped as (name, reason)).

    A folder's files land under ``out_dir`` at their path relative to that folder, a file given
    directly at ``out_dir/<name>``. Videos are written as .mp4, images in their own format (gif
    and tiff as .png). Outputs that would collide get a numeric suffix; nothing inside ``out_dir``
    is taken as input (so ``--out photos/anime`` can sit inside ``photos/``).
    """
    out_dir = Path(out_dir)
    out_abs = out_dir.resolve()
    jobs: list[Job] = []
    skipped: list[tuple[str, str]] = []
    taken: set[Path] = set()

    def add(src: Path, rel: Path) -> None:
        kind = "video" if src.suffix.lower() in VIDEO_EXTENSIONS else "image"
        dst = _out_rel(rel, kind)
        k = 2
        while dst in taken:
            dst = dst.with_name(f"{_out_rel(rel, kind).stem}_{k}{dst.suffix}")
            k += 1
        taken.add(dst)
        if (out_dir / dst).resolve() == src.resolve():
            skipped.append((str(src), "its output would overwrite it (it lies in --out)"))
            return
        jobs.append(Job(src, out_dir / dst, kind))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if p.resolve() == out_abs:
                raise UserInputError(f"--out {out_dir} is the input folder {p} itself: choose another output folder")
            found = False
            for f in _walk(p, out_abs):
                found = True
                add(f, f.relative_to(p))
            if not found:
                skipped.append((str(p), "folder holds no images or videos"))
        elif p.is_file():
            add(p, Path(p.name))
        else:
            skipped.append((str(p), "no such file or folder"))
    return jobs, skipped


@dataclass
class TranslateOptions:
    """How images and videos are processed (the CLI's flags)."""

    max_side: int = 1536
    tile: int | None = None
    overlap: int = 128
    retain_color: bool = False
    match_brightness: bool = False
    batch: int = 4
    jpeg_quality: int = 95
    skip_existing: bool = False
    show_progress: bool = True


@dataclass
class Report:
    """What :func:`translate_paths` did."""

    images: list[Path] = field(default_factory=list)
    videos: list[VideoResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    existing: int = 0

    @property
    def processed(self) -> int:
        return len(self.images) + len(self.videos)


def _save(arr: np.ndarray, dst: Path, quality: int) -> Path:
    kw = {"quality": quality} if dst.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    return save_atomic(Image.fromarray(arr), dst, **kw)


def _prefetch(fn: Callable, items: Iterable, pool: ThreadPoolExecutor, depth: int) -> Iterator:
    """``map(fn, items)`` in order, with up to ``depth`` calls running ahead in ``pool``."""
    queue: list[Future] = []
    for it in items:
        queue.append(pool.submit(fn, it))
        if len(queue) > depth:
            yield queue.pop(0).result()
    for f in queue:
        yield f.result()


def _load(job: Job) -> tuple[Job, np.ndarray | None, str | None]:
    try:
        return job, np.asarray(load_image(job.src, name=str(job.src))), None
    except ImageError as e:
        return job, None, str(e).splitlines()[0]


def translate_paths(tr: Translator, jobs: Sequence[Job], opts: TranslateOptions | None = None) -> Report:
    """Translate every job; unreadable inputs are skipped and listed in the report, never raised."""
    opts = opts or TranslateOptions()
    report = Report()
    todo = []
    for j in jobs:
        if opts.skip_existing and j.dst.exists():
            report.existing += 1
        else:
            todo.append(j)
    images = [j for j in todo if j.kind == "image"]
    videos = [j for j in todo if j.kind == "video"]
    tile = opts.tile or opts.max_side
    if images:
        bar = progress(total=len(images), desc="images", unit="img", disable=not opts.show_progress)
        with ThreadPoolExecutor(2, thread_name_prefix="decode") as loader, \
                ThreadPoolExecutor(2, thread_name_prefix="encode") as saver:
            saves: list[tuple[Job, Future]] = []
            group: list[tuple[Job, np.ndarray]] = []

            def flush() -> None:
                if not group:
                    return
                try:
                    outs = tr.translate_uint8(np.stack([a for _, a in group]), opts.retain_color,
                                              opts.match_brightness)()
                except RuntimeError as e:  # a batch too large for the GPU: one at a time, tiled if need be
                    if not _is_oom(e):
                        raise
                    torch.cuda.empty_cache()
                    outs = [translate_image(tr, a, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                            retain=opts.retain_color, brightness=opts.match_brightness, batch=1)
                            for _, a in group]
                for (job, _), o in zip(group, outs):
                    saves.append((job, saver.submit(_save, o, job.dst, opts.jpeg_quality)))
                bar.update(len(group))
                group.clear()

            for job, arr, err in _prefetch(_load, images, loader, depth=max(2, opts.batch)):
                if arr is None:
                    report.skipped.append((str(job.src), err))
                    bar.update(1)
                    continue
                if max(arr.shape[:2]) > opts.max_side:
                    flush()
                    out = translate_image(tr, arr, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                          retain=opts.retain_color, brightness=opts.match_brightness,
                                          batch=opts.batch)
                    saves.append((job, saver.submit(_save, out, job.dst, opts.jpeg_quality)))
                    bar.update(1)
                    continue
                if group and (arr.shape != group[0][1].shape or len(group) >= opts.batch):
                    flush()
                group.append((job, arr))
            flush()
            for job, fut in saves:
                try:
                    report.images.append(fut.result())
                except OSError as e:
                    report.skipped.append((str(job.src), f"cannot write {job.dst}: {e.strerror or e}"))
        bar.close()
    for job in videos:
        try:
            report.videos.append(_translate_video(tr, job, opts, tile))
        except VideoError as e:
            report.skipped.append((str(job.src), str(e).splitlines()[0]))
    return report


def _translate_video(tr: Translator, job: Job, opts: TranslateOptions, tile: int) -> VideoResult:
    def frames_fn(frames: np.ndarray):
        if max(frames.shape[1:3]) > opts.max_side:  # 4K and up: bounded memory beats speed
            return np.stack([translate_image(tr, f, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                             retain=opts.retain_color, brightness=opts.match_brightness,
                                             batch=opts.batch) for f in frames])
        return tr.translate_uint8(frames, opts.retain_color, opts.match_brightness)

    return transform_video(job.src, job.dst, frames_fn, batch=opts.batch, show_progress=opts.show_progress,
                           desc=job.src.name)


# --------------------------------------------------------------------------- models and ONNX


def load_model(ckpt: str | os.PathLike, device: str | torch.device = "cpu", which: str = "auto") -> tuple[nn.Module, dict]:
    """Load a generator: our checkpoints or the AnimeGANv2 port's released state dicts.

    ``which``: auto, g or g_ema (training checkpoints). Returns ``(G, metadata)``; bad files raise
    a one-line UserInputError.
    """
    try:
        from translation.models import load_generator
    except ImportError as e:
        raise UserInputError(f"translation.models is not available ({e})") from None
    return load_generator(ckpt, device=device, which=which)


def export_onnx(
    G: nn.Module,
    path: str | os.PathLike,
    opset: int = 18,
    check: bool = True,
    sample_hw: tuple[int, int] = (64, 96),
) -> float:
    """Write ``G`` as an ONNX model with dynamic batch, height and width; return onnxruntime's max |Δ|.

    Input ``input`` and output ``output``: ``[N,3,H,W]`` float32 RGB in [-1, 1], H and W multiples
    of 32. Opset 18 runs on onnxruntime ≥ 1.14 (1.3x included). The check runs the written file
    at two sizes and batch sizes and compares with PyTorch (NaN when onnxruntime is missing).
    """
    path = Path(path)
    G = _cpu_fp32_copy(G)
    x = torch.randn(2, 3, *sample_hw, generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # torch.export-based exporter; dims are declared dynamic, so any N, H, W run.
            B, H, W = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("height"), torch.export.Dim("width")
            torch.onnx.export(G, (x,), str(tmp), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: B, 2: H, 3: W},))
        except Exception as e:  # noqa: BLE001 - older torch or an op torch.export can't trace
            try:
                torch.onnx.export(G, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  opset_version=min(opset, 17), dynamo=False,
                                  dynamic_axes={n: {0: "batch", 2: "height", 3: "width"} for n in ("input", "output")})
            except Exception as e2:  # noqa: BLE001
                raise UserInputError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}; "
                                     f"fallback exporter: {type(e2).__name__}: {str(e2).splitlines()[0][:160]}") from None
    return onnx_max_diff(G, path, sample_hw) if check else float("nan")


def _cpu_fp32_copy(G: nn.Module) -> nn.Module:
    G = copy.deepcopy(G).cpu().float().eval().requires_grad_(False)
    return G.to(memory_format=torch.contiguous_format)


def onnx_max_diff(G: nn.Module, path: str | os.PathLike, sample_hw: tuple[int, int] = (64, 96)) -> float:
    """Max |onnxruntime − PyTorch| over two inputs of different batch and size (fp32, CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        warnings.warn("onnxruntime is not installed: the exported model was not checked", stacklevel=2)
        return float("nan")
    G = _cpu_fp32_copy(G)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    g = torch.Generator().manual_seed(1)
    h, w = sample_hw
    worst = 0.0
    for shape in [(1, 3, h, w), (3, 3, h + MULTIPLE, w - MULTIPLE if w > MULTIPLE else w + MULTIPLE)]:
        x = torch.rand(shape, generator=g).mul(2).sub(1)
        with torch.no_grad():
            ref = G(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise UserInputError(f"ONNX model gives shape {got.shape} for input {tuple(shape)}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


# --------------------------------------------------------------------------- CLI


def _one_line(items: list[tuple[str, str]], limit: int = 3) -> str:
    shown = "; ".join(f"{reason}" if reason.startswith(name) else f"{name}: {reason}" for name, reason in items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


@click.command(name="translate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--ckpt", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Generator: a toonlab checkpoint or a released AnimeGANv2 port .pt (paprika.pt, ...).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (outputs mirror the inputs' relative paths).")
@click.option("--which", type=click.Choice(["auto", "g", "g_ema"]), default="auto", show_default=True,
              help="Which generator of a training checkpoint (auto: g_ema when there is one). The architecture "
                   "is read from the file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto = fp16 on CUDA, fp32 on the CPU.")
@click.option("--batch", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Video frames / same-size images / tiles per forward pass.")
@click.option("--max-side", type=click.IntRange(64), default=1536, show_default=True,
              help="Images (and video frames) with a longer side are translated in tiles.")
@click.option("--tile", type=click.IntRange(64), default=None, help="Tile side (default: --max-side), rounded to 32.")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="Overlap between tiles in pixels (blended with a cosine ramp; at most tile/4).")
@click.option("--retain-color", is_flag=True, help="Keep the photo's colours (input chroma, cartoon luma).")
@click.option("--match-brightness", is_flag=True, help="Scale the output to the input's mean brightness.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that already exist alone (resume a big folder).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator (faster long videos on GPUs).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Memory layout of the GPU forward (default: the measured faster one).")
@click.option("--export-onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the generator as ONNX (dynamic batch/height/width) and check it with onnxruntime.")
@click.option("--opset", type=click.IntRange(17, 23), default=18, show_default=True, help="ONNX opset.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def main(inputs, ckpt, out_dir, which, device, precision, batch, max_side, tile, overlap, retain_color,
         match_brightness, quality, skip_existing, compile_, channels_last, onnx_path, opset, quiet) -> None:
    """Translate images, folders (recursively) and videos into cartoons with a trained generator."""
    with user_errors():
        if not inputs and onnx_path is None:
            raise click.UsageError("give INPUT files/folders, or --export-onnx PATH")
        if inputs and out_dir is None:
            raise click.UsageError("--out DIR is required with inputs")
        tile = round_up(tile or max_side)
        if overlap > tile // 4:
            raise click.BadParameter(f"at most a quarter of the tile ({tile // 4})", param_hint="--overlap")
        dev = pick_device(device)
        G, meta = load_model(ckpt, device="cpu", which=which)
        if onnx_path is not None:
            diff = export_onnx(G, onnx_path, opset=opset)
            click.echo(f"wrote {onnx_path} (opset {opset}, dynamic batch/height/width); "
                       f"onnxruntime vs PyTorch max abs diff {diff:.2e}")
            if not diff <= 1e-3:
                click.echo("warning: the ONNX model's outputs differ from PyTorch's more than expected", err=True)
        if not inputs:
            return
        jobs, skipped = collect_jobs(inputs, out_dir)
        tr = Translator(G, dev, precision, channels_last=channels_last, compile=compile_)
        opts = TranslateOptions(max_side=max_side, tile=tile, overlap=overlap, retain_color=retain_color,
                                match_brightness=match_brightness, batch=batch, jpeg_quality=quality,
                                skip_existing=skip_existing, show_progress=not quiet)
        t0 = time.perf_counter()
        report = translate_paths(tr, jobs, opts)
        report.skipped[:0] = skipped
        dt = time.perf_counter() - t0
        if report.processed == 0 and report.existing == 0:
            raise ToonlabError(f"nothing could be processed: {len(report.skipped)} unreadable input"
                               f"{'s' if len(report.skipped) != 1 else ''} ({_one_line(report.skipped)})")
        frames = sum(v.frames for v in report.videos)
        parts = [f"{len(report.images)} image{'s' if len(report.images) != 1 else ''}"]
        if report.videos:
            parts.append(f"{len(report.videos)} video{'s' if len(report.videos) != 1 else ''} ({frames} frames)")
        if report.existing:
            parts.append(f"{report.existing} already there")
        click.echo(f"translated {' and '.join(parts)} into {out_dir} in {dt:.1f} s "
                   f"({meta.get('model', '?')}, {tr.device.type}, {tr.precision})")
        if report.skipped:
            click.echo(f"skipped {len(report.skipped)} input{'s' if len(report.skipped) != 1 else ''}:", err=True)
            for name, reason in report.skipped:
                click.echo(f"  {reason if reason.startswith(name) else f'{name}: {reason}'}", err=True)


if __name__ == "__main__":
    main()
