"""CUDA kernels of ops/ vs the PyTorch reference (needs a GPU; skipped otherwise).

Run with ``pytest tests/test_ops_cuda.py -rs``; on a machine without CUDA every test is
reported as skipped with the reason "needs a CUDA GPU".  The first test run compiles the two
extensions (about 1-2 minutes, cached afterwards under ${TOONLAB_CACHE:-~/.cache/toonlab}).

Set TOONLAB_SKIP_LARGE=1 to skip the > 2^31-element tests (they need up to ~20 GB of GPU memory).
"""

from __future__ import annotations

import importlib
import math
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import ops  # noqa: E402

ufd = importlib.import_module("ops.upfirdn2d")
ba = importlib.import_module("ops.bias_act")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

DEV = "cuda"
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
# (rtol, atol) of a CUDA result in `dtype` against the float64 reference of the same input
TOL = {
    torch.float64: (1e-10, 1e-10),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}


@pytest.fixture(scope="module", autouse=True)
def _extensions_built():
    """The kernels must build on a CUDA machine: a failed build is a test failure, not a skip."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("TOONLAB_OPS_IMPL", raising=False)  # 'auto' tests must see the default choice
        assert ufd._plugin() is not None, ops.cuda_status()["upfirdn2d"]
        assert ba._plugin() is not None, ops.cuda_status()["bias_act"]
        st = ops.cuda_status()
        assert st["upfirdn2d"]["state"] == "built" and st["bias_act"]["state"] == "built", st
        yield


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, scale: float = 1.0, msg: str = ""):
    """Compare with a tolerance for `dtype`; atol also scales with the magnitude of `want`."""
    rtol, atol = TOL[dtype]
    got, want = got.detach(), want.detach()
    assert got.shape == want.shape, (got.shape, want.shape, msg)
    mag = float(want.double().abs().max()) if want.numel() else 1.0
    torch.testing.assert_close(got.double(), want.double(), rtol=rtol, atol=atol * scale * max(1.0, mag),
                               msg=lambda m: f"{msg}\n{m}")


def _layout(x: torch.Tensor, kind: str) -> torch.Tensor:
    """Same values, different storage: contiguous, channels_last, strided view, broadcast (stride 0)."""
    if kind == "contiguous":
        return x.contiguous()
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "strided":  # sliced + transposed view: every stride unusual
        N, C, H, W = x.shape
        big = torch.zeros(N, 2 * C, W, 3 * H, dtype=x.dtype, device=x.device)
        view = big[:, ::2, :, 1::3].transpose(2, 3)
        view.copy_(x)
        assert not view.is_contiguous() and not view.is_contiguous(memory_format=torch.channels_last)
        return view
    if kind == "expanded":  # stride 0 along N
        return x[:1].expand_as(x)
    raise ValueError(kind)


# =============================================================================================
# upfirdn2d
# =============================================================================================

# name: (kernel, up, down, pad, gain)
STYLEGAN_CFGS = {
    "upsample2d": ([1, 3, 3, 1], 2, 1, (2, 1), 4.0),
    "downsample2d": ([1, 3, 3, 1], 1, 2, (1, 1), 1.0),
    "blur": ([1, 3, 3, 1], 1, 1, (1, 1), 1.0),
    "blur_after_convT": ([1, 3, 3, 1], 1, 1, (1, 1), 4.0),
}
# Every phase of the specialised up-2 kernel, crops, remainders, and the generic kernel.
EXTRA_CFGS = {
    "up2_pad12": ([1, 3, 3, 1], 2, 1, (1, 2), 4.0),
    "up2_pad22": ([1, 3, 3, 1], 2, 1, (2, 2, 1, 1), 4.0),
    "up2_pad30": ([1, 3, 3, 1], 2, 1, (3, 0, 0, 3), 4.0),
    "up2_crop": ([1, 3, 3, 1], 2, 1, (-1, 2, 2, -3), 4.0),
    "down2_pad01": ([1, 3, 3, 1], 1, 2, (0, 1), 1.0),
    "down2_crop": ([1, 3, 3, 1], 1, 2, (-1, 2, 2, -1), 1.0),
    "blur_same": ([1, 3, 3, 1], 1, 1, (2, 1), 1.0),
    "blur_crop": ([1, 3, 3, 1], 1, 1, (-1, 0, 0, -1), 1.0),
    "rand4x4_up2": ("rand4x4", 2, 1, (2, 1), 1.0),  # non-symmetric kernel: catches flips
    "generic_up3_k5": ("rand5x5", 3, 1, (2, 2), 1.0),
    "generic_down3_k3": ("rand3x3", 1, 3, (1, 1), 1.0),
    "generic_up2_down2": ([1, 3, 3, 1], 2, 2, (2, 1), 1.0),
    "generic_nonsquare": ("rand3x5", (2, 3), (3, 2), (-1, 2, 1, -2), 1.3),
    "generic_k1": ([[2.0]], 1, 1, 0, 1.0),
    "generic_k32": ("rand32x32", 1, 1, (16, 15), 1.0),
    "generic_1d_k2": ([1, 1], 2, 1, (0, 0), 1.0),
}
ALL_CFGS = {**STYLEGAN_CFGS, **EXTRA_CFGS}


def _filter(spec, seed=0):
    if isinstance(spec, str) and spec.startswith("rand"):
        kh, kw = (int(v) for v in spec[4:].split("x"))
        g = torch.Generator().manual_seed(seed)
        return torch.randn(kh, kw, generator=g, dtype=torch.float64).to(DEV)
    f = torch.as_tensor(spec, dtype=torch.float64)
    if f.ndim == 1:
        f = torch.outer(f, f)
        f = f / f.sum()
    return f.to(DEV)


def _run(x, cfg_name, impl, **kw):
    spec, up, down, pad, gain = ALL_CFGS[cfg_name]
    return ops.upfirdn2d(x, _filter(spec), up=up, down=down, pad=pad, gain=gain, impl=impl, **kw)


def _ref64(x, cfg_name):
    return _run(x.double().contiguous(), cfg_name, "ref")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", list(ALL_CFGS))
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (3, 16, 16, 16), (1, 5, 1, 2)], ids=str)
def test_upfirdn2d_forward(cfg, dtype, shape):
    spec, up, down, pad, gain = ALL_CFGS[cfg]
    torch.manual_seed(0)
    x0 = torch.randn(*shape, device=DEV).to(dtype)
    try:
        want = _ref64(x0, cfg)
    except ValueError:
        pytest.skip("configuration invalid for this (tiny) shape")
    for kind in ("contiguous", "channels_last", "strided", "expanded"):
        x = _layout(x0, kind)
        y = _run(x, cfg, "cuda")
        assert y.dtype == dtype
        if kind == "channels_last" and shape[1] > 1 and min(shape[2:]) > 1 and min(y.shape[2:]) > 1:
            assert y.is_contiguous(memory_format=torch.channels_last)
        if kind == "expanded":
            want_k = _ref64(x, cfg)
        else:
            want_k = want
        _close(y, want_k, dtype, scale=max(1.0, gain), msg=f"{cfg} {kind}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("cfg", list(STYLEGAN_CFGS) + ["up2_pad12", "up2_crop", "down2_crop", "blur_crop"])
def test_fast_kernels_match_generic_kernel(cfg, dtype):
    """The specialised kernels and the generic one compute the same sums (up to rounding)."""
    spec, up, down, pad, gain = ALL_CFGS[cfg]
    torch.manual_seed(1)
    x = torch.randn(2, 8, 19, 21, device=DEV).to(dtype)
    f = _filter(spec).float()
    px0, px1, py0, py1 = ufd._pad4(pad)
    ext = ufd._plugin()
    for xx in (x, x.contiguous(memory_format=torch.channels_last)):
        fast = ext.upfirdn2d(xx, f, up, up, down, down, px0, px1, py0, py1, gain)
        generic = ext.upfirdn2d(xx, f, up, up, down, down, px0, px1, py0, py1, gain, force_generic=True)
        _close(fast, generic.double(), dtype, scale=max(1.0, gain))


def _grads_cuda_vs_ref(x0, fn_cuda, fn_ref, dtype, scale):
    """Compare y, dx, d(dx)/d(dy) and an R1-style second derivative between the two paths."""
    out = []
    for fn, xin in ((fn_cuda, x0), (fn_ref, x0.double().contiguous())):
        x = xin.detach().clone().requires_grad_(True)
        y = fn(x)
        g = torch.Generator(device=DEV).manual_seed(5)
        dy = torch.randn(y.shape, generator=g, device=DEV, dtype=torch.float64).to(y.dtype).requires_grad_(True)
        (dx,) = torch.autograd.grad(y, x, dy, create_graph=True)
        v = torch.randn(dx.shape, generator=g, device=DEV, dtype=torch.float64).to(dx.dtype)
        (ddy,) = torch.autograd.grad(dx, dy, v, create_graph=True)  # the forward op applied to v
        # R1-like: penalty on the gradient of a nonlinear function of the op's output
        x2 = xin.detach().clone().requires_grad_(True)
        s = fn(x2).float().tanh().sum() if xin.dtype != torch.float64 else fn(x2).tanh().sum()
        (gx,) = torch.autograd.grad(s, x2, create_graph=True)
        (r1,) = torch.autograd.grad(gx.square().sum(), x2)
        out.append((y, dx, ddy, gx, r1))
    for name, a, b in zip(("y", "dx", "ddy", "gx", "r1"), *out):
        _close(a, b, dtype, scale=scale * (8 if name == "r1" else 1), msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cfg", list(STYLEGAN_CFGS) + ["up2_pad12", "down2_crop", "generic_nonsquare", "rand4x4_up2"])
@pytest.mark.parametrize("kind", ["contiguous", "channels_last", "strided"])
def test_upfirdn2d_backward_and_double_backward(cfg, dtype, kind):
    torch.manual_seed(2)
    x0 = _layout(torch.randn(2, 4, 12, 10, device=DEV).to(dtype), kind)
    gain = ALL_CFGS[cfg][4]
    _grads_cuda_vs_ref(x0, lambda t: _run(t, cfg, "cuda"), lambda t: _run(t, cfg, "ref"), dtype, max(1.0, gain**2))


@pytest.mark.parametrize("cfg", list(STYLEGAN_CFGS) + ["up2_crop", "generic_nonsquare", "generic_up2_down2"])
def test_upfirdn2d_gradcheck_cuda_float64(cfg):
    torch.manual_seed(3)
    for kind in ("contiguous", "channels_last"):
        x = _layout(torch.randn(1, 2, 5, 6, device=DEV, dtype=torch.float64), kind).requires_grad_(True)

        def fn(t):
            return _run(t, cfg, "cuda")

        assert "UpFirDn2dFn" in type(fn(x).grad_fn).__name__
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("res,ch", [(32, 512), (128, 256), (256, 128)])
def test_stylegan_shapes(res, ch):
    """The benchmark's shapes (batch 4 here to keep memory small), fp32 and fp16, both layouts."""
    for dtype in (torch.float32, torch.float16):
        torch.manual_seed(4)
        x0 = torch.randn(4, ch, res, res, device=DEV).to(dtype)
        for kind in ("contiguous", "channels_last"):
            x = _layout(x0, kind)
            for name, fn in (
                ("up", lambda t, i: ops.upsample2d(t, impl=i)),
                ("down", lambda t, i: ops.downsample2d(t, impl=i)),
                ("blur", lambda t, i: ops.blur2d(t, [1, 3, 3, 1], pad=(1, 1), impl=i)),
                ("blur4", lambda t, i: ops.blur2d(t, [1, 3, 3, 1], pad=(1, 1), gain=4, impl=i)),
            ):
                y = fn(x, "cuda")
                want = fn(x.double().contiguous(), "ref")
                _close(y, want, dtype, scale=4.0, msg=f"{name} {kind} {dtype}")


