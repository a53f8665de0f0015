"""The CPU fast paths of the ops (issue 14): each is checked against the simple formulation.

* upfirdn2d: `_upfirdn2d_ref` (transposed conv for up, strided conv for down) against the textbook
  `_upfirdn2d_simple` (zero insertion, full-size conv, subsampling); the default CPU path
  (impl='auto' with a gradient recorded) runs the autograd Function, whose first, second and
  third-order gradients must equal plain autograd through the simple version (float64
  gradcheck / gradgradcheck, odd sizes, up/down 2, pads and crops, channels_last inputs).
* bias_act: the Function on CPU (in-place forward, one-pass leaky-ReLU backward) against
  ``leaky_relu(x + b) * gain`` with plain autograd, same orders and layouts.
* LayerNorm2d's CPU path (group_norm) against its formula.
"""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ops
ufd = importlib.import_module("ops.upfirdn2d")  # the module (the package exports the function)

CL = torch.channels_last


def _cfg_list(rng: np.random.Generator, n: int):
    out = []
    while len(out) < n:
        H, W = int(rng.integers(1, 11)), int(rng.integers(1, 11))
        up = tuple(int(v) for v in rng.integers(1, 4, size=2))
        down = tuple(int(v) for v in rng.integers(1, 4, size=2))
        kh, kw = (int(v) for v in rng.integers(1, 6, size=2))
        pad = tuple(int(v) for v in rng.integers(-3, 5, size=4))
        if H * up[1] + pad[2] + pad[3] >= kh and W * up[0] + pad[0] + pad[1] >= kw:
            out.append(((H, W), up, down, pad, (kh, kw)))
    return out


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("seed", range(4))
def test_fast_ref_equals_simple(seed, layout):
    rng = np.random.default_rng(100 + seed)
    for (H, W), up, down, pad, (kh, kw) in _cfg_list(rng, 25):
        x = torch.from_numpy(rng.standard_normal((2, 3, H, W)))
        if layout == "channels_last":
            x = x.contiguous(memory_format=CL)
        f = torch.from_numpy(rng.standard_normal((kh, kw)))
        cfg = ufd._Cfg(*up, *down, *pad, 0.7)
        got = ufd._upfirdn2d_ref(x, f, cfg)
        want = ufd._upfirdn2d_simple(x.contiguous(), f, cfg)
        assert got.shape == want.shape, (H, W, up, down, pad, kh, kw)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# (x shape, up, down, pad, kernel) — StyleGAN's three uses at odd sizes, then odd everything.
CASES = [
    ((2, 3, 5, 7), 2, 1, (2, 1), "1331x4"),  # upsample2d
    ((2, 3, 7, 5), 1, 2, (1, 1), "1331"),  # downsample2d (odd input: remainders)
    ((1, 2, 5, 6), 1, 1, (2, 2), "1331"),  # blur after a transposed conv
    ((1, 2, 4, 5), (3, 2), (2, 3), (-1, 2, 1, -2), "rand35"),  # up and down at once, crops
    ((2, 1, 5, 3), 1, (3, 1), (0, 0, 2, 1), "rand22"),
    ((1, 2, 3, 3), 2, 2, (-2, 3, 3, -1), "rand43"),
]


