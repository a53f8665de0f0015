"""CartoonGAN generator and discriminator (Chen, Lai & Liu, CVPR 2018), plus the "improved" switches.

Generator: k7n64 → two stride-2 k3 stages (128, 256) → 8 residual blocks (256) → two transposed
stride-2 stages (128, 64) → k7n3, tanh; InstanceNorm + ReLU; ≈11.1 M parameters. The improved
variant (seed study) uses LeakyReLU(0.2) in G and InstanceNorm instead of BatchNorm in D; its
LSGAN loss and ResNet content features live in ``losses/`` and the trainer.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["CartoonGANGenerator", "CartoonGANDiscriminator"]


def _act(improved: bool) -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True) if improved else nn.ReLU(inplace=True)


class _ResBlock(nn.Module):
    """k3n256 → IN → act → k3n256 → IN, plus the identity (no activation after the sum, as in the paper)."""

    def __init__(self, ch: int, improved: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True), _act(improved),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class CartoonGANGenerator(nn.Module):
    """CartoonGAN generator (11,129,667 parameters); ``improved`` switches ReLU to LeakyReLU(0.2)."""

    size_multiple = 4  # two stride-2 convs and two exact ×2 transposed convs

    def __init__(self, improved: bool = False, n_res: int = 8) -> None:
        super().__init__()
        self.improved = bool(improved)

        def norm_act(ch: int) -> list[nn.Module]:
            return [nn.InstanceNorm2d(ch, affine=True), _act(improved)]

        self.down = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), *norm_act(64),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.Conv2d(128, 128, 3, padding=1), *norm_act(128),
            nn.Conv2d(128, 256, 3, stride=2, padding=1), nn.Conv2d(256, 256, 3, padding=1), *norm_act(256),
        )
        self.res = nn.Sequential(*[_ResBlock(256, improved) for _ in range(n_res)])
        # output_padding=1 makes each transposed stage exactly ×2 (H/4 → H/2 → H for H divisible by 4).
        self.up = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1, output_padding=1),
            nn.Conv2d(128, 128, 3, padding=1), *norm_act(128),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1),
            nn.Conv2d(64, 64, 3, padding=1), *norm_act(64),
            nn.ReflectionPad2d(3), nn.Conv2d(64, 3, 7), nn.Tanh(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.res(self.down(x)))


class CartoonGANDiscriminator(nn.Module):
    """Patch-level discriminator (output at H/4): k3 convs 32 → [64 s2, 128] → [128 s2, 256] → 256 → 1.

    The paper normalises with BatchNorm; ``improved`` uses InstanceNorm (batch-independent, so the
    real, fake and edge-smoothed batches can share one forward pass without mixing statistics).
    """

    def __init__(self, improved: bool = False) -> None:
        super().__init__()

        def norm(ch: int) -> nn.Module:
            return nn.InstanceNorm2d(ch, affine=True) if improved else nn.BatchNorm2d(ch)

        lrelu = lambda: nn.LeakyReLU(0.2, inplace=True)
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), lrelu(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), lrelu(),
            nn.Conv2d(64, 128, 3, padding=1), norm(128), lrelu(),
            nn.Conv2d(128, 128, 3, stride=2, padding=1), lrelu(),
            nn.Conv2d(128, 256, 3, padding=1), norm(256), lrelu(),
            nn.Conv2d(256, 256, 3, padding=1), norm(256), lrelu(),
            nn.Conv2d(256, 1, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
