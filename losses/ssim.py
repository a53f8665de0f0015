"""MS-SSIM (Wang, Simoncelli & Bovik 2003) as a loss that needs no downloaded weights.

The projector's offline fallback when the LPIPS-VGG trunk is missing: pixel MSE + (1 - MS-SSIM).
MS-SSIM compares local means, contrasts and structure over a Gaussian window at several scales,
so it keeps edges and textures that a pixel loss alone blurs away; it is weaker than LPIPS on
semantics (eyes, hair), but exists on every clone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MS_SSIM_WEIGHTS", "MSSSIMLoss", "TargetMSSSIM", "ms_ssim", "ssim_terms"]

#: The five scale exponents of Wang et al. 2003 (Table/§3.2), fitted to human ratings.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    x = torch.arange(size, dtype=torch.float32, device=like.device) - (size - 1) / 2
    g = torch.exp(-x.square() / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_terms(a: Tensor, b: Tensor, window: Tensor, data_range: float) -> tuple[Tensor, Tensor]:
    """Per-image mean SSIM and mean contrast-structure term ``cs`` (eq. 6-9), [N] each.

    ``l = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)``, ``cs = (2 s_ab + C2) / (s_a^2 + s_b^2 + C2)``,
    ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, statistics over a Gaussian window (valid positions).
    """
    c = a.shape[1]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a = F.conv2d(a, window, groups=c)
    mu_b = F.conv2d(b, window, groups=c)
    s_aa = F.conv2d(a * a, window, groups=c) - mu_a.square()
    s_bb = F.conv2d(b * b, window, groups=c) - mu_b.square()
    s_ab = F.conv2d(a * b, window, groups=c) - mu_a * mu_b
    cs = (2 * s_ab + c2) / (s_aa + s_bb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a.square() + mu_b.square() + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(a: Tensor, b: Tensor, data_range: float = 2.0, win_size: int = 11, sigma: float = 1.5,
            weights: tuple[float, ...] = MS_SSIM_WEIGHTS) -> Tensor:
    """MS-SSIM between image batches [N, C, H, W] (default range [-1, 1]): [N] values in (0, 1].

    ``prod_{j<M} cs_j^{w_j} * ssim_M^{w_M}`` (eq. 7), halving the images (2x2 average) between
    scales. Small images get fewer scales (each scale's side must hold the window; the exponents
    used are renormalised to sum to 1) and a window no larger than the image, so 16-64 px
    generators can use it too. Negative ``cs`` (anti-correlated patches) are clamped to 0 before
    the fractional powers, as common implementations do, so the value and gradient stay finite.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ms_ssim needs two [N, C, H, W] batches of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    a, b = a.float(), b.float()
    side = min(a.shape[-2:])
    win = min(win_size, side if side % 2 else side - 1)
    scales = max(1, min(len(weights), int(math.floor(math.log2(side / win))) + 1))
    w = torch.tensor(weights[:scales], dtype=torch.float32, device=a.device)
    w = w / w.sum()
    window = _gaussian_window(win, sigma, a.shape[1], a)
    cs_terms = []
    for j in range(scales):
        s, cs = ssim_terms(a, b, window, data_range)
        if j < scales - 1:
            cs_terms.append(cs.clamp_min(0))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    vals = torch.stack([*cs_terms, s.clamp_min(0)], dim=0)  # [scales, N]
    # (x + eps)^w: finite gradients where a term reaches 0.
    return torch.prod((vals + 1e-8) ** w[:, None], dim=0)


class TargetMSSSIM(nn.Module):
    """``1 - MS-SSIM(x, target)`` per image, [N]: the projector's offline perceptual term."""

    def __init__(self, target: Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().float())

    def forward(self, x: Tensor) -> Tensor:
        return 1 - ms_ssim(x.float(), self.target)


class MSSSIMLoss(nn.Module):
    """A perceptual-loss factory without weights: ``for_target(t)`` gives a :class:`TargetMSSSIM`."""

    description = "pixel MSE + MS-SSIM (Wang et al. 2003), no downloaded weights"

    def for_target(self, target: Tensor) -> TargetMSSSIM:
        return TargetMSSSIM(target)
