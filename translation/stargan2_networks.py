"""StarGAN v2 networks (Choi et al., CVPR 2020; paper appendix, Tables 4-6; style 64-d, latent 16-d).

  * Generator: 3×3 conv → ``log2(S)−4`` downsampling pre-activation ResBlks with InstanceNorm
    (64 → 128 → 256 → 512 → 512 at 256 px) → 2 IN ResBlks; decoder mirrors it with AdaIN ResBlks
    (2 bottleneck + upsampling blocks) → IN, LReLU, 1×1 conv to RGB. Residual sums are ÷√2.
  * MappingNetwork: 4 shared 512-wide linear + ReLU layers, then per domain 3 × (512 + ReLU) and a
    512 → 64 head; ``F(z, y)`` picks domain ``y``'s head.
  * StyleEncoder / Discriminator: 3×3 conv → ``log2(S)−2`` downsampling ResBlks (no norm) → LReLU,
    4×4 conv, LReLU → per-domain linear heads (E: 64-d style) or a 1×1 conv with one logit per
    domain (D: the logit of the asked domain is used — a multi-task discriminator).
The high-pass-filter face-mask branch of the authors' CelebA-HQ model is not included (their AFHQ setup).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as Fn
from torch import Tensor, nn

from toonlab.errors import UserInputError

MODEL_NAME = "stargan2"


def _default_dim_in(img_size: int) -> int:
    return 2 ** 14 // img_size  # 64 at 256 px: the first width scales inversely with the image side


def _n_down_g(img_size: int) -> int:
    return max(1, int(round(math.log2(img_size))) - 4)  # down to 16×16 at any size (4 stages at 256)


def _n_down_d(img_size: int) -> int:
    return int(round(math.log2(img_size))) - 2  # down to 4×4, then a 4×4 "valid" conv → 1×1


def check_size(img_size: int) -> None:
    if img_size < 16 or img_size & (img_size - 1):
        raise UserInputError(f"StarGAN v2 image size must be a power of two ≥ 16, got {img_size}")


class ResBlk(nn.Module):
    """Pre-activation residual block: [IN] → LReLU → 3×3 conv → [avg-pool] → [IN] → LReLU → 3×3 conv.

    The shortcut is a bias-free 1×1 conv when the width changes, average-pooled when downsampling;
    the sum is divided by √2 to keep unit variance.
    """

    def __init__(self, dim_in: int, dim_out: int, normalize: bool = False, downsample: bool = False) -> None:
        super().__init__()
        self.normalize, self.downsample = normalize, downsample
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        if normalize:
            self.norm1 = nn.InstanceNorm2d(dim_in, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim_in, affine=True)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.conv1x1 is not None:
            x = self.conv1x1(x)
        return Fn.avg_pool2d(x, 2) if self.downsample else x

    def _residual(self, x: Tensor) -> Tensor:
        if self.normalize:
            x = self.norm1(x)
        x = self.conv1(Fn.leaky_relu(x, 0.2))
        if self.downsample:
            x = Fn.avg_pool2d(x, 2)
        if self.normalize:
            x = self.norm2(x)
        return self.conv2(Fn.leaky_relu(x, 0.2))

    def forward(self, x: Tensor) -> Tensor:
        return (self._shortcut(x) + self._residual(x)) / math.sqrt(2)


class AdaIN(nn.Module):
    """Adaptive instance norm: ``(1 + γ(s))·IN(x) + β(s)``; the ``1 +`` makes a zero style the identity scale."""

    def __init__(self, style_dim: int, num_features: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(num_features, affine=False)
        self.fc = nn.Linear(style_dim, num_features * 2)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdainResBlk(nn.Module):
    """Decoder block: AdaIN → LReLU → [nearest ×2] → 3×3 conv → AdaIN → LReLU → 3×3 conv, + shortcut, ÷√2."""

    def __init__(self, dim_in: int, dim_out: int, style_dim: int = 64, upsample: bool = False) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv1 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_out, dim_out, 3, 1, 1)
        self.norm1 = AdaIN(style_dim, dim_in)
        self.norm2 = AdaIN(style_dim, dim_out)
        self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False) if dim_in != dim_out else None

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = Fn.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv1x1(x) if self.conv1x1 is not None else x

    def _residual(self, x: Tensor, s: Tensor) -> Tensor:
        x = Fn.leaky_relu(self.norm1(x, s), 0.2)
        if self.upsample:
            x = Fn.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv1(x)
        return self.conv2(Fn.leaky_relu(self.norm2(x, s), 0.2))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        return (self._residual(x, s) + self._shortcut(x)) / math.sqrt(2)


class Generator(nn.Module):
    """G(x, s): IN-ResBlk encoder, AdaIN-ResBlk decoder; 33,892,995 parameters at 256 px (2+ domains) with the defaults."""

    def __init__(self, img_size: int = 256, style_dim: int = 64, max_conv_dim: int = 512,
                 dim_in: int | None = None) -> None:
        super().__init__()
        check_size(img_size)
        dim = dim_in or _default_dim_in(img_size)
        self.img_size, self.style_dim = img_size, style_dim
        self.from_rgb = nn.Conv2d(3, dim, 3, 1, 1)
        self.encode = nn.ModuleList()
        self.decode = nn.ModuleList()
        self.to_rgb = nn.Sequential(nn.InstanceNorm2d(dim, affine=True), nn.LeakyReLU(0.2), nn.Conv2d(dim, 3, 1, 1, 0))
        d_in = dim
        for _ in range(_n_down_g(img_size)):
            d_out = min(d_in * 2, max_conv_dim)
            self.encode.append(ResBlk(d_in, d_out, normalize=True, downsample=True))
            self.decode.insert(0, AdainResBlk(d_out, d_in, style_dim, upsample=True))
            d_in = d_out
        for _ in range(2):  # bottleneck
            self.encode.append(ResBlk(d_in, d_in, normalize=True))
            self.decode.insert(0, AdainResBlk(d_in, d_in, style_dim))

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        x = self.from_rgb(x)
        for block in self.encode:
            x = block(x)
        for block in self.decode:
            x = block(x, s)
        return self.to_rgb(x)


class MappingNetwork(nn.Module):
    """F(z, y): 16-d latent → 64-d style of domain ``y`` (shared MLP + one head per domain)."""

    def __init__(self, latent_dim: int = 16, style_dim: int = 64, num_domains: int = 2, hidden: int = 512,
                 n_shared: int = 4, n_unshared: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_shared):
            layers += [nn.Linear(latent_dim if i == 0 else hidden, hidden), nn.ReLU()]
        self.shared = nn.Sequential(*layers)
        self.unshared = nn.ModuleList()
        for _ in range(num_domains):
            head: list[nn.Module] = []
            for _ in range(n_unshared):
                head += [nn.Linear(hidden, hidden), nn.ReLU()]
            head.append(nn.Linear(hidden, style_dim))
            self.unshared.append(nn.Sequential(*head))
        self.latent_dim, self.style_dim, self.num_domains = latent_dim, style_dim, num_domains

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        h = self.shared(z)
        out = torch.stack([head(h) for head in self.unshared], dim=1)  # [N, domains, style]
        return out[torch.arange(len(y), device=y.device), y]


def _trunk(img_size: int, dim_in: int | None, max_conv_dim: int) -> tuple[nn.Sequential, int]:
    """The shared conv trunk of E and D: → [N, C, 1, 1] features."""
    dim = dim_in or _default_dim_in(img_size)
    blocks: list[nn.Module] = [nn.Conv2d(3, dim, 3, 1, 1)]
    d_in = dim
    for _ in range(_n_down_d(img_size)):
        d_out = min(d_in * 2, max_conv_dim)
        blocks.append(ResBlk(d_in, d_out, downsample=True))
        d_in = d_out
    blocks += [nn.LeakyReLU(0.2), nn.Conv2d(d_in, d_in, 4, 1, 0), nn.LeakyReLU(0.2)]
    return nn.Sequential(*blocks), d_in


class StyleEncoder(nn.Module):
    """E(x, y): the 64-d style of image ``x`` as seen by domain ``y``'s head."""

    def __init__(self, img_size: int = 256, style_dim: int = 64, num_domains: int = 2, max_conv_dim: int = 512,
                 dim_in: int | None = None) -> None:
        super().__init__()
        check_size(img_size)
        self.shared, d = _trunk(img_size, dim_in, max_conv_dim)
        self.unshared = nn.ModuleList(nn.Linear(d, style_dim) for _ in range(num_domains))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.shared(x).flatten(1)
        out = torch.stack([head(h) for head in self.unshared], dim=1)
        return out[torch.arange(len(y), device=y.device), y]


