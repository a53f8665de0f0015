"""The image → W+ encoder network (in the spirit of pSp, Richardson et al. 2021, and e4e, Tov et al. 2021).

Written from the papers' descriptions, not from their code:

* a small residual CNN backbone sized for the generator's resolution: a stem at full resolution,
  then stride-2 residual stages (GroupNorm + LeakyReLU) down to 4×4;
* a feature pyramid (pSp §3): the 4×4, 8×8 and 16×16 maps, merged top-down with 1×1 lateral
  convolutions, feed the *coarse*, *mid* and *fine* style layers;
* "map2style" heads: per pyramid level, stride-2 convolutions down to 1×1, then one linear layer per
  style layer of that level;
* the output is ``w_avg + scale · offset`` per style layer (pSp's "learn residuals from the average
  latent"); ``scale`` is the per-dimension spread of W, so the heads predict unit-size numbers. The
  heads start at small weights, so an untrained encoder returns (nearly) ``w_avg`` — the usual
  starting point of optimisation.

``deltas`` (each layer's offset minus the first layer's) is what e4e's delta regulariser keeps
small: a W+ whose layers agree is a W, and stays editable.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["EncoderArch", "EncoderNet", "layer_groups"]


@dataclass(frozen=True)
class EncoderArch:
    """Everything that fixes the encoder's shape (stored in every encoder file)."""

    size: int = 64  # input side (images are resized to it)
    n_latent: int = 10  # style layers of the generator
    style_dim: int = 128  # width of w
    channels: tuple[int, ...] = (32, 48, 64, 96, 128)  # stem, then one per stride-2 stage (widest last)
    head_channels: int = 64  # pyramid / map2style width

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EncoderArch":
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d.get("channels", cls.channels))
        return cls(**{k: d[k] for k in ("size", "n_latent", "style_dim", "channels", "head_channels") if k in d})

    @property
    def n_stages(self) -> int:
        return int(math.log2(self.size)) - 2  # size → 4×4


def layer_groups(n_latent: int) -> list[range]:
    """Style layers fed by the 4×4 (coarse), 8×8 (mid) and 16×16 (fine) pyramid levels.

    pSp splits 18 layers as 0–2 / 3–6 / 7–17 (coarse = 4–8 px, mid = 16–32 px, fine = the rest);
    the same cut points apply to the smaller generators here (10 layers at 64 px: 0–2 / 3–6 / 7–9).
    """
    a, b = min(3, n_latent), min(7, n_latent)
    return [range(0, a), range(a, b), range(b, n_latent)]


def _norm(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, c), c)


class _ResDown(nn.Module):
    """Residual stage: 3×3 stride-2 conv → GN → LReLU → 3×3 conv → GN, plus an avg-pool + 1×1 skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, 2, 1, bias=False), _norm(cout), nn.LeakyReLU(0.2),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), _norm(cout))
        self.skip = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1, bias=False))
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.skip(x))


class _Map2Style(nn.Module):
    """A pyramid level [N, C, r, r] → ``k`` style vectors [N, k, D]: stride-2 convs to 1×1, then one linear per layer."""

    def __init__(self, c: int, res: int, k: int, style_dim: int) -> None:
        super().__init__()
        convs: list[nn.Module] = []
        for _ in range(max(0, int(math.log2(res)))):
            convs += [nn.Conv2d(c, c, 3, 2, 1), nn.LeakyReLU(0.2)]
        self.convs = nn.Sequential(*convs)
        self.k, self.style_dim = k, style_dim
        self.linear = nn.Linear(c, k * style_dim) if k else None
        if self.linear is not None:
            # Start near zero offsets: an untrained encoder answers w_avg.
            nn.init.normal_(self.linear.weight, std=0.1 / math.sqrt(c))
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        if self.linear is None:
            return x.new_zeros(x.shape[0], 0, self.style_dim)
        h = self.convs(x).mean(dim=(2, 3))
        return self.linear(h).view(-1, self.k, self.style_dim)


class EncoderNet(nn.Module):
    """Images [N, 3, size, size] in [-1, 1] → W+ [N, n_latent, style_dim] = ``w_avg + w_scale · offsets``.

    ``w_avg`` and ``w_scale`` are buffers filled from the generator (``set_w_stats``) and saved with
    the weights, so an encoder file is usable on its own.
    """

    def __init__(self, arch: EncoderArch) -> None:
        super().__init__()
        if arch.size < 16 or arch.size & (arch.size - 1):
            raise ValueError(f"encoder size must be a power of two >= 16, got {arch.size}")
        self.arch = arch
        ch = list(arch.channels)
        n = arch.n_stages
        if len(ch) < n + 1:  # repeat the widest for larger inputs
            ch = ch + [ch[-1]] * (n + 1 - len(ch))
        ch = ch[: n + 1]
        self.stem = nn.Sequential(nn.Conv2d(3, ch[0], 3, 1, 1, bias=False), _norm(ch[0]), nn.LeakyReLU(0.2))
        self.stages = nn.ModuleList(_ResDown(ch[i], ch[i + 1]) for i in range(n))
        # Stage i outputs resolution size / 2^(i+1); the last three are 16, 8, 4 px (a 16-px encoder
        # has only 8 and 4: its fine level reuses the 8-px map).
        self.level_stage = [max(0, n - 1 - i) for i in range(3)]  # coarse (4 px), mid (8 px), fine (16 px)
        hc = arch.head_channels
        self.lateral = nn.ModuleList(nn.Conv2d(ch[s + 1], hc, 1) for s in self.level_stage)
        groups = layer_groups(arch.n_latent)
        self.heads = nn.ModuleList(_Map2Style(hc, arch.size >> (s + 1), len(g), arch.style_dim)
                                   for s, g in zip(self.level_stage, groups))
        self.register_buffer("w_avg", torch.zeros(arch.style_dim))
        self.register_buffer("w_scale", torch.ones(arch.style_dim))

    @torch.no_grad()
    def set_w_stats(self, w_avg: Tensor, w_scale: Tensor) -> None:
        self.w_avg.copy_(w_avg.reshape(-1))
        self.w_scale.copy_(w_scale.reshape(-1).clamp_min(1e-3))

    def offsets(self, x: Tensor) -> Tensor:
        """Normalised offsets from ``w_avg`` [N, n_latent, D] (what the heads predict)."""
        if x.shape[-1] != self.arch.size or x.shape[-2] != self.arch.size:
            x = F.interpolate(x, size=(self.arch.size, self.arch.size), mode="area")
        h = self.stem(x)
        feats = []
        for st in self.stages:
            h = st(h)
            feats.append(h)
        # Top-down pyramid: coarse first, each finer level adds the upsampled coarser one.
        levels: list[Tensor] = []
        top: Tensor | None = None
        for lat, s in zip(self.lateral, self.level_stage):
            f = lat(feats[s])
            if top is not None:
                f = f + F.interpolate(top, size=f.shape[-2:], mode="bilinear", align_corners=False)
            levels.append(f)
            top = f
        return torch.cat([head(f) for head, f in zip(self.heads, levels)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_avg + self.w_scale * self.offsets(x)

    def to_wplus(self, offsets: Tensor) -> Tensor:
        return self.w_avg + self.w_scale * offsets

    @staticmethod
    def deltas(offsets: Tensor) -> Tensor:
        """e4e's deltas: each layer's offset minus the first layer's [N, n_latent − 1, D]."""
        return offsets[:, 1:] - offsets[:, :1]
