"""upfirdn2d: upsample (zero insertion), pad/crop, 2-D FIR filter, downsample.

For every channel plane of an NCHW tensor x and a kernel f of size kh x kw:

1. insert ``up - 1`` zeros after each sample (length ``H * up``),
2. pad by ``(p0, p1)`` per axis, measured on the upsampled image (negative = crop),
3. *convolve* with f (correlate with the flipped kernel), keeping valid outputs only,
4. keep every ``down``-th sample, starting at index 0.

Formally ``out[oy, ox] = sum_{ky,kx} U[oy*down_y + ky, ox*down_x + kx] * f[kh-1-ky, kw-1-kx]``
with ``U`` the zero-inserted, padded input, and
``H_out = (H*up_y + py0 + py1 - kh) // down_y + 1`` (same for W).

The gradient w.r.t. x is again an upfirdn2d (flipped kernel, up and down swapped, pads
``(k-1-p0, W*up - W_out*down + p0)``); the autograd Function below calls itself for its
backward, so gradients of any order work, as needed by StyleGAN's R1 and path-length
penalties.  The kernel f is treated as a constant (no gradient).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F

from . import _build
from ._dispatch import resolve_impl, use_cuda_impl

__all__ = ["upfirdn2d", "setup_filter", "upsample2d", "downsample2d", "blur2d"]

IntPair = Union[int, Sequence[int]]
Pad = Union[int, Sequence[int]]
FilterLike = Union[torch.Tensor, Sequence[float], Sequence[Sequence[float]], float, None]

#: Largest filter side the CUDA kernel takes (taps are staged per block); larger -> reference.
MAX_CUDA_TAPS = 32


def _plugin():
    return _build.load_extension("upfirdn2d", _build.EXTENSIONS["upfirdn2d"])


class _Cfg(NamedTuple):
    upx: int
    upy: int
    downx: int
    downy: int
    px0: int
    px1: int
    py0: int
    py1: int
    gain: float


def _pair(v: IntPair, what: str) -> tuple[int, int]:
    """int -> (v, v); (vx, vy) -> as is.  Factors must be >= 1."""
    if isinstance(v, int):
        vx = vy = v
    else:
        vals = [int(t) for t in v]
        if len(vals) != 2:
            raise ValueError(f"{what} must be an int or a pair (x, y), got {v!r}")
        vx, vy = vals
    if vx < 1 or vy < 1:
        raise ValueError(f"{what} must be >= 1, got {v!r}")
    return vx, vy


def _pad4(pad: Pad) -> tuple[int, int, int, int]:
    """int -> all sides; (p0, p1) -> both axes; (px0, px1, py0, py1) -> as is."""
    if isinstance(pad, int):
        return pad, pad, pad, pad
    vals = [int(t) for t in pad]
    if len(vals) == 2:
        return vals[0], vals[1], vals[0], vals[1]
    if len(vals) == 4:
        return vals[0], vals[1], vals[2], vals[3]
    raise ValueError(f"pad must be an int, (p0, p1) or (px0, px1, py0, py1), got {pad!r}")


def _as_filter(f: FilterLike, x: torch.Tensor) -> torch.Tensor:
    """2-D constant filter on x's device, in the accumulation dtype (float64 only for float64 x)."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if f is None:
        f = torch.ones([1, 1])
    f = torch.as_tensor(f).detach().to(device=x.device, dtype=dtype)
    if f.ndim == 0:
        f = f.reshape(1, 1)
    elif f.ndim == 1:
        f = torch.outer(f, f)  # separable kernel given by its 1-D factor
    if f.ndim != 2 or f.numel() == 0:
        raise ValueError(f"f must be a non-empty 1-D or 2-D filter, got shape {tuple(f.shape)}")
    return f


def _out_size(n: int, up: int, p0: int, p1: int, k: int, down: int) -> int:
    return (n * up + p0 + p1 - k) // down + 1


