"""CycleGAN networks (Zhu et al., ICCV 2017; paper appendix 7.2).

G = c7s1-64, d128, d256, 9 × R256, u128, u64, c7s1-3 (reflection padding, InstanceNorm without
affine, ReLU, tanh); 11,378,179 parameters. D = the 70×70 PatchGAN C64-C128-C256-C512 (4×4 convs,
stride 2 but 1 for C512, InstanceNorm except on C64, LReLU 0.2) → 1 channel; 2,764,737 parameters.
Weights ~ N(0, 0.02).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["CycleGANGenerator", "PatchGANDiscriminator", "init_weights", "MODEL_NAME"]

MODEL_NAME = "cyclegan"


class _ResnetBlock(nn.Module):
    """reflect-pad → 3×3 conv → IN → ReLU → reflect-pad → 3×3 conv → IN, plus the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), nn.InstanceNorm2d(dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CycleGANGenerator(nn.Module):
    """ResNet generator (c7s1-ngf, two stride-2 downsamplings, ``n_blocks`` residual blocks, two ×2 up, c7s1-3).

    Input sides must be multiples of 4. 11,378,179 parameters with the defaults.
    """

    size_multiple = 4

    def __init__(self, ngf: int = 64, n_blocks: int = 9) -> None:
        super().__init__()
        # Convs carry biases: InstanceNorm without affine has no shift of its own.
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), nn.InstanceNorm2d(ngf), nn.ReLU(True)]
        for i in range(2):
            c = ngf * 2 ** i
            layers += [nn.Conv2d(c, c * 2, 3, stride=2, padding=1), nn.InstanceNorm2d(c * 2), nn.ReLU(True)]
        layers += [_ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            c = ngf * 2 ** (2 - i)
            # output_padding=1: each transposed conv is exactly ×2.
            layers += [nn.ConvTranspose2d(c, c // 2, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(c // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.ngf, self.n_blocks = ngf, n_blocks

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


class PatchGANDiscriminator(nn.Module):
    """70×70 PatchGAN (``n_layers=3``): one LSGAN logit per overlapping 70×70 patch. 2,764,737 parameters."""

    def __init__(self, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < n_layers else 1  # the last C block keeps the resolution (receptive field 70)
            layers += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1), nn.InstanceNorm2d(ndf * mult),
                       nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def init_weights(m: nn.Module, gain: float = 0.02) -> None:
    """N(0, 0.02) weights, zero biases (the paper's initialisation)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, gain)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