def test_helpers_use_cuda_by_default():
    x = torch.randn(2, 3, 8, 8, device=DEV, requires_grad=True)
    for y in (ops.upsample2d(x), ops.downsample2d(x), ops.blur2d(x, pad=(1, 1)), ops.upfirdn2d(x, [1, 2, 1], pad=1)):
        assert "UpFirDn2dFn" in type(y.grad_fn).__name__
    assert ops.upsample2d(x).shape == (2, 3, 16, 16)
    assert ops.downsample2d(x).shape == (2, 3, 4, 4)


def test_env_ref_override_on_gpu(monkeypatch):
    x = torch.randn(2, 3, 8, 8, device=DEV, requires_grad=True)
    monkeypatch.setenv("TOONLAB_OPS_IMPL", "ref")
    y = ops.upsample2d(x)
    assert "UpFirDn2dFn" not in type(y.grad_fn).__name__
    z = ops.bias_act(x, act="lrelu")
    assert "BiasActFn" not in type(z.grad_fn).__name__
    # an explicit impl beats the environment
    assert "UpFirDn2dFn" in type(ops.upsample2d(x, impl="cuda").grad_fn).__name__


def test_large_filter_falls_back_in_auto_and_raises_in_cuda():
    x = torch.randn(1, 2, 40, 40, device=DEV)
    f = torch.ones(33, 33, device=DEV) / 33**2
    y = ops.upfirdn2d(x, f, pad=16)  # auto: reference
    torch.testing.assert_close(y, ops.upfirdn2d(x, f, pad=16, impl="ref"))
    with pytest.raises(RuntimeError, match="does not support"):
        ops.upfirdn2d(x, f, pad=16, impl="cuda")