class Discriminator(nn.Module):
    """Multi-task D(x, y): one real/fake logit per domain; returns domain ``y``'s logit [N]."""

    def __init__(self, img_size: int = 256, num_domains: int = 2, max_conv_dim: int = 512,
                 dim_in: int | None = None) -> None:
        super().__init__()
        check_size(img_size)
        self.main, d = _trunk(img_size, dim_in, max_conv_dim)
        self.head = nn.Conv2d(d, num_domains, 1, 1, 0)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.head(self.main(x)).flatten(1)  # [N, domains]
        return out[torch.arange(len(y), device=y.device), y]


def _he_init(m: nn.Module) -> None:
    # He (fan-in) init of every conv/linear, zero biases: the authors' initialisation.
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@dataclass
class StarGAN2Nets:
    """The four networks; ``arch`` rebuilds them (stored in every checkpoint)."""

    G: Generator
    F: MappingNetwork
    E: StyleEncoder
    D: Discriminator | None
    arch: dict[str, Any]

    def to(self, device: torch.device | str) -> "StarGAN2Nets":
        for m in (self.G, self.F, self.E, self.D):
            if m is not None:
                m.to(device)
        return self


ARCH_DEFAULTS: dict[str, Any] = dict(img_size=256, num_domains=2, style_dim=64, latent_dim=16, max_conv_dim=512,
                                     dim_in=None, mapping_hidden=512)


def build_networks(arch: dict[str, Any] | None = None, discriminator: bool = True, init: bool = True) -> StarGAN2Nets:
    """G, F, E (and D) from an architecture dict (keys of ``ARCH_DEFAULTS``; missing keys take the defaults)."""
    a = {**ARCH_DEFAULTS, **(arch or {})}
    unknown = set(a) - set(ARCH_DEFAULTS)
    if unknown:
        raise UserInputError(f"unknown StarGAN v2 architecture keys: {', '.join(sorted(unknown))}")
    G = Generator(a["img_size"], a["style_dim"], a["max_conv_dim"], a["dim_in"])
    F = MappingNetwork(a["latent_dim"], a["style_dim"], a["num_domains"], a["mapping_hidden"])
    E = StyleEncoder(a["img_size"], a["style_dim"], a["num_domains"], a["max_conv_dim"], a["dim_in"])
    D = Discriminator(a["img_size"], a["num_domains"], a["max_conv_dim"], a["dim_in"]) if discriminator else None
    if init:
        for m in (G, F, E, D):
            if m is not None:
                m.apply(_he_init)
    return StarGAN2Nets(G, F, E, D, a)


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
