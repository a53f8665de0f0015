"""Fine-tuning a pretrained StyleGAN2 to a cartoon domain: the StyleGAN2 loop with a frozen
source generator, parameter selections (FreezeSG / FreezeG / FreezeD) and the structure loss.

Unlike the published code, the source generator is *loaded* from the checkpoint (not left
random), frozen in eval mode, and rendered with its own mapping of the same z (and the same
crossover and noise) as the target whenever the structure loss compares them.

Start: the trainable G, G_ema and the source all start from the checkpoint's ``g_ema`` — the
weights the source renders with. (Starting G from the checkpoint's ``g`` would put the target at
a different point than the source at step 0, frozen blocks included, and the EMA ramp-up would
replace G_ema by that G after one step, discarding the better ``g_ema`` weights.) So at step 0
target ≡ source and the structure loss is exactly 0. The EMA ramp-up (``ema_rampup``, 5 % of the
images seen) stays on: since G starts at the source's rendering weights it no longer discards
anything, and it makes the EMA's memory grow with the run, so a 1–8 kimg fine-tune shows its
result rather than a 10-kimg average dominated by the source. NVIDIA's ``train.py:315`` turns
the ramp off when resuming and Cartoon-StyleGAN uses a fixed per-step decay 0.5 ** (32/10000)
(``train.py:160``, half-life 2.5k images at its batch 8); ``--ema-rampup 0 --ema-kimg 2.5``
reproduces the latter at batch 8.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from finetune.freeze import FreezeSpec, split_parameters
from losses import structure_loss
from stylegan2.checkpoint import (
    apply_recorded_clamp,
    generator_state,
    infer_discriminator_config,
    load_checkpoint,
    load_generator,
    load_state_checked,
)
from stylegan2.networks import Discriminator, Generator, SplitMappingGenerator, SynthesisOutput
from stylegan2.training import DistInfo, StyleGAN2Trainer, TrainConfig
from toonlab.errors import UserInputError
from toonlab.runtime import autocast

STRUCTURE_ON = ("rgb", "features")


@dataclass
class FinetuneConfig(TrainConfig):
    """TrainConfig plus the fine-tuning methods. Network shape comes from ``source``."""

    source: str = ""
    target: str = "webtoon"
    freeze: int = 0  # FreezeSG: blocks 1..N frozen, their style entries from the source's mapping
    freeze_style: int | None = None  # FreezeSG's number of source W+ entries (None: 2N) / published --freezeStyle
    freeze_g: int = 0  # FreezeG: only the N highest-resolution blocks train
    freeze_d: int = 0  # FreezeD: only the N lowest-resolution D blocks + final layers train
    freeze_mapping: bool = False  # ablation: mapping network frozen
    freeze_mode: str = "paper"  # "paper" or "published" (Cartoon-StyleGAN's code, finetune/freeze.py)
    structure_loss: int = 0  # rgb: blocks 1..N (mean); features: blocks 2..N+1 (sum)
    structure_weight: float = 1.0
    structure_on: str = "rgb"  # "rgb" (paper) or "features" (published code)
    path_regularize: float = 0.0  # off while fine-tuning unless asked
    iters: int = 1000
    batch: int = 8
    mixing: float = 0.9

    def freeze_spec(self) -> FreezeSpec:
        return FreezeSpec(freeze_sg=self.freeze, freeze_g=self.freeze_g, freeze_d=self.freeze_d,
                          freeze_style=self.freeze_style, freeze_mapping=self.freeze_mapping, mode=self.freeze_mode)

    def structure_blocks(self) -> list[int]:
        """The (1-based) blocks the structure loss compares."""
        n = self.structure_loss
        if not n:
            return []
        return list(range(1, n + 1)) if self.structure_on == "rgb" else list(range(2, n + 2))


def configure_from_source(cfg: FinetuneConfig, ckpt: dict[str, Any]) -> FinetuneConfig:
    """Copy the network shape (size, widths, style_dim, n_mlp) from the source checkpoint."""
    from stylegan2.checkpoint import generator_config

    g_cfg = generator_config(ckpt, generator_state(ckpt, "g_ema", cfg.source), cfg.source)
    cfg.size = g_cfg["size"]
    cfg.style_dim = g_cfg["style_dim"]
    cfg.n_mlp = g_cfg["n_mlp"]
    cfg.channel_multiplier = g_cfg.get("channel_multiplier", 2)
    return cfg


def _keep_clamp(out: Generator, G: Generator) -> Generator:
    """A source converted from an NVIDIA pickle clamps its activations (``conv_clamp``); its copies must too."""
    clamp = getattr(G, "conv_clamp", None)
    if clamp is not None:
        from stylegan2.nvidia import apply_conv_clamp  # only NVIDIA-converted sources need the pickle reader

        apply_conv_clamp(out, clamp)
    return out


def _plain_copy(G: Generator) -> Generator:
    """A plain Generator with G's weights, truncation centre and activation clamp."""
    out = Generator(**G.config)
    out.load_state_dict(G.state_dict())
    out.w_avg.copy_(G.w_avg.cpu())
    out.w_avg_known = G.w_avg_known
    return _keep_clamp(out, G)