def test_upfirdn2d_on_side_stream():
    x = torch.randn(8, 64, 64, 64, device=DEV)
    want = ops.upsample2d(x, impl="ref")
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = ops.upsample2d(x, impl="cuda")
    torch.cuda.current_stream().wait_stream(s)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-5)


def test_upfirdn2d_extension_checks():
    ext = ufd._plugin()
    x = torch.randn(1, 1, 8, 8, device=DEV)
    f = torch.ones(4, 4, device=DEV)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        ext.upfirdn2d(x.cpu(), f.cpu(), 1, 1, 1, 1, 0, 0, 0, 0, 1.0)
    with pytest.raises(RuntimeError, match="f must be"):
        ext.upfirdn2d(x, f.double(), 1, 1, 1, 1, 0, 0, 0, 0, 1.0)
    with pytest.raises(RuntimeError, match="smaller than the filter"):
        ext.upfirdn2d(x, f, 1, 1, 1, 1, -3, -3, 0, 0, 1.0)
    with pytest.raises(RuntimeError, match="4-D"):
        ext.upfirdn2d(x[0], f, 1, 1, 1, 1, 0, 0, 0, 0, 1.0)
    assert ext.upfirdn2d(x[:0], f, 1, 1, 1, 1, 0, 0, 0, 0, 1.0).shape == (0, 1, 5, 5)