def _case(kernel: str, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kernel.startswith("1331"):
        return ops.setup_filter([1, 3, 3, 1]).double() * (4 if kernel.endswith("x4") else 1)
    return torch.randn(int(kernel[-2]), int(kernel[-1]), dtype=torch.float64, generator=g)


def _ids(c):
    return f"{c[0][2]}x{c[0][3]}-up{c[1]}-down{c[2]}-pad{c[3]}-{c[4]}"


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_default_cpu_path_is_the_function_and_gradchecks(case, layout):
    shape, up, down, pad, kernel = case
    f = _case(kernel)
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    x.requires_grad_(True)
    y = ops.upfirdn2d(x, f, up=up, down=down, pad=pad)
    assert "UpFirDn2dFn" in type(y.grad_fn).__name__
    fn = lambda t: ops.upfirdn2d(t, f, up=up, down=down, pad=pad)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_function_gradients_equal_simple_autograd(case, layout):
    """Values and 1st/2nd/3rd-order gradients of the default CPU path = autograd through the simple op."""
    shape, up, down, pad, kernel = case
    f = _case(kernel, seed=2)
    upx, upy = (up, up) if isinstance(up, int) else up
    dx, dy = (down, down) if isinstance(down, int) else down
    p4 = ufd._pad4(pad)
    x0 = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    results = []
    for fast in (True, False):
        x = (x0.contiguous(memory_format=CL) if layout == "channels_last" else x0.clone()).requires_grad_(True)
        if fast:
            y = ops.upfirdn2d(x, f, up=up, down=down, pad=pad, gain=1.3)
        else:
            y = ufd._upfirdn2d_simple(x, f, ufd._Cfg(upx, upy, dx, dy, *p4, 1.3))
        w = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
        (g1,) = torch.autograd.grad((y * w).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad((g1**2 * x).sum(), x, create_graph=True)
        (g3,) = torch.autograd.grad((g2 * x.cos()).sum(), x)
        results.append((y, g1, g2, g3))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_explicit_ref_and_inference_skip_the_function(monkeypatch):
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    f = [1, 3, 3, 1]
    assert "UpFirDn2dFn" not in type(ops.upfirdn2d(x, f, pad=1, impl="ref").grad_fn).__name__
    with torch.no_grad():
        assert ops.upfirdn2d(x, f, pad=1).grad_fn is None
    monkeypatch.setenv("TOONLAB_OPS_IMPL", "ref")  # the environment's 'ref' means plain autograd too
    assert "UpFirDn2dFn" not in type(ops.upfirdn2d(x, f, pad=1).grad_fn).__name__


def test_stylegan_helpers_keep_layout_and_values():
    x = torch.randn(2, 8, 9, 9)
    for fn in (ops.upsample2d, ops.downsample2d, lambda t: ops.blur2d(t, pad=(2, 2))):
        a = fn(x)
        b = fn(x.contiguous(memory_format=CL))
        assert b.stride()[1] == 1  # NHWC strides kept (the up path's crop is a view of an NHWC tensor)
        torch.testing.assert_close(a, b.contiguous(), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# bias + activation
# ---------------------------------------------------------------------------------------------

BA_CASES = [
    # (shape, act, alpha, gain, clamp)
    ((2, 5, 3, 4), "lrelu", 0.2, math.sqrt(2), None),  # StyleGAN's fused_leaky_relu
    ((3, 7), "lrelu", 0.2, math.sqrt(2), None),  # after a linear layer
    ((2, 4, 5, 3), "relu", 0.0, 1.7, None),
    ((2, 4, 3, 3), "lrelu", 0.1, 1.0, 0.8),
    ((2, 3, 4, 2), "linear", 0.0, 0.5, None),
    ((2, 3, 4, 2), "linear", 0.0, 1.0, 0.5),
]


def _plain(x, b, act, alpha, gain, clamp):
    y = x + b.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])
    y = {"lrelu": lambda t: F.leaky_relu(t, alpha), "relu": F.relu, "linear": lambda t: t}[act](y) * gain
    return y.clamp(-clamp, clamp) if clamp is not None else y


def _ba_inputs(shape, layout, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, dtype=torch.float64, generator=g)
    x = x + 0.05 * torch.sign(x)  # keep away from the kink, where finite differences lie
    if layout == "channels_last" and x.ndim == 4:
        x = x.contiguous(memory_format=CL)
    b = torch.randn(shape[1], dtype=torch.float64, generator=g) * 0.01
    return x.requires_grad_(True), b.requires_grad_(True)


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", BA_CASES, ids=lambda c: f"{c[1]}-{len(c[0])}d-clamp{c[4]}")
def test_bias_act_cpu_function_gradchecks(case, layout):
    shape, act, alpha, gain, clamp = case
    x, b = _ba_inputs(shape, layout)
    y = ops.bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp)
    assert "BiasActFn" in type(y.grad_fn).__name__
    fn = lambda t, c: ops.bias_act(t, c, act=act, alpha=alpha, gain=gain, clamp=clamp)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("case", BA_CASES, ids=lambda c: f"{c[1]}-{len(c[0])}d-clamp{c[4]}")
def test_bias_act_cpu_function_equals_plain_autograd(case, layout):
    shape, act, alpha, gain, clamp = case
    res = []
    for fast in (True, False):
        x, b = _ba_inputs(shape, layout, seed=4)
        y = ops.bias_act(x, b, act=act, alpha=alpha, gain=gain, clamp=clamp) if fast else _plain(x, b, act, alpha, gain, clamp)
        w = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
        gx, gb = torch.autograd.grad((y * w).sum(), (x, b), create_graph=True)
        loss2 = (gx.square() * x).sum() + (gb.square()).sum() * 0.3
        g2 = torch.autograd.grad(loss2, (x, b), allow_unused=True)
        g2 = [t if t is not None else torch.zeros_like(v) for t, v in zip(g2, (x, b))]
        res.append((y, gx, gb, *g2))
    for a, c in zip(*res):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


