"""LPIPS (Zhang et al. 2018) as a loss and as a distance: the ``lpips`` package's v0.1 linear heads on a
torchvision trunk whose ImageNet weights load from disk only (nothing is downloaded).

``build_lpips`` gives the distance between two image batches; ``TargetLPIPS`` the distance to fixed
targets with their features computed once (the projector's loss). The metrics built on it
(diversity, reconstruction) live in ``metrics/lpips.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from toonlab.checkpoint import sha256_file
from toonlab.errors import UserInputError
from toonlab.weights import load_state, locate_weights

__all__ = ["LPIPS_TRUNK_FILES", "LPIPSDistance", "TargetLPIPS", "build_lpips"]

#: torchvision ImageNet trunks the ``lpips`` package builds on (its small linear layers ship with it).
LPIPS_TRUNK_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                     "squeeze": "squeezenet1_1-b8a52dc0.pth"}


class LPIPSDistance(nn.Module):
    """LPIPS (Zhang et al. 2018) between images in [-1, 1]: ``forward(a, b) -> [N]`` distances.

    Differentiable with respect to its inputs (a perceptual loss); its own weights are frozen
    and it stays in eval mode even inside a module that is put in training mode (the lpips
    linear layers carry dropout).
    """

    def __init__(self, model: nn.Module, description: str, net: str, random: bool) -> None:
        super().__init__()
        self.model = model
        self.description, self.net, self.random = description, net, random
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        return super().train(False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        return self.model(a, b).reshape(a.shape[0])


def build_lpips(net: str = "vgg", weights: str | Path | None = None, random: bool = False,
                device: str | torch.device = "cpu") -> LPIPSDistance:
    """The ``lpips`` package's LPIPS (v0.1 linear layers, shipped with it) on a torchvision trunk.

    The ImageNet trunk (``vgg16-397923af.pth`` for vgg) comes from ``weights`` or the torch hub
    cache, else a one-line error; ``random=True`` is the explicit offline alternative (a
    fixed-seed random trunk: a smoke test, numbers comparable with nothing). Note StarGAN v2's
    published LPIPS diversity used the AlexNet trunk (``net="alex"``).
    """
    if net not in LPIPS_TRUNK_FILES:
        raise UserInputError(f"unknown LPIPS network {net!r} (use {', '.join(LPIPS_TRUNK_FILES)})")
    if random and weights is not None:
        raise UserInputError("--lpips-weights and --features random exclude each other")
    path = None
    if not random:
        path = locate_weights(LPIPS_TRUNK_FILES[net], weights, what=f"{net} ImageNet trunk for LPIPS",
                              option="--lpips-weights", offline_hint="--features random (a random trunk: not comparable)")
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)  # the random trunk is the same every time
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation inside lpips
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        _load_trunk(model.net, load_state(path), path)
        description = f"LPIPS-{net} v0.1, trunk {path} (sha256 {sha256_file(path)[:8]})"
    else:
        description = f"LPIPS-{net} v0.1 with a RANDOM trunk (--features random): comparable with nothing"
    return LPIPSDistance(model, description, net, random).to(device)


def _load_trunk(trunk: nn.Module, sd: dict[str, Tensor], path: Path) -> None:
    """torchvision's ``features.{i}.*`` → lpips' ``slice{k}.{i}.*`` (the slices keep torchvision's indices)."""
    mapped: dict[str, Tensor] = {}
    for key, ref in trunk.state_dict().items():
        src = "features." + key.split(".", 1)[1]
        if src not in sd:
            raise UserInputError(f"{path}: no {src!r}; not the torchvision ImageNet weights this LPIPS needs")
        if tuple(sd[src].shape) != tuple(ref.shape):
            raise UserInputError(f"{path}: {src} has shape {tuple(sd[src].shape)}, expected {tuple(ref.shape)}")
        mapped[key] = sd[src]
    trunk.load_state_dict(mapped, strict=True)


class TargetLPIPS(nn.Module):
    """LPIPS distance to fixed targets, with the targets' normalised features computed once.

    Same value as ``lpips.LPIPS(img, target)`` (v0.1, linear heads, spatial average), but each
    step runs the trunk on the generated images only.
    """

    def __init__(self, lpips_model: nn.Module, target: Tensor) -> None:
        super().__init__()
        self.model = lpips_model
        with torch.no_grad():
            self.target_feats = [f.detach() for f in self._features(target)]

    def _features(self, x: Tensor) -> list[Tensor]:
        m = self.model
        outs = m.net.forward(m.scaling_layer(x))
        return [o / (o.float().square().sum(dim=1, keepdim=True).sqrt() + 1e-10).to(o.dtype) for o in outs]

    def forward(self, x: Tensor) -> Tensor:
        total = 0.0
        for lin, f, t in zip(self.model.lins, self._features(x), self.target_feats):
            total = total + lin((f.float() - t.float()).square()).mean(dim=(1, 2, 3))
        return total