def _large_ok(gib: float) -> bool:
    if os.environ.get("TOONLAB_SKIP_LARGE"):
        return False
    free, _ = torch.cuda.mem_get_info()
    return free > gib * 2**30


def test_upfirdn2d_large_tensor_64bit_offsets():
    """> 2^31 input elements: 64-bit offsets in the specialised kernel."""
    if not _large_ok(12):
        pytest.skip("needs ~12 GB free GPU memory (or TOONLAB_SKIP_LARGE is set)")
    x = torch.randn(1, 4, 32768, 16400, device=DEV, dtype=torch.float16)  # 2.15e9 elements
    assert x.numel() > 2**31
    y = ops.downsample2d(x, impl="cuda")
    for c in (0, 3):  # check the first and the last plane against the reference
        want = ops.downsample2d(x[:, c : c + 1].float(), impl="ref")
        _close(y[:, c : c + 1], want.double(), torch.float16)
    del x, y
    torch.cuda.empty_cache()


def test_upfirdn2d_large_tensor_generic_64bit_decode():
    """> 2^31 output elements through the generic kernel: 64-bit work-index decoding."""
    if not _large_ok(10):
        pytest.skip("needs ~10 GB free GPU memory (or TOONLAB_SKIP_LARGE is set)")
    x = torch.randn(2, 8, 16384, 8200, device=DEV, dtype=torch.float16)
    f = torch.tensor([1.0, 2.0, 1.0], device=DEV)
    y = ops.upfirdn2d(x, f / f.sum(), pad=1, impl="cuda")  # 3x3: generic kernel, same size
    assert y.numel() > 2**31
    for n, c in ((0, 0), (1, 7)):
        want = ops.upfirdn2d(x[n : n + 1, c : c + 1].float(), f / f.sum(), pad=1, impl="ref")
        _close(y[n : n + 1, c : c + 1], want.double(), torch.float16)
    del x, y
    torch.cuda.empty_cache()