class FinetuneTrainer(StyleGAN2Trainer):
    """StyleGAN2Trainer whose networks start from ``cfg.source`` and whose selections freeze parts."""

    cfg: FinetuneConfig

    def __init__(self, cfg: FinetuneConfig, dataset, device: torch.device, info: DistInfo | None = None) -> None:
        if cfg.structure_on not in STRUCTURE_ON:
            raise UserInputError(f"--structure-on {cfg.structure_on!r}: choose {' or '.join(STRUCTURE_ON)}")
        self.source_ckpt = load_checkpoint(cfg.source)
        configure_from_source(cfg, self.source_ckpt)
        self.source = load_generator(cfg.source, "g_ema", device, ckpt=self.source_ckpt)
        self.source.eval().requires_grad_(False)
        self.spec = cfg.freeze_spec()
        self._source_latent: Tensor | None = None  # the source's own W+ of the last sampled z
        self._plain_latent: Tensor | None = None  # published mode: the target's plain mix of them
        super().__init__(cfg, dataset, device, info)
        blocks = cfg.structure_blocks()
        if blocks and blocks[-1] > self.G.n_blocks:
            limit = self.G.n_blocks if cfg.structure_on == "rgb" else self.G.n_blocks - 1
            raise UserInputError(f"--structure-loss {cfg.structure_loss} with --structure-on {cfg.structure_on}: "
                             f"this generator allows 1..{limit}")

    # ---- hooks ---------------------------------------------------------------------------------

    def build_networks(self) -> tuple[Generator, Discriminator]:
        ckpt, path = self.source_ckpt, self.cfg.source
        G = _plain_copy(self.source).train().requires_grad_(True)  # the source's g_ema (see module doc)
        d_sd = ckpt.get("d")
        if isinstance(d_sd, dict) and d_sd:
            saved = (ckpt.get("toonlab") or {}).get("d_config")
            d_cfg = dict(saved) if saved else infer_discriminator_config(d_sd, path)
            d_cfg["channels"] = {int(k): int(v) for k, v in d_cfg["channels"].items()}
            D = Discriminator(**d_cfg)
            load_state_checked(D, d_sd, path, "d")
            apply_recorded_clamp(D, ckpt, "d")
        else:
            warnings.warn(f"{path} has no discriminator ('d'): starting D from scratch (FreezeD has nothing to keep)")
            D = Discriminator(G.size, channels=G.channels)
        return G, D

    def build_ema(self) -> Generator:
        """A copy of G; for FreezeSG it also carries the source's mapping for the first K entries,
        so samples, metrics and the saved checkpoint render from z as the model is trained."""
        k = self.spec.split_mapping()
        if not k or k > self.G.n_latent:  # out of range: validate() says so in trainable_parameters()
            return _plain_copy(self.G)
        G_ema = SplitMappingGenerator(**self.G.config, n_early=k)
        G_ema.load_state_dict(self.G.state_dict())
        G_ema.w_avg.copy_(self.G.w_avg.cpu())
        G_ema.w_avg_known = self.G.w_avg_known
        src_avg = self.source.w_avg if self.source.w_avg_known else None
        G_ema.load_early_style({k_[len("style."):]: v.cpu() for k_, v in self.source.state_dict().items()
                                if k_.startswith("style.")}, None if src_avg is None else src_avg.cpu())
        return _keep_clamp(G_ema, self.G)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        self.spec.validate(self.G, self.D)
        g_train, _ = split_parameters(self.G, self.spec.generator_frozen(self.G))
        d_train, _ = split_parameters(self.D, self.spec.discriminator_frozen(self.D))
        return g_train, d_train

    def latents_from(self, z: Tensor, cut: int) -> Tensor:
        """The target's W+ under the method's style rule; remembers the source's own W+ for the
        same z and crossover, which the structure loss renders."""
        batch, n = z.shape[1], self.G.n_latent
        zz = z.reshape(2 * batch, -1)
        w_t = self.G.style(zz).reshape(2, batch, -1)
        needs_source = self.spec.source_entries() is not None or self.cfg.structure_loss > 0
        w_s = None
        if needs_source:
            with torch.no_grad():
                w_s = self.source.style(zz).reshape(2, batch, -1)
            idx = torch.arange(n, device=z.device).view(1, n, 1)
            self._source_latent = torch.where(idx < cut, w_s[0].unsqueeze(1), w_s[1].unsqueeze(1))
        latent = self.spec.style_latents(w_t, w_s, cut, n)
        self._plain_latent = None
        if self.spec.mode == "published" and self.cfg.structure_loss and cut < n:
            # train.py:344-348 renders the structure-loss target with a plain generator(noise) call,
            # not with put_latent: keep the target's plain mix of the same z for that pass.
            self._plain_latent = StyleGAN2Trainer.latents_from(self, z, cut) if self.spec.source_entries() is not None \
                else None
        return latent

    def path_length_latents(self, batch: int) -> Tensor:
        if self.spec.mode == "published":  # train.py:356-359: the path-length pass is a plain generator(noise)
            return StyleGAN2Trainer.latents_from(self, *self.draw_latent_inputs(batch))
        return self.sample_latents(batch)

    def use_path_length(self) -> bool:
        return self.cfg.path_regularize > 0

    def needs_shared_noise(self) -> bool:
        return self.cfg.structure_loss > 0

    def synthesis_kwargs(self) -> dict[str, Any]:
        if not self.cfg.structure_loss:
            return {}
        return {"return_rgbs": self.cfg.structure_on == "rgb", "return_features": self.cfg.structure_on != "rgb"}

    def extra_g_loss(self, latent: Tensor, noise: list[Tensor] | None, fake_out: SynthesisOutput) -> dict[str, Tensor]:
        blocks = self.cfg.structure_blocks()
        if not blocks:
            return {}
        src_latent = self._source_latent
        if src_latent is None or src_latent.shape != latent.shape:  # called without latents_from (tests)
            src_latent = latent
        # Under the G pass's autocast: with bf16/fp16 the latent arrives in half precision (g_main
        # calls this outside its autocast block), and a plain fp32 layer would refuse it.
        prec = autocast(self.device, self.precision)
        with torch.no_grad(), prec:  # the source only renders up to the last compared block, forward only
            src = self.source.synthesis(src_latent.detach(), noise=noise, to_block=blocks[-1], **self.synthesis_kwargs())
        key = "rgbs" if self.cfg.structure_on == "rgb" else "features"
        plain = self._plain_latent
        if plain is not None and plain.shape == latent.shape:  # published mode: its own target pass
            with autocast(self.device, self.precision):
                fake_out = self.G.synthesis(plain, noise=noise, to_block=blocks[-1], **self.synthesis_kwargs())
        pick = [b - 1 for b in blocks]
        src_list, tgt_list = getattr(src, key), getattr(fake_out, key)
        reduction = "mean" if self.cfg.structure_on == "rgb" else "sum"
        loss = structure_loss([src_list[i].float() for i in pick], [tgt_list[i].float() for i in pick],
                              reduction=reduction)
        return {"structure": loss * self.cfg.structure_weight}

    # ---- checkpoints ---------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        out = super().metadata()
        if isinstance(self.G_ema, SplitMappingGenerator):
            out["early_mapping"] = self.G_ema.early_mapping_meta()
        return out

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Source row above target row for the same fixed z, each through its own mapping
        (the target's is FreezeSG's two-network W+ when it has one), the source's const noise."""
        if self.info.rank != 0:
            return None
        from toonlab.atomic import save_image_atomic
        from toonlab.images import make_grid

        src = self.source.synthesis(self.source.mapping(self.sample_z), noise_mode="const").image
        tgt = self.G_ema.synthesis(self.G_ema.mapping(self.sample_z), noise=self.source.const_noise(),
                                   noise_mode="const").image
        n = min(8, len(self.sample_z))
        grid = make_grid(torch.cat([src[:n], tgt[:n]]).float().cpu(), cols=n, row_labels=["source", "target"])
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")
