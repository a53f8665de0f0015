"""Pretrain a StyleGAN2.

    python stylegan2/train.py DATA --size 256 --batch 32 --out runs/ffhq256
    torchrun --nproc_per_node 4 stylegan2/train.py DATA --size 256 --batch 8   # batch is per GPU

DATA is a folder, a zip, a community LMDB or a built-in synthetic domain (``synthetic:photo``).
Re-running the same command resumes from the run folder's newest checkpoint.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.training import StyleGAN2Trainer, TrainConfig, init_distributed
from toonlab.errors import ToonlabError, user_errors
from toonlab.hooks import HookFactory, hook_factories
from toonlab.runtime import enable_tf32


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
    from toonlab.data import infinite_loader, open_dataset

    info, device = init_distributed(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    dataset = open_dataset(cfg.data, cfg.size, flip=True)
    trainer = StyleGAN2Trainer(cfg, dataset, device, info)
    how = trainer.maybe_resume()
    if info.rank == 0:
        click.echo(f"{how}; data: {dataset.describe() if hasattr(dataset, 'describe') else cfg.data}; "
                   f"device {device}; global batch {cfg.batch * info.world}")
    data = infinite_loader(dataset, cfg.batch, cfg.workers, seed=cfg.seed + 7919 * trainer.step,
                           distributed=info.enabled)
    return trainer.train(data, hooks)


OPTIONS = [
    click.option("--out", type=click.Path(file_okay=False), default="runs/stylegan2", show_default=True,
                 help="Run folder (checkpoints, samples, stats, config.json)."),
    click.option("--size", type=int, default=64, show_default=True, help="Resolution (power of two)."),
    click.option("--batch", type=click.IntRange(2), default=16, show_default=True, help="Images per GPU per step."),
    click.option("--iter", "iters", type=click.IntRange(1), default=None, help="Training steps [default 10000]."),
    click.option("--kimg", type=click.FloatRange(0.001), default=None, help="Training length in thousands of images."),
    click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Adam learning rate [0.002]."),
    click.option("--r1", type=click.FloatRange(0), default=None, help="R1 weight γ [10]."),
    click.option("--path-regularize", type=click.FloatRange(0), default=None, help="Path-length weight [2]."),
    click.option("--mixing", type=click.FloatRange(0, 1), default=None, help="Style-mixing probability [0.9]."),
    click.option("--style-dim", type=click.IntRange(1), default=None, help="Width of z and w [512]."),
    click.option("--n-mlp", type=click.IntRange(1), default=None, help="Mapping depth [8]."),
    click.option("--channel-multiplier", type=click.IntRange(1), default=None, help="2 = config-f [2]."),
    click.option("--channel-max", type=click.IntRange(1), default=None, help="Cap on channels [512]."),
    click.option("--channel-base", type=click.IntRange(1), default=None, help="Channels ∝ base/res [16384]."),
    click.option("--ema-kimg", type=click.FloatRange(0, min_open=True), default=None,
                 help="EMA half-life in thousands of images [10]."),
    click.option("--ada/--no-ada", default=None, help="Adaptive discriminator augmentation [on]."),
    click.option("--ada-target", type=click.FloatRange(0, 1), default=None, help="ADA r_t target [0.6]."),
    click.option("--resume", type=click.Path(dir_okay=False), default=None,
                 help="Start from this checkpoint (the run folder's own newest checkpoint wins)."),
    click.option("--seed", type=int, default=None, help="Random seed [0]."),
    click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None, help="bf16 autocast [fp32]."),
    click.option("--snapshot-every", type=click.IntRange(0), default=None, help="Steps between checkpoints [1000]."),
    click.option("--sample-every", type=click.IntRange(0), default=None, help="Steps between sample grids [500]."),
    click.option("--keep", type=click.IntRange(0), default=None, help="Checkpoints kept (0 = all) [5]."),
    click.option("--workers", type=click.IntRange(0), default=None, help="Data loader workers [2]."),
    click.option("--device", default=None, help="auto, cpu, cuda [auto]."),
]


def with_options(f):
    for opt in reversed(OPTIONS):
        f = opt(f)
    return f


@click.command(name="train")
@click.argument("data")
@with_options
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def main(data: str, dry_run: bool, **opts) -> None:
    """Train a StyleGAN2 on DATA (folder, zip, LMDB or synthetic:NAME)."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if "kimg" in opts and "iters" in opts:
        raise click.BadParameter("give --iter or --kimg, not both")
    with user_errors():
        cfg = resolve_config(data, **opts)
        if dry_run:
            click.echo(json.dumps(cfg.to_dict(), indent=2))
            return
        try:
            last = train(cfg, hook_factories())
        except KeyboardInterrupt:
            raise ToonlabError("interrupted; re-run the same command to resume from the last checkpoint") from None
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("train")
