"""Tests for stylegan2/augment.py: ADA augmentation pipeline and the adaptive-p controller."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from losses import r1_penalty
from stylegan2.augment import (
    P_MAX,
    AdaController,
    AdaptiveAugment,
    _affine_resample,
    _apply_colour_matrix,
    _blit,
    _colour_matrix,
    _geometric_inverse_matrix,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _images(n: int = 4, c: int = 3, h: int = 16, w: int = 16, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # Smooth-ish content in [-1, 1] so geometric changes are visible but bounded.
    return (torch.rand(n, c, h, w) * 2 - 1).to(dtype)


# --------------------------------------------------------------------------------------------
# AdaptiveAugment: behaviour
# --------------------------------------------------------------------------------------------


def test_p0_is_exact_identity() -> None:
    x = _images()
    aug = AdaptiveAugment(p=0.0)
    y = aug(x)
    assert y is x and torch.equal(y, x)
    xg = x.clone().requires_grad_(True)
    assert aug(xg) is xg


def test_p_validation() -> None:
    with pytest.raises(ValueError):
        AdaptiveAugment(p=1.5)
    aug = AdaptiveAugment()
    aug.p = 0.25
    assert aug.p == 0.25 and "p=0.2500" in repr(aug)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_p1_changes_images_keeps_shape_dtype_range(dtype: torch.dtype) -> None:
    x = _images(8, dtype=dtype)
    y = AdaptiveAugment(p=1.0)(x)
    assert y.shape == x.shape and y.dtype == dtype
    assert torch.isfinite(y.float()).all()
    for i in range(x.shape[0]):
        assert not torch.equal(y[i], x[i])
    # Colour ops can push values outside [-1, 1], but only by a bounded factor.
    assert y.float().abs().max() < 8.0
    assert 0.05 < y.float().std() < 3.0


def test_bf16_matches_fp32_with_same_seed() -> None:
    x = _images(4)
    aug = AdaptiveAugment(p=1.0)
    torch.manual_seed(5)
    y32 = aug(x)
    torch.manual_seed(5)
    y16 = aug(x.bfloat16())
    # Same transform (params are drawn in fp32 either way); only bf16 rounding differs.
    torch.testing.assert_close(y16.float(), y32, rtol=0.05, atol=0.05)


def test_under_autocast() -> None:
    x = _images(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = AdaptiveAugment(p=1.0)(x)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()


def test_per_sample_independence() -> None:
    x = _images(1).expand(32, -1, -1, -1).contiguous()
    y = AdaptiveAugment(p=1.0)(x)
    flat = y.reshape(32, -1)
    # Every pair of augmented copies of the same image differs.
    dists = torch.cdist(flat, flat)
    off_diag = dists[~torch.eye(32, dtype=torch.bool)]
    assert off_diag.min() > 1e-3
    # With small p, some samples pass untouched (bit-exact) and others do not.
    y = AdaptiveAugment(p=0.1)(x)
    same = torch.tensor([torch.equal(y[i], x[i]) for i in range(32)])
    assert 0 < int(same.sum()) < 32


def test_blit_only_is_exact_pixel_copy() -> None:
    x = torch.randn(6, 3, 12, 12)
    y = AdaptiveAugment(p=1.0, geom=False, color=False)(x)
    # Every output pixel (as an RGB triple) is one of the input pixels of the same sample.
    for i in range(6):
        src = x[i].reshape(3, -1).T
        out = y[i].reshape(3, -1).T
        found = (out[:, None, :] == src[None, :, :]).all(dim=-1).any(dim=-1)
        assert bool(found.all())


def test_constant_grey_stays_constant_grey_under_geometry() -> None:
    # Mirror padding + affine resampling of a constant image is constant; grey stays grey
    # under every colour op (brightness/contrast/flip move along the grey axis only).
    x = torch.full((8, 3, 10, 10), 0.3)
    y = AdaptiveAugment(p=1.0, color=False)(x)
    torch.testing.assert_close(y, x)
    y = AdaptiveAugment(p=1.0)(x)
    torch.testing.assert_close(y[:, 0], y[:, 1])
    torch.testing.assert_close(y[:, 1], y[:, 2])
    assert torch.allclose(y.std(dim=(2, 3)), torch.zeros(8, 3), atol=1e-5)


def test_non_square_and_grayscale() -> None:
    x = torch.randn(5, 1, 8, 12)
    y = AdaptiveAugment(p=1.0)(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


# --------------------------------------------------------------------------------------------
# Transforms with explicit parameters, against independent references
# --------------------------------------------------------------------------------------------


def test_blit_matches_numpy_reference() -> None:
    n, h, w = 5, 10, 10
    x = torch.randn(n, 2, h, w)
    flip = torch.tensor([False, True, False, True, False])
    quarter = torch.tensor([0, 1, 2, 3, 1])
    shift = torch.tensor([[0, 0], [1, -2], [-1, 1], [2, 0], [-1, -1]])
    y = _blit(x, flip, quarter, shift)
    for i in range(n):
        im = x[i].numpy()
        if flip[i]:
            im = im[:, :, ::-1]
        im = np.rot90(im, k=-int(quarter[i]), axes=(1, 2))  # clockwise on screen
        pad = 4
        padded = np.pad(im, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")  # mirror about edges
        dx, dy = int(shift[i, 0]), int(shift[i, 1])
        ref = padded[:, pad - dy : pad - dy + h, pad - dx : pad - dx + w]
        np.testing.assert_array_equal(y[i].numpy(), ref)


def test_geometric_matches_scipy_reference() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    n, h, w = 3, 12, 10
    x = torch.randn(n, 1, h, w, dtype=torch.float64)
    s_iso = torch.tensor([1.2, 0.8, 1.0])
    rot_pre = torch.tensor([0.3, -2.0, 1.0])
    s_aniso = torch.tensor([0.9, 1.1, 1.3])
    rot_post = torch.tensor([-0.5, 0.7, 3.0])
    shift = torch.tensor([[1.5, -0.5], [0.0, 2.25], [-3.0, 1.0]])
    y = _affine_resample(x, _geometric_inverse_matrix(s_iso, rot_pre, s_aniso, rot_post, shift).double())

    def rot(a: float) -> np.ndarray:
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])

    for i in range(n):
        fwd = (
            np.array([[1, 0, shift[i, 0].item()], [0, 1, shift[i, 1].item()], [0, 0, 1]])
            @ rot(rot_post[i].item())
            @ np.diag([s_aniso[i].item(), 1 / s_aniso[i].item(), 1])
            @ rot(rot_pre[i].item())
            @ np.diag([s_iso[i].item(), s_iso[i].item(), 1])
        )
        inv = np.linalg.inv(fwd)  # centred (x, y) pixels: output -> source
        swap = np.array([[0, 1], [1, 0]])  # scipy indexes (row, col) = (y, x)
        a = swap @ inv[:2, :2] @ swap
        centre = np.array([(h - 1) / 2, (w - 1) / 2])
        offset = centre + swap @ inv[:2, 2] - a @ centre
        # scipy "reflect" = half-sample symmetric, same as grid_sample reflection/align_corners=False
        ref = ndimage.affine_transform(x[i, 0].numpy(), a, offset=offset, order=1, mode="reflect")
        np.testing.assert_allclose(y[i, 0].numpy(), ref, atol=1e-5)


def test_colour_matrix_matches_sequential_reference() -> None:
    n = 4
    x = torch.rand(n, 3, 5, 5, dtype=torch.float64) * 2 - 1
    b = torch.tensor([0.1, -0.2, 0.0, 0.3])
    k = torch.tensor([1.5, 0.7, 1.0, 1.2])
    flip = torch.tensor([0.0, 1.0, 1.0, 0.0])
    hue = torch.tensor([0.5, -1.0, 3.0, 0.0])
    s = torch.tensor([2.0, 0.5, 1.0, 0.0])
    y = _apply_colour_matrix(x, _colour_matrix(3, b, k, flip, hue, s).double())
    for i in range(n):
        px = x[i].reshape(3, -1)
        px = (px + b[i].item()) * k[i].item()
        if flip[i]:
            px = px - 2 * px.mean(0, keepdim=True)  # reflect across the plane normal to (1,1,1)
        # Rotation about the grey axis by `hue`, via Rodrigues on each pixel.
        axis = torch.ones(3, dtype=torch.float64) / math.sqrt(3)
        c, sn = math.cos(hue[i].item()), math.sin(hue[i].item())
        px = c * px + sn * torch.linalg.cross(axis[:, None].expand_as(px), px, dim=0) + (1 - c) * axis[:, None] * (axis @ px)
        grey = px.mean(0, keepdim=True)
        px = grey + (px - grey) * s[i].item()
        torch.testing.assert_close(y[i].reshape(3, -1), px, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Second-order gradients through the augmentation
# --------------------------------------------------------------------------------------------


def test_gradgradcheck_full_pipeline_float64() -> None:
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    aug = AdaptiveAugment(p=1.0)

    def fn(inp: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(1234)  # the same transform on every call gradcheck makes
        return aug(inp)

    assert torch.equal(fn(x), fn(x))
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_r1_through_augmentation_reaches_conv_weight() -> None:
    D = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Softplus(), nn.Flatten(), nn.Linear(4 * 8 * 8, 1))
    x = torch.randn(3, 3, 8, 8, requires_grad=True)
    aug = AdaptiveAugment(p=0.8)
    penalty = r1_penalty(D(aug(x)), x)
    penalty.backward()
    w = D[0].weight
    assert w.grad is not None and w.grad.abs().sum() > 0 and torch.isfinite(w.grad).all()


# --------------------------------------------------------------------------------------------
# AdaController
# --------------------------------------------------------------------------------------------


def _run_interval(ctrl: AdaController, logits: torch.Tensor, batch: int, **kw) -> float:
    p = ctrl.p
    for _ in range(ctrl.interval):
        ctrl.observe(logits)
        p = ctrl.update(batch, **kw)
    return p


def test_controller_raises_p_when_overfitting() -> None:
    ctrl = AdaController()  # target 0.6, interval 4, 500 kimg
    step = 64 * 4 / 500_000
    for _ in range(3):  # no change before the interval completes
        ctrl.observe(torch.ones(64, 1))
        assert ctrl.update(64) == 0.0
    ctrl.observe(torch.ones(64, 1))
    assert ctrl.update(64) == pytest.approx(step)
    assert ctrl.rt == pytest.approx(1.0)
    # r_t = (9 - 1) / 10 = 0.8 > 0.6 still raises.
    logits = torch.tensor([1.0] * 9 + [-1.0]).repeat(4)
    assert _run_interval(ctrl, logits, 64) == pytest.approx(2 * step)


def test_controller_lowers_p_and_clamps() -> None:
    ctrl = AdaController(p=0.5)
    step = 32 * 4 / 500_000
    logits = torch.tensor([1.0, -1.0]).repeat(16)  # r_t = 0 < 0.6
    assert _run_interval(ctrl, logits, 32) == pytest.approx(0.5 - step)
    # Clamp at 0.
    ctrl = AdaController(p=0.0)
    assert _run_interval(ctrl, -torch.ones(8), 8) == 0.0
    # Clamp below 1 (fast controller: ada_kimg tiny).
    ctrl = AdaController(ada_kimg=0.001, p=0.9)
    p = _run_interval(ctrl, torch.ones(8), 8)
    assert p == P_MAX and p < 1.0
    AdaptiveAugment(p=p)  # still a valid probability


def test_controller_reduce_fn() -> None:
    ctrl = AdaController()
    other_rank = torch.tensor([-64.0, 64.0])  # another rank saw only negative logits

    def all_reduce_in_place(t: torch.Tensor) -> None:  # torch.distributed.all_reduce style
        t.add_(other_rank)

    for _ in range(4):
        ctrl.observe(torch.ones(16))
        p = ctrl.update(32, reduce_fn=all_reduce_in_place)
    # Local r_t would be 1.0 (raise), global r_t = 0 (lower, clamped at 0).
    assert ctrl.rt == pytest.approx(0.0) and p == 0.0
    # A reduce_fn that returns the tensor works too.
    ctrl = AdaController(p=0.5)
    p = _run_interval(ctrl, -torch.ones(16), 32, reduce_fn=lambda t: t * 0 + torch.tensor([64.0, 64.0]))
    assert ctrl.rt == pytest.approx(1.0) and p > 0.5


def test_controller_state_round_trip_is_exact() -> None:
    a = AdaController(p=0.1)
    rng = torch.Generator().manual_seed(0)
    logits = [torch.randn(16, generator=rng) + 0.8 for _ in range(10)]
    for t in logits[:6]:  # stop mid-interval (6 = 4 + 2)
        a.observe(t)
        a.update(16)
    b = AdaController()
    b.load_state_dict(a.state_dict())
    for t in logits[6:]:
        a.observe(t)
        b.observe(t)
        pa, pb = a.update(16), b.update(16)
        assert pa == pb
    assert a.state_dict()["p"] == b.state_dict()["p"]
    torch.testing.assert_close(a.state_dict()["stats"], b.state_dict()["stats"])
    # The state survives torch.save/load (checkpoint format).
    import io

    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    c = AdaController()
    c.load_state_dict(torch.load(buf, weights_only=True))
    assert c.p == a.p and c.state_dict()["steps"] == a.state_dict()["steps"]
