"""StarGAN v2 (Choi et al., CVPR 2020): networks, multi-domain data, trainer, sampling and evaluation.

    python translation/stargan2.py train --out runs/sg2                 # built-in synthetic domains
    python translation/stargan2.py train --data DATA --img-size 256 --out runs/sg2
    python translation/stargan2.py sample runs/sg2/checkpoints/100000.pt --out runs/sg2/figs
    python translation/stargan2.py eval runs/sg2/checkpoints/100000.pt --features random --lpips random

DATA holds one sub-folder per domain (``DATA/photo``, ``DATA/webtoon``, ...). Without ``--data`` the
built-in synthetic face domains ``photo``, ``webtoon`` and ``pastel`` are three domains.

Networks (paper appendix, Tables 4-6; style 64-d, latent 16-d):
  * Generator: 3×3 conv → ``log2(S)−4`` downsampling pre-activation ResBlks with InstanceNorm
    (64 → 128 → 256 → 512 → 512 at 256 px) → 2 IN ResBlks; decoder mirrors it with AdaIN ResBlks
    (2 bottleneck + upsampling blocks) → IN, LReLU, 1×1 conv to RGB. Residual sums are ÷√2.
  * MappingNetwork: 4 shared 512-wide linear + ReLU layers, then per domain 3 × (512 + ReLU) and a
    512 → 64 head; ``F(z, y)`` picks domain ``y``'s head.
  * StyleEncoder / Discriminator: 3×3 conv → ``log2(S)−2`` downsampling ResBlks (no norm) → LReLU,
    4×4 conv, LReLU → per-domain linear heads (E: 64-d style) or a 1×1 conv with one logit per
    domain (D: the logit of the asked domain is used — a multi-task discriminator).
The high-pass-filter face-mask branch of the authors' CelebA-HQ model is not included (their AFHQ setup).

Training (§3 and the authors' defaults): per iteration a latent-guided and a reference-guided D
step (non-saturating + R1 with λ=1 on reals), then a latent-guided G step (updates G, F, E) and a
reference-guided G step (updates G): adversarial + λ_sty·style reconstruction + λ_ds·diversity
(weight decaying linearly to 0 over ``ds_iter``) + λ_cyc·cycle. Adam lr 1e-4 (F: 1e-6),
β=(0, 0.99), weight decay 1e-4; EMA 0.999 of G, F and E (used for sampling and evaluation);
bf16 autocast on GPUs.

Evaluation (§4 protocol): for every (source, target) domain pair with source ≠ target, each test
image of the source is translated 10 times (10 latent codes, or 10 reference images of the
target); FID between all outputs and the target's *training* images; LPIPS = mean pairwise
distance among each input's 10 outputs. Both are averaged over the pairs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as Fn
from PIL import Image
from torch import Tensor, nn

from losses.adversarial import d_logistic, g_nonsaturating
from losses.regularizers import r1_penalty
from losses.stargan import (
    cycle_loss,
    diversity_loss,
    diversity_weight,
    style_reconstruction_loss,
)
from toonlab.atomic import atomic_path
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.images import make_grid, save_atomic
from toonlab.run import (
    RunDir,
    Stats,
    check_finite,
    read_checkpoint,
    rng_state,
    run_training_loop,
    set_rng_state,
)
from toonlab.runtime import autocast, pick_device, progress, seed_everything

__all__ = [
    "ResBlk", "AdaIN", "AdainResBlk", "Generator", "MappingNetwork", "StyleEncoder", "Discriminator",
    "StarGAN2Nets", "build_networks", "count_params", "SYNTHETIC_DOMAINS", "MultiDomainData",
    "open_multidomain", "StarGAN2Config", "StarGAN2Trainer", "load_stargan2", "translate",
    "sample_figures", "evaluate", "main",
]

SYNTHETIC_DOMAINS: tuple[str, ...] = ("photo", "webtoon", "pastel")
MODEL_NAME = "stargan2"


# ============================================================================ networks


def _default_dim_in(img_size: int) -> int:
    return 2 ** 14 // img_size  # 64 at 256 px: the first width scales inversely with the image side


def _n_down_g(img_size: int) -> int:
    return max(1, int(round(math.log2(img_size))) - 4)  # down to 16×16 at any size (4 stages at 256)


def _n_down_d(img_size: int) -> int:
    return int(round(math.log2(img_size))) - 2  # down to 4×4, then a 4×4 "valid" conv → 1×1


def _check_size(img_size: int) -> None:
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
        _check_size(img_size)
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
        _check_size(img_size)
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
        _check_size(img_size)
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


# ============================================================================ multi-domain data


class _DomainItems(torch.utils.data.Dataset):
    """Items addressed as ``(domain, index, flip)`` → ``(image [3,S,S] in [-1,1], domain)``."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Tensor, int]:
        d, i, flip = (int(k) for k in key)
        img = self.datasets[d][i]
        return (img.flip(-1) if flip else img), d