def test_bias_act_cpu_inference_and_inputs_untouched():
    x = torch.randn(2, 6, 4, 4)
    b = torch.randn(6)
    x0 = x.clone()
    with torch.no_grad():
        y = ops.fused_leaky_relu(x, b)
    assert y.grad_fn is None
    torch.testing.assert_close(x, x0, rtol=0, atol=0)  # the in-place passes work on a new tensor
    torch.testing.assert_close(y, F.leaky_relu(x + b.reshape(1, -1, 1, 1), 0.2) * math.sqrt(2), rtol=0, atol=0)
    # only the bias needs a gradient (a frozen input): the Function still gives db
    bb = b.clone().requires_grad_(True)
    y = ops.fused_leaky_relu(x, bb)
    y.sum().backward()
    want = ((x + b.reshape(1, -1, 1, 1)) > 0).float().mul(1 - 0.2).add(0.2).mul(math.sqrt(2)).sum((0, 2, 3))
    torch.testing.assert_close(bb.grad, want)


# ---------------------------------------------------------------------------------------------
# AnimeGAN's LayerNorm2d on the CPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
def test_layernorm2d_cpu_path_matches_formula(layout):
    from translation.animegan import LayerNorm2d

    torch.manual_seed(0)
    m = LayerNorm2d(5)
    with torch.no_grad():
        m.weight.normal_(1, 0.3)
        m.bias.normal_(0, 0.3)
    x = torch.randn(3, 5, 6, 7) * 3 + 1
    if layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = (x - mean).square().mean(dim=(1, 2, 3), keepdim=True)
    want = (x - mean) * torch.rsqrt(var + m.eps) * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)
    xb = x.to(torch.bfloat16)
    assert m(xb).dtype == torch.bfloat16


def test_generator_image_is_nchw_on_cpu():
    from tests.conftest import tiny_generator

    G = tiny_generator(16)
    img, _ = G([torch.randn(2, G.style_dim)])
    assert img.is_contiguous()


def test_animegan_cpu_inference_layout_and_translator_default():
    from translation.animegan import AnimeGANv2Generator
    from translation.fused import FusedGroupNorm1
    from translation.inference import Translator

    torch.manual_seed(0)
    G = AnimeGANv2Generator(lite=True).eval()
    x = torch.rand(1, 3, 72, 68) * 2 - 1  # above the Translator's minimum side: no padding
    want = G(x).detach()  # grad mode: the NCHW path
    with torch.inference_mode():
        got = G(x)  # the CPU inference path runs NHWC and hands back NCHW
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    tr = Translator(G, device="cpu", precision="fp32")
    assert tr.fuse is False and not any(isinstance(m, FusedGroupNorm1) for m in tr.G.modules())
    assert Translator(G, device="cpu", precision="fp32", fuse=True).fuse is True
    torch.testing.assert_close(tr(x), want, rtol=1e-4, atol=1e-5)


def _count_convs(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in ("aten::convolution", "aten::convolution_backward"))


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (1, 2, (1, 1)), (1, 1, (2, 2))])
def test_r1_style_double_backward_cost_does_not_grow_with_channels(up, down, pad):
    """The regression behind issue 14's 2.9x: autograd's conv double backward computed the filter's
    gradient per channel group (one conv per channel). Through the Function the number of conv
    calls of grad(create_graph) + backward is a small constant, whatever the channel count."""
    f = ops.setup_filter([1, 3, 3, 1]) * (4 if up > 1 else 1)

    def r1_like(channels: int, impl: str):
        x = torch.randn(2, channels, 8, 8, requires_grad=True)

        def run():
            y = ops.upfirdn2d(x, f, up=up, down=down, pad=pad, impl=impl)
            (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
            g.square().sum().backward()

        return run

    fast = [_count_convs(r1_like(c, "auto")) for c in (4, 64)]
    assert fast[0] == fast[1] <= 8, fast
    plain = _count_convs(r1_like(64, "ref"))  # plain autograd, for contrast: what the Function avoids
    assert plain >= fast[1], (plain, fast)
