"""StarGAN v2 losses (Choi et al. 2020, "StarGAN v2: Diverse Image Synthesis for Multiple Domains", §2-3).

Small tensor functions; the trainer applies the weights (λ_sty, λ_ds, λ_cyc, and R1's λ/2). The
adversarial terms are ``losses.adversarial.d_logistic`` / ``g_nonsaturating`` on the logit of the
target domain's head, R1 is ``losses.regularizers.r1_penalty``. Everything is reduced in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["style_reconstruction_loss", "diversity_loss", "cycle_loss", "diversity_weight"]


def _f32(t: Tensor) -> Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def style_reconstruction_loss(s_pred: Tensor, s_target: Tensor) -> Tensor:
    """``E|s̃ − E_y(G(x, s̃))|₁`` (eq. 2): the style encoder must recover the style G was given."""
    return F.l1_loss(_f32(s_pred), _f32(s_target))


def diversity_loss(fake1: Tensor, fake2: Tensor) -> Tensor:
    """Style diversification (eq. 3) written as a loss to *minimise*: ``−E|G(x, s₁) − G(x, s₂)|₁``.

    The paper maximises the L1 distance between two outputs of the same input under two styles;
    the second output is usually detached (only the first path gets gradients), as in the authors'
    training. Returned negative so that ``total = adv + λ_sty·sty + λ_ds·diversity_loss + λ_cyc·cyc``.
    """
    return -F.l1_loss(_f32(fake1), _f32(fake2))


def cycle_loss(reconstruction: Tensor, original: Tensor) -> Tensor:
    """``E|x − G(G(x, s̃), ŝ)|₁`` (eq. 4), ŝ = E_y(x) the input's own style."""
    return F.l1_loss(_f32(reconstruction), _f32(original))


def diversity_weight(step: int, initial: float, decay_iters: int) -> float:
    """λ_ds at ``step``: linear from ``initial`` at step 0 to 0 at ``decay_iters``, 0 afterwards (§3, 100k iters).

    ``decay_iters <= 0`` keeps the weight constant (no decay).
    """
    if decay_iters <= 0:
        return float(initial)
    return float(initial) * max(0.0, 1.0 - float(step) / float(decay_iters))