class _StepKeys:
    """Batch sampler: step ``s`` → ``3B`` keys (B sources, B references, B second references).

    A pure function of (seed, step), so a resumed run sees exactly the batches a straight run sees.
    Source and reference domains are drawn uniformly (the authors' domain-balanced sampling); the
    two references share their domain (the diversity term needs two styles of one target).
    """

    def __init__(self, sizes: Sequence[int], batch: int, seed: int, start_step: int) -> None:
        self.sizes, self.batch, self.seed, self.start = list(sizes), batch, seed, start_step

    def keys(self, step: int) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, step]))
        n_dom, B = len(self.sizes), self.batch
        y_src = rng.integers(0, n_dom, B)
        y_ref = rng.integers(0, n_dom, B)
        doms = np.concatenate([y_src, y_ref, y_ref])
        idx = [int(rng.integers(0, self.sizes[d])) for d in doms]
        flips = rng.integers(0, 2, 3 * B)
        return [(int(d), i, int(f)) for d, i, f in zip(doms, idx, flips)]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start
        while True:
            yield self.keys(step)
            step += 1


class MultiDomainData:
    """One dataset per domain (class sub-folders or synthetic domains), read at ``img_size``."""

    def __init__(self, names: Sequence[str], specs: Sequence[str], img_size: int, synthetic: bool = False,
                 synthetic_seed: int = 0) -> None:
        from toonlab.data import open_dataset

        if len(names) < 2:
            raise UserInputError(f"StarGAN v2 needs at least 2 domains, got {len(names)} ({', '.join(names) or 'none'})")
        self.names, self.specs, self.img_size, self.synthetic = list(names), list(specs), img_size, synthetic
        self.datasets = []
        for k, spec in enumerate(specs):
            kw = {"seed": synthetic_seed + k} if spec.startswith("synthetic:") else {}  # different faces per domain
            try:
                self.datasets.append(open_dataset(spec, img_size, flip=False, **kw))
            except ValueError as e:  # DatasetError is a UserInputError; size errors of the renderer are not
                if isinstance(e, UserInputError):
                    raise
                raise UserInputError(f"{spec}: {e}") from None

    def describe(self) -> str:
        head = "built-in synthetic domains; " if self.synthetic else ""
        return head + "; ".join(f"{n}: {len(d):,} images" for n, d in zip(self.names, self.datasets))

    def iters_per_epoch(self, batch: int) -> int:
        return max(1, math.ceil(sum(len(d) for d in self.datasets) / batch))

    def batches(self, batch: int, seed: int = 0, start_step: int = 0,
                workers: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """Infinite ``(x_src, y_src, x_ref, x_ref2, y_ref)`` batches from ``start_step`` on."""
        sampler = _StepKeys([len(d) for d in self.datasets], batch, seed, start_step)
        # An own generator: creating the loader's iterator would otherwise draw its base seed from the global
        # RNG, shifting every later latent code of a resumed run against a straight one.
        loader = torch.utils.data.DataLoader(_DomainItems(self.datasets), batch_sampler=sampler, num_workers=workers,
                                             pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                             generator=torch.Generator().manual_seed(seed))
        for x, y in loader:
            xs, xr, xr2 = x.chunk(3)
            ys, yr, _ = y.chunk(3)
            yield xs, ys, xr, xr2, yr

    def fixed(self, n_per_domain: int) -> tuple[Tensor, Tensor]:
        """The first images of each domain (unflipped): the inputs of every sample grid."""
        xs, ys = [], []
        for d, ds in enumerate(self.datasets):
            for i in range(min(n_per_domain, len(ds))):
                xs.append(ds[i])
                ys.append(d)
        return torch.stack(xs), torch.tensor(ys)


def open_multidomain(data: str | None, img_size: int, domains: Sequence[str] | None = None,
                     synthetic_length: int = 1000, synthetic_seed: int = 0) -> MultiDomainData:
    """``data`` = a folder of class sub-folders (one per domain; ``domains`` picks/orders them),
    or None for the built-in synthetic domains (``domains`` defaults to photo, webtoon, pastel)."""
    if data is None:
        from toonlab.synthetic import DOMAINS

        names = list(domains or SYNTHETIC_DOMAINS)
        bad = [n for n in names if n not in DOMAINS]
        if bad:
            raise UserInputError(f"unknown synthetic domain {bad[0]!r} (use {', '.join(DOMAINS)})")
        return MultiDomainData(names, [f"synthetic:{n}:{synthetic_length}" for n in names], img_size, True,
                               synthetic_seed)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserInputError(f"--data {root}: not a folder (expected one sub-folder of images per domain)")
    subs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if domains:
        missing = [d for d in domains if d not in subs]
        if missing:
            raise UserInputError(f"--data {root} has no sub-folder {missing[0]!r} (found: {', '.join(subs) or 'none'})")
        subs = list(domains)
    if len(subs) < 2:
        raise UserInputError(f"--data {root} needs one sub-folder per domain, at least 2 (found {len(subs)})")
    return MultiDomainData(subs, [str(root / s) for s in subs], img_size)


# ============================================================================ trainer


@dataclass
class StarGAN2Config:
    """Every knob of a StarGAN v2 run (defaults: the paper's / the authors' AFHQ settings)."""

    data: str | None = None  # folder of class sub-folders; None → built-in synthetic domains
    domains: tuple[str, ...] | None = None  # which sub-folders / synthetic domains, in order
    out: str = "runs/stargan2"
    img_size: int = 256
    batch: int = 8
    iters: int = 100_000
    ds_iter: int = 100_000  # λ_ds decays linearly to 0 over this many iterations
    lr: float = 1e-4
    f_lr: float = 1e-6  # mapping network
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    lambda_reg: float = 1.0  # R1 γ; the penalty enters as γ/2·E‖∇D‖²
    lambda_sty: float = 1.0
    lambda_ds: float = 1.0
    lambda_cyc: float = 1.0
    latent_dim: int = 16
    style_dim: int = 64
    max_conv_dim: int = 512
    dim_in: int | None = None  # first conv width [2^14 / img_size]
    mapping_hidden: int = 512
    ema: float = 0.999
    seed: int = 0
    precision: str = "auto"  # auto = bf16 on GPUs, fp32 on CPUs
    device: str = "auto"
    workers: int = 2
    sample_every: int = 5000
    snapshot_every: int = 10000
    keep: int = 5
    log_every: int = 10
    n_samples: int = 3  # fixed source images per domain in sample grids
    synthetic_length: int = 1000
    tensorboard: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def arch(self, num_domains: int) -> dict[str, Any]:
        return dict(img_size=self.img_size, num_domains=num_domains, style_dim=self.style_dim,
                    latent_dim=self.latent_dim, max_conv_dim=self.max_conv_dim, dim_in=self.dim_in,
                    mapping_hidden=self.mapping_hidden)


class StarGAN2Trainer:
    """Owns the schedule of one StarGAN v2 run (optimisers, EMA, λ_ds decay, samples, checkpoints)."""

    NETS = ("G", "F", "E", "D")

    def __init__(self, cfg: StarGAN2Config, data: MultiDomainData | None = None, device: torch.device | str = "cpu",
                 domain_names: Sequence[str] | None = None) -> None:
        if cfg.precision not in ("auto", "fp32", "bf16"):
            raise UserInputError(f"unknown precision {cfg.precision!r} (use auto, fp32 or bf16)")
        if not 0.0 <= cfg.ema < 1.0:
            raise UserInputError(f"--ema {cfg.ema} must be in [0, 1)")
        _check_size(cfg.img_size)
        self.cfg, self.data = cfg, data
        self.domains = list(data.names if data is not None else (domain_names or SYNTHETIC_DOMAINS))
        self.device = torch.device(device)
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if cfg.precision == "auto" else cfg.precision
        self.run = RunDir(cfg.out)
        seed_everything(cfg.seed)
        self.nets = build_networks(cfg.arch(len(self.domains))).to(self.device)
        n = self.nets
        self.G, self.F, self.E, self.D = n.G, n.F, n.E, n.D
        self.G_ema, self.F_ema, self.E_ema = (copy.deepcopy(m).eval().requires_grad_(False) for m in (n.G, n.F, n.E))

        def adam(m: nn.Module, lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(m.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

        self.optims = {"G": adam(n.G, cfg.lr), "F": adam(n.F, cfg.f_lr), "E": adam(n.E, cfg.lr), "D": adam(n.D, cfg.lr)}
        self.step = 0
        self.stats = Stats(self.run, tensorboard=cfg.tensorboard)
        self.fixed: tuple[Tensor, Tensor] | None = data.fixed(cfg.n_samples) if data is not None else None

    # ---- checkpoints ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"model": MODEL_NAME, "arch": self.nets.arch, "domains": self.domains, "step": self.step,
                "precision": self.precision, "config": self.cfg.to_dict()}

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"g": self.G.state_dict(), "f": self.F.state_dict(), "e": self.E.state_dict(),
                               "d": self.D.state_dict(), "g_ema": self.G_ema.state_dict(),
                               "f_ema": self.F_ema.state_dict(), "e_ema": self.E_ema.state_dict()}
        out.update({f"{k.lower()}_optim": o.state_dict() for k, o in self.optims.items()})
        out.update(step=self.step, rng=rng_state(self.device), toonlab=self.metadata())
        return out

    def save(self) -> Path:
        return self.run.save_checkpoint(self.state_dict(), self.step, self.cfg.keep)

    def load(self, path: Path) -> None:
        """Resume exactly (weights, EMA copies, optimisers, step, RNG)."""
        ckpt = _read_checkpoint(path)
        meta = ckpt["toonlab"]
        if meta.get("arch") != self.nets.arch or list(meta.get("domains", [])) != self.domains:
            raise UserInputError(f"{path} was trained with another architecture or domains "
                                 f"({meta.get('domains')}); use another --out or the same settings")
        try:
            for key, m in (("g", self.G), ("f", self.F), ("e", self.E), ("d", self.D), ("g_ema", self.G_ema),
                           ("f_ema", self.F_ema), ("e_ema", self.E_ema)):
                m.load_state_dict(ckpt[key])
            for k, o in self.optims.items():
                o.load_state_dict(ckpt[f"{k.lower()}_optim"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise UserInputError(f"{path}: cannot resume from it: {str(e).splitlines()[0][:200]}") from None
        self.step = int(ckpt["step"])
        if ckpt.get("rng"):
            set_rng_state(ckpt["rng"], self.device)

    def maybe_resume(self) -> str:
        latest = self.run.latest()
        if latest is None:
            return "starting a new run"
        self.load(latest)
        return f"resumed from {latest} at step {self.step}"

    # ---- one iteration -------------------------------------------------------------------------

    def _style(self, y: Tensor, z: Tensor | None = None, ref: Tensor | None = None) -> Tensor:
        return self.F(z, y) if z is not None else self.E(ref, y)

    def _d_loss(self, x_real: Tensor, y_org: Tensor, y_trg: Tensor, z: Tensor | None = None,
                ref: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg
        with torch.no_grad(), autocast(self.device, self.precision):
            x_fake = self.G(x_real, self._style(y_trg, z, ref))
        x_real = x_real.detach().requires_grad_(True)
        B = len(x_real)
        with autocast(self.device, self.precision):
            # One D pass over reals and fakes: D has no batch-coupling layers, so this equals two passes.
            logits = self.D(torch.cat([x_real, x_fake.to(x_real.dtype)]), torch.cat([y_org, y_trg])).float()
        real, fake = logits[:B], logits[B:]
        r1 = r1_penalty(real, x_real)
        loss = d_logistic(real, fake) + c.lambda_reg * 0.5 * r1
        return loss, {"real": real.mean(), "fake": fake.mean(), "r1": r1}

    def _g_loss(self, x_real: Tensor, y_org: Tensor, y_trg: Tensor, lam_ds: float,
                zs: tuple[Tensor, Tensor] | None = None,
                refs: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        c = self.cfg
        z1, z2 = zs if zs is not None else (None, None)
        r1, r2 = refs if refs is not None else (None, None)
        with autocast(self.device, self.precision):
            s_trg = self._style(y_trg, z1, r1)
            x_fake = self.G(x_real, s_trg)
            adv = g_nonsaturating(self.D(x_fake, y_trg))
            sty = style_reconstruction_loss(self.E(x_fake, y_trg), s_trg)
            if lam_ds > 0:
                with torch.no_grad():  # the second output is a constant target (the authors detach it)
                    x_fake2 = self.G(x_real, self._style(y_trg, z2, r2))
                ds = diversity_loss(x_fake, x_fake2)
            else:  # after ds_iter the term has weight 0: skip its extra G pass
                ds = torch.zeros((), device=x_real.device)
            x_rec = self.G(x_fake, self.E(x_real, y_org))
            cyc = cycle_loss(x_rec, x_real)
        loss = adv + c.lambda_sty * sty + lam_ds * ds + c.lambda_cyc * cyc
        return loss, {"adv": adv, "sty": sty, "ds": -ds, "cyc": cyc}

    def _zero(self) -> None:
        for o in self.optims.values():
            o.zero_grad(set_to_none=True)

    def train_step(self, batch: Sequence[Tensor]) -> None:
        """One iteration: D (latent, reference), G (latent: G+F+E; reference: G), EMA."""
        c, st = self.cfg, self.stats
        x_src, y_src, x_ref, x_ref2, y_ref = (t.to(self.device, non_blocking=True) for t in batch)
        B = len(x_src)
        z1 = torch.randn(B, c.latent_dim, device=self.device)
        z2 = torch.randn(B, c.latent_dim, device=self.device)
        lam_ds = diversity_weight(self.step, c.lambda_ds, c.ds_iter)
        self.D.requires_grad_(True)
        for mode, kw in (("latent", dict(z=z1)), ("ref", dict(ref=x_ref))):
            loss, parts = self._d_loss(x_src, y_src, y_ref, **kw)
            check_finite(self.step, **{f"d_loss_{mode}": loss})
            self._zero()
            loss.backward()
            self.optims["D"].step()
            st.report(f"loss/d_{mode}", loss)
            for k, v in parts.items():
                st.report(f"d/{k}_{mode}", v)
        self.D.requires_grad_(False)  # G steps need no D parameter gradients
        for mode, kw, nets in (("latent", dict(zs=(z1, z2)), "GFE"), ("ref", dict(refs=(x_ref, x_ref2)), "G")):
            loss, parts = self._g_loss(x_src, y_src, y_ref, lam_ds, **kw)
            check_finite(self.step, **{f"g_loss_{mode}": loss})
            self._zero()
            loss.backward()
            for k in nets:
                self.optims[k].step()
            st.report(f"loss/g_{mode}", loss)
            for k, v in parts.items():
                st.report(f"g/{k}_{mode}", v)
        self.D.requires_grad_(True)
        st.report("lambda_ds", lam_ds)
        self._ema()

    @torch.no_grad()
    def _ema(self) -> None:
        b = self.cfg.ema
        for ema, m in ((self.G_ema, self.G), (self.F_ema, self.F), (self.E_ema, self.E)):
            for pe, pm in zip(ema.parameters(), m.parameters()):
                pe.lerp_(pm.detach(), 1.0 - b)

    # ---- samples -------------------------------------------------------------------------------

    def ema_nets(self) -> StarGAN2Nets:
        return StarGAN2Nets(self.G_ema, self.F_ema, self.E_ema, None, self.nets.arch)

    def save_samples(self) -> Path | None:
        if self.fixed is None:
            return None
        x, _ = self.fixed
        grid = latent_grid(self.ema_nets(), x, self.domains, seed=0, device=self.device, precision=self.precision)
        return save_atomic(grid, self.run.samples / f"{self.step:06d}.png")

    # ---- the loop ------------------------------------------------------------------------------

    def train(self, batches: Iterator[Sequence[Tensor]] | None = None) -> Path:
        """Run until ``iters`` iterations; returns the last checkpoint written."""
        c = self.cfg
        self.run.write_config({**c.to_dict(), "domains": self.domains, "arch": self.nets.arch})
        if batches is None:
            if self.data is None:
                raise UserInputError("no data: pass a batch iterator or a MultiDomainData")
            batches = self.data.batches(c.batch, seed=c.seed, start_step=self.step, workers=c.workers)
        for m in (self.G, self.F, self.E, self.D):
            m.train()
        def keep_fixed(batch: Sequence[Tensor]) -> None:
            if self.fixed is None:
                self.fixed = (batch[0][: c.n_samples].clone(), batch[1][: c.n_samples].clone())

        return run_training_loop(self, batches, c.iters, log_every=c.log_every, sample_every=c.sample_every,
                                 snapshot_every=c.snapshot_every, desc="stargan2-train", on_batch=keep_fixed,
                                 show=("loss/d_latent", "loss/g_latent", "g/cyc_latent", "lambda_ds"))


# ============================================================================ loading and inference


def _read_checkpoint(path: str | Path) -> dict[str, Any]:
    return read_checkpoint(path, MODEL_NAME, "StarGAN v2 checkpoint")


def load_stargan2(path: str | Path, device: str | torch.device = "cpu", ema: bool = True
                  ) -> tuple[StarGAN2Nets, dict[str, Any]]:
    """G, F, E (EMA copies by default) in eval mode, and the metadata (``domains``, ``arch``, ``step``)."""
    ckpt = _read_checkpoint(path)
    meta = ckpt["toonlab"]
    nets = build_networks(meta["arch"], discriminator=False, init=False)
    suffix = "_ema" if ema else ""
    try:
        for key, m in (("g", nets.G), ("f", nets.F), ("e", nets.E)):
            m.load_state_dict(ckpt[key + suffix])
    except (RuntimeError, KeyError) as e:
        raise UserInputError(f"{path}: {str(e).splitlines()[0][:200]}") from None
    for m in (nets.G, nets.F, nets.E):
        m.to(device).eval().requires_grad_(False)
    return nets, {**meta, "path": str(path)}


def _domain_index(domains: Sequence[str], name: str) -> int:
    if name not in domains:
        raise UserInputError(f"unknown domain {name!r} (this model has {', '.join(domains)})")
    return list(domains).index(name)


@torch.no_grad()
def translate(nets: StarGAN2Nets, x: Tensor, y_trg: Tensor | int, z: Tensor | None = None,
              ref: Tensor | None = None, precision: str = "fp32") -> Tensor:
    """Translate ``x`` to domain(s) ``y_trg`` with a latent code ``z`` (latent-guided) or a reference image."""
    if (z is None) == (ref is None):
        raise ValueError("give exactly one of z (latent-guided) or ref (reference-guided)")
    dev = next(nets.G.parameters()).device
    x = x.to(dev)
    y = torch.full((len(x),), int(y_trg), device=dev, dtype=torch.long) if isinstance(y_trg, int) else y_trg.to(dev)
    with autocast(dev, precision):
        s = nets.F(z.to(dev), y) if z is not None else nets.E(ref.to(dev), y)
        return nets.G(x, s).float().clamp(-1, 1)


def latent_grid(nets: StarGAN2Nets, x: Tensor, domains: Sequence[str], seed: int = 0, n_styles: int = 1,
                device: torch.device | str = "cpu", precision: str = "fp32") -> Image.Image:
    """Row 1: the sources; then ``n_styles`` rows per target domain, one latent code per row."""
    g = torch.Generator().manual_seed(seed)
    rows, labels = [x.cpu()], ["source"]
    for d, name in enumerate(domains):
        for k in range(n_styles):
            z = torch.randn(1, nets.arch["latent_dim"], generator=g).repeat(len(x), 1)
            rows.append(translate(nets, x, d, z=z, precision=precision).cpu())
            labels.append(name if n_styles == 1 else f"{name} {k}")
    return make_grid(torch.cat(rows), cols=len(x), row_labels=labels)


def reference_grid(nets: StarGAN2Nets, x: Tensor, refs: Tensor, y_refs: Tensor, domains: Sequence[str],
                   precision: str = "fp32") -> Image.Image:
    """First row: the references; first column: the sources; cell (i, j) = source j in reference i's style."""
    blank = torch.ones_like(x[:1])
    rows = [torch.cat([blank, x.cpu()])]
    for r, y in zip(refs, y_refs):
        out = translate(nets, x, torch.full((len(x),), int(y)), ref=r[None].repeat(len(x), 1, 1, 1), precision=precision)
        rows.append(torch.cat([r[None].cpu(), out.cpu()]))
    labels = ["sources"] + [domains[int(y)] for y in y_refs]
    return make_grid(torch.cat(rows), cols=len(x) + 1, row_labels=labels)


def interpolation_video(nets: StarGAN2Nets, x: Tensor, y_trg: int, path: str | Path, n_keys: int = 4,
                        frames_per_key: int = 24, fps: int = 24, seed: int = 0, precision: str = "fp32") -> Path:
    """Sources side by side, their style sliding between ``n_keys`` latent styles of ``y_trg`` (an mp4, OpenCV)."""
    import cv2

    path = Path(path)
    g = torch.Generator().manual_seed(seed)
    dev = next(nets.G.parameters()).device
    y = torch.full((n_keys,), y_trg, dtype=torch.long, device=dev)
    keys = nets.F(torch.randn(n_keys, nets.arch["latent_dim"], generator=g).to(dev), y)
    keys = torch.cat([keys, keys[:1]])  # loop back to the first style
    frames = []
    for k in range(n_keys):
        for t in torch.linspace(0, 1, frames_per_key + 1)[:-1]:
            s = torch.lerp(keys[k], keys[k + 1], float(t))[None].repeat(len(x), 1)
            with torch.no_grad(), autocast(dev, precision):
                out = nets.G(x.to(dev), s).float().clamp(-1, 1).cpu()
            frames.append(torch.cat([torch.cat(list(x.cpu()), dim=-1), torch.cat(list(out), dim=-1)], dim=-2))
    h, w = frames[0].shape[-2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".mp4")
    os.close(fd)
    try:
        vw = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not vw.isOpened():
            raise UserInputError(f"OpenCV cannot write {path} (mp4v)")
        for f in frames:
            u8 = f.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
            vw.write(cv2.cvtColor(np.ascontiguousarray(u8), cv2.COLOR_RGB2BGR))
        vw.release()
        os.chmod(tmp, 0o644)  # mkstemp made it 0600; a finished video is as readable as any output
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _test_data(meta: dict[str, Any], data: str | None, n_test: int, seed_offset: int = 1000) -> MultiDomainData:
    """Test images: ``data`` (class sub-folders) or, for a synthetic run, unseen synthetic faces."""
    arch, domains = meta["arch"], meta["domains"]
    if data is None:
        cfg = meta.get("config", {})
        if cfg.get("data"):
            raise UserInputError("this model was trained on --data folders: give the test images with --data "
                                 "(one sub-folder per domain)")
        return open_multidomain(None, arch["img_size"], domains, synthetic_length=n_test, synthetic_seed=seed_offset)
    return open_multidomain(data, arch["img_size"], domains)


def sample_figures(ckpt: str | Path, out: str | Path, data: str | None = None, n: int = 4, seed: int = 0,
                   device: str | torch.device = "cpu", video: bool = True, frames_per_key: int = 16,
                   precision: str = "fp32") -> list[Path]:
    """Write ``latent.png``, ``reference.png`` and ``interpolation_<domain>.mp4`` under ``out``."""
    nets, meta = load_stargan2(ckpt, device)
    domains = meta["domains"]
    test = _test_data(meta, data, max(n, 2))
    xs, ys = test.fixed(n)
    g = torch.Generator().manual_seed(seed)
    src = xs[torch.randperm(len(xs), generator=g)[:n]]
    refs_idx = torch.randperm(len(xs), generator=g)[:n]
    out = Path(out)
    paths = [save_atomic(latent_grid(nets, src, domains, seed=seed, n_styles=2, precision=precision), out / "latent.png"),
             save_atomic(reference_grid(nets, src, xs[refs_idx], ys[refs_idx], domains, precision=precision),
                         out / "reference.png")]
    if video:
        target = len(domains) - 1
        paths.append(interpolation_video(nets, src, target, out / f"interpolation_{domains[target]}.mp4",
                                         frames_per_key=frames_per_key, seed=seed, precision=precision))
    return paths


# ============================================================================ evaluation


def _tensor_source(images: Tensor, label: str):
    """Generated images (uint8 [N,3,H,W]) as a toonlab.metrics ImageSource (never cached)."""
    from toonlab.metrics import ImageSource

    class _Src(ImageSource):
        def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
            for i in range(0, self.n, batch):
                yield images[i:i + batch].to(device)

    src = _Src()
    src.n, src.label = len(images), label
    return src


def evaluate(ckpt: str | Path, data: str | None = None, train_data: str | None = None, modes: Sequence[str] = ("latent", "reference"),
             n_test: int = 100, n_outputs: int = 10, n_real: int | None = None, features: str = "inception",
             inception_weights: str | None = None, lpips: str = "alex", lpips_random: bool = False,
             lpips_weights: str | None = None, device: str | torch.device = "cpu", batch: int = 32, seed: int = 0,
             precision: str = "fp32", show_progress: bool = True) -> dict[str, Any]:
    """The paper's protocol (module docstring) → ``{mode: {"fid", "lpips", "pairs": {src→trg: {...}}}, ...}``.

    data: test images (class sub-folders; for a synthetic run, unseen synthetic faces by default);
    train_data: the target domains' training images for FID (default: the checkpoint's training data).
    """
    from toonlab.metrics import (
        DatasetSource,
        build_feature_extractor,
        build_lpips,
        frechet_distance,
        lpips_diversity,
        source_statistics,
    )

    if n_outputs < 2:
        raise UserInputError("--n-outputs must be ≥ 2 (LPIPS is a mean over pairs of outputs)")
    bad = [m for m in modes if m not in ("latent", "reference")]
    if bad:
        raise UserInputError(f"unknown mode {bad[0]!r} (use latent and/or reference)")
    device = torch.device(device)
    ext = build_feature_extractor(features, inception_weights, device)  # fails early when weights are missing
    lp = build_lpips(lpips, lpips_weights, random=lpips_random, device=device)
    nets, meta = load_stargan2(ckpt, device)
    domains, arch = meta["domains"], meta["arch"]
    test = _test_data(meta, data, n_test)
    cfg = meta.get("config", {})
    train_specs: list[str]
    if train_data is not None:
        train_specs = open_multidomain(train_data, arch["img_size"], domains).specs
    elif cfg.get("data"):
        train_specs = [str(Path(cfg["data"]) / d) for d in domains]
    else:
        train_specs = [f"synthetic:{d}:{cfg.get('synthetic_length', 1000)}" for d in domains]
    g = torch.Generator().manual_seed(seed)
    results: dict[str, Any] = {"features": ext.describe(), "lpips": lp.description, "domains": domains,
                               "n_outputs": n_outputs, "checkpoint": str(ckpt), "step": meta.get("step")}
    real_stats = {}
    for t, spec in enumerate(train_specs):
        # Training images of synthetic domains were drawn with seed = domain index (open_multidomain).
        src = DatasetSource(spec, arch["img_size"], n_real)
        if spec.startswith("synthetic:"):
            from toonlab.data import open_dataset

            src.ds = open_dataset(spec, arch["img_size"], flip=False, seed=t)
        real_stats[t] = source_statistics(src, ext, batch=batch, device=device, show_progress=show_progress,
                                          desc=f"real {domains[t]}")
    for mode in modes:
        pairs: dict[str, dict[str, float]] = {}
        for s_dom, s_ds in enumerate(test.datasets):
            n_src = min(n_test, len(s_ds))
            xs = torch.stack([s_ds[i] for i in range(n_src)])
            for t_dom, t_ds in enumerate(test.datasets):
                if t_dom == s_dom:
                    continue
                outs = torch.empty(n_src, n_outputs, 3, arch["img_size"], arch["img_size"])
                bar = progress(total=n_outputs, desc=f"{mode} {domains[s_dom]}→{domains[t_dom]}", disable=not show_progress)
                for k in range(n_outputs):
                    for i in range(0, n_src, batch):
                        x = xs[i:i + batch]
                        if mode == "latent":
                            z = torch.randn(len(x), arch["latent_dim"], generator=g)
                            outs[i:i + len(x), k] = translate(nets, x, t_dom, z=z, precision=precision).cpu()
                        else:
                            idx = torch.randint(0, len(t_ds), (len(x),), generator=g).tolist()
                            ref = torch.stack([t_ds[j] for j in idx])
                            outs[i:i + len(x), k] = translate(nets, x, t_dom, ref=ref, precision=precision).cpu()
                    bar.update(1)
                bar.close()
                u8 = outs.flatten(0, 1).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
                fake = source_statistics(_tensor_source(u8, f"{mode} {domains[s_dom]}→{domains[t_dom]}"), ext,
                                         batch=batch, device=device, cache=False, show_progress=False)
                real = real_stats[t_dom]
                pairs[f"{domains[s_dom]}→{domains[t_dom]}"] = {
                    "fid": frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma),
                    "lpips": lpips_diversity(outs.to(device), lp, batch=batch),
                    "n": n_src * n_outputs,
                }
        results[mode] = {"fid": float(np.mean([p["fid"] for p in pairs.values()])),
                         "lpips": float(np.mean([p["lpips"] for p in pairs.values()])), "pairs": pairs}
    return results


# ============================================================================ CLI


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """StarGAN v2: multi-domain image translation (train / sample / eval)."""


@main.command()
@click.option("--data", default=None, help="Folder with one sub-folder of images per domain [built-in synthetic domains].")
@click.option("--domains", default=None, help="Comma-separated domains (sub-folders or synthetic names) [all / photo,webtoon,pastel].")
@click.option("--out", type=click.Path(file_okay=False), default="runs/stargan2", show_default=True)
@click.option("--img-size", type=int, default=256, show_default=True, help="Image side (power of two).")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--iters", type=click.IntRange(0), default=100_000, show_default=True)
@click.option("--ds-iter", type=click.IntRange(0), default=100_000, show_default=True,
              help="Iterations over which the diversity weight decays to 0.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--f-lr", type=click.FloatRange(0, min_open=True), default=1e-6, show_default=True, help="Mapping network lr.")
@click.option("--lambda-reg", type=click.FloatRange(0), default=1.0, show_default=True, help="R1 γ.")
@click.option("--lambda-sty", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--lambda-ds", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--lambda-cyc", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--dim-in", type=click.IntRange(1), default=None, help="First conv width [2^14 / img-size].")
@click.option("--max-conv-dim", type=click.IntRange(1), default=512, show_default=True)
@click.option("--mapping-hidden", type=click.IntRange(1), default=512, show_default=True)
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--sample-every", type=click.IntRange(0), default=5000, show_default=True)
@click.option("--snapshot-every", type=click.IntRange(0), default=10000, show_default=True)
@click.option("--keep", type=click.IntRange(0), default=5, show_default=True)
@click.option("--log-every", type=click.IntRange(1), default=10, show_default=True)
@click.option("--synthetic-length", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True)
def train(domains: str | None, **opts: Any) -> None:
    """Train StarGAN v2 (re-running the same command resumes from the newest checkpoint)."""
    with user_errors():
        cfg = StarGAN2Config(domains=tuple(d.strip() for d in domains.split(",") if d.strip()) if domains else None,
                             **opts)
        device = pick_device(cfg.device)
        if device.type == "cuda":
            from toonlab.runtime import enable_tf32

            enable_tf32()
        data = open_multidomain(cfg.data, cfg.img_size, cfg.domains, cfg.synthetic_length)
        if data.synthetic:
            click.echo(f"no --data given: training on the built-in synthetic domains {', '.join(data.names)}")
        trainer = StarGAN2Trainer(cfg, data, device)
        how = trainer.maybe_resume()
        click.echo(f"{how}; {cfg.iters} iterations, batch {cfg.batch}, {cfg.img_size} px, device {device} "
                   f"({trainer.precision}); data: {data.describe()}")
        try:
            last = trainer.train()
        except KeyboardInterrupt:
            raise ToonlabError("interrupted; re-run the same command to resume from the last checkpoint") from None
    click.echo(f"done: {last}")


@main.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [CHECKPOINT's run/figures].")
@click.option("--data", default=None, help="Source/reference images (sub-folder per domain) [unseen synthetic faces].")
@click.option("--n", type=click.IntRange(1), default=4, show_default=True, help="Source images per grid.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--video/--no-video", default=True, show_default=True, help="Also write the style interpolation video.")
@click.option("--frames", type=click.IntRange(2), default=16, show_default=True, help="Frames between two styles.")
@click.option("--device", default="auto", show_default=True)
def sample(checkpoint: str, out: str | None, data: str | None, n: int, seed: int, video: bool, frames: int,
           device: str) -> None:
    """Latent-guided and reference-guided grids, and a style interpolation video."""
    with user_errors():
        dev = pick_device(device)
        out_dir = Path(out) if out else Path(checkpoint).resolve().parent.parent / "figures"
        for p in sample_figures(checkpoint, out_dir, data, n, seed, dev, video, frames,
                                precision="bf16" if dev.type == "cuda" else "fp32"):
            click.echo(f"wrote {p}")


@main.command(name="eval")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--data", default=None, help="Test images, one sub-folder per domain [unseen synthetic faces].")
@click.option("--train-data", default=None, help="Training images for FID (sub-folder per domain) [the run's data].")
@click.option("--mode", type=click.Choice(["latent", "reference", "both"]), default="both", show_default=True)
@click.option("--n-test", type=click.IntRange(2), default=100, show_default=True, help="Test images per source domain (at most).")
@click.option("--n-outputs", type=click.IntRange(2), default=10, show_default=True, help="Outputs per test image.")
@click.option("--n-real", type=click.IntRange(2), default=None, help="Training images per target for FID [all].")
@click.option("--features", type=click.Choice(["inception", "random", "inception-random"]), default="inception",
              show_default=True, help="FID features; random = offline smoke test, comparable with nothing.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--lpips", "lpips_kind", type=click.Choice(["alex", "vgg", "squeeze", "random"]), default="alex",
              show_default=True, help="LPIPS trunk (alex: the paper's); random = offline smoke test.")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json-out", type=click.Path(dir_okay=False), default=None, help="Also write the results as JSON.")
def eval_cmd(checkpoint: str, data: str | None, train_data: str | None, mode: str, n_test: int, n_outputs: int,
             n_real: int | None, features: str, inception_weights: str | None, lpips_kind: str,
             lpips_weights: str | None, batch: int, seed: int, device: str, json_out: str | None) -> None:
    """FID and LPIPS diversity per the StarGAN v2 protocol (10 outputs per test image)."""
    with user_errors():
        dev = pick_device(device)
        res = evaluate(checkpoint, data, train_data, ("latent", "reference") if mode == "both" else (mode,),
                       n_test, n_outputs, n_real, features, inception_weights,
                       lpips="alex" if lpips_kind == "random" else lpips_kind, lpips_random=lpips_kind == "random",
                       lpips_weights=lpips_weights, device=dev, batch=batch, seed=seed,
                       precision="bf16" if dev.type == "cuda" else "fp32")
    for line in res["features"]:
        click.echo(line)
    click.echo(res["lpips"])
    for m in ("latent", "reference"):
        if m in res:
            click.echo(f"{m}-guided: FID {res[m]['fid']:.2f}  LPIPS {res[m]['lpips']:.4f}  "
                       f"({len(res[m]['pairs'])} domain pairs, {n_outputs} outputs per image)")
            for k, v in res[m]["pairs"].items():
                click.echo(f"  {k}: FID {v['fid']:.2f}  LPIPS {v['lpips']:.4f}  (n={v['n']})")
    if json_out:
        with atomic_path(json_out) as tmp:
            Path(tmp).write_text(json.dumps(res, indent=2, default=str))
        click.echo(f"wrote {json_out}")


if __name__ == "__main__":
    main()
