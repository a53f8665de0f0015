"""StyleGAN2 generator and discriminator (Karras et al. 2020, config-f).

Module and parameter names follow the community checkpoint layout (rosinality/stylegan2-pytorch,
also used by Cartoon-StyleGAN and FreezeG), so their ``.pt`` files load with ``strict=True``:
``style.{1..n_mlp}``, ``input.input``, ``conv1``, ``to_rgb1``, ``convs.{i}``, ``to_rgbs.{k}``,
``noises.noise_{i}`` for G; ``convs``, ``final_conv``, ``final_linear`` for D.

Block numbering (used by fine-tuning and layer swapping): block 1 is the 4 px block (``input``,
``conv1``, ``to_rgb1``); block k >= 2 works at 2**(k+1) px and owns ``convs[2k-4]``,
``convs[2k-3]`` and ``to_rgbs[k-2]``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ops import fused_leaky_relu, setup_filter, upfirdn2d

NOISE_MODES = ("random", "const", "none")


def channel_dict(
    channel_multiplier: int = 2,
    channel_base: int = 16384,
    channel_max: int = 512,
    max_size: int = 1024,
) -> dict[int, int]:
    """Feature channels per resolution.

    With the defaults this reproduces the community table: 512 up to 32 px, then
    256·cm at 64, 128·cm at 128, 64·cm at 256 … (channel_base·cm / res, capped at channel_max).
    Smaller ``channel_base``/``channel_max`` give narrow models with the same key names.
    """
    out = {}
    res = 4
    while res <= max_size:
        out[res] = max(1, min(channel_max, channel_base * channel_multiplier // res))
        res *= 2
    return out


# --------------------------------------------------------------------------------------------
# Layers with the community names
# --------------------------------------------------------------------------------------------


class PixelNorm(nn.Module):
    """Normalise each latent to unit RMS (StyleGAN mapping network input)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate.

    The raw weight is stored (divided by ``lr_mul``) and scaled at run time by
    ``lr_mul / sqrt(in_dim)``: this is what makes the community checkpoints load unchanged.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight * self.scale
        b = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, w), b)
        return F.linear(x, w, b)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with the equalised learning rate (weight scaled by 1/sqrt(fan_in) at run time)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding)


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU 0.2 and gain √2 in one fused op."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """FIR low-pass filter; the kernel is a buffer because the community checkpoints store it."""

    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", setup_filter(kernel, gain=upsample_factor**2))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2× FIR upsampling of the ToRGB skip path (gain factor² keeps the DC level)."""

    def __init__(self, kernel: Sequence[int], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", setup_filter(kernel, gain=factor**2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Weight-modulated (and optionally demodulated) convolution, StyleGAN2 eq. 1–3.

    Computed as "modulate the input, one shared-weight conv, demodulate the output" instead of a
    grouped conv with per-sample weights: mathematically identical, but cuDNN sees one ordinary
    convolution for the whole batch, which is faster in training and friendlier to bf16.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
    ) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.kernel_size = in_ch, out_ch, kernel_size
        self.upsample, self.downsample, self.demodulate = upsample, downsample, demodulate
        factor = 2
        if upsample:
            # The transposed conv makes a (2H+1)-px image; this pad brings the blur back to 2H.
            p = len(blur_kernel) - factor - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            p = len(blur_kernel) - factor + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        batch = x.shape[0]
        s = self.modulation(style)  # [N, in]
        w = self.weight[0] * self.scale  # [out, in, k, k]
        if x.device.type == "cpu":
            # oneDNN's NHWC kernels: the stride-2 transposed conv runs ~2x faster, the blur after
            # it ~4x, the rest about even; measured on G+D training steps (bench/cpu_sidebyside.py).
            # Later layers keep the layout (a no-op here); the final image is made NCHW again.
            x = x.contiguous(memory_format=torch.channels_last)
        x = x * s.reshape(batch, -1, 1, 1).to(x.dtype)
        if self.upsample:
            x = F.conv_transpose2d(x, w.transpose(0, 1).to(x.dtype), stride=2)
        elif self.downsample:
            x = F.conv2d(self.blur(x), w.to(x.dtype), stride=2)
        else:
            x = F.conv2d(x, w.to(x.dtype), padding=self.padding)
        if self.demodulate:
            # ||w_o * s||² summed over (in, k, k) equals s² · Σ_k w² — no per-sample weight tensor.
            d = torch.rsqrt(s.float().square() @ w.float().square().sum(dim=(2, 3)).t() + 1e-8)
            x = x * d.reshape(batch, -1, 1, 1).to(x.dtype)
        if self.upsample:
            x = self.blur(x)
        return x

    def extra_repr(self) -> str:
        return (
            f"{self.in_ch}, {self.out_ch}, k={self.kernel_size}, up={self.upsample}, "
            f"down={self.downsample}, demod={self.demodulate}"
        )


