"""Adversarial losses for GAN training (StyleGAN2, fine-tuning, translators).

Each function takes raw discriminator outputs ("logits", any shape; every element is one
decision) and returns a scalar ``Tensor`` averaged over all elements. No weights are applied
here: the caller scales each term explicitly, so the same functions serve every trainer.

Under bf16 autocast the logits may be bf16; every loss is computed in (at least) float32 so
that the softplus / square of large logits does not lose precision in the mean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _up(t: Tensor) -> Tensor:
    """At least float32 (bf16/fp16 logits -> float32; float64 stays float64)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


__all__ = [
    "d_logistic",
    "g_nonsaturating",
    "d_lsgan",
    "g_lsgan",
    "d_hinge",
    "g_hinge",
]


def d_logistic(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Logistic discriminator loss: ``mean(softplus(D(G(z)))) + mean(softplus(-D(x)))``.

    Goodfellow et al. 2014, "Generative Adversarial Nets", eq. 1 (the value function V(D, G),
    negated and written with D = sigmoid(logit): ``-log sigmoid(l) = softplus(-l)`` and
    ``-log(1 - sigmoid(l)) = softplus(l)``). This is the D loss used by StyleGAN/StyleGAN2.

    The two terms are averaged separately, so real and fake batches may differ in size.
    """
    return F.softplus(_up(fake_logits)).mean() + F.softplus(-_up(real_logits)).mean()


def g_nonsaturating(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: ``mean(softplus(-D(G(z))))`` = ``-mean(log sigmoid(D(G(z))))``.

    Goodfellow et al. 2014, Sec. 3 (the "maximise log D(G(z))" heuristic replacing eq. 1's
    ``log(1 - D(G(z)))`` for G, which saturates early in training). StyleGAN2's G loss.
    """
    return F.softplus(-_up(fake_logits)).mean()


def d_lsgan(
    real_logits: Tensor,
    fake_logits: Tensor,
    real_target: float = 1.0,
    fake_target: float = 0.0,
) -> Tensor:
    """Least-squares discriminator loss: ``mean((D(x) - b)^2) + mean((D(G(z)) - a)^2)``.

    Mao et al. 2017, "Least Squares Generative Adversarial Networks", eq. 2 (D part) with
    ``b = real_target`` and ``a = fake_target`` (the paper's 0-1 coding by default).

    Note eq. 2 has a factor 1/2 on each term; it is dropped here (plain mean squared error,
    as in most implementations) -- fold it into the caller's weight if needed.
    """
    real_term = (_up(real_logits) - real_target).square().mean()
    fake_term = (_up(fake_logits) - fake_target).square().mean()
    return real_term + fake_term


def g_lsgan(fake_logits: Tensor, target: float = 1.0) -> Tensor:
    """Least-squares generator loss: ``mean((D(G(z)) - c)^2)`` with ``c = target``.

    Mao et al. 2017, eq. 2 (G part; factor 1/2 dropped, see :func:`d_lsgan`).
    """
    return (_up(fake_logits) - target).square().mean()


def d_hinge(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Hinge discriminator loss: ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``.

    Lim & Ye 2017, "Geometric GAN", eq. 10 form as used by Miyato et al. 2018 ("Spectral
    Normalization for GANs", eq. 16/17). Zero once real logits >= 1 and fake logits <= -1.
    """
    return F.relu(1.0 - _up(real_logits)).mean() + F.relu(1.0 + _up(fake_logits)).mean()


def g_hinge(fake_logits: Tensor) -> Tensor:
    """Hinge generator loss: ``-mean(D(G(z)))``.

    Lim & Ye 2017 / Miyato et al. 2018 (eq. 17, G part). Unbounded below by design: G is
    not clipped at the margin, only D is.
    """
    return -_up(fake_logits).mean()
