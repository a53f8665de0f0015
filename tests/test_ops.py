"""CPU tests for ops/: reference implementations, autograd Functions, dispatch, build caching,
and the CUDA kernels' index logic run through the CPU emulation (ops/emulate.cpp).

Oracles are independent of the code under test: scipy.signal.upfirdn per axis for separable
kernels, a direct loop over the formal definition for a non-separable one, and plain numpy
formulas for the activations.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.signal
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ops  # noqa: E402
from ops import _build, _dispatch  # noqa: E402

ufd = importlib.import_module("ops.upfirdn2d")  # the module (ops.upfirdn2d is the function)
ba = importlib.import_module("ops.bias_act")


@pytest.fixture(autouse=True)
def _no_env_override(monkeypatch):
    monkeypatch.delenv("TOONLAB_OPS_IMPL", raising=False)


@pytest.fixture(scope="module", autouse=True)
def _single_thread():
    """The tensors here are tiny: intra-op threads only add overhead (and fight on 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# =============================================================================================
# Oracles
# =============================================================================================


def _oracle_axis(x: np.ndarray, h: np.ndarray, up: int, down: int, p0: int, p1: int, axis: int) -> np.ndarray:
    """One axis of upfirdn2d via scipy: full = upfirdn(h, x, up); out[i] = full[i*down + k-1-p0]."""
    k = len(h)
    n = x.shape[axis]
    full = scipy.signal.upfirdn(h, x, up, 1, axis=axis)
    m = full.shape[axis]
    n_out = (n * up + p0 + p1 - k) // down + 1
    idx = np.arange(n_out) * down + (k - 1 - p0)
    valid = (idx >= 0) & (idx < m)
    out = np.take(full, np.clip(idx, 0, m - 1), axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n_out
    return out * valid.reshape(shape)


def oracle_separable(x, fy, fx, up, down, pad, gain=1.0):
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    y = _oracle_axis(x, fy, upy, downy, py0, py1, axis=2)
    y = _oracle_axis(y, fx, upx, downx, px0, px1, axis=3)
    return y * gain


def oracle_loop(x: np.ndarray, f: np.ndarray, up, down, pad, gain=1.0) -> np.ndarray:
    """The formal definition, literally."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    N, C, H, W = x.shape
    kh, kw = f.shape
    Ho = (H * upy + py0 + py1 - kh) // downy + 1
    Wo = (W * upx + px0 + px1 - kw) // downx + 1
    out = np.zeros((N, C, Ho, Wo))

    def U(u, v):
        a, b = u - py0, v - px0
        if a < 0 or b < 0 or a % upy or b % upx:
            return np.zeros((N, C))
        iy, ix = a // upy, b // upx
        if iy >= H or ix >= W:
            return np.zeros((N, C))
        return x[:, :, iy, ix]

    for oy in range(Ho):
        for ox in range(Wo):
            acc = np.zeros((N, C))
            for ky in range(kh):
                for kx in range(kw):
                    acc += U(oy * downy + ky, ox * downx + kx) * f[kh - 1 - ky, kw - 1 - kx]
            out[:, :, oy, ox] = acc
    return out * gain


def _random_cfg(rng: np.random.Generator):
    """A random valid (shape, up, down, pad, kernel sizes) configuration."""
    while True:
        H, W = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        upx, upy = (int(v) for v in rng.integers(1, 4, size=2))
        downx, downy = (int(v) for v in rng.integers(1, 4, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 7, size=2))
        px0, px1, py0, py1 = (int(v) for v in rng.integers(-3, 5, size=4))
        if H * upy + py0 + py1 >= kh and W * upx + px0 + px1 >= kw:
            return (H, W), (upx, upy), (downx, downy), (px0, px1, py0, py1), (kh, kw)


# =============================================================================================
# upfirdn2d reference vs oracles
# =============================================================================================


@pytest.mark.parametrize("seed", range(60))
def test_upfirdn2d_ref_vs_scipy(seed):
    rng = np.random.default_rng(seed)
    (H, W), up, down, pad, (kh, kw) = _random_cfg(rng)
    x = rng.standard_normal((2, 3, H, W))
    fy, fx = rng.standard_normal(kh), rng.standard_normal(kw)
    gain = float(rng.uniform(0.5, 2.0))
    want = oracle_separable(x, fy, fx, up, down, pad, gain)
    got = ufd._upfirdn2d_ref(torch.from_numpy(x), torch.from_numpy(np.outer(fy, fx)), ufd._Cfg(*up, *down, *pad, gain))
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)
    # the public entry point agrees (and takes the 4-tuple pad / (x, y) factors)
    got2 = ops.upfirdn2d(torch.from_numpy(x), torch.from_numpy(np.outer(fy, fx)), up=up, down=down, pad=pad, gain=gain)
    np.testing.assert_allclose(got2.numpy(), want, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_nonseparable_vs_loop():
    rng = np.random.default_rng(123)
    f = rng.standard_normal((3, 5))
    assert np.linalg.matrix_rank(f) > 1
    for up, down, pad in [((1, 1), (1, 1), (0, 0, 0, 0)), ((2, 3), (3, 2), (2, -1, -2, 3)), ((3, 2), (1, 2), (4, 1, 1, 2))]:
        x = rng.standard_normal((2, 2, 5, 6))
        want = oracle_loop(x, f, up, down, pad, gain=1.5)
        got = ops.upfirdn2d(torch.from_numpy(x), torch.from_numpy(f), up=up, down=down, pad=pad, gain=1.5, impl="ref")
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-10)


def test_pad_and_factor_conventions():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    f = torch.randn(4, 4, dtype=torch.float64)
    a = ops.upfirdn2d(x, f, up=2, pad=(2, 1))
    b = ops.upfirdn2d(x, f, up=(2, 2), pad=(2, 1, 2, 1))
    torch.testing.assert_close(a, b)
    c = ops.upfirdn2d(x, f, pad=1)
    d = ops.upfirdn2d(x, f, pad=(1, 1, 1, 1))
    torch.testing.assert_close(c, d)
    # 1-D filter == separable outer product
    f1 = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(ops.upfirdn2d(x, f1, pad=(2, 1)), ops.upfirdn2d(x, torch.outer(f1, f1), pad=(2, 1)))
    # (x, y) order of factors: up=(2, 1) doubles the width only
    assert ops.upfirdn2d(x, torch.ones(1, 1), up=(2, 1)).shape == (1, 2, 5, 14)
    assert ops.upfirdn2d(x, torch.ones(1, 1), down=(1, 2)).shape == (1, 2, 3, 7)
    with pytest.raises(ValueError):
        ops.upfirdn2d(x, f, pad=(1, 2, 3))
    with pytest.raises(ValueError):
        ops.upfirdn2d(x, f, up=0)
    with pytest.raises(ValueError):
        ops.upfirdn2d(x, f, pad=-3)  # cropped below the filter size
    with pytest.raises(ValueError):
        ops.upfirdn2d(x[0], f)


def test_grad_cfg_shapes():
    rng = np.random.default_rng(7)
    for _ in range(200):
        (H, W), up, down, pad, (kh, kw) = _random_cfg(rng)
        c = ufd._Cfg(*up, *down, *pad, 1.0)
        Ho = (H * c.upy + c.py0 + c.py1 - kh) // c.downy + 1
        Wo = (W * c.upx + c.px0 + c.px1 - kw) // c.downx + 1
        g = ufd._grad_cfg(c, (H, W), (Ho, Wo), (kh, kw))
        assert (Ho * g.upy + g.py0 + g.py1 - kh) // g.downy + 1 == H
        assert (Wo * g.upx + g.px0 + g.px1 - kw) // g.downx + 1 == W


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_upfirdn2d_ref_low_precision_and_channels_last(dtype):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 8, 6, dtype=torch.float64)
    f = ops.setup_filter([1, 3, 3, 1])
    want = ops.upfirdn2d(x, f, up=2, pad=(2, 1))
    tol = {torch.float16: 5e-3, torch.bfloat16: 4e-2, torch.float32: 1e-5}[dtype]
    for xin in (x.to(dtype), x.to(dtype).to(memory_format=torch.channels_last)):
        got = ops.upfirdn2d(xin, f, up=2, pad=(2, 1))
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


# =============================================================================================
# helpers
# =============================================================================================


def test_setup_filter():
    f = ops.setup_filter([1, 3, 3, 1])
    assert f.shape == (4, 4) and f.dtype == torch.float32
    assert abs(float(f.sum()) - 1) < 1e-6
    torch.testing.assert_close(f, torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)
    assert abs(float(ops.setup_filter([1, 2, 1], gain=4).sum()) - 4) < 1e-6
    g = ops.setup_filter([[1.0, 2.0], [3.0, 4.0]], normalize=False)
    torch.testing.assert_close(g, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert ops.setup_filter(None).shape == (1, 1)


@pytest.mark.parametrize("H,W", [(8, 8), (5, 7), (1, 1)])
def test_upsample2d(H, W):
    x = torch.ones(2, 3, H, W, dtype=torch.float64)
    y = ops.upsample2d(x)
    assert y.shape == (2, 3, 2 * H, 2 * W)
    if H >= 4 and W >= 4:
        # constant image keeps its DC away from the (zero-padded) border
        torch.testing.assert_close(y[:, :, 2:-2, 2:-2], torch.ones_like(y[:, :, 2:-2, 2:-2]))
    assert ops.upsample2d(x, factor=3).shape == (2, 3, 3 * H, 3 * W)
    assert ops.upsample2d(x, f=[1, 2, 1]).shape == (2, 3, 2 * H, 2 * W)


@pytest.mark.parametrize("H,W", [(8, 8), (6, 10), (2, 2)])
def test_downsample2d(H, W):
    x = torch.ones(2, 3, H, W, dtype=torch.float64)
    y = ops.downsample2d(x)
    assert y.shape == (2, 3, H // 2, W // 2)
    if H >= 6 and W >= 6:
        torch.testing.assert_close(y[:, :, 1:-1, 1:-1], torch.ones_like(y[:, :, 1:-1, 1:-1]))


def test_blur2d():
    x = torch.ones(1, 2, 9, 9, dtype=torch.float64)
    y = ops.blur2d(x, [1, 3, 3, 1], pad=(1, 1))
    assert y.shape == (1, 2, 8, 8)
    torch.testing.assert_close(y[:, :, 1:-1, 1:-1], torch.ones(1, 2, 6, 6, dtype=torch.float64))
    assert ops.blur2d(x).shape == x.shape  # default: same size
    y4 = ops.blur2d(x, [1, 3, 3, 1], pad=(1, 1), gain=4)
    torch.testing.assert_close(y4, 4 * y)


# =============================================================================================
# gradients: reference path and the autograd Function (forced on CPU)
# =============================================================================================

GRAD_CFGS = [
    # (x shape, kernel, up, down, pad, gain)
    ((1, 2, 4, 5), "1331", 2, 1, (2, 1), 4.0),  # upsample2d
    ((1, 2, 6, 5), "1331", 1, 2, (1, 1), 1.0),  # downsample2d
    ((1, 2, 5, 4), "1331", 1, 1, (1, 1), 1.0),  # blur
    ((2, 1, 4, 3), "rand35", (3, 2), (2, 3), (-1, 2, 1, -2), 0.7),  # everything odd
    ((1, 2, 5, 6), "rand22", (1, 2), (3, 1), (0, 0, 2, 1), 1.0),  # remainders in the down step
]


def _grad_case(shape, kernel, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64, generator=g, requires_grad=True)
    if kernel == "1331":
        f = ops.setup_filter([1, 3, 3, 1]).double()
    else:
        kh, kw = int(kernel[-2]), int(kernel[-1])
        f = torch.randn(kh, kw, dtype=torch.float64, generator=g)
    return x, f


@pytest.mark.parametrize("force_function", [False, True], ids=["ref", "function"])
@pytest.mark.parametrize("cfg", GRAD_CFGS, ids=lambda c: f"{c[1]}-up{c[2]}-down{c[3]}-pad{c[4]}")
def test_upfirdn2d_gradcheck(cfg, force_function):
    shape, kernel, up, down, pad, gain = cfg
    x, f = _grad_case(shape, kernel)

    def fn(t):
        return ops.upfirdn2d(t, f, up=up, down=down, pad=pad, gain=gain, impl="ref", _force_function=force_function)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("cfg", GRAD_CFGS, ids=lambda c: f"{c[1]}-up{c[2]}-down{c[3]}-pad{c[4]}")
def test_upfirdn2d_function_matches_ref_autograd(cfg):
    """First, second and third-order gradients of the Function equal plain autograd's."""
    shape, kernel, up, down, pad, gain = cfg
    x, f = _grad_case(shape, kernel, seed=1)
    results = []
    for force in (False, True):
        xx = x.detach().clone().requires_grad_(True)
        y = ops.upfirdn2d(xx, f, up=up, down=down, pad=pad, gain=gain, impl="ref", _force_function=force)
        if force:
            assert y.grad_fn is not None and "UpFirDn2dFn" in type(y.grad_fn).__name__
        w = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
        (g1,) = torch.autograd.grad((y * w).sum(), xx, create_graph=True)
        (g2,) = torch.autograd.grad((g1**2 * xx).sum(), xx, create_graph=True)
        (g3,) = torch.autograd.grad((g2 * xx.cos()).sum(), xx)
        results.append((y, g1, g2, g3))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_filter_gets_no_grad():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    f = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    for force in (False, True):
        y = ops.upfirdn2d(x, f, pad=1, _force_function=force)
        (gx,) = torch.autograd.grad(y.sum(), x)
        assert gx.shape == x.shape
        assert f.grad is None


# =============================================================================================
# bias_act
# =============================================================================================


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


NUMPY_ACTS = {
    "linear": lambda v, a: v,
    "relu": lambda v, a: np.maximum(v, 0),
    "lrelu": lambda v, a: np.where(v < 0, v * a, v),
    "tanh": lambda v, a: np.tanh(v),
    "sigmoid": lambda v, a: _sigmoid(v),
    "elu": lambda v, a: np.where(v > 0, v, a * (np.exp(v) - 1)),
    "selu": lambda v, a: 1.0507009873554804934193349852946
    * np.where(v > 0, v, 1.6732632423543772848170429916717 * (np.exp(v) - 1)),
    "softplus": lambda v, a: np.log1p(np.exp(v)),
    "swish": lambda v, a: v * _sigmoid(v),
}
DEFAULTS = {  # act: (alpha, gain)
    "linear": (0.0, 1.0),
    "relu": (0.0, math.sqrt(2)),
    "lrelu": (0.2, math.sqrt(2)),
    "tanh": (0.0, 1.0),
    "sigmoid": (0.0, 1.0),
    "elu": (1.0, 1.0),
    "selu": (0.0, 1.0),
    "softplus": (0.0, 1.0),
    "swish": (0.0, math.sqrt(2)),
}


def _numpy_bias_act(x, b, dim, act, alpha, gain, clamp):
    v = x.copy()
    if b is not None:
        shape = [1] * x.ndim
        shape[dim] = -1
        v = v + b.reshape(shape)
    v = NUMPY_ACTS[act](v, alpha) * gain
    if clamp is not None:
        v = np.clip(v, -clamp, clamp)
    return v


@pytest.mark.parametrize("act", sorted(NUMPY_ACTS))
def test_bias_act_vs_formula(act):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 3, 4)) * 2
    b = rng.standard_normal(5)
    d_alpha, d_gain = DEFAULTS[act]
    for use_b in (False, True):
        for gain in (None, 0.5):
            for clamp in (None, 0.7):
                for force in (False, True):
                    got = ops.bias_act(
                        torch.from_numpy(x),
                        torch.from_numpy(b) if use_b else None,
                        act=act,
                        gain=gain,
                        clamp=clamp,
                        _force_function=force,
                    )
                    want = _numpy_bias_act(
                        x, b if use_b else None, 1, act, d_alpha, d_gain if gain is None else gain, clamp
                    )
                    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    if act in ("lrelu", "elu"):
        got = ops.bias_act(torch.from_numpy(x), torch.from_numpy(b), act=act, alpha=0.3)
        np.testing.assert_allclose(got.numpy(), _numpy_bias_act(x, b, 1, act, 0.3, d_gain, None), rtol=1e-12)


