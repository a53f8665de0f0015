"""The translation trainer (AnimeGAN v1/v2, CartoonGAN) on the training skeleton (``toonlab/training.py``).

Two phases, counted in iterations: an initialisation phase that trains G with the content loss
alone (it learns to reconstruct photos before it learns a style), then the adversarial phase
(one D step, one G step per iteration) — phases the skeleton's loop walks. The maths lives in
``losses/translation.py``, ``losses/features.py`` and the networks; this file owns the phases,
optimisers and presets; the loop, resume, checkpoints, stats and the NaN stop are the skeleton's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from losses import g_nonsaturating
from losses.features import FeatureNetwork, resnet_features, vgg19_features
from losses.translation import (
    color_loss,
    content_loss,
    edge_smoothed_fake_loss,
    grayscale,
    lsgan_d_loss,
    lsgan_g_loss,
    style_loss,
    tv_loss,
)
from toonlab.atomic import save_image_atomic
from toonlab.errors import UserInputError
from toonlab.images import make_grid
from toonlab.runtime import autocast, resolve_precision, seed_everything
from toonlab.training import Phase, Trainer, check_finite, ema_update
from translation.models import (
    MODELS,
    build_discriminator,
    build_generator,
    family,
    load_generator,
)

__all__ = ["TranslateConfig", "TranslationTrainer", "PRESETS", "SCHEDULES", "resolve_config"]

PRESET_NAMES = ("hayao", "shinkai", "paprika")

# Loss weights per family and preset (REFERENCE.md §6). d_weights = inner weights of the AnimeGAN D
# terms (real, fake, gray, smooth); w_adv / w_d_adv = outer adversarial weights of G / D.
# v1 and CartoonGAN published one weight set for every style.
_V1 = dict(w_adv=300.0, w_d_adv=300.0, w_con=1.5, w_sty=3.0, w_col=10.0, w_tv=0.0, d_weights=(1.0, 1.0, 1.0, 0.1))
_CG = dict(w_adv=1.0, w_d_adv=1.0, w_con=10.0, w_sty=0.0, w_col=0.0, w_tv=0.0, d_weights=(1.0, 1.0, 0.0, 1.0))
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "animegan": {p: dict(_V1) for p in PRESET_NAMES},
    "animegan2": {
        "hayao": dict(w_adv=300.0, w_d_adv=300.0, w_con=1.5, w_sty=2.5, w_col=15.0, w_tv=1.0,
                      d_weights=(1.2, 1.2, 1.2, 0.8)),
        "shinkai": dict(w_adv=300.0, w_d_adv=300.0, w_con=1.2, w_sty=2.0, w_col=10.0, w_tv=1.0,
                        d_weights=(1.7, 1.7, 1.7, 1.0)),
        "paprika": dict(w_adv=300.0, w_d_adv=300.0, w_con=2.0, w_sty=0.6, w_col=50.0, w_tv=0.1,
                        d_weights=(1.0, 1.0, 1.0, 0.005)),
    },
    "cartoongan": {p: dict(_CG) for p in PRESET_NAMES},
}
# Phase lengths (epochs) and learning rates per family.
SCHEDULES: dict[str, dict[str, float]] = {
    "animegan": dict(init_epochs=5, init_lr=1e-4, g_lr=8e-5, d_lr=1.6e-4),
    "animegan2": dict(init_epochs=10, init_lr=2e-4, g_lr=2e-5, d_lr=4e-5),
    "cartoongan": dict(init_epochs=10, init_lr=2e-4, g_lr=2e-4, d_lr=2e-4),
}
WEIGHT_KEYS = ("w_adv", "w_d_adv", "w_con", "w_sty", "w_col", "w_tv", "d_weights")


@dataclass
class TranslateConfig:
    """Every knob of a translation run; ``None`` means "from the model's schedule / the preset"."""

    model: str = "animegan2"
    preset: str = "hayao"
    photos: str | None = None  # folder, zip, LMDB or synthetic:NAME; None with style=None → synthetic faces
    style: str | None = None
    smooth: str | None = None  # pre-made edge-smoothed style images (else computed on the fly)
    out: str = "runs/translate"
    size: int = 256  # random crop side
    load_size: int | None = None  # images are resized/centre-cropped to this before cropping [size + size/8]
    batch: int = 8
    epochs: float = 100.0  # adversarial phase, in passes over the larger domain
    init_epochs: float | None = None  # [v1 5, v2 10, CartoonGAN 10]
    iters: int | None = None  # adversarial iterations (overrides epochs)
    init_iters: int | None = None  # initialisation iterations (overrides init_epochs)
    init_lr: float | None = None
    g_lr: float | None = None
    d_lr: float | None = None
    beta1: float = 0.5
    beta2: float = 0.999
    w_adv: float | None = None
    w_d_adv: float | None = None
    w_con: float | None = None
    w_sty: float | None = None
    w_col: float | None = None
    w_tv: float | None = None
    # Colour (YUV) term in the init phase: not in AnimeGAN (its init is VGG content only), which works
    # with ImageNet features; with --features random the content term alone does not pin the photo's
    # colours and G starts the adversarial phase from a blur. 0 = as published.
    w_init_col: float = 0.0
    d_weights: tuple[float, float, float, float] | None = None
    vgg: str = "imagenet"  # "imagenet" (weights from disk) or "random" (offline, lower quality)
    vgg_weights: str | None = None  # the feature network's weights file (VGG19, or ResNet-50 for resnet50)
    features: str = "auto"  # vgg19 | resnet50 | auto (resnet50 for cartoongan-improved, else vgg19)
    ema: float = 0.0  # EMA decay of a g_ema copy per step (0 = off, as published)
    resume: str | None = None  # start from this file (ours or a port state dict); the run folder wins
    seed: int = 0
    precision: str = "auto"  # auto = bf16 on GPUs, fp32 on CPUs
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

    def weights(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in WEIGHT_KEYS}


def resolve_config(cfg: TranslateConfig, iters_per_epoch: int | None) -> TranslateConfig:
    """A copy with every ``None`` filled from the model's schedule and the preset; epochs → iterations."""
    if cfg.model not in MODELS:
        raise UserInputError(f"unknown model {cfg.model!r} (use one of {', '.join(MODELS)})")
    if cfg.model == "cyclegan":
        raise UserInputError("cyclegan trains with translation/cyclegan.py (two generators, two discriminators)")
    fam = family(cfg.model)
    if cfg.preset not in PRESETS[fam]:
        raise UserInputError(f"unknown preset {cfg.preset!r} (use one of {', '.join(PRESETS[fam])})")
    if cfg.vgg not in ("imagenet", "random"):
        raise UserInputError(f"unknown --vgg {cfg.vgg!r} (use imagenet or random)")
    if cfg.features not in ("auto", "vgg19", "resnet50"):
        raise UserInputError(f"unknown feature network {cfg.features!r} (use auto, vgg19 or resnet50)")
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise UserInputError(f"unknown precision {cfg.precision!r} (use auto, fp32 or bf16)")
    if not 0.0 <= cfg.ema < 1.0:
        raise UserInputError(f"--ema {cfg.ema} must be in [0, 1)")
    c = dataclasses.replace(cfg)
    for k, v in PRESETS[fam][c.preset].items():
        if getattr(c, k) is None:
            setattr(c, k, v)
    c.d_weights = tuple(float(w) for w in c.d_weights)  # type: ignore[union-attr]
    if len(c.d_weights) != 4:
        raise UserInputError(f"d_weights needs 4 numbers (real, fake, gray, smooth), got {len(c.d_weights)}")
    sched = SCHEDULES[fam]
    for k in ("init_lr", "g_lr", "d_lr"):
        if getattr(c, k) is None:
            setattr(c, k, sched[k])
    if c.init_epochs is None:
        c.init_epochs = sched["init_epochs"]
    if c.features == "auto":
        c.features = "resnet50" if c.model == "cartoongan-improved" else "vgg19"
    for k, e in (("iters", c.epochs), ("init_iters", c.init_epochs)):
        if getattr(c, k) is None:
            if iters_per_epoch is None:
                raise UserInputError(f"{k} must be given when no dataset sets the epoch length")
            setattr(c, k, int(math.ceil(e * iters_per_epoch)))
    if iters_per_epoch is not None:
        c.sample_every = iters_per_epoch if c.sample_every is None else c.sample_every
        c.snapshot_every = iters_per_epoch if c.snapshot_every is None else c.snapshot_every
    return c