# =============================================================================================
# bias_act
# =============================================================================================

# (shape, dim, layout)
BA_LAYOUTS = [
    ((4, 64, 16, 16), 1, "contiguous"),
    ((4, 64, 16, 16), 1, "channels_last"),
    ((3, 6, 5, 7), 1, "contiguous"),      # inner = 35, numel not a multiple of the vector width
    ((3, 6, 5, 7), 1, "channels_last"),   # C = 6
    ((3, 6, 5, 7), 1, "strided"),         # made contiguous by the binding
    ((32, 512), 1, "contiguous"),         # mapping-network shape: inner = 1
    ((5, 24, 9), 0, "contiguous"),
    ((5, 24, 9), 2, "contiguous"),
    ((7,), 0, "contiguous"),
    ((4, 64, 16, 16), 1, "misaligned"),   # storage offset breaks 16-byte alignment: scalar path
    ((4, 64, 16, 16), 3, "channels_last"),
]


def _ba_input(shape, layout, dtype, seed=0):
    g = torch.Generator(device=DEV).manual_seed(seed)
    x = (torch.randn(shape, generator=g, device=DEV) * 2).to(dtype)
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "misaligned":
        buf = torch.empty(x.numel() + 1, device=DEV, dtype=dtype)
        out = buf[1:].view(shape)
        out.copy_(x)
        return out
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", BA_LAYOUTS, ids=lambda c: f"{c[0]}-dim{c[1]}-{c[2]}")
@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
def test_bias_act_forward(act, layout, dtype):
    shape, dim, kind = layout
    x = _ba_input(shape, kind, dtype)
    b = torch.randn(shape[dim], device=DEV).to(dtype)
    for bias in (b, None):
        for gain, clamp, alpha in ((None, None, None), (0.7, 1.5, 0.1), (2.0, 256.0, None)):
            y = ops.bias_act(x, bias, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl="cuda")
            want = ops.bias_act(x.double(), None if bias is None else bias.double(), dim=dim, act=act, alpha=alpha,
                                gain=gain, clamp=clamp, impl="ref")
            assert y.dtype == dtype
            if kind == "channels_last" and dim == 1:
                assert y.is_contiguous(memory_format=torch.channels_last)
            _close(y, want, dtype, scale=4.0, msg=f"{act} gain={gain} clamp={clamp} bias={bias is not None}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layout", BA_LAYOUTS, ids=lambda c: f"{c[0]}-dim{c[1]}-{c[2]}")
@pytest.mark.parametrize("act,clamp", [("linear", None), ("linear", 1.0), ("relu", None), ("lrelu", None),
                                       ("lrelu", 1.0)])