@pytest.mark.parametrize("shape,dim", [((4, 6), 0), ((3, 4, 5), 2), ((3, 4, 5), -1), ((2, 3, 4, 5), 3), ((7,), 0)])
@pytest.mark.parametrize("force", [False, True])
def test_bias_act_other_dims(shape, dim, force):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    b = rng.standard_normal(shape[dim])
    got = ops.bias_act(torch.from_numpy(x), torch.from_numpy(b), dim=dim, act="lrelu", clamp=1.0, _force_function=force)
    want = _numpy_bias_act(x, b, dim % len(shape), "lrelu", 0.2, math.sqrt(2), 1.0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
def test_bias_act_grad_zero_where_clamped(act, force):
    x = torch.linspace(-5, 5, 101, dtype=torch.float64).reshape(1, 1, 101).requires_grad_(True)
    y = ops.bias_act(x, None, act=act, gain=1.0, clamp=2.0, _force_function=force)
    (g,) = torch.autograd.grad(y.sum(), x)
    clamped = y.detach().abs() >= 2.0
    assert clamped.any()
    assert (g[clamped] == 0).all()
    assert (g[~clamped & (x.detach() > 0)] == 1).all()


@pytest.mark.parametrize("act,alpha", [("relu", 0.0), ("lrelu", 0.2), ("lrelu", 0.0)])
def test_bias_act_kink_matches_pytorch(act, alpha):
    """At x + b == 0 exactly the slope is alpha (0 for relu), like F.leaky_relu / F.relu."""
    x = torch.zeros(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    y = ops.bias_act(x, b, act=act, alpha=alpha, gain=2.0, _force_function=True)
    gx, gb = torch.autograd.grad(y.sum(), (x, b))
    xr = x.detach().clone().requires_grad_(True)
    ref = (torch.nn.functional.leaky_relu(xr, alpha) if act == "lrelu" else torch.relu(xr)) * 2.0
    (gr,) = torch.autograd.grad(ref.sum(), xr)
    torch.testing.assert_close(gx, gr)
    torch.testing.assert_close(gb, gr.sum((0, 2, 3)))


BA_GRAD_CFGS = [
    # (shape, dim, act, alpha, gain, clamp, with bias)
    ((2, 3, 4, 4), 1, "linear", None, None, None, True),
    ((2, 3, 4, 4), 1, "linear", None, 2.0, 1.5, True),
    ((2, 3, 4, 4), 1, "relu", None, None, None, True),
    ((2, 3, 4, 4), 1, "lrelu", None, None, None, True),
    ((2, 3, 4, 4), 1, "lrelu", 0.1, 0.9, 1.0, True),
    ((5, 6), 1, "lrelu", None, None, 0.8, True),
    ((3, 4, 5), 2, "relu", None, 1.3, 1.2, True),
    ((3, 4, 5), 0, "lrelu", None, None, None, False),
]


def _ba_case(shape, dim, with_b, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64, generator=g).requires_grad_(True)
    b = torch.randn(shape[dim], dtype=torch.float64, generator=g).requires_grad_(True) if with_b else None
    return x, b


@pytest.mark.parametrize("force", [False, True], ids=["ref", "function"])
@pytest.mark.parametrize("cfg", BA_GRAD_CFGS, ids=lambda c: f"{c[2]}-dim{c[1]}-clamp{c[5]}")
def test_bias_act_gradcheck(cfg, force):
    shape, dim, act, alpha, gain, clamp, with_b = cfg
    x, b = _ba_case(shape, dim, with_b)
    inputs = (x, b) if b is not None else (x,)

    def fn(*args):
        return ops.bias_act(args[0], args[1] if len(args) > 1 else None, dim=dim, act=act, alpha=alpha, gain=gain,
                            clamp=clamp, _force_function=force)

    assert torch.autograd.gradcheck(fn, inputs)
    assert torch.autograd.gradgradcheck(fn, inputs)


@pytest.mark.parametrize("cfg", BA_GRAD_CFGS, ids=lambda c: f"{c[2]}-dim{c[1]}-clamp{c[5]}")
def test_bias_act_function_matches_ref_autograd(cfg):
    shape, dim, act, alpha, gain, clamp, with_b = cfg
    results = []
    for force in (False, True):
        x, b = _ba_case(shape, dim, with_b, seed=2)
        y = ops.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, _force_function=force)
        if force:
            assert "BiasActFn" in type(y.grad_fn).__name__
        w = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
        wrt = (x, b) if b is not None else (x,)
        g1 = torch.autograd.grad((y * w).sum(), wrt, create_graph=True)
        loss2 = sum((g**2).sum() for g in g1) + (g1[0] * x).sum()
        g2 = torch.autograd.grad(loss2, wrt, allow_unused=True)
        results.append((y, *g1, *[g if g is not None else torch.zeros_like(t) for g, t in zip(g2, wrt)]))
    for a, c in zip(*results):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


def test_bias_act_fallbacks_to_ref():
    # acts without a kernel, negative gain or alpha: Function path declined, reference used
    x = torch.randn(2, 3, dtype=torch.float64)
    assert "BiasActFn" not in type(ops.bias_act(x.requires_grad_(), act="tanh", _force_function=True).grad_fn).__name__
    y = ops.bias_act(x, act="lrelu", gain=-1.0, _force_function=True)
    torch.testing.assert_close(y, -torch.nn.functional.leaky_relu(x, 0.2))
    y = ops.bias_act(x, act="lrelu", alpha=-0.5, _force_function=True)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, -0.5) * math.sqrt(2))
    with pytest.raises(ValueError):
        ops.bias_act(x, act="gelu")
    with pytest.raises(ValueError):
        ops.bias_act(x, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError):
        ops.bias_act(x, clamp=-1.0)
    with pytest.raises(ValueError):
        ops.bias_act(x, dim=2)