class TranslationTrainer(Trainer):
    """AnimeGAN / CartoonGAN on the training skeleton.

    ``data`` (a ``translation.data.TranslationData``) supplies batches and the sample photos; it may
    be None when ``train`` is given an iterator of ``(photo, style, style_gray, style_smooth)``
    batches, in which case ``cfg`` must carry ``iters`` and ``init_iters``.
    """

    desc = "translate-train"
    what = "translation training checkpoint"
    top_level_step_rng = True
    show = ("loss/init_con", "loss/d", "loss/g", "loss/con", "sec_per_it")
    flags = {"resume": "--ckpt", "vgg": "--features", "features": "--feature-net", "vgg_weights": "--features-weights"}

    def __init__(self, cfg: TranslateConfig, data=None, device: torch.device | str = "cpu",
                 features: FeatureNetwork | None = None) -> None:
        c = resolve_config(cfg, data.iters_per_epoch(cfg.batch) if data is not None else None)
        device = torch.device(device)
        # Features first: missing weights must fail before a run folder is created.
        F = (features or self._build_features(c)).to(device)
        super().__init__(c, device, tensorboard=c.tensorboard)
        self.data = data
        self.model_name = c.model
        self.precision = resolve_precision(c.precision, self.device)
        self.family = family(c.model)
        self.F = F
        seed_everything(c.seed)
        self.G = build_generator(c.model).to(self.device)
        self.D = build_discriminator(c.model).to(self.device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False) if c.ema > 0 else None
        betas = (c.beta1, c.beta2)
        self.g_init_optim = torch.optim.Adam(self.G.parameters(), lr=c.init_lr, betas=betas)
        self.g_optim = torch.optim.Adam(self.G.parameters(), lr=c.g_lr, betas=betas)
        self.d_optim = torch.optim.Adam(self.D.parameters(), lr=c.d_lr, betas=betas)
        self.modules = {"g": self.G, "d": self.D}
        if self.G_ema is not None:
            self.modules["g_ema"] = self.G_ema
        self.optimizers = {"g_optim": self.g_optim, "d_optim": self.d_optim, "g_init_optim": self.g_init_optim}
        self.sample_photos: Tensor | None = data.fixed_photos(c.n_samples) if data is not None else None

    # ---- setup ---------------------------------------------------------------------------------

    @staticmethod
    def _build_features(c: TranslateConfig) -> FeatureNetwork:
        rnd = c.vgg == "random"
        if c.features == "resnet50":
            return resnet_features(c.vgg_weights, random=rnd)
        return vgg19_features(c.vgg_weights, random=rnd)

    @property
    def total_steps(self) -> int:
        return int(self.cfg.init_iters) + int(self.cfg.iters)

    @property
    def total_iters(self) -> int:
        return self.total_steps

    @property
    def phase(self) -> str:
        return "init" if self.step < int(self.cfg.init_iters) else "adversarial"

    def metadata(self) -> dict[str, Any]:
        c = self.cfg
        return {"model": c.model, "preset": c.preset, "weights": c.weights(), "phase": self.phase,
                "precision": self.precision, "features": f"{self.F.name}:{self.F.source}"}

    def check_compatible(self, ckpt: Mapping[str, Any], path: Path) -> None:
        meta = ckpt.get("toonlab")
        if not isinstance(meta, dict) or "g" not in ckpt:
            raise UserInputError(f"{path} is not a toonlab translation training checkpoint")
        if meta.get("model") != self.cfg.model:
            raise UserInputError(f"{path} was trained as {meta.get('model')!r}, not {self.cfg.model!r}; "
                                 f"use another --out or the same --model")

    def start_fresh(self) -> str:
        """``--resume FILE`` seeds the weights of a new run (G only for a port file)."""
        if not self.cfg.resume:
            return "starting a new run"
        path = Path(self.cfg.resume)
        G, meta = load_generator(path, which="g")  # ours: the trainable copy; a port file has one G
        if meta["model"] != self.cfg.model:
            raise UserInputError(f"--resume {path} holds a {meta['model']} generator, not {self.cfg.model}")
        self.G.load_state_dict(G.state_dict())
        if self.G_ema is not None:
            self.G_ema.load_state_dict(G.state_dict())
        return f"generator initialised from {path} ({meta['source']} file)"

    def batches(self) -> Iterator[tuple[Tensor, ...]]:
        if self.data is None:
            raise UserInputError("no data: pass a batch iterator or a TranslationData")
        c = self.cfg
        self.data.skip_log(self.run.root / "skipped.txt")
        return self.data.batches(c.batch, seed=c.seed, start_step=self.step, workers=c.workers)

    # ---- the phases of one iteration ---------------------------------------------------------------

    def phases(self) -> list[Phase]:
        init = int(self.cfg.init_iters)
        return [
            Phase("init: content only", self.init_step, when=lambda step: step < init),
            Phase("D", self.d_step, when=lambda step: step >= init),
            Phase("G", self.g_step, when=lambda step: step >= init),
            Phase("EMA", self.ema),
        ]

    def before_step(self, batch: tuple[Tensor, ...] | list[Tensor]) -> dict[str, Tensor]:
        c = self.cfg
        if self.sample_photos is None:
            self.sample_photos = batch[0][: c.n_samples].clone()
        photo, style, gray, smooth = (t.to(self.device, non_blocking=True) for t in batch)
        with torch.no_grad(), autocast(self.device, self.precision):
            f_photo = self.F(photo)
        return {"photo": photo, "style": style, "gray": gray, "smooth": smooth, "f_photo": f_photo}

    def _d_inputs(self, style: Tensor, gray: Tensor, smooth: Tensor, fake: Tensor) -> list[Tensor]:
        if self.family == "cartoongan":  # edge-smoothed colour cartoons are CartoonGAN's extra fakes
            return [style, fake, smooth]
        return [style, fake, gray, grayscale(smooth)]  # AnimeGAN: grayscale(edge-smoothed) (REFERENCE §6)

    def _d_loss(self, logits: list[Tensor]) -> Tensor:
        c = self.cfg
        if self.family == "cartoongan":
            real, fake, smooth = logits
            if c.model == "cartoongan-improved":
                loss = lsgan_d_loss(real, fake, smooth=smooth, weights=c.d_weights)
            else:  # the paper's BCE: softplus(-D(c)) is the real term, softplus(D(·)) a fake term
                w_r, w_f, _, w_s = c.d_weights
                loss = (w_r * g_nonsaturating(real) + w_f * edge_smoothed_fake_loss(fake, "bce")
                        + w_s * edge_smoothed_fake_loss(smooth, "bce"))
        else:
            loss = lsgan_d_loss(*logits, weights=c.d_weights)
        return c.w_d_adv * loss

    def _g_adv(self, logits: Tensor) -> Tensor:
        if self.cfg.model == "cartoongan":
            return g_nonsaturating(logits)
        return lsgan_g_loss(logits)

    def init_step(self, b: dict[str, Tensor]) -> None:
        """Initialisation: G learns to reconstruct photos (content loss only)."""
        with autocast(self.device, self.precision):
            fake = self.G(b["photo"])
            con = content_loss(self.F(fake), b["f_photo"])
            loss = self.cfg.w_con * con
            if self.cfg.w_init_col:
                col = color_loss(fake, b["photo"])
                loss = loss + self.cfg.w_init_col * col
        check_finite(self.step, init_loss=loss)
        self.g_init_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.g_init_optim.step()
        self.stats.report("loss/init_con", con)
        if self.cfg.w_init_col:
            self.stats.report("loss/init_col", col)
        self.stats.report("phase", 0.0)

    def d_step(self, b: dict[str, Tensor]) -> None:
        """One D forward over real, fake and the extra fakes (norms are per sample, so no mixing;
        spectral norm then does one power iteration per step, as with a single D call)."""
        st, prec = self.stats, autocast(self.device, self.precision)
        self.D.requires_grad_(True)
        with torch.no_grad(), prec:
            fake = self.G(b["photo"])
        with prec:
            parts = self._d_inputs(b["style"], b["gray"], b["smooth"], fake)
            logits = self.D(torch.cat(parts)).float().chunk(len(parts))
            d_loss = self._d_loss(list(logits))
        check_finite(self.step, d_loss=d_loss)
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.d_optim.step()
        st.report("loss/d", d_loss)
        st.report("d/real", logits[0].mean())
        st.report("d/fake", logits[1].mean())

    def g_step(self, b: dict[str, Tensor]) -> None:
        c, st = self.cfg, self.stats
        self.D.requires_grad_(False)
        with autocast(self.device, self.precision):
            fake = self.G(b["photo"])
            adv = self._g_adv(self.D(fake).float())
            f_fake = self.F(fake)
            terms = {"g_adv": c.w_adv * adv, "con": c.w_con * content_loss(f_fake, b["f_photo"])}
            if c.w_sty:
                with torch.no_grad():
                    f_gray = self.F(b["gray"])
                terms["sty"] = c.w_sty * style_loss(f_fake, f_gray)
            if c.w_col:
                terms["col"] = c.w_col * color_loss(fake, b["photo"])
            if c.w_tv:
                terms["tv"] = c.w_tv * tv_loss(fake)
        g_loss = sum(terms.values())
        check_finite(self.step, g_loss=g_loss, **terms)
        self.g_optim.zero_grad(set_to_none=True)
        g_loss.backward()
        self.g_optim.step()
        self.D.requires_grad_(True)
        st.report("loss/g", g_loss)
        for k, v in terms.items():
            st.report(f"loss/{k}", v)
        st.report("phase", 1.0)

    def ema(self, b: dict[str, Tensor]) -> None:
        if self.G_ema is not None:
            ema_update(self.G_ema, self.G, self.cfg.ema)

    def train_mode(self) -> None:
        self.G.train()
        self.D.train()

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Fixed photos, then G's translations (and g_ema's), one row each."""
        if self.sample_photos is None:
            return None
        x = self.sample_photos.to(self.device)
        rows, labels = [x], ["photo"]
        was = self.G.training
        self.G.eval()
        with autocast(self.device, self.precision):
            rows.append(self.G(x).float())
            labels.append("G")
            if self.G_ema is not None:
                rows.append(self.G_ema(x).float())
                labels.append("G_ema")
        self.G.train(was)
        grid = make_grid(torch.cat(rows).cpu(), cols=len(x), row_labels=labels)
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")
