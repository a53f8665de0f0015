"""AnimeGAN v1 / v2 generators and their discriminator (Chen et al. 2020; AnimeGANv2 2021).

All generators map RGB in [-1, 1], shape ``(N, 3, H, W)``, to RGB in [-1, 1] of the same size.
Any H and W work (``size_multiple`` = 1; inference runs them at the input's size) because the
decoders upsample to the encoder's recorded sizes rather than by a fixed factor — except v2 with
``align_corners=False``, whose ×2 resizes need sides divisible by 4. Training crops are multiples of 8.

The v2 generator keeps the state-dict layout of the widely used PyTorch port
(bryandlee/animegan2-pytorch: ``block_a`` … ``block_e``, ``out_layer``), so the released files
(``face_paint_512_v2.pt``, ``paprika.pt``, ``celeba_distill.pt``) load with ``strict=True`` and,
with the default ``align_corners=True``, give the port's images. Layouts: REFERENCE.md §6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "LayerNorm2d",
    "ConvNormLReLU",
    "InvertedResBlock",
    "AnimeGANv2Generator",
    "AnimeGANv1Generator",
    "AnimeGANDiscriminator",
]

# Stride-2 3×3 convs pad only right/bottom: (left, right, top, bottom). With reflect padding this
# maps an even H to exactly H/2 — the TF original pads the same way, and released weights expect it.
_PAD_S2 = (0, 1, 0, 1)


# --------------------------------------------------------------------------- v2 (port layout)


class LayerNorm2d(nn.GroupNorm):
    """GroupNorm(1, C) with per-channel affine — same parameters and state-dict keys — computed with
    whole-tensor mean reductions.

    PyTorch's GroupNorm kernel reduces each (sample, group) pair inside one thread block, so with a
    single group a 1080p frame is one block over 66 M values (about 1 s per frame for the v2
    generator on an H100). Plain means split the reduction across the GPU; they also export to ONNX
    as ReduceMean. Statistics are taken in float32 (bf16 inputs under autocast included).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__(1, num_channels, eps=eps, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and not (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()):
            # The CPU kernel of group_norm is one fused pass per image (the block-per-group issue
            # is a GPU one); the five-pass formula below made the plain module 0.93x the port.
            y = F.group_norm(x.float(), 1, self.weight.float(), self.bias.float(), self.eps)
            return y.to(x.dtype)
        xf = x.float()
        mean = xf.mean(dim=(1, 2, 3), keepdim=True)
        centred = xf - mean
        var = centred.square().mean(dim=(1, 2, 3), keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


class ConvNormLReLU(nn.Sequential):
    """Reflect pad → conv (no bias unless asked) → GroupNorm(1, C) (LayerNorm over C,H,W) → LReLU 0.2.

    Children are indexed 0..3 so a conv's weight is ``<name>.1.weight`` and the norm's
    ``<name>.2.weight``/``.bias`` — the port's key names.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | tuple[int, int, int, int] = 1, groups: int = 1, bias: bool = False) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=0, groups=groups, bias=bias),
            LayerNorm2d(out_ch),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: 1×1 expand → depthwise 3×3 (with bias) → 1×1 project → norm; skip if in == out."""

    def __init__(self, in_ch: int, out_ch: int, expansion: float = 2.0) -> None:
        super().__init__()
        self.use_res_connect = in_ch == out_ch
        mid = int(round(in_ch * expansion))
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvNormLReLU(in_ch, mid, kernel_size=1, padding=0))
        layers += [
            ConvNormLReLU(mid, mid, groups=mid, bias=True),
            nn.Conv2d(mid, out_ch, 1, bias=False),
            LayerNorm2d(out_ch),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.layers(x)
        return x + out if self.use_res_connect else out


def _resize(x: Tensor, size: torch.Size | tuple[int, int], align_corners: bool) -> Tensor:
    # The port's default path resizes to an explicit size with align_corners=True; its other path
    # (scale_factor=2, align_corners=False) is what its test.py uses. Both are offered.
    if align_corners:
        return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class AnimeGANv2Generator(nn.Module):
    """AnimeGANv2 generator, 2,143,552 parameters (lite: widths ×0.5, 6 IRBs, 683,168 ≈ 0.70 M).

    ``lite`` keeps the key layout (so a file's shapes tell which variant it is) and halves every
    width; it keeps some of the lost capacity with 6 inverted residual blocks instead of 4.
    """

    def __init__(self, lite: bool = False) -> None:
        super().__init__()
        self.lite = bool(lite)
        w = (lambda c: c // 2) if lite else (lambda c: c)
        c32, c64, c128, c256 = w(32), w(64), w(128), w(256)
        n_irb = 6 if lite else 4
        self.align_corners = True  # the port's default forward; see _resize
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, c32, kernel_size=7, padding=3),
            ConvNormLReLU(c32, c64, stride=2, padding=_PAD_S2),
            ConvNormLReLU(c64, c64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(c64, c128, stride=2, padding=_PAD_S2),
            ConvNormLReLU(c128, c128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(c128, c128),
            InvertedResBlock(c128, c256, 2),
            *[InvertedResBlock(c256, c256, 2) for _ in range(n_irb - 1)],
            ConvNormLReLU(c256, c128),
        )
        self.block_d = nn.Sequential(ConvNormLReLU(c128, c128), ConvNormLReLU(c128, c128))
        self.block_e = nn.Sequential(
            ConvNormLReLU(c128, c64),
            ConvNormLReLU(c64, c64),
            ConvNormLReLU(c64, c32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(nn.Conv2d(c32, 3, 1, bias=False), nn.Tanh())

    @property
    def size_multiple(self) -> int:
        """1: any size (the decoder resizes to recorded sizes); 4 with the scale-factor decoder."""
        return 1 if self.align_corners else 4

    def forward(self, x: Tensor, align_corners: bool | None = None) -> Tensor:
        ac = self.align_corners if align_corners is None else align_corners
        cpu_infer = x.device.type == "cpu" and not torch.is_grad_enabled() and x.ndim == 4
        if cpu_infer:  # oneDNN's NHWC convolutions: ~1.15x the NCHW module on a 2-core CPU at 256²
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.block_a(x)
        half = out.shape[-2:]
        out = self.block_c(self.block_b(out))
        out = self.block_d(_resize(out, half, ac))
        out = self.block_e(_resize(out, x.shape[-2:], ac))
        out = self.out_layer(out)
        return out.contiguous() if cpu_infer else out


# --------------------------------------------------------------------------- v1


class _ConvBlock(nn.Sequential):
    """Conv-Block: reflect pad → k×k conv (no bias) → InstanceNorm → LReLU 0.2."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3) -> None:
        p = kernel_size // 2
        super().__init__(
            nn.ReflectionPad2d(p),
            nn.Conv2d(in_ch, out_ch, kernel_size, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class _DSConv(nn.Sequential):
    """Depthwise 3×3 + pointwise 1×1 (no biases) → InstanceNorm → LReLU 0.2."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReflectionPad2d(_PAD_S2 if stride == 2 else 1),
            nn.Conv2d(in_ch, in_ch, 3, stride=stride, groups=in_ch, bias=False),
            nn.Conv2d(in_ch, out_ch, 1, bias=False),
            nn.InstanceNorm2d(out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class _DownConv(nn.Module):
    """Down-Conv: strided DSConv + (bilinear ½ → DSConv), summed — two views of the downsampling."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.strided = _DSConv(in_ch, out_ch, stride=2)
        self.resized = _DSConv(in_ch, out_ch)

    def forward(self, x: Tensor) -> Tensor:
        a = self.strided(x)
        b = self.resized(F.interpolate(x, size=a.shape[-2:], mode="bilinear", align_corners=False))
        return a + b


class _UpConv(nn.Module):
    """Up-Conv: bilinear resize to ``size`` (×2 of the input) → DSConv."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = _DSConv(in_ch, out_ch)

    def forward(self, x: Tensor, size: torch.Size | tuple[int, int]) -> Tensor:
        return self.conv(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))


class _IRBv1(nn.Module):
    """v1 inverted residual block: 1×1 Conv-Block (×2) → depthwise 3×3 → IN → LReLU → 1×1 → IN."""

    def __init__(self, ch: int = 256, expansion: int = 2) -> None:
        super().__init__()
        mid = ch * expansion
        self.body = nn.Sequential(
            _ConvBlock(ch, mid, kernel_size=1),
            nn.ReflectionPad2d(1),
            nn.Conv2d(mid, mid, 3, groups=mid, bias=False),
            nn.InstanceNorm2d(mid, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(mid, ch, 1, bias=False),
            nn.InstanceNorm2d(ch, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class AnimeGANv1Generator(nn.Module):
    """AnimeGAN (v1) generator: InstanceNorm, 8 IRBs of 256→512→256 channels; 3,956,096 parameters."""

    size_multiple = 1  # resizes to the encoder's recorded sizes: any H, W

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(_ConvBlock(3, 64), _ConvBlock(64, 64))
        self.down1 = _DownConv(64, 128)
        self.enc2 = nn.Sequential(_ConvBlock(128, 128), _DSConv(128, 128))
        self.down2 = _DownConv(128, 256)
        self.res = nn.Sequential(_ConvBlock(256, 256), *[_IRBv1(256, 2) for _ in range(8)], _ConvBlock(256, 256))
        self.up1 = _UpConv(256, 128)
        self.dec1 = nn.Sequential(_DSConv(128, 128), _ConvBlock(128, 128))
        self.up2 = _UpConv(128, 128)
        self.dec2 = nn.Sequential(_ConvBlock(128, 64), _ConvBlock(64, 64))
        self.out_layer = nn.Sequential(nn.Conv2d(64, 3, 1, bias=False), nn.Tanh())

    def forward(self, x: Tensor) -> Tensor:
        full = self.enc1(x)
        half = self.enc2(self.down1(full))
        out = self.res(self.down2(half))
        out = self.dec1(self.up1(out, half.shape[-2:]))
        out = self.dec2(self.up2(out, full.shape[-2:]))
        return self.out_layer(out)


# --------------------------------------------------------------------------- discriminator


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "layer":  # TF layer_norm over (C, H, W) with per-channel affine = GroupNorm(1, C)
        return LayerNorm2d(ch)
    if kind == "instance":
        return nn.InstanceNorm2d(ch, affine=True)
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r} (use layer, instance, batch or none)")


class AnimeGANDiscriminator(nn.Module):
    """Patch discriminator of AnimeGAN v1/v2: 3×3 convs without bias, spectral norm, output at H/4.

    channels: width of the first conv (32); n_dis: 1 + the number of stride-2 stages (3 → two);
    norm: "layer" (v1/v2), "instance", "batch" or "none"; spectral: spectral norm on every conv.
    """

    def __init__(self, channels: int = 32, n_dis: int = 3, norm: str = "layer", spectral: bool = True) -> None:
        super().__init__()
        if n_dis < 1:
            raise ValueError(f"n_dis must be ≥ 1, got {n_dis}")
        _norm(norm, 1)  # validate early

        def conv(i: int, o: int, stride: int = 1) -> nn.Module:
            c = nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False)
            return nn.utils.parametrizations.spectral_norm(c) if spectral else c

        ch = cin = channels
        layers: list[nn.Module] = [conv(3, ch), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(1, n_dis):
            layers += [conv(cin, ch * 2, 2), nn.LeakyReLU(0.2, inplace=True),
                       conv(ch * 2, ch * 4), _norm(norm, ch * 4), nn.LeakyReLU(0.2, inplace=True)]
            cin, ch = ch * 4, ch * 2
        layers += [conv(cin, ch * 2), _norm(norm, ch * 2), nn.LeakyReLU(0.2, inplace=True), conv(ch * 2, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
