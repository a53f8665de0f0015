"""Locate pretrained feature-network weights on disk; nothing is ever downloaded.

Every feature network (VGG16 for LPIPS, VGG19 for content/style losses, ResNet, Inception
for FID) loads from an explicit path or from the torch hub cache where torchvision and
torch-fidelity keep their downloads.  When the file is missing the user gets one line that
names the file, every place we looked, and the offline alternative.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from toonlab.checkpoint import load_torch_file
from toonlab.errors import UserInputError


class WeightsNotFound(UserInputError):
    """A pretrained weights file is not on disk (we never download)."""


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights(
    filename: str,
    explicit: str | os.PathLike | None = None,
    *,
    what: str = "weights",
    option: str | None = None,
    offline_hint: str | None = None,
) -> Path:
    """Return the path of ``filename``: ``explicit`` if given, else the torch hub cache.

    ``what`` names the network in the error ("VGG19 ImageNet weights"), ``option`` the CLI flag
    that takes a path, ``offline_hint`` the documented lower-quality alternative.
    """
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_file() and p.stat().st_size > 0:
            return p
        raise WeightsNotFound(f"{what}: {p} does not exist or is empty")
    p = hub_checkpoint_dir() / filename
    if p.is_file() and p.stat().st_size > 0:
        return p
    hint = []
    if option:
        hint.append(f"pass {option} PATH")
    if offline_hint:
        hint.append(offline_hint)
    tail = f" ({'; or '.join(hint)})" if hint else ""
    raise WeightsNotFound(f"{what} not found: looked for {filename} in {p.parent}{tail}; nothing is downloaded")


def load_state(path: Path) -> dict:
    """Load a weights file saved as a plain state dict (tensors only)."""
    state = load_torch_file(path, "weights file")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"{path} does not hold a state dict")
    return state