def _upfirdn2d_simple(x: torch.Tensor, f: torch.Tensor, c: _Cfg) -> torch.Tensor:
    """The textbook upfirdn2d: zero insertion, pad/crop, one depthwise conv, subsampling.

    Kept as the independent oracle of the tests; `_upfirdn2d_ref` computes the same faster.
    """
    N, C, H, W = x.shape
    if c.upx > 1 or c.upy > 1:
        # [N,C,H,1,W,1] padded to [N,C,H,up,W,up] puts up-1 zeros after every sample.
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, [0, c.upx - 1, 0, 0, 0, c.upy - 1])
        x = x.reshape(N, C, H * c.upy, W * c.upx)
    if c.px0 > 0 or c.px1 > 0 or c.py0 > 0 or c.py1 > 0:
        x = F.pad(x, [max(c.px0, 0), max(c.px1, 0), max(c.py0, 0), max(c.py1, 0)])
    if c.px0 < 0 or c.px1 < 0 or c.py0 < 0 or c.py1 < 0:
        x = x[:, :, max(-c.py0, 0) : x.shape[2] - max(-c.py1, 0), max(-c.px0, 0) : x.shape[3] - max(-c.px1, 0)]
    # conv2d correlates; correlating with the flipped kernel is the convolution we want.
    w = (f * c.gain).flip([0, 1]).to(x.dtype)
    w = w[None, None].repeat(C, 1, 1, 1)
    x = F.conv2d(x, w, groups=C)
    if c.downx > 1 or c.downy > 1:
        x = x[:, :, :: c.downy, :: c.downx]
    return x


def _pad_crop(x: torch.Tensor, left: int, right: int, top: int, bottom: int) -> torch.Tensor:
    """Zero-pad the positive sides, then crop the negative ones (a crop may reach into the padding)."""
    if left > 0 or right > 0 or top > 0 or bottom > 0:
        x = F.pad(x, [max(left, 0), max(right, 0), max(top, 0), max(bottom, 0)])
    if left < 0 or right < 0 or top < 0 or bottom < 0:
        x = x[:, :, max(-top, 0) : x.shape[2] - max(-bottom, 0), max(-left, 0) : x.shape[3] - max(-right, 0)]
    return x


def _upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, c: _Cfg) -> torch.Tensor:
    """Plain-PyTorch upfirdn2d that computes only the samples it keeps.

    * up > 1: a depthwise *transposed* conv with stride ``up`` is exactly "insert zeros, then
      convolve with f" without multiplying the inserted zeros (``Y[i] = sum_j x[j] f[i - j*up]``);
      the output ``out[o] = Y[o*down + k-1-p0]`` is cut out of Y with one (possibly negative) pad.
    * up == 1: pad/crop, then a depthwise conv with stride ``down`` (no outputs computed only to be
      dropped by the subsampling).

    On the CPU this is 4-15x faster than zero insertion + subsampling (`_upfirdn2d_simple`); the
    input's memory format is kept (channels_last inputs use oneDNN's fast NHWC depthwise kernels).
    """
    N, C, H, W = x.shape
    kh, kw = f.shape
    w = (f * c.gain).to(x.dtype)
    if c.upx > 1 or c.upy > 1:
        y = F.conv_transpose2d(x, w[None, None].expand(C, 1, kh, kw).contiguous(), stride=(c.upy, c.upx), groups=C)
        Ho = _out_size(H, c.upy, c.py0, c.py1, kh, c.downy)
        Wo = _out_size(W, c.upx, c.px0, c.px1, kw, c.downx)
        sy, sx = kh - 1 - c.py0, kw - 1 - c.px0  # out[o] = Y[o*down + s]
        ly, lx = (Ho - 1) * c.downy + 1, (Wo - 1) * c.downx + 1
        y = _pad_crop(y, -sx, sx + lx - y.shape[3], -sy, sy + ly - y.shape[2])
        if c.downx > 1 or c.downy > 1:
            y = y[:, :, :: c.downy, :: c.downx]
        return y
    x = _pad_crop(x, c.px0, c.px1, c.py0, c.py1)
    # conv2d correlates; correlating with the flipped kernel is the convolution we want.
    return F.conv2d(x, w.flip([0, 1])[None, None].expand(C, 1, kh, kw).contiguous(), stride=(c.downy, c.downx), groups=C)


