"""Shared test helpers: the tiny StyleGAN2 models every test file builds, and their checkpoints.

Tiny means 16-32 px, 16-d styles, ≤16 channels: each builds and runs in milliseconds on a CPU.
Every factory seeds torch itself, so a test that asks for the same model gets the same weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stylegan2.checkpoint import snapshot
from stylegan2.networks import Discriminator, Generator
from toonlab.atomic import torch_save_atomic
from toonlab.runtime import limit_cpu_threads

# A CI container may show more cores than its CPU quota: size torch (and the commands tests start,
# through OMP_NUM_THREADS) to the quota, or every test runs several times slower.
limit_cpu_threads()

#: The tiny StyleGAN2 shape (``channel_base`` 128 keeps 16-px models at ≤16 channels; 256 for 32 px).
TINY_G = dict(style_dim=16, n_mlp=2, channel_max=16, channel_base=128)


def perturb_(G: Generator, std: float = 0.2, which: str = "noise") -> Generator:
    """Make a fresh generator look trained: its zero-initialised terms get N(0, std) values.

    ``which="noise"``: noise strengths and activation biases; ``"biases"``: noise strengths and every
    bias except the modulations' (which start at 1 and must stay near it).
    """
    with torch.no_grad():
        for name, p in G.named_parameters():
            if which == "noise" and (name.endswith("noise.weight") or name.endswith("activate.bias")):
                p.normal_(0, std)
            elif which == "biases" and (name.endswith("noise.weight") or name.endswith("bias")
                                        and "modulation" not in name):
                p.normal_(0, std)
    return G


def tiny_generator(size: int = 16, seed: int = 0, *, perturb: str | None = None, std: float = 0.2,
                   **shape) -> Generator:
    """A seeded tiny generator (``shape`` overrides ``TINY_G``); ``perturb`` see :func:`perturb_`."""
    torch.manual_seed(seed)
    G = Generator(size, **{**TINY_G, **shape})
    return perturb_(G, std, perturb) if perturb else G


def tiny_discriminator(size: int = 16, **shape) -> Discriminator:
    kw = {k: v for k, v in {**TINY_G, **shape}.items() if k in ("channel_max", "channel_base", "channel_multiplier")}
    return Discriminator(size, **kw)


def tiny_checkpoint(path: Path, size: int = 16, seed: int = 0, *, with_d: bool = False, g_train: Generator | None = None,
                    perturb: str | None = None, **shape) -> Path:
    """A tiny generator saved as a community-layout snapshot (``g_ema`` [+ ``d``, ``g``])."""
    G = tiny_generator(size, seed, perturb=perturb, **shape)
    D = tiny_discriminator(size, **shape) if with_d else None
    return torch_save_atomic(snapshot(G, D, G_train=g_train), path)


def tiny_batches(n: int, size: int = 16, batch: int = 4, seed: int = 0) -> list[torch.Tensor]:
    """``n`` seeded batches of random images in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, size, size, generator=g) * 2 - 1 for _ in range(n)]


@pytest.fixture
def tiny_ckpt(tmp_path: Path) -> Path:
    """A tiny 16-px generator checkpoint in the test's folder."""
    return tiny_checkpoint(tmp_path / "G.pt")
