"""An image → W+ encoder for instant inversion (pSp / e4e in spirit), its trainer and its commands.

    toonlab encoder train --out runs/encoder --iters 4000              # on the bundled generator's own samples
    toonlab encoder train --real synthetic:photo --out runs/enc        # + a folder of real aligned faces
    toonlab encoder apply face.jpg --out encoded                       # W+ in one forward pass (latent.pt)
    python inversion/project.py face.jpg --encoder bundled --steps 50  # the encoder's W+ starts the optimisation

Library (what the web app calls)::

    enc = load_encoder()                      # None → the bundled toonlab/assets/encoder_synthetic64.pt
    wplus = encode(enc, G, images)            # [N, 3, H, W] in [-1, 1] → [N, n_latent, D]

The network (``inversion/encoder_net.py``) predicts per-layer offsets from the generator's mean w.
Training (``EncoderTrainer`` on the one skeleton, ``toonlab/training.py``: exact resume by re-running):

* every step draws its own targets from the frozen generator — z → w, truncated toward ``w_avg``
  by ψ ~ U(``trunc_min``, 1) and style-mixed at a random layer with probability ``mix_prob``,
  rendered with random noise — so the true W+ of each target is known. The draw is a function of
  (seed, step), so a resumed run sees the same targets as a straight one;
* loss = ``w_loss`` · MSE to the true W+ (in units of W's spread) + ``pixel`` · MSE and
  ``lpips`` · LPIPS (every ``lpips_every``-th step) between the target and the generator's rendering of the prediction (const
  noise: what a user of the encoder renders) + ``delta_reg`` · e4e's delta regulariser (each
  layer's offset minus the first layer's, squared), which keeps the W+ near W and editable;
* with ``--real`` (a folder, zip, LMDB or ``synthetic:NAME`` of aligned faces) each step also
  encodes ``real_batch`` real images, whose latents are unknown: pixel + LPIPS through the frozen
  generator and the delta regulariser, as e4e trains on FFHQ.

Every checkpoint of a run also writes ``RUN/encoder.pt``: the slim encoder file (format
``toonlab-encoder/1``: architecture, weights, the generator's file hash, the run's settings) that
``load_encoder`` reads. Loading it beside another generator warns in one line.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inversion.encoder_net import EncoderArch, EncoderNet
from toonlab.atomic import save_image_atomic, torch_save_atomic
from toonlab.checkpoint import CheckpointError, file_hash, load_torch_file
from toonlab.errors import UserInputError
from toonlab.images import make_grid
from toonlab.options import ToonGroup, run_config_command
from toonlab.runtime import ASSETS, autocast, bundled_generator, pick_device, resolve_precision, seed_everything
from toonlab.training import MUTABLE, Phase, Trainer, check_finite, run_training

__all__ = ["ENCODER_FORMAT", "MODEL_NAME", "Encoder", "EncoderConfig", "EncoderTrainer", "GeneratorMismatchWarning",
           "bundled_encoder_path", "load_encoder", "save_encoder", "encode", "check_generator", "train"]

ENCODER_FORMAT = "toonlab-encoder/1"
MODEL_NAME = "encoder"


def bundled_encoder_path() -> Path:
    """The encoder shipped for the bundled source generator (``toonlab/assets/encoder_synthetic64.pt``)."""
    return ASSETS / "encoder_synthetic64.pt"


class GeneratorMismatchWarning(UserWarning):
    """The encoder was trained for another generator file; its W+ may render poorly."""


# ============================================================================ the encoder file


@dataclass
class Encoder:
    """A loaded encoder: the network (eval mode, frozen) and what its file says about it."""

    net: EncoderNet
    arch: EncoderArch
    generator: str | None = None  # the generator file it was trained for (as recorded)
    generator_hash: str | None = None  # its file_hash
    path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # the run's settings and step

    @property
    def device(self) -> torch.device:
        return self.net.w_avg.device

    def to(self, device: torch.device | str) -> "Encoder":
        self.net.to(device)
        return self


def save_encoder(path: str | os.PathLike, net: EncoderNet, generator: str | os.PathLike | None,
                 info: Mapping[str, Any] | None = None) -> Path:
    """Write the slim encoder file (atomically)."""
    obj = {
        "format": ENCODER_FORMAT,
        "arch": net.arch.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "generator": str(generator) if generator is not None else None,
        "generator_hash": file_hash(generator) if generator is not None and Path(generator).is_file() else None,
        "info": json.loads(json.dumps(dict(info or {}), default=str)),
    }
    return torch_save_atomic(obj, path)


def _build(arch_d: Any, state: Any, path: Path) -> tuple[EncoderNet, EncoderArch]:
    if not isinstance(arch_d, Mapping) or not isinstance(state, Mapping):
        raise UserInputError(f"{path}: not a toonlab encoder file (no architecture or weights)")
    try:
        arch = EncoderArch.from_dict(dict(arch_d))
        net = EncoderNet(arch)
        net.load_state_dict(dict(state))
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        raise UserInputError(f"{path}: not a usable encoder file ({first})") from None
    return net, arch


def load_encoder(path: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 generator: str | os.PathLike | None = None) -> Encoder:
    """Read an encoder file (``None`` or ``"bundled"``: the bundled one); also a run's training checkpoint.

    ``generator``: the generator file it will be used with; a different file hash than the one
    recorded warns in one line (:class:`GeneratorMismatchWarning`).
    """
    p = bundled_encoder_path() if path is None or str(path) == "bundled" else Path(path)
    if not p.is_file():
        hint = " (train one with `toonlab encoder train`)" if path is None or str(path) == "bundled" else ""
        raise UserInputError(f"encoder file {p} does not exist{hint}")
    try:
        obj = load_torch_file(p, "encoder file")
    except CheckpointError as e:
        raise UserInputError(f"{p}: not a toonlab encoder file ({str(e).split(': ', 1)[-1]})") from None
    if isinstance(obj, dict) and obj.get("format") == ENCODER_FORMAT:
        net, arch = _build(obj.get("arch"), obj.get("state_dict"), p)
        enc = Encoder(net, arch, obj.get("generator"), obj.get("generator_hash"), p, dict(obj.get("info") or {}))
    elif isinstance(obj, dict) and isinstance(obj.get("toonlab"), dict) and obj["toonlab"].get("model") == MODEL_NAME:
        meta = obj["toonlab"]  # a training checkpoint of `toonlab encoder train`
        net, arch = _build(meta.get("arch"), obj.get("encoder"), p)
        enc = Encoder(net, arch, meta.get("generator"), meta.get("generator_hash"), p,
                      {"step": meta.get("step"), "config": meta.get("config")})
    else:
        raise UserInputError(f"{p}: not a toonlab encoder file (train one with `toonlab encoder train`)")
    enc.net.eval().requires_grad_(False)
    enc.to(device)
    if generator is not None:
        check_generator(enc, generator)
    return enc


def check_generator(enc: Encoder, generator: str | os.PathLike) -> str | None:
    """Warn (one line) when ``generator`` is not the file ``enc`` was trained for; returns the message."""
    if enc.generator_hash is None or not Path(generator).is_file():
        return None
    h = file_hash(generator)
    if h == enc.generator_hash:
        return None
    trained = Path(enc.generator).name if enc.generator else "another generator"
    msg = (f"encoder {enc.path.name if enc.path else ''} was trained for {trained} (hash {enc.generator_hash}), "
           f"not {Path(generator).name} (hash {h}); its W+ may not fit this generator")
    warnings.warn(msg, GeneratorMismatchWarning, stacklevel=2)
    return msg


def _resize(images: Tensor, size: int) -> Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    mode = "area" if images.shape[-1] > size else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(images, size=(size, size), mode=mode, **kw)


@torch.no_grad()
def encode(enc: Encoder, G: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """W+ [N, n_latent, style_dim] of ``images`` [N, 3, H, W] in [-1, 1] (square, any size; resized).

    ``G`` is the generator the latents are for (its shape is checked; the result is on its device).
    """
    a = enc.arch
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise UserInputError(f"encode needs square RGB images [N, 3, H, H], got {tuple(images.shape)}")
    n_latent, style_dim = int(getattr(G, "n_latent", a.n_latent)), int(getattr(G, "style_dim", a.style_dim))
    if (n_latent, style_dim) != (a.n_latent, a.style_dim):
        raise UserInputError(f"the encoder predicts {a.n_latent}×{a.style_dim} W+ latents (a {4 * 2 ** (a.n_latent // 2 - 1)}"
                             f"-px generator); this generator takes {n_latent}×{style_dim}")
    out = []
    dev = enc.device
    for i in range(0, images.shape[0], batch_size):
        x = _resize(images[i : i + batch_size].to(dev, torch.float32), a.size)
        out.append(enc.net(x).float())
    w = torch.cat(out) if out else torch.empty(0, a.n_latent, a.style_dim, device=dev)
    target = G.w_avg.device if hasattr(G, "w_avg") else dev
    return w.to(target)


# ============================================================================ training


@dataclass
class EncoderConfig:
    """Every knob of an encoder run."""

    ckpt: str | None = None  # the frozen generator; None → the bundled source generator
    out: str = "runs/encoder"
    real: str | None = None  # aligned real faces: folder, zip, LMDB or synthetic:NAME[:LENGTH]
    iters: int = 4000
    batch: int = 8  # generator samples per step
    real_batch: int | None = None  # real images per step [batch // 2 with --real, else 0]
    lr: float = 1e-3
    lr_rampdown: float = 0.25  # cosine ramp-down over the last fraction of the run
    w_loss: float = 1.0  # MSE to the known W+ (units of W's spread)
    pixel: float = 1.0  # pixel MSE through the generator
    lpips: float = 0.5  # LPIPS through the generator (0: off)
    lpips_every: int = 8  # LPIPS on every k-th step only (on a CPU it costs ~8× the rest of a step)
    delta_reg: float = 2e-3  # e4e delta regulariser
    mix_prob: float = 0.5  # style mixing of the generator samples
    trunc_min: float = 0.5  # ψ ~ U(trunc_min, 1)
    features: str = "random"  # LPIPS trunk: imagenet (weights from disk) or random
    lpips_weights: str | None = None
    channels: tuple[int, ...] = EncoderArch.channels
    head_channels: int = EncoderArch.head_channels
    size: int | None = None  # encoder input side [the generator's]
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    workers: int = 0
    log_every: int = 10
    sample_every: int = 500
    snapshot_every: int = 250
    keep: int = 3
    n_samples: int = 8
    tensorboard: bool = True

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.features not in ("imagenet", "random"):
            raise UserInputError(f"--features must be imagenet or random, got {self.features!r}")
        if not 0 <= self.mix_prob <= 1:
            raise UserInputError(f"--mix-prob must be in [0, 1], got {self.mix_prob}")
        if not 0 <= self.trunc_min <= 1:
            raise UserInputError(f"--trunc-min must be in [0, 1], got {self.trunc_min}")
        if self.batch < 1:
            raise UserInputError("--batch must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d


def _step_seed(*words: int) -> int:
    return int(np.random.SeedSequence([int(w) for w in words]).generate_state(1)[0])


class EncoderTrainer(Trainer):
    """Trains an :class:`EncoderNet` against a frozen generator ``G`` (see the module docstring)."""

    desc = "encoder-train"
    what = "encoder training checkpoint"
    model_name = MODEL_NAME
    show = ("loss/total", "loss/w", "loss/pixel", "loss/lpips", "sec_per_it")
    mutable = MUTABLE | {"lpips_weights"}
    flags = {"w_loss": "--lambda-w", "pixel": "--lambda-pixel", "lpips": "--lambda-lpips",
             "delta_reg": "--lambda-delta"}

    def __init__(self, cfg: EncoderConfig, G: nn.Module, device: torch.device | str = "cpu",
                 generator_path: str | os.PathLike | None = None, real: Any = None,
                 perceptual: nn.Module | None = None) -> None:
        c = dataclasses.replace(cfg)
        if c.real_batch is None:
            c.real_batch = max(1, c.batch // 2) if real is not None or c.real else 0
        super().__init__(c, device, tensorboard=c.tensorboard)
        self.precision = resolve_precision(c.precision, self.device)
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.generator_path = Path(generator_path) if generator_path is not None else None
        self.real = real
        self.perceptual = perceptual
        seed_everything(c.seed)
        self.arch = EncoderArch(size=int(c.size or G.size), n_latent=int(G.n_latent), style_dim=int(G.style_dim),
                                channels=c.channels, head_channels=c.head_channels)
        self.E = EncoderNet(self.arch).to(self.device)
        w_avg, w_scale = self._w_stats()
        self.E.set_w_stats(w_avg, w_scale)
        self.optim = torch.optim.Adam(self.E.parameters(), lr=c.lr, betas=(0.9, 0.999))
        self.modules = {"encoder": self.E}
        self.optimizers = {"encoder_optim": self.optim}
        self.sample_images: Tensor | None = None

    @torch.no_grad()
    def _w_stats(self, n: int = 10000) -> tuple[Tensor, Tensor]:
        """Mean and per-dimension spread of W (10k mapped z, a fixed seed: the same in every run)."""
        g = torch.Generator().manual_seed(1234)
        z = torch.randn(n, self.G.style_dim, generator=g).to(self.device)
        w = torch.cat([self.G.style(z[i : i + 2048]) for i in range(0, n, 2048)]).float()
        return w.mean(0), w.std(0)

    # ---- the skeleton's hooks ------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return int(self.cfg.iters)

    def metadata(self) -> dict[str, Any]:
        gp = self.generator_path
        return {"model": MODEL_NAME, "arch": self.arch.to_dict(), "precision": self.precision,
                "generator": str(gp) if gp else None,
                "generator_hash": file_hash(gp) if gp is not None and gp.is_file() else None}

    def check_compatible(self, ckpt: Mapping[str, Any], path: Path) -> None:
        super().check_compatible(ckpt, path)
        held = ckpt["toonlab"].get("generator_hash")
        now = self.metadata()["generator_hash"]
        if held and now and held != now:
            raise UserInputError(f"{path} was trained against another generator (hash {held}, --ckpt has {now}); "
                                 "use the run's --ckpt or another --out")

    def batches(self) -> Iterator[dict[str, Any]]:
        """Step k's batch: its index (the generator targets are drawn from it) and the real images."""
        c = self.cfg
        real_iter = None
        if self.real is not None and c.real_batch:
            from toonlab.data import infinite_loader

            if hasattr(self.real, "skip_log"):
                self.real.skip_log(self.run.root / "skipped.txt")
            real_iter = infinite_loader(self.real, c.real_batch, c.workers, c.seed, start=self.step)
        step = self.step
        while True:
            yield {"step": step, "real": next(real_iter) if real_iter is not None else None}
            step += 1

    @torch.no_grad()
    def draw_targets(self, step: int) -> tuple[Tensor, Tensor]:
        """Generator samples of ``step``: (images [B, 3, S, S], their W+ [B, n_latent, D]) — a function of (seed, step)."""
        c, G = self.cfg, self.G
        B, L, D = c.batch, G.n_latent, G.style_dim
        g = torch.Generator().manual_seed(_step_seed(c.seed, step, 17))
        z = torch.randn(2, B, D, generator=g)
        psi = c.trunc_min + (1 - c.trunc_min) * torch.rand(B, 1, 1, generator=g)
        mix = torch.rand(B, generator=g) < c.mix_prob
        cut = torch.randint(1, L, (B,), generator=g)
        noise = [torch.randn(B, 1, r, r, generator=g) for r in G.noise_shapes()]
        dev = self.device
        w = G.style(z.reshape(2 * B, D).to(dev)).reshape(2, B, D)
        avg = self.E.w_avg
        w = avg + psi.to(dev).transpose(0, 1) * (w - avg)  # psi [1, B, 1] per sample
        layer = torch.arange(L, device=dev)
        use2 = (mix.to(dev)[:, None] & (layer[None] >= cut.to(dev)[:, None]))  # [B, L]
        wplus = torch.where(use2[..., None], w[1][:, None], w[0][:, None])
        with autocast(dev, self.precision):
            img = G.synthesis(wplus, noise=[t.to(dev) for t in noise]).image.float()
        return img.clamp(-1, 1), wplus

    def before_step(self, batch: dict[str, Any]) -> dict[str, Any]:
        img, wplus = self.draw_targets(batch["step"])
        real = batch["real"]
        if real is not None:
            real = real.to(self.device, torch.float32)
            if real.shape[-1] != self.G.size:
                real = _resize(real, self.G.size)
        if self.sample_images is None:  # step 0's generator draw: the same grid rows after a resume
            first = img if batch["step"] == 0 else self.draw_targets(0)[0]
            parts = [first[: self.cfg.n_samples]] + ([real[: self.cfg.n_samples]] if real is not None else [])
            self.sample_images = torch.cat(parts).detach().cpu()
        return {"img": img, "wplus": wplus, "real": real}

    def phases(self) -> list[Phase]:
        return [Phase("lr schedule", self.set_lr), Phase("encoder", self.encoder_step)]

    def lr_at(self, step: int) -> float:
        c = self.cfg
        t = step / max(1, c.iters)
        ramp = min(1.0, (1.0 - t) / c.lr_rampdown) if c.lr_rampdown > 0 else 1.0
        return c.lr * (0.1 + 0.9 * (0.5 - 0.5 * math.cos(max(0.0, ramp) * math.pi)))

    def set_lr(self, b: dict[str, Any]) -> None:
        lr = self.lr_at(self.step)
        for grp in self.optim.param_groups:
            grp["lr"] = lr
        self.stats.report("lr", lr)

    def _recon_terms(self, offsets: Tensor, target: Tensor) -> dict[str, Tensor]:
        """Pixel MSE and LPIPS between ``target`` and the generator's rendering of the predicted W+."""
        c, dev = self.cfg, self.device
        terms: dict[str, Tensor] = {}
        if not (c.pixel > 0 or (c.lpips > 0 and self.perceptual is not None)):
            return terms
        with autocast(dev, self.precision):
            rec = self.G.synthesis(self.E.to_wplus(offsets), noise_mode="const").image.float()
        if c.pixel > 0:
            terms["pixel"] = (rec - target).square().mean()
        if c.lpips > 0 and self.perceptual is not None and self.step % max(1, c.lpips_every) == 0:
            terms["lpips"] = self.perceptual(rec, target).mean()
        return terms

    def encoder_step(self, b: dict[str, Any]) -> None:
        c, st = self.cfg, self.stats
        img, wplus, real = b["img"], b["wplus"], b["real"]
        x = img if real is None else torch.cat([img, real])
        with autocast(self.device, self.precision):
            off = self.E.offsets(x).float()
        B = img.shape[0]
        true_off = (wplus - self.E.w_avg) / self.E.w_scale
        terms = {"w": (off[:B] - true_off).square().mean()}
        rec = self._recon_terms(off, x)
        terms.update({k: v for k, v in rec.items()})
        terms["delta"] = EncoderNet.deltas(off).square().mean()
        weights = {"w": c.w_loss, "pixel": c.pixel, "lpips": c.lpips, "delta": c.delta_reg}
        total = sum(weights[k] * v for k, v in terms.items())
        check_finite(self.step, loss=total)
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        self.optim.step()
        st.report("loss/total", total)
        for k, v in terms.items():
            st.report(f"loss/{k}", v)

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Targets (generator samples, then real images) over their reconstructions."""
        if self.sample_images is None or self.rank != 0:
            return None
        x = self.sample_images.to(self.device)
        rec = self.G.synthesis(self.E(x), noise_mode="const").image.float().clamp(-1, 1)
        grid = make_grid(torch.cat([x, rec]).cpu(), cols=len(x), row_labels=["target", "encoded"])
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")

    def save(self) -> Path | None:
        """The skeleton's checkpoint, then the slim encoder file beside it (``RUN/encoder.pt``)."""
        path = super().save()
        if path is not None:
            save_encoder(self.run.root / "encoder.pt", self.E, self.generator_path,
                         {"step": self.step, "config": self.config_dict(), "checkpoint": path.name})
        return path


