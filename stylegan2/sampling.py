"""Sampling StyleGAN2 generators: what a seed stands for, batched rendering of seeds, and rendering
W+ latents with given noise maps (projected latents, SeFa edits, blends)."""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch import Tensor

from stylegan2.networks import NOISE_MODES, Generator
from toonlab.errors import UserInputError
from toonlab.images import check_finite_images
from toonlab.runtime import autocast, progress

__all__ = ["seed_inputs", "generate", "render"]


def seed_inputs(G: Generator, seed: int) -> tuple[Tensor, list[Tensor]]:
    """The z and random noise maps that ``seed`` stands for (CPU generator: same on every device)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(1, G.style_dim, generator=g)
    noise = [torch.randn(1, 1, r, r, generator=g) for r in G.noise_shapes()]
    return z, noise


@torch.no_grad()
def generate(
    G: Generator,
    seeds: Sequence[int],
    truncation: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    precision: str = "fp32",
    show_progress: bool = True,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(seed, image [3,H,W] in [-1,1])`` for each seed, rendered in batches."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}")
    device = G.w_avg.device
    bar = progress(total=len(seeds), desc="generate", unit="img", disable=not show_progress)
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start : start + batch_size])
        inputs = [seed_inputs(G, s) for s in chunk]
        z = torch.cat([i[0] for i in inputs]).to(device)
        noise = None
        if noise_mode == "random":
            noise = [torch.cat([i[1][k] for i in inputs]).to(device) for k in range(G.num_layers)]
        with autocast(device, precision):
            w = G.mapping(z, truncation=truncation)
            img = G.synthesis(w, noise=noise, noise_mode=noise_mode).image
        img = check_finite_images(img.float())  # a NaN checkpoint: an error, not black PNGs
        for s, im in zip(chunk, img):
            yield s, im
        bar.update(len(chunk))
    bar.close()


@torch.no_grad()
def render(G: Generator, latent: Tensor, noise: Sequence[Tensor] | None = None, noise_mode: str = "const",
           precision: str = "fp32") -> Tensor:
    """Render W+ latents [N, n_latent, D] with the given noise maps (or ``noise_mode``)."""
    dev = G.w_avg.device
    latent = latent.to(dev)
    if latent.shape[1] != G.n_latent:
        raise UserInputError(f"the latent has {latent.shape[1]} layers but this generator needs {G.n_latent} "
                             f"({G.size} px); project with a generator of the same size")
    if noise is not None:
        shapes = [t.shape[-1] for t in noise]
        if shapes != G.noise_shapes():
            raise UserInputError(f"the latent's noise maps {shapes} do not fit this generator ({G.noise_shapes()})")
        noise = [t.to(dev) for t in noise]
    with autocast(dev, precision):
        img = G.synthesis(latent, noise=noise, noise_mode=noise_mode).image.float()
    return check_finite_images(img)
