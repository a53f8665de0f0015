"""Structure loss of "Fine-tuning StyleGAN2 for Cartoon Face Generation" (Back, 2021, §3.2)."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor


def structure_loss(source: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
    """Mean over the first N blocks of the MSE between source and target outputs at that block.

    The paper compares the blocks' skip-RGB images (``rgb``); the published code compares the
    feature maps after each block (``features``). Both are per-block lists with equal shapes,
    rendered from the same latent and the same noise. The source side carries no gradient.
    """
    if len(source) != len(target) or not source:
        raise ValueError(f"structure_loss needs equal, non-empty block lists (got {len(source)} and {len(target)})")
    total = 0.0
    for s, t in zip(source, target):
        if s.shape != t.shape:
            raise ValueError(f"structure_loss: block shapes differ {tuple(s.shape)} vs {tuple(t.shape)}")
        total = total + F.mse_loss(t.float(), s.detach().float())
    return total / len(source)
