"""Which parameters train while fine-tuning: FreezeSG, FreezeG, FreezeD and freeze-style.

Selections are computed on the plain (unwrapped) modules by parameter *name*, so they are the
same under torchrun and never read attributes through a wrapper (a crash of the published code).

Generator blocks (1-based): block 1 = 4 px (``input``, ``conv1``, ``to_rgb1``); block k ≥ 2 =
``convs[2k-4]``, ``convs[2k-3]``, ``to_rgbs[k-2]``. The mapping network is ``style.*``.
Discriminator: ``convs.0`` is FromRGB, ``convs.1..L`` are ResBlocks from high to low resolution,
then ``final_conv`` and ``final_linear``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from stylegan2.blocks import generator_block_of
from stylegan2.networks import Discriminator, Generator
from toonlab.errors import UserInputError


@dataclass(frozen=True)
class FreezeSpec:
    """A fine-tuning method as a parameter selection.

    freeze_sg: FreezeSG — mapping network frozen and the first N blocks frozen.
    freeze_g: FreezeG — only the N highest-resolution blocks train (mapping frozen too).
    freeze_style: freeze only the mapping network (ablation).
    freeze_d: FreezeD — only the N lowest-resolution D blocks + final layers train.
    """

    freeze_sg: int = 0
    freeze_g: int = 0
    freeze_style: bool = False
    freeze_d: int = 0

    def generator_frozen(self, G: Generator) -> set[str]:
        frozen: set[str] = set()
        mapping_frozen = self.freeze_style or self.freeze_sg > 0 or self.freeze_g > 0
        for name, _ in G.named_parameters():
            block = generator_block_of(name)
            if block is None:
                if mapping_frozen:
                    frozen.add(name)
                continue
            if self.freeze_sg and block <= self.freeze_sg:
                frozen.add(name)
            if self.freeze_g and block <= G.n_blocks - self.freeze_g:
                frozen.add(name)
        return frozen

    def discriminator_frozen(self, D: Discriminator) -> set[str]:
        if not self.freeze_d:
            return set()
        n_res = len(D.convs) - 1
        last_frozen = n_res - self.freeze_d  # convs.0 .. convs.{last_frozen} are frozen
        frozen = set()
        for name, _ in D.named_parameters():
            if m := re.match(r"convs\.(\d+)\.", name):
                if int(m.group(1)) <= last_frozen:
                    frozen.add(name)
        return frozen

    def validate(self, G: Generator, D: Discriminator | None = None) -> None:
        for flag, n, limit in (("--freeze", self.freeze_sg, G.n_blocks), ("--freeze-g", self.freeze_g, G.n_blocks)):
            if not 0 <= n <= limit:
                raise UserInputError(f"{flag} {n}: this {G.size}-px generator has blocks 1..{limit}")
        if self.freeze_sg and self.freeze_g:
            raise UserInputError("--freeze (FreezeSG) and --freeze-g (FreezeG) are alternatives; choose one")
        if D is not None and not 0 <= self.freeze_d <= len(D.convs) - 1:
            raise UserInputError(f"--freeze-d {self.freeze_d}: this discriminator has {len(D.convs) - 1} blocks")


def split_parameters(module: nn.Module, frozen: set[str]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(trainable, frozen) parameter lists; frozen ones get ``requires_grad=False`` for good."""
    train, fixed = [], []
    for name, p in module.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
            fixed.append(p)
        else:
            train.append(p)
    return train, fixed