def test_bias_act_dtype_and_layout():
    x = torch.randn(2, 4, 3, 3).to(memory_format=torch.channels_last)
    b = torch.randn(4, dtype=torch.float64)  # cast to x's dtype
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        y = ops.bias_act(x.to(dt), b, act="lrelu")
        assert y.dtype == dt
        want = torch.nn.functional.leaky_relu(x.double() + b.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2)
        torch.testing.assert_close(y.double(), want, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("shape", [(4, 6), (2, 3, 4, 5)])
def test_fused_leaky_relu(shape):
    x = torch.randn(*shape, dtype=torch.float64)
    b = torch.randn(shape[1], dtype=torch.float64)
    y = ops.fused_leaky_relu(x, b)
    bb = b.reshape([1, -1] + [1] * (len(shape) - 2))
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x + bb, 0.2) * 2**0.5)
    y = ops.fused_leaky_relu(x, b, negative_slope=0.1, scale=1.0)
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x + bb, 0.1))


# =============================================================================================
# implementation selection and lazy builds
# =============================================================================================

FAKE_CUDA = SimpleNamespace(is_cuda=True, device=torch.device("cuda", 0))


def test_impl_resolution(monkeypatch):
    calls = []

    def plugin():
        calls.append(1)
        return object()

    assert _dispatch.use_cuda_impl("auto", FAKE_CUDA, "op", plugin) is True
    assert _dispatch.use_cuda_impl("ref", FAKE_CUDA, "op", plugin) is False
    assert _dispatch.use_cuda_impl("auto", FAKE_CUDA, "op", plugin, unsupported="x") is False
    with pytest.raises(RuntimeError, match="does not support"):
        _dispatch.use_cuda_impl("cuda", FAKE_CUDA, "op", plugin, unsupported="a 40x40 filter")
    n = len(calls)
    assert _dispatch.use_cuda_impl("auto", torch.zeros(1), "op", plugin) is False
    assert len(calls) == n, "CPU tensors must never trigger a build"

    monkeypatch.setenv("TOONLAB_OPS_IMPL", "ref")
    n = len(calls)
    assert _dispatch.use_cuda_impl("auto", FAKE_CUDA, "op", plugin) is False
    assert len(calls) == n
    assert _dispatch.use_cuda_impl("cuda", FAKE_CUDA, "op", plugin) is True  # explicit argument wins

    monkeypatch.setenv("TOONLAB_OPS_IMPL", "cuda")
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        _dispatch.use_cuda_impl("auto", torch.zeros(1), "op", plugin)

    monkeypatch.setenv("TOONLAB_OPS_IMPL", "fast")
    with pytest.raises(ValueError, match="TOONLAB_OPS_IMPL"):
        _dispatch.use_cuda_impl("auto", FAKE_CUDA, "op", plugin)
    with pytest.raises(ValueError):
        _dispatch.resolve_impl("triton")


