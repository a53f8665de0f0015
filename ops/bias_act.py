"""Fused bias + activation: ``y = clamp(act(x + b) * gain, -clamp, clamp)``.

``b`` is broadcast along ``dim`` (default 1, the channel axis).  'linear', 'relu' and
'lrelu' have a CUDA kernel; the other activations ('tanh', 'sigmoid', 'elu', 'selu',
'softplus', 'swish') are reference-only.

Backward of the piecewise-linear activations needs only y:
``dx = dy * gain * (y > 0 ? 1 : alpha) * (|y| < clamp)`` (relu: alpha = 0, linear: 1).
That grad op is linear in dy with a mask fixed by y, so its own backward w.r.t. dy is the
same op and w.r.t. y is zero; implemented as an autograd Function that calls itself, it
gives gradients of any order.  At x + b == 0 exactly the slope is alpha (0 for relu), as in
PyTorch's leaky_relu/relu; clamped outputs get a zero gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import _build
from ._dispatch import resolve_impl, use_cuda_impl

__all__ = ["bias_act", "fused_leaky_relu", "ACTIVATIONS"]

_SQRT2 = math.sqrt(2.0)


class _ActSpec(NamedTuple):
    func: Callable[[torch.Tensor, float], torch.Tensor]
    default_alpha: float
    default_gain: float
    cuda_code: int | None  # code of the CUDA kernel's activation; None = reference only


#: name -> (function, default alpha, default gain, CUDA code)
ACTIVATIONS: dict[str, _ActSpec] = {
    "linear": _ActSpec(lambda x, a: x, 0.0, 1.0, 0),
    "relu": _ActSpec(lambda x, a: F.relu(x), 0.0, _SQRT2, 1),
    "lrelu": _ActSpec(lambda x, a: F.leaky_relu(x, a), 0.2, _SQRT2, 2),
    "tanh": _ActSpec(lambda x, a: torch.tanh(x), 0.0, 1.0, None),
    "sigmoid": _ActSpec(lambda x, a: torch.sigmoid(x), 0.0, 1.0, None),
    "elu": _ActSpec(lambda x, a: F.elu(x, a), 1.0, 1.0, None),
    "selu": _ActSpec(lambda x, a: F.selu(x), 0.0, 1.0, None),
    "softplus": _ActSpec(lambda x, a: F.softplus(x), 0.0, 1.0, None),
    "swish": _ActSpec(lambda x, a: F.silu(x), 0.0, _SQRT2, None),
}


def _plugin():
    return _build.load_extension("bias_act", _build.EXTENSIONS["bias_act"])


class _Cfg(NamedTuple):
    act: str
    code: int  # CUDA activation code (piecewise-linear acts only)
    alpha: float
    gain: float
    clamp: float | None
    dim: int


def _bias_act_ref(
    x: torch.Tensor, b: torch.Tensor | None, dim: int, act: str, alpha: float, gain: float, clamp: float | None
) -> torch.Tensor:
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = ACTIVATIONS[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _bias_act_fn_forward(x: torch.Tensor, b: torch.Tensor | None, cfg: _Cfg) -> torch.Tensor:
    """The Function's plain-PyTorch forward: one new tensor, then in-place passes.

    Inside an autograd Function nothing is recorded, so the activation and the gain can work in
    place on the sum (two or three memory passes instead of allocating a tensor per step).
    """
    if b is not None:
        y = x + b.reshape([-1 if i == cfg.dim else 1 for i in range(x.ndim)])
    else:
        y = x.clone()
    if cfg.code == 1:
        y.relu_()
    elif cfg.code == 2:
        F.leaky_relu_(y, cfg.alpha)
    if cfg.gain != 1:
        y.mul_(cfg.gain)
    if cfg.clamp is not None:
        y.clamp_(-cfg.clamp, cfg.clamp)
    return y


def _grad_ref(dy: torch.Tensor, y: torch.Tensor, cfg: _Cfg) -> torch.Tensor:
    """dx from dy and y for the piecewise-linear activations (plain PyTorch).

    gain > 0 keeps the sign, so y > 0 exactly where x + b > 0: PyTorch's own (leaky) ReLU
    backward kernels with ``self_is_result`` read that mask from y in one pass.
    """
    if cfg.code == 1:
        g = torch.ops.aten.threshold_backward(dy, y, 0.0)
    elif cfg.code == 2:
        g = torch.ops.aten.leaky_relu_backward(dy, y, cfg.alpha, True)
    else:
        g = dy
    if g is dy:
        g = dy * cfg.gain
    elif cfg.gain != 1:
        g.mul_(cfg.gain)  # a fresh tensor (called inside the Function's forward: nothing recorded)
    if cfg.clamp is not None:
        # Clamped outputs hold the clamp value rounded to y's dtype: compare against that.
        c = float(torch.tensor(cfg.clamp, dtype=y.dtype))
        g = torch.where(y.abs() < c, g, torch.zeros_like(g))
    return g


def _needs_y(cfg: _Cfg) -> bool:
    return cfg.code != 0 or cfg.clamp is not None


class _BiasActGradFn(torch.autograd.Function):
    """dx = G(dy; y).  Linear in dy with a y-dependent mask: backward is G again (and 0 for y)."""

    @staticmethod
    def forward(ctx, dy: torch.Tensor, y: torch.Tensor, cfg: _Cfg, use_cuda: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(y)
        ctx.cfg = cfg
        ctx.use_cuda = use_cuda
        if use_cuda:
            return _plugin().bias_act_grad(
                dy, y, cfg.code, cfg.alpha, cfg.gain, -1.0 if cfg.clamp is None else cfg.clamp
            )
        return _grad_ref(dy, y, cfg)

    @staticmethod
    def backward(ctx, ddx: torch.Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return _BiasActGradFn.apply(ddx, y, ctx.cfg, ctx.use_cuda), None, None, None


class _BiasActFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, b: torch.Tensor | None, cfg: _Cfg, use_cuda: bool) -> torch.Tensor:  # type: ignore[override]
        if use_cuda:
            y = _plugin().bias_act(
                x, b, cfg.dim, cfg.code, cfg.alpha, cfg.gain, -1.0 if cfg.clamp is None else cfg.clamp
            )
        else:  # the CPU path (and the Python logic of this Function, exercised by the tests)
            y = _bias_act_fn_forward(x, b, cfg)
        # linear without clamp needs no mask: don't keep y alive for nothing.
        ctx.save_for_backward(y if _needs_y(cfg) else None)
        ctx.cfg = cfg
        ctx.use_cuda = use_cuda
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):  # type: ignore[override]
        (y,) = ctx.saved_tensors
        cfg: _Cfg = ctx.cfg
        if _needs_y(cfg):
            dx = _BiasActGradFn.apply(dy, y, cfg, ctx.use_cuda)
        else:
            dx = dy * cfg.gain  # ordinary differentiable op
        db = None
        if ctx.needs_input_grad[1]:
            dims = [d for d in range(dx.ndim) if d != cfg.dim]
            db = dx.sum(dims) if dims else dx
        return (dx if ctx.needs_input_grad[0] else None), db, None, None


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    dim: int = 1,
    act: str = "linear",
    alpha: float | None = None,
    gain: float | None = None,
    clamp: float | None = None,
    impl: str = "auto",
    *,
    _force_function: bool = False,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain, -clamp, clamp)`` with ``b`` broadcast along ``dim``.

    Args:
        x: input of any shape / float dtype.
        b: 1-D bias of length ``x.shape[dim]`` (cast to x's dtype), or None.
        dim: axis the bias runs along.
        act: 'linear', 'relu', 'lrelu' (CUDA + reference) or 'tanh', 'sigmoid', 'elu',
            'selu', 'softplus', 'swish' (reference only).
        alpha: lrelu slope (default 0.2; elu's alpha, default 1.0).
        gain: output scale; default sqrt(2) for relu/lrelu/swish, else 1.
        clamp: if given (>= 0), saturate the output at +-clamp (zero gradient there).
        impl: 'auto', 'ref' or 'cuda' (see `ops.upfirdn2d`).
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.default_alpha if alpha is None else alpha)
    gain = float(spec.default_gain if gain is None else gain)
    if clamp is not None:
        clamp = float(clamp)
        if not clamp >= 0:
            raise ValueError(f"clamp must be >= 0 or None, got {clamp}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(f"dim {dim} out of range for a {x.ndim}-D tensor")
    dim %= x.ndim
    if b is not None:
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"b must be 1-D of length x.shape[{dim}] = {x.shape[dim]}, got shape {tuple(b.shape)}")
        b = b.to(dtype=x.dtype)

    # The y-based backward needs y's sign to identify the active piece.
    if spec.cuda_code is None:
        unsupported = f"act={act!r}"
    elif spec.cuda_code != 0 and gain <= 0:
        unsupported = f"gain={gain} with act={act!r} (needs gain > 0)"
    elif spec.cuda_code == 2 and alpha < 0:
        unsupported = f"alpha={alpha} (needs alpha >= 0)"
    else:
        unsupported = None
    use_cuda = use_cuda_impl(impl, x, "bias_act", _plugin, unsupported)
    # On the CPU, 'auto' uses the Function when a gradient is recorded: its backward is one
    # mask-multiply from y (and its double backward the same), where autograd would keep x + b,
    # the activation's input and output and chain three backward nodes. impl='ref' = plain autograd.
    cpu_auto = not use_cuda and unsupported is None and x.device.type == "cpu" and resolve_impl(impl) == "auto"
    records = torch.is_grad_enabled() and (x.requires_grad or (b is not None and b.requires_grad))
    if use_cuda or (cpu_auto and records) or (_force_function and unsupported is None):
        cfg = _Cfg(act, int(spec.cuda_code), alpha, gain, clamp, dim)  # type: ignore[arg-type]
        return _BiasActFn.apply(x, b, cfg, use_cuda)
    if cpu_auto:  # nothing recorded (inference): the in-place passes of the Function's forward
        return _bias_act_fn_forward(x, b, _Cfg(act, int(spec.cuda_code), alpha, gain, clamp, dim))  # type: ignore[arg-type]
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)


def fused_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    negative_slope: float = 0.2,
    scale: float = 2**0.5,
    impl: str = "auto",
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale`` with the bias along dim 1 ([N, C] or [N, C, H, W])."""
    return bias_act(x, bias, dim=1, act="lrelu", alpha=negative_slope, gain=scale, impl=impl)
