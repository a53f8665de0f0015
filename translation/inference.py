"""Running a translation generator on images: padding to the networks' multiple, the fast GPU path,
tiling of large images, and colour post-processing.

Images keep their size: each side is padded (reflect) up to a multiple of 32, translated and
cropped back. Images larger than ``max_side`` are cut into overlapping tiles whose seams are
blended with a cosine ramp, so memory stays bounded.

The fast path (``Translator``) keeps the model in half precision on GPUs (fp16 or bf16 weights,
not autocast: autocast would run every GroupNorm in fp32 and cast around it), in channels-last
layout, with GroupNorm(1)+LeakyReLU and reflection padding swapped for fused, memory-light
versions (``translation/fused.py``), frames uploaded as uint8 through pinned memory and the next
batch queued on the GPU while the previous one is copied back. H100, v2, 1080p, batch 1: 22 ms
per frame in fp16 (port-style eager fp32: 52 ms).
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from toonlab.errors import UserInputError
from toonlab.images import check_finite_images, non_finite_error, rgb_to_yuv, to_uint8, uint8_to_tensor, yuv_to_rgb
from toonlab.runtime import autocast as _autocast
from toonlab.runtime import enable_tf32, pick_device, progress, resolve_precision
from translation.fused import fuse_for_inference

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


def retain_color(out: Tensor, inp: Tensor) -> Tensor:
    """Keep the output's luma (the cartoon's shading and lines) with the input's chroma (its colours).

    Both ``[N,3,H,W]`` in [-1, 1]; the result is clipped back into range.
    """
    yo = rgb_to_yuv(out.float())
    yi = rgb_to_yuv(inp.to(out.device).float())
    return yuv_to_rgb(torch.cat([yo[:, :1], yi[:, 1:]], 1)).clamp(-1, 1)


def match_brightness(out: Tensor, inp: Tensor) -> Tensor:
    """Scale each output image so its mean luma equals the input's (AnimeGAN outputs tend to darken).

    A gain rather than an offset, so black stays black. Both ``[N,3,H,W]`` in [-1, 1].
    """
    o = out.float().add(1).mul(0.5)
    yo = rgb_to_yuv(out.float())[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    yi = rgb_to_yuv(inp.to(out.device).float())[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    return o.mul(yi / yo.clamp_min(1e-3)).clamp(0, 1).mul(2).sub(1)


def postprocess(y: Tensor, x: Tensor, retain: bool, brightness: bool) -> Tensor:
    if retain:
        y = retain_color(y, x)
    if brightness:
        y = match_brightness(y, x)
    return y


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
    one warning). ``fuse``: use :func:`fuse_for_inference` (None = on CUDA only: on the CPU the
    fused modules lose to PyTorch's fused group_norm and reflection-pad kernels, 0.78x the port
    against 1.2x unfused at 256², bench/cpu_sidebyside.py; the caller's module is never modified).
    ``small_plain``: run batches below ``small_pixels`` through the unfused NCHW
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
        fuse: bool | None = None,
        small_plain: bool | None = None,
    ) -> None:
        self.device = pick_device(device) if isinstance(device, str) else torch.device(device)
        # auto = fp16 on CUDA: the AnimeGAN family has no reduction that overflows in fp16
        precision = resolve_precision(precision, self.device, allowed=PRECISIONS[1:], gpu_default="fp16")
        cuda = self.device.type == "cuda"
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
        fuse = cuda if fuse is None else bool(fuse)
        self.fuse = fuse
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

        Uploads uint8 (4× fewer bytes than float) and converts on the device, in place and in the
        model's dtype (the fast-path twin of ``toonlab.images.uint8_to_tensor``); the NHWC buffer
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
            check_finite_images(y, "the translator")  # NaN would become black pixels (uint8 of NaN is 0)
            arr = u8.contiguous().cpu().numpy()
            return lambda: arr
        # The finiteness flag travels with the pixels (asynchronously), so checking it costs no sync.
        bad = torch.empty((), dtype=torch.bool, pin_memory=True)
        bad.copy_((~torch.isfinite(y)).any(), non_blocking=True)
        slot = self._pinned_out.get(tuple(u8.shape), torch.uint8)
        slot[0].copy_(u8, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record()
        slot[1] = ev
        buf = slot[0]

        def finish() -> np.ndarray:
            ev.synchronize()
            if bool(bad):
                raise non_finite_error(y.detach().float().cpu(), "the translator")
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
            y = postprocess(y, x, retain, brightness)
        return self.download(y)


def is_oom(e: BaseException) -> bool:
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
    tr: Translator, image: np.ndarray, tile: int = 1024, overlap: int = 128, batch: int = 4,
    show_progress: bool = False,
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
    # A 12000x12000 photo is ~150 tiles of 1024 px: minutes on a CPU, so say how far it is.
    bar = progress(total=len(boxes), desc=f"tiles {w}x{h}", unit="tile",
                   disable=not show_progress or len(boxes) < 2, leave=False)
    for k in range(0, len(boxes), batch):
        chunk = boxes[k : k + batch]
        crops = np.stack([image[ys[i][0] : ys[i][1], xs[j][0] : xs[j][1]] for i, j in chunk])
        out = check_finite_images(tr(tr.upload(crops)).cpu(), "the translator")
        for (i, j), o in zip(chunk, out):
            wgt = (wy[i][:, None] * wx[j][None, :]).float()
            acc[:, ys[i][0] : ys[i][1], xs[j][0] : xs[j][1]].add_(o * wgt)
        bar.update(len(chunk))
    bar.close()
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
    show_progress: bool = False,
) -> np.ndarray:
    """Translate one RGB image (uint8 ``[H,W,3]`` or PIL) to a uint8 ``[H,W,3]`` image of the same size.

    Images with a side above ``max_side`` are tiled (tiles of at most ``tile`` = ``max_side``, a
    progress bar over the tiles with ``show_progress``); a GPU out-of-memory error retries with
    tiles half the size, down to 256 pixels.
    """
    arr = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.uint8)
    tile = round_up(tile or max_side)
    if max(arr.shape[:2]) <= max_side:
        try:
            return tr.translate_uint8(arr[None], retain, brightness)()[0]
        except RuntimeError as e:
            if not is_oom(e) or tr.device.type != "cuda":
                raise
            torch.cuda.empty_cache()
            tile = max(256, round_up(max(arr.shape[:2]) // 2))
    while True:
        try:
            y = translate_tiled(tr, arr, tile, min(overlap, tile // 4), batch, show_progress)
            break
        except RuntimeError as e:
            if not is_oom(e) or tile <= 256:
                raise
            torch.cuda.empty_cache()
            tile, batch = max(256, round_up(tile // 2)), 1
    if retain or brightness:
        y = postprocess(y[None], uint8_to_tensor(arr)[None], retain, brightness)[0]
    return to_uint8(y)
