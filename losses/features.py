"""Frozen ImageNet feature networks for perceptual losses (content / Gram style), loaded from disk only.

``vgg19_features`` is the VGG19 trunk AnimeGAN and CartoonGAN use (cut at ``conv4_4`` before its
ReLU); ``resnet_features`` is ResNet-50 cut after ``layer2`` for the improved CartoonGAN — chosen
over ResNet-18 because ``layer2`` of ResNet-50 has the same stride (8) and width (512) as VGG19's
``conv4_4``, so content/Gram weights tuned for VGG keep their scale roughly.

Weights come from an explicit path or the torch hub cache (``vgg19-dcbb9e9d.pth``,
``resnet50-0676ba61.pth``, torchvision's ImageNet files); a missing file is one line naming it and
where we looked. ``random=True`` is the documented offline choice: seeded random features (the
same on every run, so resumed runs see the same network), much weaker as a perceptual prior.
Torchvision models are built with ``weights=None``: nothing is downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from toonlab.errors import UserInputError
from toonlab.weights import load_state, locate_weights

__all__ = ["FeatureNetwork", "vgg19_features", "resnet_features", "VGG19_FILE", "RESNET50_FILE"]

VGG19_FILE = "vgg19-dcbb9e9d.pth"
RESNET50_FILE = "resnet50-0676ba61.pth"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RANDOM_SEED = 20200101  # fixed: random features must be identical across runs and resumes
_OFFLINE_HINT = "--features random (random features, lower quality)"


class FeatureNetwork(nn.Module):
    """A frozen trunk taking RGB in [-1, 1]; ImageNet normalisation happens inside.

    It stays in eval mode even when a parent calls ``.train()`` (BatchNorm statistics of a frozen
    ResNet must not drift), and its parameters never require grad — gradients still flow to the input.
    """

    def __init__(self, trunk: nn.Module, name: str, source: str) -> None:
        super().__init__()
        self.trunk = trunk
        self.name = name
        self.source = source  # the weights file, or "random"
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FeatureNetwork:
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        x = ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.trunk(x)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}"


def _vgg19_layer_index(layer: str) -> int:
    """Index just past ``convB_I`` in torchvision's ``vgg19().features`` (so the cut is before its ReLU)."""
    from torchvision.models.vgg import cfgs

    m = re.fullmatch(r"conv(\d)_(\d)", layer)
    if not m:
        raise UserInputError(f"unknown VGG19 layer {layer!r} (use convB_I, e.g. conv4_4)")
    block, conv = int(m.group(1)), int(m.group(2))
    idx, b, i = 0, 1, 0
    for v in cfgs["E"]:
        if v == "M":
            b, i = b + 1, 0
            idx += 1
            continue
        i += 1
        idx += 1  # the conv
        if (b, i) == (block, conv):
            return idx
        idx += 1  # its ReLU
    raise UserInputError(f"VGG19 has no layer {layer!r}")


def _load_subset(module: nn.Module, state: dict, prefix: str, path: Path, what: str) -> None:
    """Strictly load ``module`` from the ``prefix``-ed entries of a full-network state dict."""
    own = module.state_dict()
    sub = {}
    for k, v in own.items():
        for key in (prefix + k, k):
            if key in state:
                sub[k] = state[key]
                break
        else:
            raise UserInputError(f"{path} does not hold {what}: missing {prefix + k!r}")
        if tuple(sub[k].shape) != tuple(v.shape):
            raise UserInputError(f"{path}: shape mismatch at {prefix + k!r}: expected {list(v.shape)}, "
                                 f"found {list(sub[k].shape)}")
    module.load_state_dict(sub, strict=True)


def vgg19_features(weights: str | Path | None = None, layer: str = "conv4_4", random: bool = False) -> FeatureNetwork:
    """VGG19 trunk cut at ``layer`` before its ReLU (default ``conv4_4``: stride 8, 512 channels).

    weights: a file (``--vgg-weights PATH``), else ``vgg19-dcbb9e9d.pth`` in the torch hub cache;
    random: seeded random weights instead (offline; no file is read).
    """
    from torchvision.models.vgg import cfgs, make_layers

    cut = _vgg19_layer_index(layer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_SEED)
        # The features of torchvision's vgg19(weights=None), without the 120 M-parameter classifier.
        trunk = make_layers(cfgs["E"], batch_norm=False)[:cut]
        if random:
            for m in trunk.modules():
                if isinstance(m, nn.Conv2d):  # torchvision's VGG init, so random features do not vanish with depth
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
    if random:
        return FeatureNetwork(trunk, f"vgg19/{layer}", "random")
    path = locate_weights(VGG19_FILE, weights, what="VGG19 ImageNet weights", option="--features-weights",
                          offline_hint=_OFFLINE_HINT)
    _load_subset(trunk, load_state(path), "features.", path, "VGG19 weights")
    return FeatureNetwork(trunk, f"vgg19/{layer}", str(path))


def resnet_features(weights: str | Path | None = None, layer: str = "layer2", random: bool = False) -> FeatureNetwork:
    """ResNet-50 trunk (stem + ``layer1`` … ``layer``; default ``layer2``: stride 8, 512 channels).

    weights: a file (``--vgg-weights PATH`` on the CLI: the feature network's weights), else
    ``resnet50-0676ba61.pth`` in the torch hub cache; random: seeded random weights instead.
    """
    from torchvision.models import resnet50

    names = ("layer1", "layer2", "layer3", "layer4")
    if layer not in names:
        raise UserInputError(f"unknown ResNet layer {layer!r} (use one of {', '.join(names)})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_SEED)
        net = resnet50(weights=None)
    if not random:
        path = locate_weights(RESNET50_FILE, weights, what="ResNet-50 ImageNet weights", option="--features-weights",
                              offline_hint=_OFFLINE_HINT)
        state = {k: v for k, v in load_state(path).items() if not k.startswith("fc.")}
        _load_subset(_NoFC(net), state, "", path, "ResNet-50 weights")
        source = str(path)
    else:
        source = "random"
    parts = [net.conv1, net.bn1, net.relu, net.maxpool]
    for n in names[: names.index(layer) + 1]:
        parts.append(getattr(net, n))
    return FeatureNetwork(nn.Sequential(*parts), f"resnet50/{layer}", source)


class _NoFC(nn.Module):
    """View of a ResNet without its classifier, so loading checks exactly the trunk's keys."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        for name, child in net.named_children():
            if name != "fc":
                self.add_module(name, child)
