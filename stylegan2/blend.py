"""Layer swapping between two generators of the same shape.

    python finetune/swap.py --source A.pt --cartoon B.pt --swap 2 [--blend-width 0.5] --out blended.pt   (the CLI)

Two forms (REFERENCE.md §4):
- weight blending (Toonify): per block b a factor y(b) — a hard switch (y = 0 for b ≤ swap, 1
  after) or a logistic ``y = 1/(1+exp(-(b − swap − ½)/width))`` — and every weight becomes
  ``(1−y)·A + y·B``; the mapping network comes from A, the low-resolution model. The result is an
  ordinary checkpoint.
- feature swap at inference: run A up to block k and finish with B's remaining blocks.
With the same W+ latent and noise, a hard blend at k renders exactly the feature swap at k.

The ToRGB skip image of the swapped low-resolution blocks (``skip``):
- ``source`` (default, and what every weight blend is): blocks 1..k are entirely A's, their
  skip-RGB image included — the Toonify form, and the only one a single blended checkpoint can hold.
- ``target`` (Cartoon-StyleGAN's ``run.py`` swap, ``model.py:596-605``): B runs its own blocks
  1..k-1 and keeps *its* skip image; only block k's feature is A's, and B's ToRGB of block k is
  applied to it. Their ``swap_layer_num j`` is our block ``k = j + 1`` (their loop index i = 2j−1
  is the conv pair of 2**(j+2) px): ``--swap-layer-num 1`` = ``--swap 2 --skip target``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from PIL import Image
from torch import Tensor

from stylegan2.blocks import generator_block_of
from stylegan2.networks import Generator
from stylegan2.sampling import seed_inputs
from toonlab.checkpoint import CheckpointError
from toonlab.images import make_grid, to_pil

__all__ = ["SKIPS", "blend_factor", "blend_state_dicts", "blend_generators", "feature_swap", "swap_grid"]


def blend_factor(block: int | None, swap: int, width: float | None = None) -> float:
    """y(b): 0 keeps A (low resolution), 1 takes B. The mapping network (block None) is A's."""
    if block is None:
        return 0.0
    if not width:
        return 0.0 if block <= swap else 1.0
    return 1.0 / (1.0 + math.exp(-(block - swap - 0.5) / width))


def blend_state_dicts(a: dict[str, Tensor], b: dict[str, Tensor], swap: int, width: float | None = None) -> dict[str, Tensor]:
    """Blend two generator state dicts block by block (same keys and shapes required)."""
    if set(a) != set(b):
        missing = sorted(set(a) ^ set(b))[0]
        raise CheckpointError(f"the two generators have different layouts (e.g. key {missing!r})")
    out = {}
    for k, va in a.items():
        vb = b[k]
        if va.shape != vb.shape:
            raise CheckpointError(f"the two generators differ in shape at {k!r}: {list(va.shape)} vs {list(vb.shape)}")
        y = blend_factor(generator_block_of(k), swap, width)
        out[k] = va.clone() if y == 0 else vb.clone() if y == 1 else torch.lerp(va.float(), vb.float(), y).to(va.dtype)
    return out


def blend_generators(A: Generator, B: Generator, swap: int, width: float | None = None) -> Generator:
    """A new Generator with blended weights (A's mapping and truncation centre)."""
    G = Generator(**A.config)
    G.load_state_dict(blend_state_dicts(A.state_dict(), B.state_dict(), swap, width))
    if A.w_avg_known:
        G.w_avg.copy_(A.w_avg)
        G.w_avg_known = True
    return G.to(A.w_avg.device).eval().requires_grad_(False)


SKIPS = ("source", "target")


@torch.no_grad()
def feature_swap(A: Generator, B: Generator, latent: Tensor, block: int, noise: Sequence[Tensor] | None = None,
                 noise_mode: str = "const", skip: str = "source") -> Tensor:
    """Render blocks 1..block with A and the rest with B (same latent and noise).

    ``skip="source"``: the skip-RGB image through ``block`` is A's too. ``skip="target"``: it is
    B's own image through block−1 plus B's ToRGB of ``block`` applied to A's feature
    (Cartoon-StyleGAN's swap at ``swap_layer_num = block − 1``).
    """
    if skip not in SKIPS:
        raise ValueError(f"skip must be one of {SKIPS}, got {skip!r}")
    head = A.synthesis(latent, noise=noise, noise_mode=noise_mode, to_block=block)
    rgb = head.last_skip
    if skip == "target":
        w = B.broadcast(latent)
        prev = None if block == 1 else B.synthesis(w, noise=noise, noise_mode=noise_mode, to_block=block - 1).last_skip
        to_rgb = B.to_rgb1 if block == 1 else B.to_rgbs[block - 2]
        rgb = to_rgb(head.last_feature, w[:, B.block_latent_indices(block)[-1]], prev)
    if block >= B.n_blocks:
        return rgb
    return B.synthesis(latent, noise=noise, noise_mode=noise_mode, from_block=block,
                       feature=head.last_feature, skip=rgb).image


@torch.no_grad()
def swap_grid(A: Generator, B: Generator, seeds: Sequence[int], blocks: Sequence[int],
              width: float | None = None, truncation: float = 0.7, skip: str = "source") -> Image.Image:
    """Rows = seeds; columns = source | target | blend@k … | feature swap@k … (with ``skip``), labelled."""
    blends = {k: blend_generators(A, B, k, width) for k in blocks}
    tag = "" if skip == "source" else "/t"
    cols = ["source", "target"] + [f"blend@{k}" for k in blocks] + [f"swap@{k}{tag}" for k in blocks]
    tiles = []
    for s in seeds:
        z, _ = seed_inputs(A, s)
        w = A.broadcast(A.mapping(z.to(A.w_avg.device), truncation=truncation))
        noise = A.const_noise()
        row = [A.synthesis(w, noise=noise).image, B.synthesis(w, noise=noise).image]
        row += [blends[k].synthesis(w, noise=noise).image for k in blocks]
        row += [feature_swap(A, B, w, k, noise, skip=skip) for k in blocks]
        tiles += [to_pil(t[0]) for t in row]
    return make_grid(tiles, cols=len(cols), col_labels=cols, row_labels=[f"seed {s}" for s in seeds])
