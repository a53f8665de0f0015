"""Fine-tuning a pretrained StyleGAN2 to a cartoon domain: the StyleGAN2 loop with a frozen
source generator, parameter selections (FreezeSG / FreezeG / FreezeD) and the structure loss.

Unlike the published code, the source generator is *loaded* from the checkpoint (not left
random), frozen in eval mode, and rendered with the same latent and the same noise as the
target whenever the structure loss compares them.
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
    generator_state,
    infer_discriminator_config,
    load_checkpoint,
    load_generator,
    load_state_checked,
)
from stylegan2.networks import Discriminator, Generator, SynthesisOutput
from stylegan2.training import DistInfo, StyleGAN2Trainer, TrainConfig
from toonlab.errors import UserInputError


@dataclass
class FinetuneConfig(TrainConfig):
    """TrainConfig plus the fine-tuning methods. Network shape comes from ``source``."""

    source: str = ""
    target: str = "webtoon"
    freeze: int = 0  # FreezeSG: mapping + first N blocks frozen
    freeze_g: int = 0  # FreezeG: only the N highest-resolution blocks train
    freeze_d: int = 0  # FreezeD: only the N lowest-resolution D blocks + final layers train
    freeze_style: bool = False
    structure_loss: int = 0  # compare blocks 1..N with the source
    structure_weight: float = 1.0
    structure_on: str = "rgb"  # "rgb" (paper) or "features" (published code)
    path_regularize: float = 0.0  # off while fine-tuning unless asked
    iters: int = 1000
    batch: int = 8
    mixing: float = 0.9

    def freeze_spec(self) -> FreezeSpec:
        return FreezeSpec(freeze_sg=self.freeze, freeze_g=self.freeze_g, freeze_style=self.freeze_style,
                          freeze_d=self.freeze_d)


def configure_from_source(cfg: FinetuneConfig, ckpt: dict[str, Any]) -> FinetuneConfig:
    """Copy the network shape (size, widths, style_dim, n_mlp) from the source checkpoint."""
    from stylegan2.checkpoint import generator_config

    g_cfg = generator_config(ckpt, generator_state(ckpt, "g_ema", cfg.source), cfg.source)
    cfg.size = g_cfg["size"]
    cfg.style_dim = g_cfg["style_dim"]
    cfg.n_mlp = g_cfg["n_mlp"]
    cfg.channel_multiplier = g_cfg.get("channel_multiplier", 2)
    return cfg


class FinetuneTrainer(StyleGAN2Trainer):
    """StyleGAN2Trainer whose networks start from ``cfg.source`` and whose selections freeze parts."""

    cfg: FinetuneConfig

    def __init__(self, cfg: FinetuneConfig, dataset, device: torch.device, info: DistInfo | None = None) -> None:
        self.source_ckpt = load_checkpoint(cfg.source)
        configure_from_source(cfg, self.source_ckpt)
        self.source = load_generator(cfg.source, "g_ema", device, ckpt=self.source_ckpt)
        self.source.eval().requires_grad_(False)
        super().__init__(cfg, dataset, device, info)
        if cfg.structure_loss and cfg.structure_loss > self.G.n_blocks:
            raise UserInputError(f"--structure-loss {cfg.structure_loss}: the generator has {self.G.n_blocks} blocks")

    # ---- hooks ---------------------------------------------------------------------------------

    def build_networks(self) -> tuple[Generator, Discriminator]:
        ckpt, path = self.source_ckpt, self.cfg.source
        G = load_generator(path, "g" if "g" in ckpt else "g_ema", "cpu", ckpt=ckpt).train().requires_grad_(True)
        if G.w_avg_known is False and self.source.w_avg_known:
            G.w_avg.copy_(self.source.w_avg.cpu())
        d_sd = ckpt.get("d")
        if isinstance(d_sd, dict) and d_sd:
            saved = (ckpt.get("toonlab") or {}).get("d_config")
            d_cfg = dict(saved) if saved else infer_discriminator_config(d_sd, path)
            d_cfg["channels"] = {int(k): int(v) for k, v in d_cfg["channels"].items()}
            D = Discriminator(**d_cfg)
            load_state_checked(D, d_sd, path, "d")
        else:
            warnings.warn(f"{path} has no discriminator ('d'): starting D from scratch (FreezeD has nothing to keep)")
            D = Discriminator(G.size, channels=G.channels)
        return G, D

    def build_ema(self) -> Generator:
        return load_generator(self.cfg.source, "g_ema", "cpu", ckpt=self.source_ckpt)

    def trainable_parameters(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        spec = self.cfg.freeze_spec()
        spec.validate(self.G, self.D)
        g_train, _ = split_parameters(self.G, spec.generator_frozen(self.G))
        d_train, _ = split_parameters(self.D, spec.discriminator_frozen(self.D))
        return g_train, d_train

    def use_path_length(self) -> bool:
        return self.cfg.path_regularize > 0

    def needs_shared_noise(self) -> bool:
        return self.cfg.structure_loss > 0

    def synthesis_kwargs(self) -> dict[str, Any]:
        if not self.cfg.structure_loss:
            return {}
        return {"return_rgbs": self.cfg.structure_on == "rgb", "return_features": self.cfg.structure_on != "rgb"}

    def extra_g_loss(self, latent: Tensor, noise: list[Tensor] | None, fake_out: SynthesisOutput) -> dict[str, Tensor]:
        n = self.cfg.structure_loss
        if not n:
            return {}
        with torch.no_grad():  # the source only renders the first n blocks, forward only
            src = self.source.synthesis(latent.detach(), noise=noise, to_block=n, **self.synthesis_kwargs())
        key = "rgbs" if self.cfg.structure_on == "rgb" else "features"
        loss = structure_loss(getattr(src, key), getattr(fake_out, key)[:n])
        return {"structure": loss * self.cfg.structure_weight}

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        """Source row above target row for the same fixed latents (and the source's const noise)."""
        if self.info.rank != 0:
            return None
        from toonlab.atomic import save_image_atomic
        from toonlab.images import make_grid

        w = self.source.mapping(self.sample_z)
        src = self.source.synthesis(w, noise_mode="const").image
        tgt = self.G_ema.synthesis(w, noise=self.source.const_noise(), noise_mode="const").image
        n = min(8, len(w))
        grid = make_grid(torch.cat([src[:n], tgt[:n]]).float().cpu(), cols=n, row_labels=["source", "target"])
        return save_image_atomic(grid, self.run.samples / f"{self.step:06d}.png")
