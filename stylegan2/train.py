"""Pretrain a StyleGAN2.

    python stylegan2/train.py DATA --size 256 --batch 32 --out runs/ffhq256 [--kimg 25000 | --iters N]
    torchrun --nproc_per_node 4 stylegan2/train.py DATA --size 256 --batch 8   # batch is per GPU

DATA is a folder, a zip, a community LMDB or a built-in synthetic domain (``synthetic:photo``).
Re-running the same command resumes from the run folder's newest checkpoint.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.training import StyleGAN2Trainer, TrainConfig, close_distributed, init_distributed
from toonlab.errors import user_errors
from toonlab.hooks import HookFactory, hook_factories
from toonlab.options import ToonCommand, config_option
from toonlab.runtime import enable_tf32
from toonlab.training import run_training


def resolve_config(data: str, **opts) -> TrainConfig:
    """Flags → a validated TrainConfig (``--kimg`` is turned into iterations)."""
    kimg = opts.pop("kimg", None)
    cfg = TrainConfig(data=data, **{k: v for k, v in opts.items() if v is not None})
    if kimg is not None:
        cfg.iters = max(1, int(round(kimg * 1000 / cfg.batch)))
    if cfg.size < 8 or cfg.size & (cfg.size - 1):
        raise click.BadParameter(f"{cfg.size} is not a power of two ≥ 8", param_hint="--size")
    return cfg


def train(cfg: TrainConfig, hooks: Sequence[HookFactory] = ()) -> Path | None:
    """Run (or resume) a training run described by ``cfg``; returns the last checkpoint."""
    from toonlab.data import open_dataset

    info, device = init_distributed(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    dataset = open_dataset(cfg.data, cfg.size, flip=True)
    trainer = StyleGAN2Trainer(cfg, dataset, device, info)
    data = dataset.describe() if hasattr(dataset, "describe") else cfg.data
    last = run_training(trainer, hooks, lambda how: f"{how}; data: {data}; device {device}; "
                                                    f"global batch {cfg.batch * info.world}")
    close_distributed(info)
    return last


_o = partial(config_option, TrainConfig)
OPTIONS = [
    _o("out", "--out", type=click.Path(file_okay=False), help="Run folder (checkpoints, samples, stats, config.json)."),
    _o("size", "--size", type=int, help="Resolution (power of two)."),
    _o("batch", "--batch", type=click.IntRange(2), help="Images per GPU per step."),
    _o("iters", "--iters", type=click.IntRange(1), help="Training steps (or give --kimg)."),
    click.option("--kimg", type=click.FloatRange(0.001), default=None, help="Training length in thousands of images."),
    _o("lr", "--lr", type=click.FloatRange(0, min_open=True), help="Adam learning rate."),
    _o("r1", "--r1", type=click.FloatRange(0), help="R1 weight γ."),
    _o("path_regularize", "--path-regularize", type=click.FloatRange(0), help="Path-length weight."),
    _o("mixing", "--mixing", type=click.FloatRange(0, 1), help="Style-mixing probability."),
    _o("style_dim", "--style-dim", type=click.IntRange(1), help="Width of z and w."),
    _o("n_mlp", "--n-mlp", type=click.IntRange(1), help="Mapping depth."),
    _o("channel_multiplier", "--channel-multiplier", type=click.IntRange(1), help="2 = config-f."),
    _o("channel_max", "--channel-max", type=click.IntRange(1), help="Cap on channels."),
    _o("channel_base", "--channel-base", type=click.IntRange(1), help="Channels ∝ base/res."),
    _o("d_channel_base", "--d-channel-base", type=click.IntRange(1), show_default="--channel-base",
       help="The discriminator's own channel base (a wider D)."),
    _o("d_channel_max", "--d-channel-max", type=click.IntRange(1), show_default="--channel-max",
       help="The discriminator's own cap on channels."),
    _o("d_warmup_kimg", "--d-warmup-kimg", type=click.FloatRange(0),
       help="Train only D (G held still) for the first this many kimg of the run: for a fresh D on a trained G."),
    _o("ema_kimg", "--ema-kimg", type=click.FloatRange(0, min_open=True), help="EMA half-life in thousands of images."),
    click.option("--ada/--no-ada", default=None, show_default="on", help="Adaptive discriminator augmentation."),
    _o("ada_target", "--ada-target", type=click.FloatRange(0, 1), help="ADA r_t target."),
    _o("resume", "--ckpt", type=click.Path(dir_okay=False),
       help="Start a new run from this checkpoint (also a community file); the run folder's own newest "
            "checkpoint wins."),
    _o("seed", "--seed", type=int, help="Random seed."),
    _o("precision", "--precision", type=click.Choice(["auto", "fp32", "bf16"]),
       help="bf16 autocast; auto = bf16 on GPUs, fp32 on CPUs."),
    _o("snapshot_every", "--snapshot-every", type=click.IntRange(0), help="Steps between checkpoints (0: only the last)."),
    _o("sample_every", "--sample-every", type=click.IntRange(0), help="Steps between sample grids (0: none)."),
    _o("keep", "--keep", type=click.IntRange(0), help="Checkpoints kept (0 = all)."),
    _o("workers", "--workers", type=click.IntRange(0), help="Data loader workers."),
    _o("device", "--device", help="auto, cpu, cuda or cuda:N."),
]

#: Old spellings (hidden, one warning line each).
ALIASES = {"--iter": "--iters", "--resume": "--ckpt", "--outdir": "--out"}


def with_options(f):
    for opt in reversed(OPTIONS):
        f = opt(f)
    return f


@click.command(name="train", cls=ToonCommand, aliases=ALIASES)
@click.argument("data")
@with_options
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def main(data: str, dry_run: bool, **opts) -> None:
    """Train a StyleGAN2 on DATA (folder, zip, LMDB or synthetic:NAME); re-running the same command resumes."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if "kimg" in opts and "iters" in opts:
        raise click.BadParameter("give --iters or --kimg, not both")
    with user_errors():
        cfg = resolve_config(data, **opts)
        hooks = hook_factories()
        if dry_run:
            extra = {k: v for f in hooks for k, v in dict(getattr(f, "config", {})).items()}
            click.echo(json.dumps({**cfg.to_dict(), **extra}, indent=2))
            return
        last = train(cfg, hooks)
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("train")