def test_bias_act_backward_and_double_backward(act, clamp, layout, dtype):
    shape, dim, kind = layout
    names = ("y", "dx", "ddy", "gx", "r1x", "db", "gb", "r1b")
    out = []
    for impl in ("cuda", "ref"):
        x = _ba_input(shape, kind, dtype, seed=1)
        b = torch.randn(shape[dim], device=DEV, generator=torch.Generator(device=DEV).manual_seed(2)).to(dtype)
        if impl == "ref":
            x, b = x.double(), b.double()
        x = x.detach().requires_grad_(True)
        b = b.detach().requires_grad_(True)
        y = ops.bias_act(x, b, dim=dim, act=act, clamp=clamp, impl=impl)
        g = torch.Generator(device=DEV).manual_seed(3)
        dy = torch.randn(y.shape, generator=g, device=DEV).to(y.dtype).requires_grad_(True)
        dx, db = torch.autograd.grad(y, (x, b), dy, create_graph=True)
        v = torch.randn(dx.shape, generator=g, device=DEV).to(dx.dtype)
        (ddy,) = torch.autograd.grad(dx, dy, v, create_graph=True)
        # second derivative through the gradient (R1-style): d/dx sum((d/dx sum(y^2))^2)
        s = (ops.bias_act(x, b, dim=dim, act=act, clamp=clamp, impl=impl).double() ** 2).sum()
        gx, gb = torch.autograd.grad(s, (x, b), create_graph=True)
        r1x, r1b = torch.autograd.grad((gx.double() ** 2).sum(), (x, b))
        out.append(dict(zip(names, (y, dx, ddy, gx, r1x, db, gb, r1b))))
    got, want = out
    n = max(1, math.prod(shape) // shape[dim])
    other_dims = [d for d in range(len(shape)) if d != dim]
    low = dtype in (torch.float16, torch.bfloat16)
    kinks = clamp is not None or act != "linear"
    for name in names:
        a, c = got[name].detach().double(), want[name].detach().double()
        assert a.shape == c.shape, name
        if name in ("db", "gb", "r1b"):  # bias grads: sums over n elements of the matching x grads
            if low:
                if name == "r1b":
                    continue  # sums of ~n^2-sized terms: overflows fp16 whatever the kernel does
                terms = want[{"db": "dx", "gb": "gx"}[name]].double().abs()
                # rounding of n terms, plus (with kinks) a few terms that flipped side (see below)
                allow = 3 * TOL[dtype][0] * terms.sum(other_dims) + 1e-3
                if kinks:
                    allow = allow + 2 * max(2, 0.02 * n) * terms.amax(other_dims)
                assert ((a - c).abs() <= allow).all(), (name, (a - c).abs().max(), allow.min())
            else:
                _close(a, c, dtype, scale=4.0 * n, msg=name)
        elif low and kinks:
            # inputs rounded to fp16/bf16 may land on the other side of a kink or of the clamp:
            # allow a few elements to differ, the rest must match closely
            rtol, atol = TOL[dtype]
            mag = max(1.0, float(c.abs().max()))
            mism = (a - c).abs() > 4 * (atol * mag + rtol * c.abs())
            assert int(mism.sum()) <= max(2, 0.02 * c.numel()), (name, int(mism.sum()), c.numel())
        else:
            _close(a, c, dtype, scale=4.0, msg=name)


@pytest.mark.parametrize("act,clamp", [("linear", None), ("linear", 0.8), ("relu", None), ("lrelu", None),
                                       ("lrelu", 0.8)])
@pytest.mark.parametrize("layout", [((2, 4, 3, 5), 1, "contiguous"), ((2, 4, 3, 5), 1, "channels_last"),
                                    ((6, 4), 1, "contiguous"), ((3, 4, 5), 2, "contiguous")], ids=str)
def test_bias_act_gradcheck_cuda_float64(act, clamp, layout):
    shape, dim, kind = layout
    x = _ba_input(shape, kind, torch.float64, seed=4).requires_grad_(True)
    b = torch.randn(shape[dim], device=DEV, dtype=torch.float64).requires_grad_(True)

    def fn(xx, bb):
        return ops.bias_act(xx, bb, dim=dim, act=act, clamp=clamp, impl="cuda")

    assert "BiasActFn" in type(fn(x, b).grad_fn).__name__
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_bias_act_kink_and_clamp_gradients():
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0], device=DEV).reshape(1, 4).requires_grad_(True)
    y = ops.bias_act(x, None, act="lrelu", gain=1.0, clamp=2.0, impl="cuda")
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.tensor([[0.2, 0.2, 1.0, 0.0]], device=DEV))
    y = ops.bias_act(x, None, act="relu", gain=1.0, impl="cuda")
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=DEV))


