"""StyleGAN2 training on the one skeleton (``toonlab/training.py``): the phases of a step, the networks
and the checkpoint layout; the loop, resume, checkpoint writes and stats are the skeleton's.

Phases per step (Karras et al. 2020): D main step (with ADA p tuning); lazy R1 every
``d_reg_every``; G main step; lazy path length every ``g_reg_every``; EMA. The maths lives in
``losses/`` and ``stylegan2/networks.py``. Fine-tuning subclasses this trainer and changes which
parameters train and what is added to the G loss (``finetune/``).

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
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from losses import d_logistic, g_nonsaturating, lazy_reg_adam_params, path_length_penalty, r1_penalty
from stylegan2.augment import AdaController, AdaptiveAugment
from stylegan2.checkpoint import clamp_meta, load_checkpoint, load_state_checked
from stylegan2.networks import Discriminator, Generator
from toonlab.atomic import save_image_atomic
from toonlab.data import infinite_loader
from toonlab.errors import UserInputError
from toonlab.images import make_grid
from toonlab.run import set_rng_state, step_from_name
from toonlab.runtime import autocast, resolve_precision, seed_everything
from toonlab.training import Phase, Trainer, check_finite, ema_update


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
    # The discriminator's own widths (None = the generator's). StyleGAN2's config F widened the
    # high-resolution layers of both networks (Karras et al. 2020, §4.2); widening D alone is the
    # cheaper try when G under-covers fine detail and D, not G, may be what cannot tell.
    d_channel_base: int | None = None
    d_channel_max: int | None = None
    # Hold G still for the first this many kimg of this run (D and the EMA still step): a fresh D on a
    # trained G (a wider one, above) gives random gradients at first, and Adam with fresh moments turns
    # even tiny ones into full lr-sized steps that would walk G away from what it had learned.
    d_warmup_kimg: float = 0.0
    # EMA half-life in thousands of images (NVIDIA's ema_kimg): decay 0.5 ** (global batch / 10000)
    # per step, whatever the batch. rosinality's fixed per-*step* decay 0.5 ** (32 / 10000) is the
    # same only at a global batch of 32; at batch 16 its half-life is 5k images, at batch 8 2.5k.
    ema_kimg: float = 10.0
    # Early in training the half-life is capped at ema_rampup × images seen (StyleGAN2-ADA's ramp-up),
    # so g_ema is not stuck near the random init during short runs; None = the fixed half-life above.
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


def close_distributed(info: DistInfo) -> None:
    """Leave the process group at the end of a run: a barrier, then ``destroy_process_group``.

    Why the barrier: gloo frees a finished collective's work object (it holds the tensors, which are
    Python objects) on its own worker thread, after ``wait`` has returned. If the interpreter is
    already shutting down by then, that thread's decref needs the GIL, the thread is made to exit
    inside a noexcept destructor and the rank dies with SIGABRT ("terminate called without an active
    exception"), after the checkpoint is saved. Waiting in a barrier releases the GIL while the earlier
    works finish and are freed (the barrier's own work holds no tensors). It narrows the race, it does
    not close it: in the 2-rank CPU test, 2 aborts in 16 runs without it, 1 in 24 with it.
    """
    if not info.enabled or not dist.is_initialized():
        return
    dist.barrier()
    dist.destroy_process_group()


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


def ema_decay(ema_kimg: float, ema_rampup: float | None, nimg: int, batch_total: int) -> float:
    """EMA decay of one step (NVIDIA's schedule): half-life ``ema_kimg`` thousand images, capped at
    ``ema_rampup`` × the images seen by the end of this step when the ramp-up is on (``nimg``: seen
    before it, the trainer's count, which a warm start at another batch carries over).

    Without the ramp-up this is ``0.5 ** (batch_total / (1000 · ema_kimg))`` per step; rosinality's
    (and Cartoon-StyleGAN's) fixed ``0.5 ** (32 / 10000)`` per step equals it only at a global batch
    of 32 with ``ema_kimg`` = 10 — with its default batch 16 its half-life is 5k images.
    """
    half_life = ema_kimg * 1000
    if ema_rampup is not None:
        half_life = min(half_life, (nimg + batch_total) * ema_rampup)
    return 0.5 ** (batch_total / max(half_life, 1e-8))


class StyleGAN2Trainer(Trainer):
    """StyleGAN2 on the training skeleton. Subclasses (fine-tuning) override the hooks marked below."""

    desc = "train"
    what = "StyleGAN2 training checkpoint"
    show = ("kimg", "sec_per_kimg", "loss/d", "loss/g", "ada/p")
    flags = {"resume": "--ckpt", "source": "--ckpt"}

    def __init__(self, cfg: TrainConfig, dataset, device: torch.device, info: DistInfo | None = None) -> None:
        info = info or DistInfo()
        super().__init__(cfg, device, rank=info.rank, world=info.world)
        self.info = info
        self.dataset = dataset
        self.precision = resolve_precision(cfg.precision, self.device)
        # Same seed → same initial weights on every rank; then a per-rank stream for latents/noise.
        seed_everything(cfg.seed)
        self.G, self.D = self.build_networks()
        self.G_ema = self.build_ema()
        for m in (self.G, self.D, self.G_ema):
            m.to(self.device)
        self.G_ema.eval().requires_grad_(False)
        self.g_params, self.d_params = self.trainable_parameters()
        self.g_optim, self.d_optim = self.build_optimizers()
        self.modules = {"g": self.G, "d": self.D, "g_ema": self.G_ema}
        self.optimizers = {"g_optim": self.g_optim, "d_optim": self.d_optim}
        self.augment = AdaptiveAugment(p=cfg.ada_p).to(self.device)
        self.ada = AdaController(cfg.ada_target, cfg.ada_every, cfg.ada_kimg, p=cfg.ada_p)
        self.mean_path_length = torch.zeros((), device=self.device)
        self._nimg_anchor = (0, 0)  # (step, images seen at that step): see nimg
        self.run_start_nimg = 0  # images seen when this run folder began (--d-warmup-kimg counts from it)
        g = torch.Generator().manual_seed(cfg.seed + 123)
        self.sample_z = torch.randn(cfg.n_samples, cfg.style_dim, generator=g).to(self.device)
        seed_everything(cfg.seed * 1000 + 1 + self.info.rank)

    # ---- hooks (fine-tuning overrides these) ---------------------------------------------------

    def build_networks(self) -> tuple[Generator, Discriminator]:
        c = self.cfg
        G = Generator(c.size, c.style_dim, c.n_mlp, c.channel_multiplier, channel_base=c.channel_base,
                      channel_max=c.channel_max)
        D = Discriminator(c.size, c.channel_multiplier, channel_base=c.d_channel_base or c.channel_base,
                          channel_max=c.d_channel_max or c.channel_max)
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

    def needs_shared_noise(self) -> bool:
        """Fine-tuning with structure loss renders source and target with the same noise."""
        return False

    def synthesis_kwargs(self) -> dict[str, Any]:
        return {}

    # ---- setup ---------------------------------------------------------------------------------

    def build_optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        c = self.cfg
        g_lr, g_betas = lazy_reg_adam_params(c.lr, (0.0, 0.99), c.g_reg_every)
        d_lr, d_betas = lazy_reg_adam_params(c.lr, (0.0, 0.99), c.d_reg_every)
        return (torch.optim.Adam(self.g_params, lr=g_lr, betas=g_betas),
                torch.optim.Adam(self.d_params, lr=d_lr, betas=d_betas))

    @property
    def total_steps(self) -> int:
        return self.cfg.iters

    def batches(self) -> Iterator[Tensor]:
        """The training images from this run's data position on (``toonlab.samplers``)."""
        if self.dataset is None:
            raise UserInputError("no dataset: pass a batch iterator to train()")
        c = self.cfg
        if self.info.rank == 0 and hasattr(self.dataset, "skip_log"):
            self.dataset.skip_log = self.run.root / "skipped.txt"
        return infinite_loader(self.dataset, c.batch, c.workers, c.seed, start=self.step, rank=self.info.rank,
                               world=self.info.world)

    # ---- checkpoints: the community layout + toonlab's entry -----------------------------------

    def extra_state(self) -> dict[str, Any]:
        c = self.cfg
        args = argparse.Namespace(size=c.size, latent=c.style_dim, n_mlp=c.n_mlp,
                                  channel_multiplier=c.channel_multiplier, batch=c.batch, iter=c.iters,
                                  r1=c.r1, path_regularize=c.path_regularize, mixing=c.mixing, lr=c.lr,
                                  augment=c.ada, augment_p=c.ada_p, ada_target=c.ada_target)
        return {"args": args, "ada_aug_p": float(self.ada.p)}

    def metadata(self) -> dict[str, Any]:
        return {"model": "stylegan2", "g_config": self.G.config, "d_config": self.D.config,
                "ada": self.ada.state_dict(), "mean_path_length": self.mean_path_length.detach().cpu(),
                "nimg": self.nimg, "run_start_nimg": self.run_start_nimg, **clamp_meta(self.G_ema, self.D)}

    @property
    def nimg(self) -> int:
        """Real images the run has shown D (NVIDIA's ``cur_nimg``), what ``kimg`` reports.

        Counted from the checkpoint it continues, not step × today's batch: a warm start
        (``--ckpt``) with another batch or GPU count keeps the images of the run it continues
        (step × batch would call a batch-16 run's 137 kimg 275 at batch 32)."""
        step0, n0 = self._nimg_anchor
        return n0 + (self.step - step0) * self.cfg.batch * self.info.world

    def _anchor_nimg(self, meta: Mapping[str, Any]) -> None:
        """Set the image count at ``self.step`` from a checkpoint's ``toonlab`` entries: its stored
        count, else (files from before it was stored) its step × its own batch × its GPU count (one
        GPU where the file does not say: exported files before the count kept neither)."""
        saved = meta.get("nimg")
        if saved is None:
            cfg = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
            saved = self.step * int(cfg.get("batch", self.cfg.batch)) * int(meta.get("world", 1))
        self._nimg_anchor = (self.step, int(saved))

    def load_extra_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        meta = ckpt.get("toonlab") or {}
        if "ada" in meta:
            self.ada.load_state_dict(meta["ada"])
        elif "ada_aug_p" in ckpt:
            self.ada.p = float(ckpt["ada_aug_p"])
        self.augment.p = self.ada.p if self.cfg.ada else self.cfg.ada_p
        if "mean_path_length" in meta:
            self.mean_path_length = torch.as_tensor(meta["mean_path_length"]).to(self.device)
        self.run_start_nimg = int(meta.get("run_start_nimg", 0))

    def load_state_dict(self, ckpt: Mapping[str, Any], path: Path) -> None:
        for key, m in self.modules.items():  # one-line errors naming the first bad key or shape
            load_state_checked(m, ckpt.get(key) or {}, path, key)
        super().load_state_dict(ckpt, path)
        self._anchor_nimg(ckpt.get("toonlab") or {})
        if self.info.rank > 0:  # rank 0's saved stream; other ranks must not draw the same latents
            seed_everything(self.cfg.seed * 1000 + 1 + self.info.rank + 7919 * self.step)

    def start_fresh(self) -> str:
        """``--resume FILE`` starts a new run folder from another checkpoint (also a community file)."""
        if not self.cfg.resume:
            return "starting a new run"
        self.init_from(Path(self.cfg.resume))
        return f"started from {self.cfg.resume} at step {self.step}"

    def init_from(self, path: Path) -> None:
        """Weights, optimisers, step, ADA p, path-length mean and RNG of any StyleGAN2 checkpoint.

        A converted file without ``g``/``g_optim`` starts the trainable copy from ``g_ema`` with
        fresh optimisers (said in a warning, not a crash).
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        meta = ckpt.get("toonlab") or {}
        g_sd = ckpt.get("g") or ckpt.get("g_ema")
        if g_sd is None:
            raise UserInputError(f"no generator inside {path}")
        g_other = self._other_widths(self.G, g_sd)
        if g_other:
            # Wider layers than the file's (--channel-base/--channel-max): widened keeping what G draws
            # (Generator.load_widened), G and G_ema with the same noise draws; g_optim starts fresh.
            try:
                for module, part in ((self.G, g_sd), (self.G_ema, ckpt.get("g_ema") or g_sd)):
                    module.load_widened(part, generator=torch.Generator().manual_seed(self.cfg.seed + 4111))
            except ValueError as e:
                raise UserInputError(f"{path}: its generator cannot widen to this run's ({e})") from None
            warnings.warn(f"{path}: its generator has other widths than this run's ({g_other}): "
                          "widened, keeping what it draws; its optimiser starts fresh")
        else:
            load_state_checked(self.G, g_sd, path, "g")
            load_state_checked(self.G_ema, ckpt.get("g_ema") or g_sd, path, "g_ema")
        other = "d" in ckpt and self._other_widths(self.D, ckpt["d"])
        if other:
            # A run with another --d-channel-base/--d-channel-max keeps the trained G. A D whose layers
            # are whole multiples of the file's is widened keeping its function (a fresh D on a trained G
            # never learned to tell: docs/SOURCE_MODEL.md); any other D starts new. Said, not silent.
            try:
                seed = torch.Generator().manual_seed(self.cfg.seed + 4099)
                self.D.load_widened(ckpt["d"], generator=seed)
                how = "widened, keeping its function; its optimiser starts fresh"
            except ValueError as e:
                how = f"starting D and its optimiser fresh ({e})"
            warnings.warn(f"{path}: its discriminator has other widths than this run's ({other}): {how}")
        elif "d" in ckpt:
            load_state_checked(self.D, ckpt["d"], path, "d")  # other keys: a one-line error
        d_loaded = "d" in ckpt and not other
        fresh = [k for k in ("g", "d", "g_optim", "d_optim") if k not in ckpt]
        if fresh:
            warnings.warn(f"{path} has no {', '.join(fresh)}: starting those fresh (converted checkpoint?)")
        pairs = ([] if g_other else [(self.g_optim, "g_optim")]) + ([(self.d_optim, "d_optim")] if d_loaded else [])
        if all(key in ckpt for _, key in pairs):
            # Keep the Adam moments but this run's lr and betas: Optimizer.load_state_dict restores the
            # saved param_groups, so without this a `--ckpt … --lr 0.0005` warm start silently kept 0.002.
            for optim, key in pairs:
                wanted = [{"lr": g["lr"], "betas": g["betas"]} for g in optim.param_groups]
                optim.load_state_dict(ckpt[key])
                for group, w in zip(optim.param_groups, wanted):
                    group.update(w)
        self.load_extra_state(ckpt, path)
        self.step = int(meta.get("step", step_from_name(path) or 0))
        self._anchor_nimg(meta)
        self.run_start_nimg = self.nimg  # a new run folder: its D warm-up counts from here
        if meta.get("rng"):
            set_rng_state(meta["rng"], self.device)
            if self.info.rank > 0:
                seed_everything(self.cfg.seed * 1000 + 1 + self.info.rank + 7919 * self.step)

    @staticmethod
    def _other_widths(module: nn.Module, sd: dict[str, Tensor]) -> str:
        """'' when ``sd`` fits ``module``; else, when only the widths differ (same keys), the first one."""
        own = module.state_dict()
        if own.keys() != sd.keys():
            return ""
        for k, v in own.items():
            if tuple(sd[k].shape) != tuple(v.shape):
                return f"{k}: {list(sd[k].shape)} there, {list(v.shape)} here"
        return ""

    # ---- the phases of one step (Karras et al. 2020) ----------------------------------------------

    def phases(self) -> list[Phase]:
        c = self.cfg
        return [
            Phase("D main", self.d_main),
            Phase("D reg: R1", self.d_reg, every=c.d_reg_every, when=lambda step: c.r1 > 0),
            Phase("G main", self.g_main, when=lambda step: self.g_trains()),
            Phase("G reg: path length", self.g_reg, every=c.g_reg_every,
                  when=lambda step: self.g_trains() and self.use_path_length()),
            Phase("EMA", self.ema),
        ]

    def g_trains(self) -> bool:
        """False during ``d_warmup_kimg`` (G held still while a fresh D learns)."""
        return self.nimg >= self.run_start_nimg + self.cfg.d_warmup_kimg * 1000

    def before_step(self, batch: Tensor) -> Tensor:
        return batch.to(self.device, non_blocking=True)

    def sample_latents(self, batch: int) -> Tensor:
        """W+ latents with style mixing at probability ``mixing`` (random crossover point)."""
        return self.latents_from(*self.draw_latent_inputs(batch))

    def draw_latent_inputs(self, batch: int) -> tuple[Tensor, int]:
        """Two z per sample [2, B, D] and the crossover (n_latent = no mixing this batch)."""
        z = torch.randn(2, batch, self.cfg.style_dim, device=self.device)
        n = self.G.n_latent
        if self.cfg.mixing > 0 and random.random() < self.cfg.mixing:
            cut = random.randint(1, n - 1)
        else:
            cut = n
        return z, cut

    def latents_from(self, z: Tensor, cut: int) -> Tensor:
        """Hook: W+ [B, n_latent, D] for z [2, B, D]; entries < ``cut`` from z[0] (cut = n_latent: no mixing)."""
        batch = z.shape[1]
        w = self.G.style(z.reshape(2 * batch, -1)).reshape(2, batch, -1)
        n = self.G.n_latent
        idx = torch.arange(n, device=self.device).view(1, n, 1)
        return torch.where(idx < cut, w[0].unsqueeze(1), w[1].unsqueeze(1))

    def path_length_latents(self, batch: int) -> Tensor:
        """Hook: the latents of the lazy path-length pass."""
        return self.sample_latents(batch)

    def D_aug(self, x: Tensor) -> Tensor:
        return self.augment(x) if (self.cfg.ada or self.cfg.ada_p > 0) else x

    def d_main(self, real: Tensor) -> None:
        c, st = self.cfg, self.stats
        prec = autocast(self.device, self.precision)
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

    def d_reg(self, real: Tensor) -> None:
        """Lazy R1 (fp32: the penalty is a squared gradient norm)."""
        c = self.cfg
        real_req = real.detach().requires_grad_(True)
        real_logits = self.D(self.D_aug(real_req))
        r1 = r1_penalty(real_logits, real_req)
        check_finite(self.step, r1=r1)
        self.d_optim.zero_grad(set_to_none=True)
        (r1 * (c.r1 / 2 * c.d_reg_every) + 0 * real_logits[0].sum()).backward()
        all_reduce_grads(self.d_params, self.info)
        self.d_optim.step()
        self.stats.report("loss/r1", r1)

    def g_main(self, real: Tensor) -> None:
        st = self.stats
        prec = autocast(self.device, self.precision)
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

    def g_reg(self, real: Tensor) -> None:
        """Lazy path-length regularisation on a smaller batch."""
        c, st = self.cfg, self.stats
        n = max(1, real.shape[0] // c.path_batch_shrink)
        latent = self.path_length_latents(n)
        if not latent.requires_grad:  # a frozen mapping network (fine-tuning): J_w is still defined
            latent = latent.detach().requires_grad_(True)
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

    def ema(self, real: Tensor) -> None:
        """EMA with a half-life in images, so it does not depend on batch size or GPU count."""
        c = self.cfg
        decay = ema_decay(c.ema_kimg, c.ema_rampup, self.nimg, real.shape[0] * self.info.world)
        ema_update(self.G_ema, self.G, decay)
        self.stats.report("ada/p", self.ada.p if c.ada else c.ada_p)

    def _reduce_sum(self, t: Tensor) -> Tensor | None:
        if self.info.enabled:
            dist.all_reduce(t)
        return t

    def train_mode(self) -> None:
        self.G.train()
        self.D.train()

    def tick_stats(self, seconds: float, steps: int) -> dict[str, float]:
        per_step = self.cfg.batch * self.info.world
        return {"kimg": self.nimg / 1000, "sec_per_kimg": seconds / max(steps * per_step, 1) * 1000}

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        if self.info.rank != 0:
            return None
        imgs = self.G_ema.synthesis(self.G_ema.mapping(self.sample_z), noise_mode="const").image
        path = self.run.samples / f"{self.step:06d}.png"
        save_image_atomic(make_grid(imgs.float().cpu(), cols=int(math.ceil(math.sqrt(len(imgs))))), path)
        return path