def test_env_ref_honoured_by_ops(monkeypatch):
    monkeypatch.setenv("TOONLAB_OPS_IMPL", "ref")
    x = torch.randn(1, 2, 4, 4)
    assert ops.upsample2d(x).shape == (1, 2, 8, 8)
    assert ops.bias_act(x, torch.zeros(2), act="lrelu").shape == x.shape
    monkeypatch.setenv("TOONLAB_OPS_IMPL", "cuda")
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        ops.upsample2d(x)
    with pytest.raises(RuntimeError, match="needs a CUDA tensor"):
        ops.fused_leaky_relu(x, torch.zeros(2))


def test_impl_cuda_on_cpu_tensor_raises():
    x = torch.randn(1, 2, 4, 4)
    with pytest.raises(RuntimeError, match="impl='cuda' needs a CUDA tensor"):
        ops.upfirdn2d(x, [1, 3, 3, 1], pad=(2, 1), impl="cuda")
    with pytest.raises(RuntimeError, match="impl='cuda' needs a CUDA tensor"):
        ops.bias_act(x, act="lrelu", impl="cuda")
    with pytest.raises(ValueError):
        ops.upfirdn2d(x, [1, 3, 3, 1], impl="gpu")


def test_import_builds_nothing():
    code = (
        "import json, torch, ops\n"
        "s0 = ops.cuda_status()\n"
        "ops.upsample2d(torch.randn(1, 1, 4, 4)); ops.bias_act(torch.randn(2, 3), act='lrelu')\n"
        "print(json.dumps([s0, ops.cuda_status()]))\n"
    )
    env = dict(os.environ)
    env.pop("TOONLAB_OPS_IMPL", None)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout.strip().splitlines()[-1])
    for status in (before, after):
        assert set(status) >= {"upfirdn2d", "bias_act"}
        assert all(v["state"] == "not tried" for v in status.values()), status


