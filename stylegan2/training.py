"""The StyleGAN2 training loop: scheduling only.

Phases per step (Karras et al. 2020): D main step; lazy R1 every ``d_reg_every``; G main step;
lazy path length every ``g_reg_every``; EMA; ADA p tuning; stats, samples, checkpoints. The maths
lives in ``losses/`` and ``stylegan2/networks.py``. Fine-tuning subclasses this loop and changes
which parameters train and what is added to the G loss (``finetune/``).

Multi-GPU: launched with ``torchrun``; each rank runs the same loop on ``batch`` images and
gradients are averaged with an explicit all-reduce after every backward (as NVIDIA's StyleGAN2-ADA
does) rather than through a DDP wrapper, because R1 and path length differentiate through a
gradient, which DDP's reducer hooks do not support well. Parameter selections are made on the
plain modules, never through a wrapper.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from losses import d_logistic, g_nonsaturating, lazy_reg_adam_params, path_length_penalty, r1_penalty
from stylegan2.augment import AdaController, AdaptiveAugment
from stylegan2.checkpoint import load_checkpoint, load_state_checked
from stylegan2.networks import Discriminator, Generator
from toonlab.atomic import save_image_atomic, torch_save_atomic
from toonlab.errors import UserInputError
from toonlab.hooks import HookFactory
from toonlab.images import make_grid
from toonlab.run import RunDir, Stats, check_finite, rng_state, set_rng_state, step_from_name
from toonlab.runtime import autocast, progress, seed_everything


@dataclass
class TrainConfig:
    """Every knob of a StyleGAN2 run; written to ``config.json`` and into each checkpoint."""

    data: str = "synthetic:photo"
    out: str = "runs/stylegan2"
    size: int = 64
    batch: int = 16  # per GPU (the community convention); the global batch is batch × world size
    iters: int = 10000
    lr: float = 0.002
    r1: float = 10.0
    path_regularize: float = 2.0
    path_batch_shrink: int = 2
    d_reg_every: int = 16
    g_reg_every: int = 4
    mixing: float = 0.9
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_base: int = 16384
    channel_max: int = 512
    ema_kimg: float = 10.0  # EMA half-life in thousands of images: 0.5 ** (32 / 10000) per batch of 32
    # Early in training the half-life is capped at ema_rampup × images seen (StyleGAN2-ADA's ramp-up),
    # so g_ema is not stuck near the random init during short runs; None = the community's fixed decay.
    ema_rampup: float | None = 0.05
    ada: bool = True
    ada_target: float = 0.6
    ada_kimg: float = 500.0
    ada_every: int = 4
    ada_p: float = 0.0  # starting p (also the fixed p with --no-ada-tune)
    resume: str | None = None  # a checkpoint to start from; the run folder's own checkpoints win
    seed: int = 0
    precision: str = "fp32"
    snapshot_every: int = 1000
    sample_every: int = 500
    keep: int = 5
    workers: int = 2
    device: str = "auto"
    log_every: int = 10
    n_samples: int = 16

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        from toonlab.runtime import pick_device

        return DistInfo(), pick_device(device_name)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local)
    device = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    return DistInfo(rank, world, local), device


def all_reduce_grads(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average gradients across ranks in one flat buffer (one collective per phase)."""
    if not info.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world
    torch.nan_to_num_(flat, nan=0.0, posinf=1e5, neginf=-1e5)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def set_requires_grad(params: list[nn.Parameter], flag: bool) -> None:
    for p in params:
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """g_ema ← decay·g_ema + (1−decay)·g; buffers (noise maps) are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


class StyleGAN2Trainer:
    """Owns the schedule of one StyleGAN2 run. Subclasses override the hooks marked below."""

    def __init__(self, cfg: TrainConfig, dataset, device: torch.device, info: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.device = device
        self.info = info or DistInfo()
        self.dataset = dataset
        self.run = RunDir(cfg.out, self.info.rank)
        # Same seed → same initial weights on every rank; then a per-rank stream for latents/noise.
        seed_everything(cfg.seed)
        self.G, self.D = self.build_networks()
        self.G_ema = self.build_ema()
        for m in (self.G, self.D, self.G_ema):
            m.to(device)
        self.G_ema.eval().requires_grad_(False)
        self.g_params, self.d_params = self.trainable_parameters()
        self.g_optim, self.d_optim = self.build_optimizers()
        self.augment = AdaptiveAugment(p=cfg.ada_p).to(device)
        self.ada = AdaController(cfg.ada_target, cfg.ada_every, cfg.ada_kimg, p=cfg.ada_p)
        self.mean_path_length = torch.zeros((), device=device)
        self.step = 0
        self.stats = Stats(self.run if self.info.rank == 0 else None)
        g = torch.Generator().manual_seed(cfg.seed + 123)
        self.sample_z = torch.randn(cfg.n_samples, cfg.style_dim, generator=g).to(device)
        seed_everything(cfg.seed * 1000 + 1 + self.info.rank)

    # ---- hooks -------------------------------------------------------------------------------

    def build_networks(self) -> tuple[Generator, Discriminator]:
        c = self.cfg
        G = Generator(c.size, c.style_dim, c.n_mlp, c.channel_multiplier, channel_base=c.channel_base,
                      channel_max=c.channel_max)
        D = Discriminator(c.size, c.channel_multiplier, channel_base=c.channel_base, channel_max=c.channel_max)
        return G, D

    def build_ema(self) -> Generator:
        """The EMA generator starts as a copy of G."""
        G_ema = Generator(**self.G.config)  # same shape as G; no second discriminator built
        G_ema.load_state_dict(self.G.state_dict())
        return G_ema

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Which parameters the optimisers own (fine-tuning freezes some)."""
        return list(self.G.parameters()), list(self.D.parameters())

    def extra_g_loss(self, latent: Tensor, noise: list[Tensor] | None, fake_out) -> dict[str, Tensor]:
        """Additional generator terms (structure loss in fine-tuning); name → weighted loss."""
        return {}

    def use_path_length(self) -> bool:
        return self.cfg.path_regularize > 0

    # ---- setup ---------------------------------------------------------------------------------

    def build_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        c = self.cfg
        g_lr, g_betas = lazy_reg_adam_params(c.lr, (0.0, 0.99), c.g_reg_every)
        d_lr, d_betas = lazy_reg_adam_params(c.lr, (0.0, 0.99), c.d_reg_every)
        return (torch.optim.Adam(self.g_params, lr=g_lr, betas=g_betas),
                torch.optim.Adam(self.d_params, lr=d_lr, betas=d_betas))

    # ---- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        c = self.cfg
        args = argparse.Namespace(size=c.size, latent=c.style_dim, n_mlp=c.n_mlp,
                                  channel_multiplier=c.channel_multiplier, batch=c.batch, iter=c.iters,
                                  r1=c.r1, path_regularize=c.path_regularize, mixing=c.mixing, lr=c.lr,
                                  augment=c.ada, augment_p=c.ada_p, ada_target=c.ada_target)
        rng = rng_state(self.device)
        return {
            "g": self.G.state_dict(), "d": self.D.state_dict(), "g_ema": self.G_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(),
            "args": args, "ada_aug_p": float(self.ada.p),
            "toonlab": {
                "step": self.step, "config": c.to_dict(), "g_config": self.G.config, "d_config": self.D.config,
                "ada": self.ada.state_dict(), "mean_path_length": self.mean_path_length.detach().cpu(),
                "rng": rng, "world": self.info.world,
            },
        }

    def save(self) -> Path | None:
        if self.info.rank != 0:
            return None
        path = torch_save_atomic(self.state_dict(), self.run.checkpoint_path(self.step))
        self.run.prune(self.cfg.keep)
        return path

    def load(self, path: Path, exact: bool = True) -> None:
        """Resume from ``path``: weights, optimisers, step, ADA p, path-length mean and RNG.

        Community files are accepted too; a converted file without ``g``/``g_optim`` starts the
        trainable copy from ``g_ema`` with fresh optimisers (said in a warning, not a crash).
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        meta = ckpt.get("toonlab") or {}
        g_sd = ckpt.get("g") or ckpt.get("g_ema")
        if g_sd is None:
            raise UserInputError(f"no generator inside {path}")
        load_state_checked(self.G, g_sd, path, "g")
        load_state_checked(self.G_ema, ckpt.get("g_ema") or g_sd, path, "g_ema")
        if "d" in ckpt:
            load_state_checked(self.D, ckpt["d"], path, "d")
        fresh = [k for k in ("g", "d", "g_optim", "d_optim") if k not in ckpt]
        if fresh:
            import warnings

            warnings.warn(f"{path} has no {', '.join(fresh)}: starting those fresh (converted checkpoint?)")
        if exact and "g_optim" in ckpt and "d_optim" in ckpt:
            self.g_optim.load_state_dict(ckpt["g_optim"])
            self.d_optim.load_state_dict(ckpt["d_optim"])
        if "ada" in meta:
            self.ada.load_state_dict(meta["ada"])
        elif "ada_aug_p" in ckpt:
            self.ada.p = float(ckpt["ada_aug_p"])
        self.augment.p = self.ada.p if self.cfg.ada else self.cfg.ada_p
        if "mean_path_length" in meta:
            self.mean_path_length = torch.as_tensor(meta["mean_path_length"]).to(self.device)
        self.step = int(meta.get("step", step_from_name(path) or 0))
        rng = meta.get("rng")
        if exact and rng:
            set_rng_state(rng, self.device)
            if self.info.rank > 0:  # rank 0's saved stream; other ranks must not draw the same latents
                seed_everything(self.cfg.seed * 1000 + 1 + self.info.rank + 7919 * self.step)

    def maybe_resume(self) -> str:
        """The run folder's newest checkpoint wins over ``--resume`` (re-running continues)."""
        latest = self.run.latest()
        if latest is not None:
            self.load(latest)
            return f"resumed from {latest} at step {self.step}"
        if self.cfg.resume:
            self.load(Path(self.cfg.resume))
            return f"started from {self.cfg.resume} at step {self.step}"
        return "starting a new run"

    # ---- one step ------------------------------------------------------------------------------

    def sample_latents(self, batch: int) -> Tensor:
        """W+ latents with style mixing at probability ``mixing`` (random crossover point)."""
        z = torch.randn(2, batch, self.cfg.style_dim, device=self.device)
        w = self.G.style(z.reshape(2 * batch, -1)).reshape(2, batch, -1)
        n = self.G.n_latent
        if self.cfg.mixing > 0 and random.random() < self.cfg.mixing:
            cut = random.randint(1, n - 1)
        else:
            cut = n
        idx = torch.arange(n, device=self.device).view(1, n, 1)
        return torch.where(idx < cut, w[0].unsqueeze(1), w[1].unsqueeze(1))

    def D_aug(self, x: Tensor) -> Tensor:
        return self.augment(x) if (self.cfg.ada or self.cfg.ada_p > 0) else x

    def train_step(self, real: Tensor) -> None:
        c, st = self.cfg, self.stats
        prec = autocast(self.device, c.precision)
        # -- D main
        set_requires_grad(self.g_params, False)
        set_requires_grad(self.d_params, True)
        with torch.no_grad(), prec:
            fake = self.G.synthesis(self.sample_latents(real.shape[0])).image
        with prec:
            fake_logits = self.D(self.D_aug(fake.detach()))
            real_logits = self.D(self.D_aug(real))
            d_loss = d_logistic(real_logits.float(), fake_logits.float())
        check_finite(self.step, d_loss=d_loss)
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        all_reduce_grads(self.d_params, self.info)
        self.d_optim.step()
        st.report("loss/d", d_loss)
        st.report("d/real", real_logits.float().mean())
        st.report("d/fake", fake_logits.float().mean())
        if c.ada:
            self.ada.observe(real_logits)
            self.augment.p = self.ada.update(real.shape[0] * self.info.world, self._reduce_sum)
        # -- D lazy R1 (fp32: the penalty is a squared gradient norm)
        if c.r1 > 0 and self.step % c.d_reg_every == 0:
            real_req = real.detach().requires_grad_(True)
            real_logits = self.D(self.D_aug(real_req))
            r1 = r1_penalty(real_logits, real_req)
            check_finite(self.step, r1=r1)
            self.d_optim.zero_grad(set_to_none=True)
            (r1 * (c.r1 / 2 * c.d_reg_every) + 0 * real_logits[0].sum()).backward()
            all_reduce_grads(self.d_params, self.info)
            self.d_optim.step()
            st.report("loss/r1", r1)
        # -- G main
        set_requires_grad(self.g_params, True)
        set_requires_grad(self.d_params, False)
        with prec:
            latent = self.sample_latents(real.shape[0])
            noise = self.G.make_noise(real.shape[0]) if self.needs_shared_noise() else None
            out = self.G.synthesis(latent, noise=noise, **self.synthesis_kwargs())
            g_loss = g_nonsaturating(self.D(self.D_aug(out.image)).float())
        extras = self.extra_g_loss(latent, noise, out)
        total = g_loss + sum(extras.values()) if extras else g_loss
        check_finite(self.step, g_loss=g_loss, **extras)
        self.g_optim.zero_grad(set_to_none=True)
        total.backward()
        all_reduce_grads(self.g_params, self.info)
        self.g_optim.step()
        st.report("loss/g", g_loss)
        for k, v in extras.items():
            st.report(f"loss/{k}", v)
        # -- G lazy path length
        if self.use_path_length() and self.step % c.g_reg_every == 0:
            n = max(1, real.shape[0] // c.path_batch_shrink)
            latent = self.sample_latents(n)
            img = self.G.synthesis(latent).image
            pl, self.mean_path_length, lengths = path_length_penalty(img, latent, self.mean_path_length)
            check_finite(self.step, path_length=pl)
            self.g_optim.zero_grad(set_to_none=True)
            (pl * c.path_regularize * c.g_reg_every + 0 * img[0, 0, 0, 0]).backward()
            all_reduce_grads(self.g_params, self.info)
            self.g_optim.step()
            if self.info.enabled:
                dist.all_reduce(self.mean_path_length)
                self.mean_path_length /= self.info.world
            st.report("loss/path", pl)
            st.report("pl/mean", self.mean_path_length)
        # -- EMA (half-life in images, so it does not depend on batch size or GPU count)
        batch_total = real.shape[0] * self.info.world
        half_life = c.ema_kimg * 1000
        if c.ema_rampup is not None:
            half_life = min(half_life, (self.step + 1) * batch_total * c.ema_rampup)
        decay = 0.5 ** (batch_total / max(half_life, 1e-8))
        ema_update(self.G_ema, self.G, decay)
        st.report("ada/p", self.ada.p if c.ada else c.ada_p)

    def needs_shared_noise(self) -> bool:
        """Fine-tuning with structure loss renders source and target with the same noise."""
        return False

    def synthesis_kwargs(self) -> dict[str, Any]:
        return {}

    def _reduce_sum(self, t: Tensor) -> Tensor | None:
        if self.info.enabled:
            dist.all_reduce(t)
        return t

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        if self.info.rank != 0:
            return None
        imgs = self.G_ema.synthesis(self.G_ema.mapping(self.sample_z), noise_mode="const").image
        path = self.run.samples / f"{self.step:06d}.png"
        save_image_atomic(make_grid(imgs.float().cpu(), cols=int(math.ceil(math.sqrt(len(imgs))))), path)
        return path

    # ---- the loop ------------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return self.cfg.iters

    def train(self, data: Iterator[Tensor], hooks: Sequence[HookFactory] = ()) -> Path | None:
        """Run to ``cfg.iters``; ``hooks`` (rank 0 only) are built before the first step, so a missing
        weights file of a metric fails the run at once, not hours in."""
        c = self.cfg
        built = [f(self) for f in hooks] if self.info.rank == 0 else []
        if self.info.rank == 0:
            extra = {k: v for f in hooks for k, v in getattr(f, "config", {}).items()}
            self.run.write_config({**c.to_dict(), **extra})
        bar = progress(total=c.iters, initial=self.step, desc="train", unit="it", disable=self.info.rank != 0)
        t_last, step_last = time.time(), self.step
        last_saved = None
        try:
            while self.step < c.iters:
                real = next(data).to(self.device, non_blocking=True)
                self.train_step(real)
                self.step += 1
                bar.update(1)
                evaluated = False
                for hook in built:
                    t_hook = time.time()
                    for k, v in hook.after_step(self).items():
                        self.stats.report(k, v)
                        evaluated = True
                    t_last += time.time() - t_hook  # sec_per_kimg stays about training
                if self.step % c.log_every == 0 or self.step == c.iters or evaluated:
                    dt = time.time() - t_last
                    imgs = (self.step - step_last) * real.shape[0] * self.info.world
                    t_last, step_last = time.time(), self.step
                    s = self.stats.flush(self.step, kimg=self.step * real.shape[0] * self.info.world / 1000,
                                         sec_per_kimg=dt / max(imgs, 1) * 1000)
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in s.items()
                                     if k in ("kimg", "sec_per_kimg", "loss/d", "loss/g", "ada/p")})
                if c.sample_every and self.step % c.sample_every == 0:
                    self.save_samples()
                if c.snapshot_every and self.step % c.snapshot_every == 0:
                    last_saved = self.save()
            if last_saved is None or self.run.latest() is None or int(self.run.latest().stem) != self.step:
                last_saved = self.save()
                self.save_samples()
        finally:
            bar.close()
            self.stats.close()
        return last_saved
