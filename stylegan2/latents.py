"""Latent files and rendering of latents: what inversion writes and every renderer reads.

A latent file (``latent.pt``, written by ``inversion/project.py``) is a small torch file:
``{"format": "toonlab-latent/1", "latent": W+ [n_latent, D], "noise": [maps] | None, "ckpt",
"ckpt_hash", "settings", "source"}``, read with ``weights_only=True``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from stylegan2.checkpoint import file_hash
from stylegan2.checkpoint import save_atomic as save_torch_atomic
from stylegan2.networks import Generator
from toonlab.errors import UserInputError
from toonlab.runtime import autocast

LATENT_FORMAT = "toonlab-latent/1"


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
        return G.synthesis(latent, noise=noise, noise_mode=noise_mode).image.float()


def save_latent(path: str | os.PathLike, latent: Tensor, noise: Sequence[Tensor] | None, ckpt: str | os.PathLike,
                settings: dict, source: str | None = None) -> Path:
    """Write one image's W+ latent [n_latent, D], its noise maps, the generator's hash and the settings."""
    obj = {
        "format": LATENT_FORMAT,
        "latent": latent.detach().cpu().float(),
        "noise": [t.detach().cpu().float() for t in noise] if noise is not None else None,
        "ckpt": str(ckpt),
        "ckpt_hash": file_hash(ckpt),
        "settings": settings,
        "source": source,
    }
    return save_torch_atomic(obj, path)


def load_tagged(path: str | os.PathLike, fmt: str, what: str, hint: str) -> dict:
    """Load a small toonlab file whose ``format`` field is ``fmt``; one-line errors otherwise."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{what} {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any unpickling failure means "not our file"
        raise UserInputError(f"{p}: not a {what} ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise UserInputError(f"{p}: not a {what} ({hint})")
    return obj


def load_latent(path: str | os.PathLike) -> dict:
    """Read a latent file written by ``save_latent`` (one-line errors for anything else)."""
    obj = load_tagged(path, LATENT_FORMAT, "latent file", "write one with inversion/project.py")
    if not isinstance(obj.get("latent"), Tensor):
        raise UserInputError(f"{path}: not a toonlab latent file (it holds no latent)")
    lat = obj["latent"]
    if lat.ndim == 2:
        lat = lat.unsqueeze(0)
    obj["latent"] = lat
    if obj.get("noise") is not None:
        obj["noise"] = [t.unsqueeze(0) if t.ndim == 3 else t for t in obj["noise"]]
    return obj
