"""Tests for losses/: adversarial losses against their formulas, R1, path length, lazy-reg Adam."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from losses import (
    d_hinge,
    d_logistic,
    d_lsgan,
    g_hinge,
    g_lsgan,
    g_nonsaturating,
    lazy_reg_adam_params,
    path_length_penalty,
    r1_penalty,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --------------------------------------------------------------------------------------------
# Adversarial losses
# --------------------------------------------------------------------------------------------


def test_logistic_matches_formula() -> None:
    real, fake = torch.randn(8, 1), torch.randn(5, 1)
    expected = -torch.log(1 - torch.sigmoid(fake)).mean() - torch.log(torch.sigmoid(real)).mean()
    torch.testing.assert_close(d_logistic(real, fake), expected)
    torch.testing.assert_close(g_nonsaturating(fake), -torch.log(torch.sigmoid(fake)).mean())


def test_logistic_sign_behaviour() -> None:
    # At logits 0 D is maximally unsure: 2*ln 2 for D, ln 2 for G.
    z = torch.zeros(4)
    torch.testing.assert_close(d_logistic(z, z), torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(g_nonsaturating(z), torch.tensor(math.log(2)))
    # A confident, correct D has near-zero loss; a fooled one a large loss.
    big = torch.full((4,), 20.0)
    assert d_logistic(big, -big) < 1e-6
    assert d_logistic(-big, big) > 39.0
    # G's loss falls as D's score on fakes rises (non-saturating: large gradient when D wins).
    fake = torch.tensor([-10.0], requires_grad=True)
    g_nonsaturating(fake).backward()
    assert fake.grad is not None and fake.grad.item() < -0.99


def test_lsgan_matches_formula_and_zero_when_perfect() -> None:
    real, fake = torch.randn(6), torch.randn(6)
    torch.testing.assert_close(d_lsgan(real, fake), ((real - 1) ** 2).mean() + (fake**2).mean())
    torch.testing.assert_close(g_lsgan(fake), ((fake - 1) ** 2).mean())
    # Custom targets (e.g. the -1/1/0 coding of Mao et al. eq. 2 variants).
    torch.testing.assert_close(
        d_lsgan(real, fake, real_target=1.0, fake_target=-1.0), ((real - 1) ** 2).mean() + ((fake + 1) ** 2).mean()
    )
    torch.testing.assert_close(g_lsgan(fake, target=0.0), (fake**2).mean())
    # Perfect D: zero loss; G that fools D perfectly: zero loss.
    assert d_lsgan(torch.ones(3), torch.zeros(3)).item() == 0.0
    assert g_lsgan(torch.ones(3)).item() == 0.0


def test_hinge_matches_formula_and_margins() -> None:
    real, fake = torch.randn(7), torch.randn(7)
    torch.testing.assert_close(d_hinge(real, fake), torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean())
    torch.testing.assert_close(g_hinge(fake), -fake.mean())
    # Margins met: real >= 1, fake <= -1 -> exactly zero.
    assert d_hinge(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -5.0])).item() == 0.0
    # Margins violated by 0.5 each: 0.5 + 0.5.
    torch.testing.assert_close(d_hinge(torch.tensor([0.5]), torch.tensor([-0.5])), torch.tensor(1.0))


def test_losses_accept_bf16_and_return_float32() -> None:
    real, fake = torch.randn(4, 1).bfloat16(), torch.randn(4, 1).bfloat16()
    for loss in (d_logistic(real, fake), d_lsgan(real, fake), d_hinge(real, fake), g_nonsaturating(fake)):
        assert loss.dtype == torch.float32 and loss.ndim == 0


# --------------------------------------------------------------------------------------------
# R1
# --------------------------------------------------------------------------------------------


def _tiny_d() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 1),
    )


def test_r1_matches_per_sample_autograd() -> None:
    D = _tiny_d().double()
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    got = r1_penalty(D(x), x)
    # Slow reference: one backward per sample, on its own graph.
    norms = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1].detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(xi).sum(), xi)
        norms.append(g.pow(2).sum())
    expected = torch.stack(norms).mean()
    torch.testing.assert_close(got.double(), expected)


def test_r1_has_second_order_grads_to_d_weights() -> None:
    D = _tiny_d()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    penalty = r1_penalty(D(x), x)
    penalty.backward()
    w = D[0].weight
    assert w.grad is not None and w.grad.abs().sum() > 0
    # The gradient of the penalty w.r.t. D's weights matches finite differences.
    D2 = _tiny_d().double()
    x2 = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w2 = D2[2].weight

    def pen_of(weight: torch.Tensor) -> torch.Tensor:
        xr = x2.clone().requires_grad_(True)
        h = D2[1](D2[0](xr))
        h = F.conv2d(h, weight, D2[2].bias, stride=2, padding=1)
        out = D2[5](D2[4](D2[3](h)))
        return r1_penalty(out, xr)

    assert torch.autograd.gradcheck(pen_of, (w2.detach().clone().requires_grad_(True),))


def test_r1_requires_grad_input() -> None:
    D = _tiny_d()
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError):
        r1_penalty(D(x), x)


def test_r1_under_bf16_autocast() -> None:
    D = _tiny_d()
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = D(x)
        penalty = r1_penalty(logits, x)
    assert logits.dtype == torch.bfloat16
    assert penalty.dtype == torch.float32 and torch.isfinite(penalty)
    ref = r1_penalty(D(x), x)
    torch.testing.assert_close(penalty, ref, rtol=0.1, atol=1e-3)  # bf16 forward, ~2 significant digits
    penalty.backward()
    assert D[0].weight.grad is not None and torch.isfinite(D[0].weight.grad).all()


# --------------------------------------------------------------------------------------------
# Path length
# --------------------------------------------------------------------------------------------


class _LinearG(nn.Module):
    """Tiny "generator": image = reshape(A @ w) (+ tanh to make the Jacobian depend on w)."""

    def __init__(self, d: int = 5, c: int = 2, h: int = 3, w: int = 4, layers: int = 1) -> None:
        super().__init__()
        self.shape = (c, h, w)
        self.lin = nn.Linear(d * layers, c * h * w).double()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.lin(w.reshape(w.shape[0], -1))).reshape(w.shape[0], *self.shape)


def _slow_path_lengths(G: nn.Module, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """||J_w^T y|| per sample via the full Jacobian (one column block per latent element)."""
    h, wd = noise.shape[-2:]
    y = noise / math.sqrt(h * wd)
    out = []
    for i in range(w.shape[0]):
        wi = w[i : i + 1].detach()
        J = torch.autograd.functional.jacobian(lambda v: G(v)[0], wi)  # [C, H, W, 1, *latent]
        J = J.reshape(y[i].numel(), -1)  # [pixels, latent elems]
        jty = (J.T @ y[i].reshape(-1)).reshape(w.shape[1:])  # [D] or [L, D]
        sq = jty.pow(2).sum(-1)
        out.append(sq.mean().sqrt() if w.ndim == 3 else sq.sqrt())
    return torch.stack(out)


@pytest.mark.parametrize("wplus", [False, True])
def test_path_length_matches_jacobian(wplus: bool) -> None:
    n, d, layers = 3, 5, 4
    G = _LinearG(d=d, layers=layers if wplus else 1)
    w = torch.randn(n, layers, d, dtype=torch.float64) if wplus else torch.randn(n, d, dtype=torch.float64)
    w.requires_grad_(True)
    img = G(w)
    noise = torch.randn_like(img)
    mean0 = torch.tensor(0.7, dtype=torch.float64)
    penalty, new_mean, lengths = path_length_penalty(img, w, mean0, decay=0.01, noise=noise)

    ref_lengths = _slow_path_lengths(G, w, noise)
    torch.testing.assert_close(lengths, ref_lengths)
    ref_mean = 0.7 + 0.01 * (ref_lengths.mean() - 0.7)
    torch.testing.assert_close(new_mean, ref_mean)
    torch.testing.assert_close(penalty, ((ref_lengths - ref_mean) ** 2).mean())
    assert penalty.dtype == torch.float64  # float64 inputs stay float64
    assert lengths.shape == (n,) and new_mean.ndim == 0
    assert not lengths.requires_grad and not new_mean.requires_grad
    # Second order: the penalty reaches G's weights.
    penalty.backward()
    assert G.lin.weight.grad is not None and G.lin.weight.grad.abs().sum() > 0


def test_path_length_gradient_flows_through_the_updated_mean() -> None:
    """G's gradient equals the reference formula's (rosinality train.py:88-100, NVIDIA loss.py:80-88):
    the penalty is compared with the updated mean *and* differentiated through that update."""
    n, d = 4, 5
    G = _LinearG(d=d)
    w = torch.randn(n, d, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(n, 2, 3, 4, dtype=torch.float64)
    mean0, decay = torch.tensor(0.7, dtype=torch.float64), 0.01

    penalty, _, _ = path_length_penalty(G(w), w, mean0, decay=decay, noise=noise)
    ours = torch.autograd.grad(penalty, G.lin.weight)[0]

    # Re-statement of the reference formula, independent of the function under test.
    img = G(w)
    y = noise / math.sqrt(img.shape[2] * img.shape[3])
    (g,) = torch.autograd.grad((img * y).sum(), w, create_graph=True)
    lengths = g.pow(2).sum(1).sqrt()
    path_mean = mean0 + decay * (lengths.mean() - mean0)
    ref = torch.autograd.grad((lengths - path_mean).pow(2).mean(), G.lin.weight, retain_graph=True)[0]
    torch.testing.assert_close(ours, ref)
    # ... and the detached-mean variant is measurably different (what we computed before).
    detached = torch.autograd.grad((lengths - path_mean.detach()).pow(2).mean(), G.lin.weight)[0]
    assert (detached - ref).abs().max() > 1e-6 * ref.abs().max()


def test_path_length_default_noise_and_running_mean() -> None:
    G = _LinearG()
    w = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    img = G(w)
    torch.manual_seed(123)
    p1, m1, l1 = path_length_penalty(img, w, 0.0)
    torch.manual_seed(123)
    noise = torch.randn(img.shape)  # the function draws float32 randn of the image's shape
    p2, m2, l2 = path_length_penalty(img, w, 0.0, noise=noise)
    torch.testing.assert_close((p1, m1, l1), (p2, m2, l2))
    # Float and tensor means behave the same; decay=1 jumps straight to the batch mean.
    _, m_full, l_full = path_length_penalty(img, w, torch.tensor(5.0), decay=1.0, noise=noise)
    torch.testing.assert_close(m_full, l_full.mean())
    # The EMA converges towards the (fixed) batch mean over repeated updates.
    mean = torch.tensor(0.0)
    for _ in range(300):
        _, mean, _ = path_length_penalty(img, w, mean, decay=0.05, noise=noise)
    torch.testing.assert_close(mean, l_full.mean(), rtol=1e-4, atol=1e-6)


def test_path_length_rejects_bad_latent_shape() -> None:
    G = _LinearG()
    w = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError):
        path_length_penalty(G(w), w.reshape(2, 5, 1, 1), 0.0)


# --------------------------------------------------------------------------------------------
# Lazy regularisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [16, 4])
def test_lazy_reg_adam_params(k: int) -> None:
    c = k / (k + 1)
    lr, (b1, b2) = lazy_reg_adam_params(0.002, (0.0, 0.99), k)
    assert lr == pytest.approx(0.002 * c)
    assert b1 == 0.0
    assert b2 == pytest.approx(0.99**c)


def test_lazy_reg_adam_known_values() -> None:
    lr, (b1, b2) = lazy_reg_adam_params(0.002, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0018823529411764706)
    assert b2 == pytest.approx(0.9905854573074332)
    lr, (b1, b2) = lazy_reg_adam_params(0.0025, (0.5, 0.99), 4)
    assert lr == pytest.approx(0.002)
    assert b1 == pytest.approx(0.5**0.8)
    assert b2 == pytest.approx(0.99**0.8)
    with pytest.raises(ValueError):
        lazy_reg_adam_params(0.002, (0.0, 0.99), 0)