class NoiseInjection(nn.Module):
    """Adds per-pixel noise scaled by a learned scalar (initialised to 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None) -> Tensor:
        if noise is None:
            return x
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class ConstantInput(nn.Module):
    """The learned 4×4 constant the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3×3 conv → noise → bias + leaky ReLU."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        upsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        demodulate: bool = True,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(
            in_ch, out_ch, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel, demodulate=demodulate
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: Tensor, style: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1×1 modulated conv to RGB (no demodulation) added to the upsampled skip image."""

    def __init__(
        self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel: Sequence[int] = (1, 3, 3, 1)
    ) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip).to(out.dtype)
        return out


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


def load_widened_state(
    module: nn.Module, sd: Mapping[str, Tensor], widen: Callable[[str, Tensor, Tensor], Tensor]
) -> int:
    """Load ``sd`` (same keys, some tensors narrower) into ``module``: equal shapes are copied,
    every other tensor becomes ``widen(key, old, new)`` (``new`` only gives the wanted shape).
    Returns how many were widened; a ValueError from ``widen`` names the tensor that cannot be.
    """
    own = module.state_dict()
    if own.keys() != sd.keys():
        raise ValueError("not the same layout (other keys)")
    out: dict[str, Tensor] = {}
    widened = 0
    for key, new in own.items():
        old = sd[key].detach().to(device="cpu", dtype=new.dtype)  # built on the CPU; loading moves it
        if old.shape == new.shape:
            out[key] = old.clone()
        else:
            out[key] = widen(key, old, new)
            widened += 1
    module.load_state_dict(out)
    return widened


@dataclass
class SynthesisOutput:
    """What ``Generator.synthesis`` returns.

    ``features[b-1]`` / ``rgbs[b-1]`` are the feature map and the accumulated skip-RGB image after
    block b (filled only when asked for); ``image`` is the final skip image, or ``None`` when the
    synthesis stopped early (``to_block``).
    """

    image: Tensor | None
    features: list[Tensor] = field(default_factory=list)
    rgbs: list[Tensor] = field(default_factory=list)
    last_feature: Tensor | None = None
    last_skip: Tensor | None = None


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network + synthesis network.

    Args:
        size: output resolution (power of two, ≥ 4).
        style_dim: width of z and w.
        n_mlp: mapping network depth.
        channel_multiplier: 2 for config-f (the community default).
        blur_kernel: FIR taps for up/down-sampling.
        lr_mlp: learning-rate multiplier of the mapping network.
        channel_base: channels at resolution r are channel_base·cm / r ...
        channel_max: ... capped at this (512 in config-f; small values give narrow models).
        channels: explicit {resolution: channels}, overriding the three above (used when a
            checkpoint's widths are read from its tensors).
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channel_base: int = 16384,
        channel_max: int = 512,
        channels: dict[int, int] | None = None,
    ) -> None:
        super().__init__()
        if size < 4 or size & (size - 1):
            raise ValueError(f"generator size must be a power of two ≥ 4, got {size}")
        self.size = size
        self.style_dim = style_dim
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.n_blocks = self.log_size - 1
        if channels is None:
            channels = channel_dict(channel_multiplier, channel_base, channel_max, max(size, 4))
        self.channels = {int(k): int(v) for k, v in channels.items() if int(k) <= size}
        self.config = dict(
            size=size,
            style_dim=style_dim,
            n_mlp=n_mlp,
            channel_multiplier=channel_multiplier,
            blur_kernel=list(blur_kernel),
            lr_mlp=lr_mlp,
            channels={int(k): int(v) for k, v in self.channels.items()},
        )

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        ch = self.channels
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for i in range(3, self.log_size + 1):
            out_ch = ch[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch
        # Mean w for truncation: filled from a checkpoint's `latent_avg` or by `mean_latent()`.
        self.register_buffer("w_avg", torch.zeros(style_dim), persistent=False)
        self.w_avg_known = False

    # ---- latents -----------------------------------------------------------------------------

    def mapping(self, z: Tensor, truncation: float = 1.0, truncation_latent: Tensor | None = None) -> Tensor:
        """z [N, D] → w [N, D], optionally truncated toward ``truncation_latent`` (or ``w_avg``)."""
        w = self.style(z)
        return self.truncate(w, truncation, truncation_latent)

    def truncate(self, w: Tensor, truncation: float, truncation_latent: Tensor | None = None) -> Tensor:
        """The truncation trick: w' = w̄ + ψ (w − w̄); works for W and W+.

        Any ψ ≠ 1 is applied, so ψ > 1 *extrapolates* away from w̄ as NVIDIA's mapping does
        (``w_avg.lerp(x, psi)`` whenever psi != 1, stylegan2-ada ``training/networks.py:242-246``);
        rosinality's ``model.py:521`` applies truncation only when ψ < 1 and silently ignores ψ > 1.
        """
        if truncation == 1.0:
            return w
        avg = truncation_latent if truncation_latent is not None else self.mean_w()
        return avg.to(w.dtype) + truncation * (w - avg.to(w.dtype))

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 0) -> Tensor:
        """Mean of ``n`` mapped latents [1, D]; also cached as ``w_avg`` for truncation."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g).to(self.w_avg.device)
        w = self.style(z).mean(0, keepdim=True)
        self.w_avg.copy_(w[0])
        self.w_avg_known = True
        return w

    def mean_w(self) -> Tensor:
        if not self.w_avg_known:
            self.mean_latent()
        return self.w_avg.unsqueeze(0)

    def get_latent(self, z: Tensor) -> Tensor:
        """Community name for the mapping network without truncation."""
        return self.style(z)

    def broadcast(self, w: Tensor) -> Tensor:
        """W [N, D] → W+ [N, n_latent, D]; W+ passes through."""
        if w.ndim == 3:
            if w.shape[1] != self.n_latent:
                raise ValueError(f"W+ latent has {w.shape[1]} entries, this generator takes {self.n_latent}")
            return w
        return w.unsqueeze(1).expand(-1, self.n_latent, -1)

    def mix(self, w1: Tensor, w2: Tensor, inject_index: int | None = None) -> Tensor:
        """Style mixing: entries [0, inject_index) from w1, the rest from w2 (random index if None)."""
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        a, b = self.broadcast(w1), self.broadcast(w2)
        return torch.cat([a[:, :inject_index], b[:, inject_index:]], dim=1)

    # ---- noise -------------------------------------------------------------------------------

    def noise_shapes(self) -> list[int]:
        """Resolution of each of the ``num_layers`` noise inputs."""
        return [2 ** ((i + 5) // 2) for i in range(self.num_layers)]

    def make_noise(self, batch: int = 1, device=None, generator: torch.Generator | None = None) -> list[Tensor]:
        """Fresh Gaussian noise maps [batch, 1, r, r] for every layer (seedable)."""
        device = device if device is not None else self.w_avg.device
        return [
            torch.randn(batch, 1, r, r, generator=generator, device="cpu" if generator is not None else device).to(device)
            for r in self.noise_shapes()
        ]

    def const_noise(self) -> list[Tensor]:
        """The stored noise buffers (``noises.noise_i``) — fixed per checkpoint."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def _resolve_noise(self, noise: Sequence[Tensor | None] | None, noise_mode: str) -> list[Tensor | str | None]:
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if noise is not None:
            if len(noise) != self.num_layers:
                raise ValueError(f"expected {self.num_layers} noise maps, got {len(noise)}")
            out = list(noise)
        else:
            out = [None] * self.num_layers
        consts = self.const_noise()
        for i, n in enumerate(out):
            if n is None:
                out[i] = consts[i] if noise_mode == "const" else ("random" if noise_mode == "random" else None)
        return out

    @staticmethod
    def _noise_for(spec: Tensor | str | None, x: Tensor) -> Tensor | None:
        if isinstance(spec, str):  # "random": drawn at the feature's own shape and dtype
            return torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return spec

    # ---- synthesis ---------------------------------------------------------------------------

    def block_latent_indices(self, block: int) -> list[int]:
        """W+ entries read by ``block`` (1-based): 4 px → [0, 1]; block k → [2k-3, 2k-2, 2k-1]."""
        if block == 1:
            return [0, 1]
        return [2 * block - 3, 2 * block - 2, 2 * block - 1]

    def synthesis(
        self,
        latent: Tensor,
        noise: Sequence[Tensor | None] | None = None,
        noise_mode: str = "random",
        *,
        from_block: int = 0,
        feature: Tensor | None = None,
        skip: Tensor | None = None,
        to_block: int | None = None,
        return_features: bool = False,
        return_rgbs: bool = False,
    ) -> SynthesisOutput:
        """Run the synthesis network on W+ latents [N, n_latent, D] (W [N, D] is broadcast).

        ``from_block=k`` with ``feature``/``skip`` (the outputs of block k of this or another
        generator) continues with block k+1 — the feature swap of layer swapping.
        ``to_block=k`` stops after block k (``image`` is then None; see ``last_feature``).
        """
        latent = self.broadcast(latent)
        noises = self._resolve_noise(noise, noise_mode)
        last = self.n_blocks if to_block is None else to_block
        out = SynthesisOutput(image=None)
        if from_block == 0:
            x = self._styled(self.conv1, self.input(latent.shape[0]), latent[:, 0], noises[0])
            skip = self.to_rgb1(x, latent[:, 1])
            self._record(out, x, skip, return_features, return_rgbs)
            start = 2
        else:
            if feature is None or skip is None:
                raise ValueError("from_block needs both `feature` and `skip` (the outputs of that block)")
            x, start = feature, from_block + 1
        for block in range(start, last + 1):
            j = block - 2
            i = 2 * j + 1
            conv_up, conv, to_rgb = self.convs[2 * j], self.convs[2 * j + 1], self.to_rgbs[j]
            x = self._styled(conv_up, x, latent[:, i], noises[i])
            x = self._styled(conv, x, latent[:, i + 1], noises[i + 1])
            skip = to_rgb(x, latent[:, i + 2], skip)
            self._record(out, x, skip, return_features, return_rgbs)
        out.last_feature, out.last_skip = x, skip
        if last == self.n_blocks:
            out.image = skip.contiguous()  # NCHW, whatever layout the CPU convolutions used
        return out

    def _styled(self, layer: StyledConv, x: Tensor, style: Tensor, noise_spec: Tensor | str | None) -> Tensor:
        y = layer.conv(x, style)
        y = layer.noise(y, self._noise_for(noise_spec, y))
        return layer.activate(y)

    @staticmethod
    def _record(out: SynthesisOutput, x: Tensor, skip: Tensor, feats: bool, rgbs: bool) -> None:
        if feats:
            out.features.append(x)
        if rgbs:
            out.rgbs.append(skip)

    def forward(
        self,
        styles: Tensor | Sequence[Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise: Sequence[Tensor | None] | None = None,
        randomize_noise: bool = True,
        noise_mode: str | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Community-compatible call: ``img, latent = G([z])``.

        ``styles`` is one tensor or a list of one or two (two → style mixing at ``inject_index``);
        z by default, w (or W+ [N, n_latent, D]) with ``input_is_latent``. ``noise_mode`` overrides
        ``randomize_noise`` (True → "random", False → "const").
        """
        if isinstance(styles, Tensor):
            styles = [styles]
        if not input_is_latent:
            styles = [self.style(s) for s in styles]
        styles = [self.truncate(s, truncation, truncation_latent) for s in styles]
        if len(styles) == 1:
            latent = self.broadcast(styles[0])
        else:
            latent = self.mix(styles[0], styles[1], inject_index)
        mode = noise_mode or ("random" if randomize_noise else "const")
        image = self.synthesis(latent, noise=noise, noise_mode=mode).image
        return image, (latent if return_latents else None)

    @torch.no_grad()
    def load_widened(self, sd: Mapping[str, Tensor], noise: float = 0.05, generator: torch.Generator | None = None) -> int:
        """Load a trained generator of the same layout but narrower layers, keeping its function exactly.

        Demodulation rules out the discriminator's Net2WiderNet split (copies reading ``w/k`` each):
        it divides every output by ``√Σ (w·s)²``, and ``k`` copies of ``w/k`` shrink that sum ``k``-fold.
        What it does keep is a channel read with weight 0, so here every widened layer's new channels
        are copies of its trained ones (``new channel j`` = ``old channel j mod C``: weights, style
        affine, bias), and every layer that reads them gives them **zero** weight — the wide G draws
        what the narrow one did, bit for bit, and learns to use its new channels from the first step
        (their readers' gradients are not zero). The copies' own weights get Gaussian noise of ``noise``
        × that tensor's std so they do not stay copies; it cannot change the output, they are read with
        weight 0. The equalised-lr scale (1/√fan-in) is folded in. Returns the number of tensors widened;
        a ValueError names the first tensor that cannot be.
        """
        def widen(key: str, old: Tensor, new: Tensor) -> Tensor:
            if old.dim() == new.dim() and any(n < o for n, o in zip(new.shape, old.shape)):
                raise ValueError(f"{key}: {list(old.shape)} there, {list(new.shape)} here: a generator cannot be narrowed")
            if old.dim() != new.dim() or any(n % o for n, o in zip(new.shape, old.shape)):
                raise ValueError(f"{key}: {list(old.shape)} is not a whole fraction of {list(new.shape)}")
            w = old
            # a modulated conv's weight [1, out, in, k, k]: dim 2 is read from the layer before
            reading = 2 if old.dim() == 5 else None
            for dim in range(old.dim()):
                n_old, n_new = old.shape[dim], new.shape[dim]
                if n_old == n_new:
                    continue
                if dim == reading:
                    pad = list(w.shape)
                    pad[dim] = n_new - n_old
                    # stored weight = effective × √(in × k × k): more inputs, a larger store for the same effect
                    w = torch.cat([w * math.sqrt(n_new / n_old), w.new_zeros(pad)], dim=dim)
                else:
                    reps = [1] * w.dim()
                    reps[dim] = n_new // n_old
                    w = w.repeat(*reps)
                    if noise > 0 and old.dim() == 5:
                        copies = w.narrow(dim, n_old, n_new - n_old)
                        copies += torch.randn(copies.shape, generator=generator) * (noise * float(old.std()))
            return w

        return load_widened_state(self, sd, widen)


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------


class ConvLayer(nn.Sequential):
    """[Blur] → EqualConv2d → [bias + leaky ReLU]; Sequential so the keys are ``0.weight``, ``1.bias``…"""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        downsample: bool = False,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            # Blur first, then a stride-2 conv: anti-aliased downsampling (StyleGAN2 D).
            p = len(blur_kernel) - 2 + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual D block: two 3×3 convs (the second downsamples) + 1×1 downsampling skip, ÷√2."""

    def __init__(self, in_ch: int, out_ch: int, blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) * (1 / math.sqrt(2))


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator with minibatch standard deviation.

    Args:
        size: input resolution (power of two, ≥ 8).
        channel_multiplier, channel_base, channel_max, channels: widths, as for ``Generator``.
        blur_kernel: FIR taps for downsampling.
        stddev_group: minibatch-stddev group size (4 in config-f).
    """

    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: Sequence[int] = (1, 3, 3, 1),
        channel_base: int = 16384,
        channel_max: int = 512,
        channels: dict[int, int] | None = None,
        stddev_group: int = 4,
    ) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"discriminator size must be a power of two ≥ 8, got {size}")
        if channels is None:
            channels = channel_dict(channel_multiplier, channel_base, channel_max, size)
        ch = {int(k): int(v) for k, v in channels.items() if int(k) <= size}
        self.size = size
        self.channels = ch
        self.config = dict(
            size=size, channel_multiplier=channel_multiplier, blur_kernel=list(blur_kernel), channels=dict(ch),
            stddev_group=stddev_group,
        )
        log_size = int(math.log2(size))
        convs: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        in_ch = ch[size]
        for i in range(log_size, 2, -1):
            out_ch = ch[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, ch[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(ch[4] * 4 * 4, ch[4], activation="fused_lrelu"),
            EqualLinear(ch[4], 1),
        )

    def minibatch_stddev(self, x: Tensor) -> Tensor:
        """Append the std of features across groups of samples (Karras et al. 2018, §3)."""
        n, c, h, w = x.shape
        group = min(n, self.stddev_group)
        while n % group:  # the original needs n divisible by the group; degrade gracefully instead
            group -= 1
        y = x.float().reshape(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8)
        y = y.mean(dim=(2, 3, 4), keepdim=True).squeeze(2)
        y = y.repeat(group, 1, h, w).to(x.dtype)
        return torch.cat([x, y], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        x = self.final_conv(self.minibatch_stddev(x))
        return self.final_linear(x.reshape(x.shape[0], -1))

    @torch.no_grad()
    def load_widened(self, sd: Mapping[str, Tensor], noise: float = 0.05, generator: torch.Generator | None = None) -> int:
        """Load a trained discriminator of the same layout but narrower layers, keeping its function.

        Net2WiderNet (Chen et al. 2016, §3.1): every layer whose width here is ``k`` times the file's
        holds ``k`` copies of each trained channel (``new channel j`` = ``old channel j mod C``), and
        the layer reading them divides their weights by ``k``, so before the noise the wide D computes
        what the narrow one did. Exact copies would also *stay* copies (their gradients are equal
        and Adam scales them alike), so the copies' incoming weights get Gaussian noise of ``noise``
        × that tensor's std. Whole multiples only: then the minibatch-stddev feature, a mean over
        channels, is unchanged too. The equalised-lr scale (1/√fan-in) is folded in. Returns the
        number of tensors that were widened; a ValueError names the first tensor that cannot be.
        """
        def widen(key: str, old: Tensor, new: Tensor) -> Tensor:
            if old.dim() != new.dim() or old.dim() not in (1, 2, 4):
                raise ValueError(f"{key}: {list(old.shape)} cannot widen to {list(new.shape)}")
            if new.shape[0] % old.shape[0]:
                raise ValueError(f"{key}: {new.shape[0]} output channels are not a multiple of {old.shape[0]}")
            w = old.repeat(new.shape[0] // old.shape[0], *([1] * (old.dim() - 1)))
            if old.dim() > 1:
                n_old, n_new = old.shape[1], new.shape[1]
                # the input side: the final conv reads the channels plus the one minibatch-stddev map
                extra = 1 if n_new % n_old and (n_new - 1) % (n_old - 1) == 0 else 0
                if (n_new - extra) % (n_old - extra):
                    raise ValueError(f"{key}: {n_new} input channels are not a multiple of {n_old}")
                k = (n_new - extra) // (n_old - extra)
                src = torch.arange(n_new - extra) % (n_old - extra)
                if extra:
                    src = torch.cat([src, torch.tensor([n_old - 1])])
                share = torch.full((n_new,), 1.0 / k)
                if extra:
                    share[-1] = 1.0
                # stored weight = effective × √(in × kh × kw): k× the inputs is √(n_new/n_old)× the store
                rescale = math.sqrt(n_new / n_old)
                w = w[:, src] * share.view(1, -1, *([1] * (old.dim() - 2))) * rescale
            if old.dim() > 1 and new.shape[0] > old.shape[0] and noise > 0:
                copies = w[old.shape[0]:]
                copies += torch.randn(copies.shape, generator=generator) * (noise * float(old.std()))
            return w

        return load_widened_state(self, sd, widen)


# --------------------------------------------------------------------------------------------
# Two mapping networks (FreezeSG's fine-tuned generator)
# --------------------------------------------------------------------------------------------


class SplitMappingGenerator(Generator):
    """A Generator whose W+ entries ``0..n_early-1`` come from a second, frozen mapping network.

    FreezeSG (``finetune/freeze.py``) trains the target's mapping network for the later style
    inputs while the early ones keep the *source's* mapping of the same z; a model fine-tuned that
    way must render from z the same way, so it carries the source's mapping as well. That second
    network is deliberately *not* a registered submodule: ``state_dict()`` stays the community
    layout (community tools load the file strictly and render with ``style`` for every entry), and
    optimisers and the EMA never see it. Checkpoints store it under ``toonlab.early_mapping``;
    ``stylegan2.checkpoint.load_generator`` rebuilds this class from there.

    Only rendering from z changes (``mapping``, ``forward`` without ``input_is_latent``);
    ``synthesis`` of a given W+ is the plain generator's, and ``style``/``get_latent`` are the
    target's own mapping.
    """

    def __init__(self, *args, n_early: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0 < n_early <= self.n_latent:
            raise ValueError(f"n_early must be in 1..{self.n_latent}, got {n_early}")
        self.n_early = int(n_early)
        n_mlp, lr_mlp = self.config["n_mlp"], self.config["lr_mlp"]
        early = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(self.style_dim, self.style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        # A list hides the module from parameters()/state_dict(); _apply moves it with the rest.
        self._early: list[nn.Module] = [early.requires_grad_(False)]
        self._early_avg: list[Tensor | None] = [None]

    @property
    def early_style(self) -> nn.Module:
        """The frozen mapping network of the first ``n_early`` W+ entries."""
        return self._early[0]

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(), .cuda() reach the hidden mapping too
        super()._apply(fn, recurse)
        self._early[0]._apply(fn, recurse)
        if self._early_avg[0] is not None:
            self._early_avg[0] = fn(self._early_avg[0])
        return self

    def load_early_style(self, state: dict[str, Tensor], w_avg: Tensor | None = None) -> None:
        """Load the early mapping (keys as in ``style.*`` without the prefix) and its mean w."""
        dev = self.w_avg.device
        self.early_style.load_state_dict({k: v.to(dev) for k, v in state.items()}, strict=True)
        self._early_avg[0] = None if w_avg is None else w_avg.reshape(1, -1).to(dev, self.w_avg.dtype)

    def early_mapping_meta(self) -> dict:
        """What checkpoints store under ``toonlab.early_mapping``."""
        avg = self._early_avg[0]
        return {"entries": self.n_early,
                "state": {k: v.detach().cpu().clone() for k, v in self.early_style.state_dict().items()},
                "w_avg": None if avg is None else avg.detach().cpu().reshape(-1).clone()}

    def early_mean_w(self, n: int = 4096, seed: int = 0) -> Tensor:
        if self._early_avg[0] is None:
            with torch.no_grad():
                g = torch.Generator(device="cpu").manual_seed(seed)
                z = torch.randn(n, self.style_dim, generator=g).to(self.w_avg.device)
                self._early_avg[0] = self.early_style(z).mean(0, keepdim=True)
        return self._early_avg[0]

    def mapping(self, z: Tensor, truncation: float = 1.0, truncation_latent: Tensor | None = None) -> Tensor:
        """z [N, D] → W+ [N, n_latent, D]: entries < ``n_early`` from the early mapping (truncated
        toward its own mean w), the rest from ``style`` (toward ``w_avg``)."""
        late = self.truncate(self.style(z), truncation, truncation_latent)
        early = self.early_style(z)
        if truncation != 1.0:
            avg = truncation_latent if truncation_latent is not None else self.early_mean_w()
            early = avg.to(early.dtype) + truncation * (early - avg.to(early.dtype))
        k = self.n_early
        return torch.cat([early.unsqueeze(1).expand(-1, k, -1), late.unsqueeze(1).expand(-1, self.n_latent - k, -1)], 1)

    def forward(self, styles, return_latents: bool = False, inject_index: int | None = None, truncation: float = 1.0,
                truncation_latent: Tensor | None = None, input_is_latent: bool = False, noise=None,
                randomize_noise: bool = True, noise_mode: str | None = None):
        """The community call; from z, each style is this model's two-network W+ before mixing."""
        if not input_is_latent:
            styles = [styles] if isinstance(styles, Tensor) else list(styles)
            styles = [self.mapping(s, truncation, truncation_latent) for s in styles]
            truncation, truncation_latent, input_is_latent = 1.0, None, True
        return super().forward(styles, return_latents, inject_index, truncation, truncation_latent, input_is_latent,
                               noise, randomize_noise, noise_mode)
