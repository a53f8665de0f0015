"""Losses of the photo-to-cartoon translators (AnimeGAN v1/v2, CartoonGAN), as small tensor functions.

Images are RGB in [-1, 1]; features come from ``losses/features.py``. Weights are applied by the
caller (the trainer's presets), except for the inner weights of the AnimeGAN discriminator terms,
which are part of its loss definition. Every loss is computed in float32 (features may be bf16
under autocast). References: Chen et al. 2020 "AnimeGAN" §3.2 (eqs. 2-6) and the AnimeGANv2 notes;
Chen, Lai & Liu 2018 "CartoonGAN" §3.2 (eqs. 2-4); Mao et al. 2017 (LSGAN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from toonlab.images import RGB_TO_YUV, rgb_to_yuv

from .adversarial import g_lsgan

__all__ = [
    "grayscale",
    "gram",
    "content_loss",
    "style_loss",
    "color_loss",
    "tv_loss",
    "lsgan_d_loss",
    "lsgan_g_loss",
    "edge_smoothed_fake_loss",
]


def _f32(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def grayscale(x: Tensor) -> Tensor:
    """Luma (0.299 R + 0.587 G + 0.114 B) repeated over 3 channels; stays in [-1, 1].

    The weights sum to 1, so taking luma of the [-1, 1] values equals mapping to [0, 1] first.
    AnimeGAN feeds these to D as fakes (eq. 4: colour is not the style) and to VGG for the Gram loss.
    """
    w = torch.tensor(RGB_TO_YUV[0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()


def gram(feat: Tensor) -> Tensor:
    """Per-image Gram matrix (N,C,C) of (N,C,H,W) features, normalised by H·W·C (AnimeGAN eq. 3)."""
    n, c, h, w = feat.shape
    f = _f32(feat).reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def content_loss(f_fake: Tensor, f_real: Tensor) -> Tensor:
    """L1 between feature maps of G(p) and p (AnimeGAN eq. 2; CartoonGAN eq. 4, VGG19 conv4_4)."""
    return F.l1_loss(_f32(f_fake), _f32(f_real))


def style_loss(f_fake: Tensor, f_style_gray: Tensor) -> Tensor:
    """L1 between Gram matrices of G(p) and of the grayscale anime image (AnimeGAN eq. 3)."""
    return F.l1_loss(gram(f_fake), gram(f_style_gray))


def color_loss(fake: Tensor, photo: Tensor) -> Tensor:
    """Colour reconstruction (AnimeGAN eq. 5): L1 on Y + Huber (δ=1) on U and V, in YUV of [0,1] RGB."""
    a, b = rgb_to_yuv(fake), rgb_to_yuv(photo)
    return (F.l1_loss(a[:, 0], b[:, 0]) + F.huber_loss(a[:, 1], b[:, 1], delta=1.0)
            + F.huber_loss(a[:, 2], b[:, 2], delta=1.0))


def tv_loss(x: Tensor) -> Tensor:
    """Total variation (AnimeGANv2): (mean squared horizontal diff + mean squared vertical diff) / 2."""
    x = _f32(x)
    dh = x[..., 1:, :] - x[..., :-1, :]
    dw = x[..., :, 1:] - x[..., :, :-1]
    return (dh.square().mean() + dw.square().mean()) * 0.5


def lsgan_d_loss(
    real: Tensor,
    fake: Tensor,
    gray: Tensor | None = None,
    smooth: Tensor | None = None,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 0.1),
) -> Tensor:
    """AnimeGAN's LSGAN discriminator loss on D logits (eq. 4, least-squares form):

    ``w_r·E(D(a)−1)² + w_f·E(D(G(p)))² + w_g·E(D(gray(a)))² + w_s·E(D(smooth(a)))²``.
    ``gray``/``smooth`` may be omitted (their terms drop); ``weights`` = (w_r, w_f, w_g, w_s), v1's
    1/1/1/0.1 by default (v2 presets: Hayao 1.2/1.2/1.2/0.8, Paprika 1/1/1/0.005, Shinkai 1.7/1.7/1.7/1).
    The outer adversarial weight (300) is the caller's.
    """
    if len(weights) != 4:
        raise ValueError(f"lsgan_d_loss needs 4 weights (real, fake, gray, smooth), got {len(weights)}")
    w_r, w_f, w_g, w_s = (float(w) for w in weights)
    loss = w_r * g_lsgan(real, 1.0) + w_f * g_lsgan(fake, 0.0)
    if gray is not None:
        loss = loss + w_g * g_lsgan(gray, 0.0)
    if smooth is not None:
        loss = loss + w_s * g_lsgan(smooth, 0.0)
    return loss


def lsgan_g_loss(fake: Tensor) -> Tensor:
    """LSGAN generator loss ``E(D(G(p))−1)²`` (AnimeGAN eq. 6's adversarial term)."""
    return g_lsgan(fake, 1.0)


def edge_smoothed_fake_loss(smooth: Tensor, kind: str = "bce") -> Tensor:
    """CartoonGAN's extra D term: edge-smoothed cartoons must be classified fake (eq. 2, 3rd term).

    ``kind="bce"``: ``E[−log(1 − sigmoid(D(e)))] = E[softplus(D(e))]`` (the paper);
    ``kind="lsgan"``: ``E[D(e)²]`` (the improved CartoonGAN). Add it to the usual real/fake D loss.
    """
    if kind == "bce":
        return F.softplus(_f32(smooth)).mean()
    if kind == "lsgan":
        return g_lsgan(smooth, 0.0)
    raise ValueError(f"unknown kind {kind!r} (use 'bce' or 'lsgan')")
