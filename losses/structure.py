"""Structure loss of "Fine-tuning StyleGAN2 for Cartoon Face Generation" (Back, 2021, §3.2)."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "sum")


def structure_loss(source: Sequence[Tensor], target: Sequence[Tensor], reduction: str = "mean") -> Tensor:
    """Per-block MSE between source and target outputs, averaged (``mean``) or summed (``sum``) over blocks.

    Two published forms use it (``finetune/trainer.py`` picks the blocks):
    - the paper: the skip-RGB images of blocks 1..N, averaged over the N blocks (``mean``);
    - the published code (Cartoon-StyleGAN ``train.py:344-348``): the feature maps after the
      second conv of blocks 2..N+1, each block's MSE *added* to the generator loss (``sum``).
    Both are per-block lists with equal shapes. The source side carries no gradient.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"structure_loss: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if len(source) != len(target) or not source:
        raise ValueError(f"structure_loss needs equal, non-empty block lists (got {len(source)} and {len(target)})")
    total = 0.0
    for s, t in zip(source, target):
        if s.shape != t.shape:
            raise ValueError(f"structure_loss: block shapes differ {tuple(s.shape)} vs {tuple(t.shape)}")
        total = total + F.mse_loss(t.float(), s.detach().float())
    return total / len(source) if reduction == "mean" else total
