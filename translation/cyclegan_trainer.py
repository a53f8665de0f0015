"""The CycleGAN trainer (Zhu et al., ICCV 2017).

G_A: photo → style and G_B: style → photo; D_A judges style images, D_B photos.
G loss = LSGAN + λ_cyc·(‖G_B(G_A(a)) − a‖₁ + ‖G_A(G_B(b)) − b‖₁) + λ_id·λ_cyc·(‖G_A(b) − b‖₁ +
‖G_B(a) − a‖₁) with λ_cyc = 10, λ_id = 0.5; each D sees its fakes through a 50-image history pool
and halves its loss. Adam lr 2e-4, β = (0.5, 0.999), constant then decaying linearly to 0 over
the second half of the run (the paper's 100 + 100 epochs). Batch 1 as published.

Checkpoints hold ``g`` = G_A (photo → style, what ``translation/infer.py`` runs), ``g_b`` = G_B, the
two Ds, optimisers, pools and RNG (exact resume by re-running the same command), and the usual
``toonlab`` metadata with ``model: cyclegan``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import torch
from torch import Tensor

from losses.adversarial import d_lsgan, g_lsgan
from losses.stargan import cycle_loss
from toonlab.atomic import save_image_atomic
from toonlab.errors import UserInputError
from toonlab.images import make_grid
from toonlab.runtime import autocast, enable_tf32, pick_device, resolve_precision, seed_everything
from toonlab.training import Phase, Trainer, check_finite, run_training
from translation.cyclegan_networks import MODEL_NAME, CycleGANGenerator, PatchGANDiscriminator, init_weights

__all__ = ["ImagePool", "CycleGANConfig", "CycleGANTrainer", "train"]

# ============================================================================ image pool


class ImagePool:
    """History of generated images (Shrivastava et al. 2017): D sees a mix of current and past fakes.

    Per image: while the pool holds fewer than ``size`` images, the image is stored and returned;
    once full, with probability ½ a random stored image is returned and replaced by the new one,
    otherwise the new image is returned. ``size=0`` returns the batch unchanged. The pool's own
    generator makes the choice reproducible and its state is part of ``state_dict`` (exact resume).
    """

    def __init__(self, size: int = 50, seed: int = 0) -> None:
        self.size = int(size)
        self.images: list[Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size <= 0:
            return images
        out = []
        for img in images.detach():
            img = img[None]
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                k = int(torch.randint(0, self.size, (), generator=self.gen))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict[str, Any]:
        imgs = torch.cat(self.images).cpu() if self.images else torch.empty(0)
        return {"size": self.size, "images": imgs, "rng": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        self.size = int(state["size"])
        imgs = state["images"]
        self.images = [im[None].to(device) for im in imgs] if imgs.numel() else []
        self.gen.set_state(state["rng"])


# ============================================================================ trainer


@dataclass
class CycleGANConfig:
    """Every knob of a CycleGAN run (defaults: the paper's)."""

    photos: str | None = None  # domain A; None with style=None → built-in synthetic photo → webtoon faces
    style: str | None = None  # domain B
    out: str = "runs/cyclegan"
    size: int = 256
    load_size: int | None = None  # [size + size/8], then random crops
    batch: int = 1
    iters: int | None = None  # total iterations (overrides epochs)
    epochs: float = 200.0  # passes over the larger domain (100 constant + 100 decaying lr)
    decay_start: float = 0.5  # fraction of the run after which lr decays linearly to 0
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lambda_cyc: float = 10.0
    lambda_id: float = 0.5  # × lambda_cyc
    pool: int = 50
    ngf: int = 64
    ndf: int = 64
    n_blocks: int = 9
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    workers: int = 2
    sample_every: int | None = None  # [once per epoch]
    snapshot_every: int | None = None  # [once per epoch]
    keep: int = 5
    log_every: int = 10
    n_samples: int = 8
    synthetic_length: int = 1000
    tensorboard: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CycleGANTrainer(Trainer):
    """CycleGAN on the training skeleton; ``data`` is a ``translation.data.TranslationData`` (only its
    photos and style images are used) or None when ``train`` gets a batch iterator."""

    desc = "cyclegan-train"
    what = "CycleGAN training checkpoint"
    model_name = MODEL_NAME
    top_level_step_rng = True
    show = ("loss/g", "loss/d_a", "loss/cyc_a", "sec_per_it")

    def __init__(self, cfg: CycleGANConfig, data=None, device: torch.device | str = "cpu") -> None:
        if cfg.size % 4:
            raise UserInputError(f"crop size {cfg.size} must be a multiple of 4 (two stride-2 stages)")
        c = dataclasses.replace(cfg)
        ipe = data.iters_per_epoch(c.batch) if data is not None else None
        if c.iters is None:
            if ipe is None:
                raise UserInputError("iters must be given when no dataset sets the epoch length")
            c.iters = int(math.ceil(c.epochs * ipe))
        if ipe is not None:
            c.sample_every = ipe if c.sample_every is None else c.sample_every
            c.snapshot_every = ipe if c.snapshot_every is None else c.snapshot_every
        super().__init__(c, device, tensorboard=c.tensorboard)
        self.data, self.iters_per_epoch = data, ipe
        self.precision = resolve_precision(c.precision, self.device)
        seed_everything(c.seed)
        self.G_A, self.G_B = (CycleGANGenerator(c.ngf, c.n_blocks).to(self.device) for _ in range(2))
        self.D_A, self.D_B = (PatchGANDiscriminator(c.ndf).to(self.device) for _ in range(2))
        for m in (self.G_A, self.G_B, self.D_A, self.D_B):
            m.apply(init_weights)
        betas = (c.beta1, c.beta2)
        self.g_optim = torch.optim.Adam([*self.G_A.parameters(), *self.G_B.parameters()], lr=c.lr, betas=betas)
        self.d_optim = torch.optim.Adam([*self.D_A.parameters(), *self.D_B.parameters()], lr=c.lr, betas=betas)
        self.pool_A, self.pool_B = ImagePool(c.pool, c.seed * 2 + 1), ImagePool(c.pool, c.seed * 2 + 2)
        self.modules = {"g": self.G_A, "g_b": self.G_B, "d_a": self.D_A, "d_b": self.D_B}
        self.optimizers = {"g_optim": self.g_optim, "d_optim": self.d_optim}
        self.sample_photos: Tensor | None = data.fixed_photos(c.n_samples) if data is not None else None

    # ---- checkpoints ---------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return int(self.cfg.iters)

    def metadata(self) -> dict[str, Any]:
        c = self.cfg
        return {"model": MODEL_NAME, "arch": {"ngf": c.ngf, "ndf": c.ndf, "n_blocks": c.n_blocks},
                "precision": self.precision, "direction": "g: photos (A) → style (B); g_b: style → photos"}

    def extra_state(self) -> dict[str, Any]:
        return {"pool_a": self.pool_A.state_dict(), "pool_b": self.pool_B.state_dict()}

    def load_extra_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        try:
            self.pool_A.load_state_dict(ckpt["pool_a"], self.device)
            self.pool_B.load_state_dict(ckpt["pool_b"], self.device)
        except (RuntimeError, KeyError, ValueError) as e:
            raise UserInputError(f"{path}: cannot resume from it: {str(e).splitlines()[0][:200]}") from None

    def batches(self) -> Iterator[Sequence[Tensor]]:
        if self.data is None:
            raise UserInputError("no data: pass a batch iterator or a TranslationData")
        c = self.cfg
        self.data.skip_log(self.run.root / "skipped.txt")
        return self.data.batches(c.batch, seed=c.seed, start_step=self.step, workers=c.workers)

    # ---- the phases of one iteration -----------------------------------------------------------

    def lr_at(self, step: int) -> float:
        """Constant, then linear decay to 0 over the last ``1 − decay_start`` of the run."""
        c = self.cfg
        start = int(c.iters * c.decay_start)
        if step < start or c.iters <= start:
            return c.lr
        return c.lr * max(0.0, 1.0 - (step - start) / max(1, c.iters - start))

    def phases(self) -> list[Phase]:
        return [Phase("lr schedule", self.set_lr), Phase("G_A + G_B", self.g_step), Phase("D_A + D_B", self.d_step)]

    def before_step(self, batch: Sequence[Tensor]) -> dict[str, Tensor]:
        if self.sample_photos is None:
            self.sample_photos = batch[0][: self.cfg.n_samples].clone()
        real_A, real_B = (t.to(self.device, non_blocking=True) for t in batch[:2])
        return {"real_A": real_A, "real_B": real_B}

    def set_lr(self, b: dict[str, Tensor]) -> None:
        lr = self.lr_at(self.step)
        for o in (self.g_optim, self.d_optim):
            for g in o.param_groups:
                g["lr"] = lr
        self.stats.report("lr", lr)

    def g_step(self, b: dict[str, Tensor]) -> None:
        """G_A and G_B (D frozen: no D parameter gradients)."""
        c, st = self.cfg, self.stats
        real_A, real_B = b["real_A"], b["real_B"]
        self.D_A.requires_grad_(False)
        self.D_B.requires_grad_(False)
        with autocast(self.device, self.precision):
            fake_B = self.G_A(real_A)
            fake_A = self.G_B(real_B)
            terms = {
                "g_a": g_lsgan(self.D_A(fake_B), 1.0),
                "g_b": g_lsgan(self.D_B(fake_A), 1.0),
                "cyc_a": c.lambda_cyc * cycle_loss(self.G_B(fake_B), real_A),
                "cyc_b": c.lambda_cyc * cycle_loss(self.G_A(fake_A), real_B),
            }
            if c.lambda_id > 0:  # identity: a generator fed its own target domain should change nothing
                terms["idt_a"] = c.lambda_cyc * c.lambda_id * cycle_loss(self.G_A(real_B), real_B)
                terms["idt_b"] = c.lambda_cyc * c.lambda_id * cycle_loss(self.G_B(real_A), real_A)
        g_loss = sum(terms.values())
        check_finite(self.step, g_loss=g_loss)
        self.g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()
        b["fake_A"], b["fake_B"] = fake_A.detach(), fake_B.detach()
        st.report("loss/g", g_loss)
        for k, v in terms.items():
            st.report(f"loss/{k}", v)

    def d_step(self, b: dict[str, Tensor]) -> None:
        """D_A and D_B on reals and pooled fakes; ½ slows D relative to G (the paper)."""
        st = self.stats
        self.D_A.requires_grad_(True)
        self.D_B.requires_grad_(True)
        pooled_B = self.pool_B.query(b["fake_B"].float())
        pooled_A = self.pool_A.query(b["fake_A"].float())
        with autocast(self.device, self.precision):
            d_a = 0.5 * d_lsgan(self.D_A(b["real_B"]), self.D_A(pooled_B))
            d_b = 0.5 * d_lsgan(self.D_B(b["real_A"]), self.D_B(pooled_A))
        d_loss = d_a + d_b
        check_finite(self.step, d_loss=d_loss)
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        st.report("loss/d_a", d_a)
        st.report("loss/d_b", d_b)

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Fixed photos, G_A(photo), G_B(G_A(photo)): one row each."""
        if self.sample_photos is None:
            return None
        x = self.sample_photos.to(self.device)
        was = self.G_A.training, self.G_B.training
        self.G_A.eval()
        self.G_B.eval()
        with autocast(self.device, self.precision):
            fake = self.G_A(x).float()
            rec = self.G_B(fake).float()
        self.G_A.train(was[0])
        self.G_B.train(was[1])
        grid = make_grid(torch.cat([x, fake, rec]).cpu(), cols=len(x), row_labels=["photo", "G_A", "G_B(G_A)"])
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")


def train(cfg: CycleGANConfig, echo=click.echo) -> Path | None:
    """Open the data, build the trainer, resume if the run folder has a checkpoint, train."""
    from translation.data import open_translation_data

    device = pick_device(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    data = open_translation_data(cfg.photos, cfg.style, None, cfg.size, cfg.load_size, cfg.synthetic_length)
    if data.synthetic:
        echo("no --photos/--style given: training on the built-in synthetic photo → webtoon faces")
    trainer = CycleGANTrainer(cfg, data, device)
    c = trainer.cfg
    last = run_training(trainer, describe=lambda how: (
        f"{how}; {c.iters} iterations, batch {c.batch}, {c.size} px, device {device} ({trainer.precision})\n"
        f"data: {data.describe()}"), echo=echo)
    return last