@pytest.fixture
def clean_build_state():
    saved = (dict(_build._modules), dict(_build._status))
    _build._reset()
    yield
    _build._reset()
    _build._modules.update(saved[0])
    _build._status.update(saved[1])


def test_failed_build_warns_once_and_never_retries(monkeypatch, tmp_path, clean_build_state):
    calls = []

    def failing_compile(name, sources, build_dir, arch, verbose=False):
        calls.append((name, Path(build_dir)))
        raise RuntimeError(
            "Error building extension 'toonlab_upfirdn2d': [1/3] nvcc ...\nFAILED: upfirdn2d.cuda.o\n"
            "nvcc fatal   : Unsupported gpu architecture 'compute_99'\nninja: build stopped"
        )

    monkeypatch.setenv("TOONLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(_build, "_device_arch", lambda: "9.0")
    monkeypatch.setattr(_build, "_compile", failing_compile)
    assert ops.cuda_status()["upfirdn2d"]["state"] == "not tried"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = [ufd._plugin() for _ in range(3)]
        assert _dispatch.use_cuda_impl("auto", FAKE_CUDA, "upfirdn2d", ufd._plugin) is False
        with pytest.raises(RuntimeError, match="Unsupported gpu architecture"):
            _dispatch.use_cuda_impl("cuda", FAKE_CUDA, "upfirdn2d", ufd._plugin)
    assert results == [None, None, None]
    assert len(calls) == 1
    build_warnings = [w for w in caught if "could not build" in str(w.message)]
    assert len(build_warnings) == 1
    assert "Unsupported gpu architecture" in str(build_warnings[0].message)
    status = ops.cuda_status()
    assert status["upfirdn2d"]["state"] == "failed"
    assert "Unsupported gpu architecture" in status["upfirdn2d"]["reason"]
    assert status["bias_act"]["state"] == "not tried"
    # the build directory follows ${TOONLAB_CACHE}/torch_extensions/{name}-{hash}
    build_dir = calls[0][1]
    assert build_dir.parent == tmp_path / "torch_extensions"
    assert build_dir.name.startswith("upfirdn2d-") and len(build_dir.name) == len("upfirdn2d-") + 16


def test_successful_build_is_cached(monkeypatch, tmp_path, clean_build_state):
    calls = []
    fake_module = SimpleNamespace(__name__="toonlab_bias_act")

    def ok_compile(name, sources, build_dir, arch, verbose=False):
        calls.append(name)
        return fake_module

    monkeypatch.setenv("TOONLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(_build, "_device_arch", lambda: "9.0")
    monkeypatch.setattr(_build, "_compile", ok_compile)
    assert ba._plugin() is fake_module
    assert ba._plugin() is fake_module
    assert calls == ["bias_act"]
    st = ops.cuda_status()["bias_act"]
    assert st["state"] == "built" and st["path"].startswith(str(tmp_path))


def test_build_hash_inputs(tmp_path):
    a = tmp_path / "a.cu"
    a.write_text("int x;")
    h1 = _build._build_hash([a], "9.0")
    assert h1 == _build._build_hash([a], "9.0")
    assert h1 != _build._build_hash([a], "8.0")
    a.write_text("int y;")
    assert h1 != _build._build_hash([a], "9.0")


def test_stale_lock_removed(monkeypatch, tmp_path):
    lock = tmp_path / "lock"
    lock.write_text("")
    old = time.time() - 2 * _build.STALE_LOCK_SECONDS
    os.utime(lock, (old, old))
    # torch versions with an OS-level lock: an unheld left-over file is harmless, keep it
    monkeypatch.setattr(_build, "_torch_uses_os_lock", lambda: True)
    _build._remove_stale_lock(tmp_path)
    assert lock.exists()
    # existence-based lock (older torch): remove it, with a warning
    monkeypatch.setattr(_build, "_torch_uses_os_lock", lambda: False)
    with pytest.warns(RuntimeWarning, match="stale build lock"):
        _build._remove_stale_lock(tmp_path)
    assert not lock.exists()
    # a fresh lock belongs to a running build
    lock.write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build._remove_stale_lock(tmp_path)
    assert lock.exists()


def test_stale_lock_held_by_live_process_is_kept(monkeypatch, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    lock = tmp_path / "lock"
    lock.write_text("")
    old = time.time() - 2 * _build.STALE_LOCK_SECONDS
    os.utime(lock, (old, old))
    monkeypatch.setattr(_build, "_torch_uses_os_lock", lambda: False)
    # flock locks are per open file description: a second open() sees this one as held
    with open(lock) as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        _build._remove_stale_lock(tmp_path)
        assert lock.exists()


@pytest.mark.skipif(not os.environ.get("TOONLAB_TEST_NVCC"), reason="set TOONLAB_TEST_NVCC=1 to compile the CUDA "
                    "extensions for sm_90 (slow, needs nvcc, no GPU needed)")
def test_cuda_sources_compile_for_sm90(monkeypatch, tmp_path):
    monkeypatch.setenv("TOONLAB_CACHE", str(tmp_path))
    results = _build.compile_check("9.0")
    assert all(r.startswith("ok") for r in results.values()), results


# =============================================================================================
# CUDA kernels' per-thread code, executed on the CPU (ops/emulate.cpp)
# =============================================================================================


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if not cxx:
        pytest.skip("no C++ compiler for the CPU emulation of the CUDA kernels")
    out = tmp_path_factory.mktemp("emu") / "libtoonlab_emu.so"
    cmd = [cxx, "-O1", "-std=c++17", "-shared", "-fPIC", "-fno-strict-aliasing", "-Wall",
           str(ROOT / "ops" / "emulate.cpp"), "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lib = ctypes.CDLL(str(out))
    vp, i64p = ctypes.c_void_p, ctypes.c_void_p
    lib.toonlab_emu_upfirdn2d.argtypes = [ctypes.c_int, vp, vp, vp, i64p, i64p, ctypes.c_double]
    lib.toonlab_emu_upfirdn2d.restype = ctypes.c_int
    lib.toonlab_emu_bias_act.argtypes = [ctypes.c_int, vp, vp, vp, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                                         ctypes.c_int, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                         ctypes.c_int, ctypes.c_int]
    lib.toonlab_emu_bias_act.restype = ctypes.c_int
    lib.toonlab_emu_bias_act_grad.argtypes = [ctypes.c_int, vp, vp, vp, ctypes.c_int64, ctypes.c_int,
                                              ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_int,
                                              ctypes.c_int]
    lib.toonlab_emu_bias_act_grad.restype = ctypes.c_int
    return lib


def _el_strides(a: np.ndarray) -> list[int]:
    return [s // a.itemsize for s in a.strides]


def _layout(x: np.ndarray, kind: str) -> np.ndarray:
    """Same values as x (NCHW), stored as 'nchw', 'nhwc' (channels_last) or 'strided'."""
    if kind == "nchw":
        return np.ascontiguousarray(x)
    if kind == "nhwc":
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    if kind == "strided":  # every dim strided / permuted, like a sliced, transposed view
        N, C, H, W = x.shape
        big = np.zeros((2 * W, N, 3 * H, C), dtype=x.dtype)
        view = big[::2, :, 1::3, :].transpose(1, 3, 2, 0)
        view[...] = x
        return view
    raise ValueError(kind)


def emu_upfirdn2d(lib, x, f, up, down, pad, gain=1.0, out_kind="nchw", cl_map=0, force_generic=0, force_idx64=0):
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = pad
    N, C, H, W = x.shape
    kh, kw = f.shape
    Ho = (H * upy + py0 + py1 - kh) // downy + 1
    Wo = (W * upx + px0 + px1 - kw) // downx + 1
    y = _layout(np.full((N, C, Ho, Wo), np.nan, dtype=x.dtype), out_kind)
    f = np.asarray(f, dtype=x.dtype)
    ints = np.array([N, C, H, W, Ho, Wo, kh, kw, upx, upy, downx, downy, px0, px1, py0, py1,
                     cl_map, force_generic, force_idx64, 0], dtype=np.int64)
    strides = np.array(_el_strides(x) + _el_strides(y) + _el_strides(f), dtype=np.int64)
    code = 1 if x.dtype == np.float64 else 0
    path = lib.toonlab_emu_upfirdn2d(code, x.ctypes.data, y.ctypes.data, f.ctypes.data, ints.ctypes.data,
                                     strides.ctypes.data, gain)
    return y, path


# (H, W, up, down, pad, kernel (kh, kw))
EMU_FAST_CFGS = [
    (8, 8, 2, 1, (2, 1, 2, 1), (4, 4)),      # upsample2d: phase 0
    (5, 7, 2, 1, (1, 2, 1, 2), (4, 4)),      # phase 1 both axes
    (6, 3, 2, 1, (2, 1, 1, 2), (4, 4)),      # mixed phases
    (4, 9, 2, 1, (1, 1, 2, 2), (4, 4)),
    (3, 4, 2, 1, (-1, 3, 0, -2), (4, 4)),    # negative pads (crop), odd and even
    (9, 6, 2, 1, (-3, 5, 3, -1), (4, 4)),
    (1, 1, 2, 1, (2, 1, 2, 1), (4, 4)),      # 1x1 input
    (8, 8, 1, 2, (1, 1, 1, 1), (4, 4)),      # downsample2d
    (7, 9, 1, 2, (0, 3, 2, 1), (4, 4)),      # odd sizes, remainder
    (6, 6, 1, 2, (-1, 2, 1, -1), (4, 4)),
    (11, 5, 1, 1, (1, 1, 1, 1), (4, 4)),     # blur
    (9, 13, 1, 1, (2, 1, 0, 3), (4, 4)),     # rows not a multiple of RY
    (5, 6, 1, 1, (-1, 0, 3, -2), (4, 4)),
    (10, 10, 1, 1, (1, 1, 1, 1), (4, 4)),    # after a transposed conv (gain 4 below)
]
EMU_GENERIC_CFGS = [
    (5, 6, (3, 2), (2, 3), (-1, 2, 1, -2), (3, 5)),
    (7, 4, 1, 1, (0, 0, 0, 0), (1, 1)),
    (6, 6, 2, 2, (1, 2, 2, 1), (4, 4)),      # up and down: generic
    (5, 5, 3, 1, (2, 2, 2, 2), (5, 5)),
    (9, 8, 1, 3, (3, 1, 0, 2), (6, 2)),
    (4, 6, (2, 1), 1, (2, 1, 2, 1), (4, 4)),  # non-uniform factors: generic
    (6, 4, 2, 1, (2, 1, 2, 1), (4, 3)),      # non-square kernel
    (3, 3, 1, 1, (16, 15, 16, 15), (32, 32)),  # largest kernel the CUDA path takes
]


def _p2(v):
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_emulated_upfirdn2d_kernels(emu, dtype):
    rng = np.random.default_rng(11)
    paths = set()
    cases = [(c, fg) for c in EMU_FAST_CFGS for fg in (0, 1)] + [(c, 0) for c in EMU_GENERIC_CFGS]
    for (H, W, up, down, pad, (kh, kw)), force_generic in cases:
        up, down = _p2(up), _p2(down)
        x0 = rng.standard_normal((2, 3, H, W)).astype(dtype)
        f = rng.standard_normal((kh, kw)).astype(dtype)
        gain = 4.0 if (kh, kw) == (4, 4) and up == (1, 1) and down == (1, 1) else 1.3
        want = ufd._upfirdn2d_ref(torch.from_numpy(x0).double(), torch.from_numpy(f).double(),
                                  ufd._Cfg(*up, *down, *pad, gain)).numpy()
        for x_kind in ("nchw", "nhwc", "strided"):
            x = _layout(x0, x_kind)
            for out_kind, cl_map in (("nchw", 0), ("nhwc", 1), ("nchw", 1), ("nhwc", 0)):
                got, path = emu_upfirdn2d(emu, x, f, up, down, pad, gain, out_kind, cl_map, force_generic,
                                          force_idx64=int(cl_map == 1 and x_kind == "strided"))
                paths.add(path)
                assert not np.isnan(got).any(), "some outputs were never written"
                tol = 1e-12 if dtype == np.float64 else 2e-5
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol * 10,
                                           err_msg=f"H={H} W={W} up={up} down={down} pad={pad} k={kh}x{kw} "
                                                   f"x={x_kind} out={out_kind} cl={cl_map} path={path}")
    assert paths == {0, 1, 2, 3, 4, 5, 6}, paths


def test_emulated_upfirdn2d_random(emu):
    rng = np.random.default_rng(12)
    for _ in range(60):
        (H, W), up, down, pad, (kh, kw) = _random_cfg(rng)
        if rng.random() < 0.5:  # bias towards the specialised paths
            kh = kw = 4
            up, down = [((2, 2), (1, 1)), ((1, 1), (2, 2)), ((1, 1), (1, 1))][int(rng.integers(3))]
            H, W = H + 3, W + 3
        x = _layout(rng.standard_normal((2, 3, H, W)), ["nchw", "nhwc", "strided"][int(rng.integers(3))])
        f = rng.standard_normal((kh, kw))
        if H * up[1] + pad[2] + pad[3] < kh or W * up[0] + pad[0] + pad[1] < kw:
            continue
        want = ufd._upfirdn2d_ref(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(f),
                                  ufd._Cfg(*up, *down, *pad, 1.0)).numpy()
        got, _ = emu_upfirdn2d(emu, x, f, up, down, pad, cl_map=int(rng.integers(2)))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _aligned_view(a: np.ndarray, misalign: bool) -> np.ndarray:
    """Copy of a in a buffer that is 64-byte aligned, or deliberately one element off."""
    n = a.size
    buf = np.empty(n + 64, dtype=a.dtype)
    off = (-buf.ctypes.data % 64) // a.itemsize + (1 if misalign else 0)
    out = buf[off : off + n].reshape(a.shape)
    out[...] = a
    return out


# (shape, dim, storage) -> the kernel sees memory-order data with (inner, C)
BA_EMU_LAYOUTS = [
    ((2, 8, 4, 4), 1, "nchw"),
    ((2, 8, 4, 4), 1, "nhwc"),
    ((2, 6, 3, 3), 1, "nchw"),   # inner = 9: not a multiple of the vector width
    ((2, 6, 3, 3), 1, "nhwc"),   # C = 6: not a multiple of 4
    ((16, 12), 1, "nchw"),       # [N, C]: inner = 1
    ((4, 10, 3), 0, "nchw"),     # bias along dim 0
    ((3, 4, 8), 2, "nchw"),      # bias along the last dim
    ((7,), 0, "nchw"),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", BA_EMU_LAYOUTS, ids=lambda c: f"{c[0]}-dim{c[1]}-{c[2]}")
def test_emulated_bias_act_kernels(emu, dtype, layout):
    shape, dim, storage = layout
    rng = np.random.default_rng(5)
    x0 = (rng.standard_normal(shape) * 2).astype(dtype)
    b = rng.standard_normal(shape[dim]).astype(dtype)
    if storage == "nhwc":
        mem = np.ascontiguousarray(x0.transpose(0, 2, 3, 1))  # memory order N, H, W, C
        inner = 1
    else:
        mem = x0
        inner = int(np.prod(shape[dim + 1 :], dtype=np.int64))
    code = 1 if dtype == np.float64 else 0
    vecs = set()
    for act, acode in (("linear", 0), ("relu", 1), ("lrelu", 2)):
        for clamp in (None, 1.1):
            for use_b in (True, False):
                alpha, gain = (0.2, math.sqrt(2)) if act != "linear" else (0.0, 1.7)
                want = _numpy_bias_act(x0.astype(np.float64), b.astype(np.float64) if use_b else None, dim, act,
                                       alpha, gain, clamp)
                want_mem = want.transpose(0, 2, 3, 1) if storage == "nhwc" else want
                for misalign in (False, True):
                    for force_scalar, force64 in ((0, 0), (1, 0), (0, 1)):
                        xin = _aligned_view(mem, misalign)
                        y = _aligned_view(np.full(mem.shape, np.nan, dtype=dtype), misalign)
                        bb = _aligned_view(b, False) if use_b else None
                        vec = emu.toonlab_emu_bias_act(code, xin.ctypes.data, bb.ctypes.data if use_b else None,
                                                       y.ctypes.data, mem.size, inner, shape[dim], acode, alpha,
                                                       gain, -1.0 if clamp is None else clamp, force_scalar, force64)
                        vecs.add(vec)
                        tol = 1e-12 if dtype == np.float64 else 1e-5
                        np.testing.assert_allclose(y, want_mem, rtol=tol, atol=tol)
                        # grad: compare with the Python reference of the same formula
                        dy = _aligned_view(rng.standard_normal(mem.shape).astype(dtype), misalign)
                        dx = _aligned_view(np.full(mem.shape, np.nan, dtype=dtype), misalign)
                        yy = _aligned_view(y.copy(), misalign)
                        emu.toonlab_emu_bias_act_grad(code, dy.ctypes.data, yy.ctypes.data, dx.ctypes.data, mem.size,
                                                      acode, alpha, gain, -1.0 if clamp is None else clamp,
                                                      force_scalar, force64)
                        cfg = ba._Cfg(act, acode, alpha, gain, clamp, dim)
                        want_dx = ba._grad_ref(torch.from_numpy(dy.copy()), torch.from_numpy(yy.copy()), cfg).numpy()
                        np.testing.assert_allclose(dx, want_dx, rtol=tol, atol=tol)
    assert 1 in vecs