def _grad_cfg(c: _Cfg, in_hw: tuple[int, int], out_hw: tuple[int, int], k_hw: tuple[int, int]) -> _Cfg:
    """Config of the upfirdn2d that computes dx from dy (the transpose of ``c``)."""
    H, W = in_hw
    Ho, Wo = out_hw
    kh, kw = k_hw
    return _Cfg(
        upx=c.downx,
        upy=c.downy,
        downx=c.upx,
        downy=c.upy,
        px0=kw - 1 - c.px0,
        px1=W * c.upx - Wo * c.downx + c.px0,
        py0=kh - 1 - c.py0,
        py1=H * c.upy - Ho * c.downy + c.py0,
        gain=c.gain,
    )


class _UpFirDn2dFn(torch.autograd.Function):
    """upfirdn2d with an explicit backward that is itself an _UpFirDn2dFn (any order)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, f: torch.Tensor, cfg: _Cfg, use_cuda: bool) -> torch.Tensor:  # type: ignore[override]
        if use_cuda:
            y = _plugin().upfirdn2d(
                x, f, cfg.upx, cfg.upy, cfg.downx, cfg.downy, cfg.px0, cfg.px1, cfg.py0, cfg.py1, float(cfg.gain)
            )
        else:  # the CPU path (and the Python logic of this Function, exercised by the tests)
            y = _upfirdn2d_ref(x, f, cfg)
        ctx.save_for_backward(f)
        ctx.cfg = cfg
        ctx.use_cuda = use_cuda
        ctx.in_hw = (x.shape[2], x.shape[3])
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        (f,) = ctx.saved_tensors
        dx = None
        if ctx.needs_input_grad[0]:
            gcfg = _grad_cfg(ctx.cfg, ctx.in_hw, (dy.shape[2], dy.shape[3]), (f.shape[0], f.shape[1]))
            dx = _UpFirDn2dFn.apply(dy, f.flip([0, 1]), gcfg, ctx.use_cuda)
        return dx, None, None, None


def upfirdn2d(
    x: torch.Tensor,
    f: FilterLike,
    up: IntPair = 1,
    down: IntPair = 1,
    pad: Pad = 0,
    gain: float = 1.0,
    impl: str = "auto",
    *,
    _force_function: bool = False,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample every channel of ``x`` ([N, C, H, W]).

    Args:
        x: input, any float dtype, any strides (channels_last is kept by the CUDA kernel).
        f: FIR kernel [kh, kw]; a 1-D kernel is used separably (outer(f, f)); None = identity.
            It is *not* normalised here (see `setup_filter`) and gets no gradient.
        up, down: int or (x, y) factors, >= 1.
        pad: int (all sides), (p0, p1) for both axes, or (px0, px1, py0, py1); measured on the
            upsampled image, negative values crop.
        gain: multiplies the kernel.
        impl: 'auto' (CUDA kernel for GPU tensors when it builds; on the CPU the reference inside
            the autograd Function whenever a gradient is recorded), 'ref' (plain autograd) or
            'cuda' (kernel or RuntimeError).  ``TOONLAB_OPS_IMPL`` overrides 'auto'.

    Returns:
        [N, C, H_out, W_out] with ``H_out = (H*up_y + py0 + py1 - kh) // down_y + 1``.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    px0, px1, py0, py1 = _pad4(pad)
    f = _as_filter(f, x)
    kh, kw = f.shape
    H, W = x.shape[2], x.shape[3]
    Ho = _out_size(H, upy, py0, py1, kh, downy)
    Wo = _out_size(W, upx, px0, px1, kw, downx)
    if H < 1 or W < 1 or H * upy + py0 + py1 < kh or W * upx + px0 + px1 < kw:
        raise ValueError(
            f"upfirdn2d: input {H}x{W} with up=({upx}, {upy}), pad=({px0}, {px1}, {py0}, {py1}) is smaller "
            f"than the {kh}x{kw} filter (output would be {Ho}x{Wo})"
        )
    cfg = _Cfg(upx, upy, downx, downy, px0, px1, py0, py1, float(gain))
    unsupported = None if (kh <= MAX_CUDA_TAPS and kw <= MAX_CUDA_TAPS) else f"a {kh}x{kw} filter (max {MAX_CUDA_TAPS})"
    use_cuda = use_cuda_impl(impl, x, "upfirdn2d", _plugin, unsupported)
    # On the CPU, 'auto' runs the Function too when a gradient is recorded: its backward is one
    # upfirdn2d (and so is the backward of that), whereas autograd through the depthwise conv
    # builds conv double-backward graphs that also compute filter gradients nobody asked for —
    # per channel group in oneDNN (512 tiny convs per op in an R1 step). Explicit impl='ref'
    # keeps plain autograd, so the two stay comparable.
    cpu_fn = not use_cuda and x.device.type == "cpu" and resolve_impl(impl) == "auto" and _records_grad(x)
    if use_cuda or _force_function or cpu_fn:
        return _UpFirDn2dFn.apply(x, f, cfg, use_cuda)
    return _upfirdn2d_ref(x, f, cfg)


def _records_grad(x: torch.Tensor) -> bool:
    return x.requires_grad and torch.is_grad_enabled()


# ----------------------------------------------------------------------------------------------
# Filters and the StyleGAN-style helpers.
# ----------------------------------------------------------------------------------------------


def setup_filter(
    f: FilterLike,
    normalize: bool = True,
    gain: float = 1.0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Turn a filter spec into a float32 2-D tensor: 1-D -> outer product, sum -> 1, x gain."""
    if f is None:
        f = 1.0
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1, 1)
    elif f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2 or f.numel() == 0:
        raise ValueError(f"filter must be a non-empty scalar, 1-D or 2-D, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    f = f * gain
    return f.to(device) if device is not None else f


_filter_cache: dict[tuple, torch.Tensor] = {}


def _cached_filter(f: FilterLike, gain: float, device: torch.device) -> torch.Tensor:
    """setup_filter for the common case of a literal filter, cached per device.

    Avoids a host->device copy of a 16-element tensor on every call with the default filter.
    """
    if isinstance(f, torch.Tensor):
        return setup_filter(f.to(device), gain=gain)
    try:
        key = (tuple(tuple(r) if isinstance(r, (list, tuple)) else float(r) for r in f), float(gain), str(device))
    except TypeError:
        return setup_filter(f, gain=gain, device=device)
    out = _filter_cache.get(key)
    if out is None:
        out = setup_filter(f, gain=gain, device=device)
        if len(_filter_cache) < 256:
            _filter_cache[key] = out
    return out


def _factor(factor: int) -> int:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int, got {factor!r}")
    return factor


def upsample2d(
    x: torch.Tensor, f: FilterLike = (1, 3, 3, 1), factor: int = 2, impl: str = "auto"
) -> torch.Tensor:
    """Upsample by ``factor`` (output ``factor*H x factor*W``) with the normalised filter x factor^2.

    The gain factor^2 compensates the zeros inserted between samples, so a constant image
    stays constant away from the borders.
    """
    factor = _factor(factor)
    fk = _cached_filter(f, factor**2, x.device)
    kh, kw = fk.shape
    p_x, p_y = kw - factor, kh - factor
    pad = ((p_x + 1) // 2 + factor - 1, p_x // 2, (p_y + 1) // 2 + factor - 1, p_y // 2)
    return upfirdn2d(x, fk, up=factor, pad=pad, impl=impl)


def downsample2d(
    x: torch.Tensor, f: FilterLike = (1, 3, 3, 1), factor: int = 2, impl: str = "auto"
) -> torch.Tensor:
    """Low-pass with the normalised filter, then keep every ``factor``-th sample (H/factor)."""
    factor = _factor(factor)
    fk = _cached_filter(f, 1.0, x.device)
    kh, kw = fk.shape
    p_x, p_y = kw - factor, kh - factor
    pad = ((p_x + 1) // 2, p_x // 2, (p_y + 1) // 2, p_y // 2)
    return upfirdn2d(x, fk, down=factor, pad=pad, impl=impl)


def blur2d(
    x: torch.Tensor,
    f: FilterLike = (1, 3, 3, 1),
    pad: Pad | None = None,
    gain: float = 1.0,
    impl: str = "auto",
) -> torch.Tensor:
    """FIR-filter with the normalised ``f`` x ``gain``.

    ``pad`` as in `upfirdn2d`; None keeps the size (``((k-1+1)//2, (k-1)//2)`` per axis).
    StyleGAN2 uses pad (1, 1) before a stride-2 conv and (1, 1) with gain 4 after a
    stride-2 transposed conv.
    """
    fk = _cached_filter(f, gain, x.device)
    if pad is None:
        kh, kw = fk.shape
        pad = (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2)
    return upfirdn2d(x, fk, pad=pad, impl=impl)
