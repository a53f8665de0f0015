"""Which parameters train, and which mapping network feeds which style input, while fine-tuning:
FreezeSG, FreezeG, FreezeD, and the freeze-mapping ablation.

Selections are computed on the plain (unwrapped) modules by parameter *name*, so they are the
same under torchrun and never read attributes through a wrapper (a crash of the published code).

Generator blocks (1-based): block 1 = 4 px (``input``, ``conv1``, ``to_rgb1``); block k ≥ 2 =
``convs[2k-4]``, ``convs[2k-3]``, ``to_rgbs[k-2]``. The mapping network is ``style.*``.
Discriminator: ``convs.0`` is FromRGB, ``convs.1..L`` are ResBlocks from high to low resolution,
then ``final_conv`` and ``final_linear``.

W+ entries read by each block (``Generator.block_latent_indices``, the community layout): block 1
reads entries 0 (``conv1``) and 1 (``to_rgb1``); block k ≥ 2 reads 2k-3 (its upsampling conv),
2k-2 (its second conv) and 2k-1 (its ToRGB). Neighbouring blocks share one entry: the ToRGB of
block k and the upsampling conv of block k+1 both read 2k-1. So "the style vectors of blocks
1..N" are entries 0..2N-1, and entry 2N-1 also feeds block N+1's first conv.

Methods (``FreezeSpec``):

- **FreezeSG** (``--freeze N``; Back 2021, "freeze the style vectors and the generator's initial
  blocks"): blocks 1..N frozen, and W+ entries 0..K-1 (``--freeze-style K``, default 2N = the
  entries of blocks 1..N) come from the *source* generator's frozen mapping network for the same
  z, on every batch, style-mixing batches included (both mixing latents of those entries are
  the source's mapping of the same two z). The *target's* mapping network trains and feeds
  entries K.. . This is what makes FreezeSG a method of its own: with a frozen mapping network
  the source's and the target's style vectors would be identical and FreezeSG would reduce to
  FreezeG.
- **FreezeG** (``--freeze-g M``; FreezeG, Lee 2020): mapping frozen, only the M highest-resolution
  blocks train.
- **FreezeD** (``--freeze-d N``; Mo et al. 2020): only the N lowest-resolution D blocks and D's
  final layers train.
- ``--freeze-mapping``: freeze the mapping network only (ablation; before issue 11 this was
  spelled ``--freeze-style``).
- ``mode="published"`` (``--freeze-mode published``) reproduces Cartoon-StyleGAN's code
  (``train.py`` 181-306, 228-230, 329-331; ``model.py`` 566-570) with the source actually loaded:
  ``--freeze-g M`` counts trainable blocks as its ``--freezeG`` does (mapping frozen when M > 0,
  everything trains when M = 0); ``--freeze-style K`` is its ``--freezeStyle``: on *style-mixing
  batches only*, entries 0..K-1 are the source's mapping of (z1, z2) mixed at the crossover, and
  entries K.. are the target's mapping of z1 (so the target itself never mixes there); batches
  without mixing are the target's plain W. K = 0 is not "off" there: it removes mixing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from stylegan2.blocks import generator_block_of
from stylegan2.networks import Discriminator, Generator
from toonlab.errors import UserInputError

FREEZE_MODES = ("paper", "published")


def block_style_entries(n_blocks: int) -> int:
    """How many leading W+ entries blocks 1..n_blocks read (0 for none): 2·n_blocks."""
    return 2 * n_blocks if n_blocks > 0 else 0


@dataclass(frozen=True)
class FreezeSpec:
    """A fine-tuning method as a parameter selection plus a rule for the style inputs.

    freeze_sg: FreezeSG N — blocks 1..N frozen, their style entries from the source's mapping.
    freeze_g: FreezeG M — only the M highest-resolution blocks train (mapping frozen too).
    freeze_d: FreezeD — only the N lowest-resolution D blocks + final layers train.
    freeze_style: K — W+ entries 0..K-1 from the source's mapping (None: 2N for FreezeSG, none
        otherwise; in the published mode None = its ``--freezeStyle -1``, off).
    freeze_mapping: freeze the mapping network (ablation).
    mode: "paper" (default) or "published" (Cartoon-StyleGAN's code, see the module docstring).
    """

    freeze_sg: int = 0
    freeze_g: int = 0
    freeze_d: int = 0
    freeze_style: int | None = None
    freeze_mapping: bool = False
    mode: str = "paper"

    # ---- style inputs ----------------------------------------------------------------------

    def source_entries(self) -> int | None:
        """Leading W+ entries taken from the source's mapping; None = the source's mapping is unused."""
        if self.mode == "published":
            return self.freeze_style
        k = self.freeze_style if self.freeze_style is not None else block_style_entries(self.freeze_sg)
        return k or None

    def mapping_frozen(self) -> bool:
        return self.freeze_mapping or self.freeze_g > 0

    def split_mapping(self) -> int:
        """K when a trained model renders with two mapping networks (entries < K: the source's)."""
        k = self.source_entries()
        return k if (self.mode == "paper" and k and not self.mapping_frozen()) else 0

    def style_latents(self, w_target: Tensor, w_source: Tensor | None, cut: int, n_latent: int) -> Tensor:
        """W+ [B, n_latent, D] from two mapped latents per sample and a crossover ``cut``.

        ``w_target``/``w_source``: [2, B, D], the target's and the source's mapping of the same
        (z1, z2). ``cut`` = n_latent means no style mixing. Entry i reads latent 1 if i < cut
        else latent 2 — from the source's mapping for i < K (paper mode), or as the published
        code does in its mode.
        """
        idx = torch.arange(n_latent, device=w_target.device).view(1, n_latent, 1)

        def mixed(w: Tensor) -> Tensor:
            return torch.where(idx < cut, w[0].unsqueeze(1), w[1].unsqueeze(1))

        k = self.source_entries()
        if k is None:
            return mixed(w_target)
        if w_source is None:
            raise ValueError("style_latents: this method needs the source's mapping of the same z")
        if self.mode == "published":
            if cut >= n_latent:  # model.py:557-563: one style → put_latent is ignored
                return mixed(w_target)
            # model.py:566-570: put_latent[:, :K] (the source's own mix), then styles[0] repeated
            return torch.where(idx < k, mixed(w_source), w_target[0].unsqueeze(1))
        return torch.where(idx < k, mixed(w_source), mixed(w_target))

    # ---- parameter selections --------------------------------------------------------------

    def generator_frozen(self, G: Generator) -> set[str]:
        frozen: set[str] = set()
        for name, _ in G.named_parameters():
            block = generator_block_of(name)
            if block is None:
                if self.mapping_frozen():
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
        if self.mode not in FREEZE_MODES:
            raise UserInputError(f"--freeze-mode {self.mode!r}: choose {' or '.join(FREEZE_MODES)}")
        for flag, n, limit in (("--freeze", self.freeze_sg, G.n_blocks), ("--freeze-g", self.freeze_g, G.n_blocks)):
            if not 0 <= n <= limit:
                raise UserInputError(f"{flag} {n}: this {G.size}-px generator has blocks 1..{limit}")
        if self.freeze_sg and self.freeze_g:
            raise UserInputError("--freeze (FreezeSG) and --freeze-g (FreezeG) are alternatives; choose one")
        if self.mode == "published" and self.freeze_sg:
            raise UserInputError("--freeze-mode published has no --freeze N: the published code selects blocks with "
                             "--freezeG (= --freeze-g M, the number of *trainable* high-resolution blocks)")
        if self.freeze_style is not None and not 0 <= self.freeze_style <= G.n_latent:
            raise UserInputError(f"--freeze-style {self.freeze_style}: this {G.size}-px generator has W+ entries "
                             f"0..{G.n_latent - 1} (give 0..{G.n_latent})")
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