def train(cfg: EncoderConfig, echo=click.echo) -> Path | None:
    """Load the generator (and real faces), build the trainer, resume if the run folder has a checkpoint, train."""
    from losses.perceptual import build_lpips
    from stylegan2.checkpoint import load_generator

    device = pick_device(cfg.device)
    ckpt = Path(cfg.ckpt) if cfg.ckpt else bundled_generator()
    G = load_generator(ckpt, device=device)
    real = None
    if cfg.real:
        from toonlab.data import open_dataset

        side = int(cfg.size or G.size)
        if cfg.real.startswith("synthetic:"):
            side = max(side, 32)  # the smallest synthetic face; resized to the generator's side per step
        real = open_dataset(cfg.real, side, flip=True)
    perceptual = None
    if cfg.lpips > 0:
        perceptual = build_lpips("vgg", weights=cfg.lpips_weights, random=cfg.features == "random", device=device)
    trainer = EncoderTrainer(cfg, G, device, ckpt, real, perceptual)
    c = trainer.cfg
    what = f"LPIPS {perceptual.description}" if perceptual is not None else "no LPIPS"
    last = run_training(trainer, describe=lambda how: (
        f"{how}; {c.iters} steps, batch {c.batch} generator samples + {c.real_batch} real, "
        f"encoder {trainer.arch.size} px ({sum(p.numel() for p in trainer.E.parameters()):,} parameters), "
        f"device {device} ({trainer.precision}); {what}"), echo=echo)
    if last is not None:
        echo(f"encoder file: {trainer.run.root / 'encoder.pt'}")
    return last