@pytest.mark.parametrize("shape", [(16, 512), (4, 32, 8, 8)], ids=str)
def test_fused_leaky_relu_cuda(shape):
    x = torch.randn(shape, device=DEV, requires_grad=True)
    b = torch.randn(shape[1], device=DEV, requires_grad=True)
    y = ops.fused_leaky_relu(x, b)
    assert "BiasActFn" in type(y.grad_fn).__name__
    bb = b.reshape([1, -1] + [1] * (len(shape) - 2))
    want = torch.nn.functional.leaky_relu(x + bb, 0.2) * 2**0.5
    torch.testing.assert_close(y, want)
    gx, gb = torch.autograd.grad(y.sum(), (x, b))
    wx, wb = torch.autograd.grad(want.sum(), (x, b))
    torch.testing.assert_close(gx, wx)
    torch.testing.assert_close(gb, wb, rtol=1e-4, atol=1e-4)


def test_bias_act_reference_only_acts_fall_back():
    x = torch.randn(4, 8, device=DEV, requires_grad=True)
    y = ops.bias_act(x, act="tanh")  # auto: no kernel for tanh -> reference, no error
    torch.testing.assert_close(y, torch.tanh(x))
    with pytest.raises(RuntimeError, match="does not support"):
        ops.bias_act(x, act="tanh", impl="cuda")
    # negative gain: the y-based grad would be wrong, so auto takes the reference
    y = ops.bias_act(x, act="lrelu", gain=-1.0)
    assert "BiasActFn" not in type(y.grad_fn).__name__


def test_bias_act_extension_checks():
    ext = ba._plugin()
    x = torch.randn(2, 3, device=DEV)
    with pytest.raises(RuntimeError, match="CUDA tensor"):
        ext.bias_act(x.cpu(), None, 1, 0, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="1-D of size"):
        ext.bias_act(x, torch.zeros(4, device=DEV), 1, 0, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="dtype"):
        ext.bias_act(x, torch.zeros(3, device=DEV, dtype=torch.float64), 1, 0, 0.0, 1.0, -1.0)
    with pytest.raises(RuntimeError, match="gain > 0"):
        ext.bias_act(x, None, 1, 2, 0.2, -1.0, -1.0)
    assert ext.bias_act(x[:0], None, 1, 2, 0.2, 1.0, -1.0).shape == (0, 3)


def test_bias_act_grad_with_broadcast_dy():
    """dy from .sum()/.mean() backward is an expanded (stride 0) tensor: must be handled."""
    x = torch.randn(4, 8, 6, 6, device=DEV).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    b = torch.randn(8, device=DEV, requires_grad=True)
    y = ops.bias_act(x, b, act="lrelu", impl="cuda")
    gx, gb = torch.autograd.grad(y.mean(), (x, b))
    xr, br = x.detach().double().requires_grad_(True), b.detach().double().requires_grad_(True)
    yr = ops.bias_act(xr, br, act="lrelu", impl="ref")
    wx, wb = torch.autograd.grad(yr.mean(), (xr, br))
    _close(gx, wx, torch.float32)
    _close(gb, wb, torch.float32)


def test_bias_act_large_tensor_64bit_index():
    """numel > 2^31: the 64-bit index path of both kernels."""
    if not _large_ok(20):
        pytest.skip("needs ~20 GB free GPU memory (or TOONLAB_SKIP_LARGE is set)")
    C = 64
    x = torch.randn(2**31 // (C * 1024) + 1, C, 1024, device=DEV, dtype=torch.float16)
    assert x.numel() > 2**31
    b = torch.randn(C, device=DEV, dtype=torch.float16)
    y = ops.bias_act(x, b, act="lrelu", clamp=2.0, impl="cuda")
    for sl in (slice(0, 2), slice(x.shape[0] - 2, x.shape[0])):
        want = ops.bias_act(x[sl].double(), b.double(), act="lrelu", clamp=2.0, impl="ref")
        _close(y[sl], want, torch.float16, scale=4.0)
    dx = ba._plugin().bias_act_grad(torch.ones_like(y), y, 2, 0.2, math.sqrt(2), 2.0)
    for sl in (slice(0, 2), slice(x.shape[0] - 2, x.shape[0])):
        want = ba._grad_ref(torch.ones_like(y[sl]), y[sl], ba._Cfg("lrelu", 2, 0.2, math.sqrt(2), 2.0, 1))
        _close(dx[sl], want.double(), torch.float16)
    del x, y, dx
    torch.cuda.empty_cache()
