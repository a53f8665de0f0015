"""Latent files: what inversion writes and every renderer reads (``stylegan2.sampling.render``).

A latent file (``latent.pt``, written by ``inversion/project.py``) is a small torch file:
``{"format": "toonlab-latent/1", "latent": W+ [n_latent, D], "noise": [maps] | None, "ckpt",
"ckpt_hash", "settings", "source"}``, read with ``weights_only=True`` (``toonlab.checkpoint``) by
``generate.py --latent``, SeFa, the demo and the figure tools, with any generator fine-tuned from
the same source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from torch import Tensor

from toonlab.atomic import torch_save_atomic
from toonlab.checkpoint import file_hash, read_tagged
from toonlab.errors import UserInputError

__all__ = ["LATENT_FORMAT", "save_latent", "load_latent"]

LATENT_FORMAT = "toonlab-latent/1"


def save_latent(path: str | os.PathLike, latent: Tensor, noise: Sequence[Tensor] | None, ckpt: str | os.PathLike,
                settings: dict, source: str | None = None) -> Path:
    """Write one image's W+ latent [n_latent, D], its noise maps, the generator's hash and the settings."""
    obj = {
        "format": LATENT_FORMAT,
        # clone(): a row of a batched tensor is a view, and torch.save writes a view's whole storage
        # (every photo's latents in each photo's file).
        "latent": latent.detach().cpu().float().clone(),
        "noise": [t.detach().cpu().float().clone() for t in noise] if noise is not None else None,
        "ckpt": str(ckpt),
        "ckpt_hash": file_hash(ckpt),
        "settings": settings,
        "source": source,
    }
    return torch_save_atomic(obj, path)


def load_latent(path: str | os.PathLike) -> dict:
    """Read a latent file written by ``save_latent`` (one-line errors for anything else)."""
    obj = read_tagged(path, LATENT_FORMAT, "latent file", "write one with inversion/project.py")
    if not isinstance(obj.get("latent"), Tensor):
        raise UserInputError(f"{path}: not a toonlab latent file (it holds no latent)")
    lat = obj["latent"]
    if lat.ndim == 2:
        lat = lat.unsqueeze(0)
    obj["latent"] = lat
    if obj.get("noise") is not None:
        obj["noise"] = [t.unsqueeze(0) if t.ndim == 3 else t for t in obj["noise"]]
    return obj