# ============================================================================ commands


@click.group(name="encoder", cls=ToonGroup)
def main() -> None:
    """Image → W+ encoder: train it on a generator, apply it to photos."""


# `apply` encodes photos through the projector's pipeline (align, render, latent.pt); the projector
# imports this module, so `apply` is defined beside it and composed into this group by the entry
# point (toonlab/cli.py: inversion.project:extend_encoder_cli), which keeps the import one-way.


@main.command(name="train", aliases={"--iter": "--iters"})
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="The (frozen) generator. Default: the bundled 64-px synthetic-face generator.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/encoder", show_default=True,
              help="Run folder (re-run the same command to resume).")
@click.option("--real", default=None, help="Aligned real faces too: folder, zip, LMDB or synthetic:NAME[:LENGTH].")
@click.option("--iters", type=click.IntRange(0), default=4000, show_default=True)
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True, help="Generator samples per step.")
@click.option("--real-batch", type=click.IntRange(0), default=None, help="Real images per step [batch/2 with --real].")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-3, show_default=True)
@click.option("--lambda-w", "w_loss", type=click.FloatRange(0), default=1.0, show_default=True, help="Weight of the W+ MSE.")
@click.option("--lambda-pixel", "pixel", type=click.FloatRange(0), default=1.0, show_default=True, help="Weight of the pixel MSE.")
@click.option("--lambda-lpips", "lpips", type=click.FloatRange(0), default=0.5, show_default=True, help="Weight of LPIPS (0: off).")
@click.option("--lpips-every", type=click.IntRange(1), default=8, show_default=True,
              help="LPIPS on every k-th step only (it dominates a CPU step).")
@click.option("--lambda-delta", "delta_reg", type=click.FloatRange(0), default=2e-3, show_default=True,
              help="e4e delta regulariser (keeps W+ near W).")
@click.option("--mix-prob", type=click.FloatRange(0, 1), default=0.5, show_default=True)
@click.option("--trunc-min", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Truncation ψ of the generator samples is drawn from U(trunc-min, 1).")
@click.option("--features", type=click.Choice(["imagenet", "random"]), default="random", show_default=True,
              help="LPIPS trunk: ImageNet VGG16 from disk (--lpips-weights / torch hub cache) or random (offline).")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--size", type=click.IntRange(16), default=None, help="Encoder input side [the generator's].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True)
@click.option("--log-every", type=click.IntRange(1), default=10, show_default=True)
@click.option("--sample-every", type=click.IntRange(0), default=500, show_default=True)
@click.option("--snapshot-every", type=click.IntRange(0), default=250, show_default=True)
@click.option("--keep", type=click.IntRange(0), default=3, show_default=True)
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the configuration and exit.")
def train_cmd(dry_run: bool, **opts: Any) -> None:
    """Train an encoder against a frozen generator (resumes by re-running)."""
    run_config_command(EncoderConfig, train, dry_run, opts)


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("encoder")
