"""The StarGAN v2 trainer (§3 and the authors' defaults).

Per iteration a latent-guided and a reference-guided D step (non-saturating + R1 with λ=1 on reals),
then a latent-guided G step (updates G, F, E) and a reference-guided G step (updates G): adversarial
+ λ_sty·style reconstruction + λ_ds·diversity (weight decaying linearly to 0 over ``ds_iter``) +
λ_cyc·cycle. Adam lr 1e-4 (F: 1e-6), β=(0, 0.99), weight decay 1e-4; EMA 0.999 of G, F and E (used
for sampling and evaluation); bf16 autocast on GPUs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from losses.adversarial import d_logistic, g_nonsaturating
from losses.regularizers import r1_penalty
from losses.stargan import (
    cycle_loss,
    diversity_loss,
    diversity_weight,
    style_reconstruction_loss,
)
from toonlab.atomic import save_image_atomic
from toonlab.errors import UserInputError
from toonlab.runtime import autocast, resolve_precision, seed_everything
from toonlab.training import Phase, Trainer, check_finite, ema_update
from translation.stargan2_data import SYNTHETIC_DOMAINS, MultiDomainData
from translation.stargan2_inference import latent_grid
from translation.stargan2_networks import MODEL_NAME, StarGAN2Nets, build_networks, check_size


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


class StarGAN2Trainer(Trainer):
    """StarGAN v2 on the training skeleton (optimisers, EMA, λ_ds decay, samples; the loop is the skeleton's)."""

    desc = "stargan2-train"
    what = "StarGAN v2 checkpoint"
    model_name = MODEL_NAME
    top_level_step_rng = True
    show = ("loss/d_latent", "loss/g_latent", "g/cyc_latent", "lambda_ds")
    NETS = ("G", "F", "E", "D")
    flags = {"img_size": "--size"}

    def __init__(self, cfg: StarGAN2Config, data: MultiDomainData | None = None, device: torch.device | str = "cpu",
                 domain_names: Sequence[str] | None = None) -> None:
        if not 0.0 <= cfg.ema < 1.0:
            raise UserInputError(f"--ema {cfg.ema} must be in [0, 1)")
        check_size(cfg.img_size)
        super().__init__(cfg, device, tensorboard=cfg.tensorboard)
        self.data = data
        self.domains = list(data.names if data is not None else (domain_names or SYNTHETIC_DOMAINS))
        self.precision = resolve_precision(cfg.precision, self.device)
        seed_everything(cfg.seed)
        self.nets = build_networks(cfg.arch(len(self.domains))).to(self.device)
        n = self.nets
        self.G, self.F, self.E, self.D = n.G, n.F, n.E, n.D
        self.G_ema, self.F_ema, self.E_ema = (copy.deepcopy(m).eval().requires_grad_(False) for m in (n.G, n.F, n.E))

        def adam(m: nn.Module, lr: float) -> torch.optim.Adam:
            return torch.optim.Adam(m.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)

        self.optims = {"G": adam(n.G, cfg.lr), "F": adam(n.F, cfg.f_lr), "E": adam(n.E, cfg.lr), "D": adam(n.D, cfg.lr)}
        self.modules = {"g": self.G, "f": self.F, "e": self.E, "d": self.D, "g_ema": self.G_ema,
                        "f_ema": self.F_ema, "e_ema": self.E_ema}
        self.optimizers = {f"{k.lower()}_optim": o for k, o in self.optims.items()}
        self.fixed: tuple[Tensor, Tensor] | None = data.fixed(cfg.n_samples) if data is not None else None

    # ---- checkpoints ---------------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        return int(self.cfg.iters)

    def config_dict(self) -> dict[str, Any]:
        return {**self.cfg.to_dict(), "domains": self.domains, "arch": self.nets.arch}

    def metadata(self) -> dict[str, Any]:
        return {"model": MODEL_NAME, "arch": self.nets.arch, "domains": self.domains, "precision": self.precision}

    def check_compatible(self, ckpt: Mapping[str, Any], path: Path) -> None:
        super().check_compatible(ckpt, path)
        meta = ckpt["toonlab"]
        if meta.get("arch") != self.nets.arch or list(meta.get("domains", [])) != self.domains:
            raise UserInputError(f"{path} was trained with another architecture or domains "
                                 f"({meta.get('domains')}); use another --out or the same settings")

    def batches(self) -> Iterator[Sequence[Tensor]]:
        if self.data is None:
            raise UserInputError("no data: pass a batch iterator or a MultiDomainData")
        c = self.cfg
        self.data.skip_log(self.run.root / "skipped.txt")
        return self.data.batches(c.batch, seed=c.seed, start_step=self.step, workers=c.workers)

    # ---- the phases of one iteration -------------------------------------------------------------

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

    def phases(self) -> list[Phase]:
        """D (latent-guided, then reference-guided), G (latent: G+F+E; reference: G), EMA."""
        return [Phase("D latent-guided", lambda b: self.d_step(b, "latent")),
                Phase("D reference-guided", lambda b: self.d_step(b, "ref")),
                Phase("G latent-guided", lambda b: self.g_step(b, "latent")),
                Phase("G reference-guided", lambda b: self.g_step(b, "ref")),
                Phase("EMA", self.ema)]

    def before_step(self, batch: Sequence[Tensor]) -> dict[str, Any]:
        c = self.cfg
        if self.fixed is None:
            self.fixed = (batch[0][: c.n_samples].clone(), batch[1][: c.n_samples].clone())
        x_src, y_src, x_ref, x_ref2, y_ref = (t.to(self.device, non_blocking=True) for t in batch)
        B = len(x_src)
        z1 = torch.randn(B, c.latent_dim, device=self.device)
        z2 = torch.randn(B, c.latent_dim, device=self.device)
        return {"x_src": x_src, "y_src": y_src, "x_ref": x_ref, "x_ref2": x_ref2, "y_ref": y_ref, "z1": z1, "z2": z2,
                "lam_ds": diversity_weight(self.step, c.lambda_ds, c.ds_iter)}

    def d_step(self, b: dict[str, Any], mode: str) -> None:
        st = self.stats
        self.D.requires_grad_(True)
        kw = dict(z=b["z1"]) if mode == "latent" else dict(ref=b["x_ref"])
        loss, parts = self._d_loss(b["x_src"], b["y_src"], b["y_ref"], **kw)
        check_finite(self.step, **{f"d_loss_{mode}": loss})
        self._zero()
        loss.backward()
        self.optims["D"].step()
        st.report(f"loss/d_{mode}", loss)
        for k, v in parts.items():
            st.report(f"d/{k}_{mode}", v)

    def g_step(self, b: dict[str, Any], mode: str) -> None:
        st = self.stats
        self.D.requires_grad_(False)  # G steps need no D parameter gradients
        kw = dict(zs=(b["z1"], b["z2"])) if mode == "latent" else dict(refs=(b["x_ref"], b["x_ref2"]))
        nets = "GFE" if mode == "latent" else "G"
        loss, parts = self._g_loss(b["x_src"], b["y_src"], b["y_ref"], b["lam_ds"], **kw)
        check_finite(self.step, **{f"g_loss_{mode}": loss})
        self._zero()
        loss.backward()
        for k in nets:
            self.optims[k].step()
        self.D.requires_grad_(True)
        st.report(f"loss/g_{mode}", loss)
        for k, v in parts.items():
            st.report(f"g/{k}_{mode}", v)

    def ema(self, b: dict[str, Any]) -> None:
        for ema, m in ((self.G_ema, self.G), (self.F_ema, self.F), (self.E_ema, self.E)):
            ema_update(ema, m, self.cfg.ema)
        self.stats.report("lambda_ds", b["lam_ds"])

    def train_mode(self) -> None:
        for m in (self.G, self.F, self.E, self.D):
            m.train()

    # ---- samples -------------------------------------------------------------------------------

    def ema_nets(self) -> StarGAN2Nets:
        return StarGAN2Nets(self.G_ema, self.F_ema, self.E_ema, None, self.nets.arch)

    def save_samples(self) -> Path | None:
        if self.fixed is None:
            return None
        x, _ = self.fixed
        grid = latent_grid(self.ema_nets(), x, self.domains, seed=0, device=self.device, precision=self.precision)
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")
