"""StarGAN v2 (Choi et al., CVPR 2020): multi-domain image translation — train, sample, eval.

    python translation/stargan2.py train --out runs/sg2                 # built-in synthetic domains
    python translation/stargan2.py train --data DATA --size 256 --out runs/sg2
    python translation/stargan2.py sample --ckpt runs/sg2/checkpoints/100000.pt --out runs/sg2/figs
    python translation/stargan2.py eval --ckpt runs/sg2/checkpoints/100000.pt --features random

DATA holds one sub-folder per domain (``DATA/photo``, ``DATA/webtoon``, ...). Without ``--data`` the
built-in synthetic face domains ``photo``, ``webtoon`` and ``pastel`` are three domains.

Roles: networks ``translation/stargan2_networks.py``, data ``translation/stargan2_data.py``, trainer
``translation/stargan2_trainer.py``, inference and figures ``translation/stargan2_inference.py``;
the evaluation protocol (FID, LPIPS) is a metric, ``metrics/stargan2.py``, and its ``eval`` command
is added to this group by the entry point (``toonlab/cli.py``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from toonlab.errors import user_errors
from toonlab.options import ToonGroup
from toonlab.runtime import pick_device, resolve_precision
from toonlab.training import run_training
from translation.stargan2_data import open_multidomain
from translation.stargan2_inference import sample_figures
from translation.stargan2_trainer import StarGAN2Config, StarGAN2Trainer


@click.group(cls=ToonGroup)
def main() -> None:
    """StarGAN v2: multi-domain image translation (train / sample / eval)."""


@main.command(aliases={"--img-size": "--size"})
@click.option("--data", default=None, help="Folder with one sub-folder of images per domain [built-in synthetic domains].")
@click.option("--domains", default=None, help="Comma-separated domains (sub-folders or synthetic names) [all / photo,webtoon,pastel].")
@click.option("--out", type=click.Path(file_okay=False), default="runs/stargan2", show_default=True)
@click.option("--size", "img_size", type=int, default=256, show_default=True, help="Image side (power of two).")
@click.option("--batch", type=click.IntRange(1), default=8, show_default=True)
@click.option("--iters", type=click.IntRange(0), default=100_000, show_default=True)
@click.option("--ds-iter", type=click.IntRange(0), default=100_000, show_default=True,
              help="Iterations over which the diversity weight decays to 0.")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True)
@click.option("--f-lr", type=click.FloatRange(0, min_open=True), default=1e-6, show_default=True, help="Mapping network lr.")
@click.option("--lambda-reg", type=click.FloatRange(0), default=1.0, show_default=True, help="R1 γ.")
@click.option("--lambda-sty", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--lambda-ds", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--lambda-cyc", type=click.FloatRange(0), default=1.0, show_default=True)
@click.option("--dim-in", type=click.IntRange(1), default=None, help="First conv width [2^14 / img-size].")
@click.option("--max-conv-dim", type=click.IntRange(1), default=512, show_default=True)
@click.option("--mapping-hidden", type=click.IntRange(1), default=512, show_default=True)
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="bf16 autocast; auto = bf16 on GPUs, fp32 on CPUs.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--sample-every", type=click.IntRange(0), default=5000, show_default=True)
@click.option("--snapshot-every", type=click.IntRange(0), default=10000, show_default=True)
@click.option("--keep", type=click.IntRange(0), default=5, show_default=True)
@click.option("--log-every", type=click.IntRange(1), default=10, show_default=True)
@click.option("--synthetic-length", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True)
def train(domains: str | None, **opts: Any) -> None:
    """Train StarGAN v2 (re-running the same command resumes from the newest checkpoint)."""
    dry_run = opts.pop("dry_run")
    with user_errors():
        cfg = StarGAN2Config(domains=tuple(d.strip() for d in domains.split(",") if d.strip()) if domains else None,
                             **opts)
        if dry_run:
            click.echo(json.dumps(cfg.to_dict(), indent=2, default=str))
            return
        device = pick_device(cfg.device)
        if device.type == "cuda":
            from toonlab.runtime import enable_tf32

            enable_tf32()
        data = open_multidomain(cfg.data, cfg.img_size, cfg.domains, cfg.synthetic_length)
        if data.synthetic:
            click.echo(f"no --data given: training on the built-in synthetic domains {', '.join(data.names)}")
        trainer = StarGAN2Trainer(cfg, data, device)
        last = run_training(trainer, describe=lambda how: (
            f"{how}; {cfg.iters} iterations, batch {cfg.batch}, {cfg.img_size} px, device {device} "
            f"({trainer.precision}); data: {data.describe()}"))
    click.echo(f"done: {last}")


@main.command(positional=("--ckpt",))
@click.option("--ckpt", "checkpoint", type=click.Path(dir_okay=False), required=True,
              help="A StarGAN v2 checkpoint (translation/stargan2.py train).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder [CHECKPOINT's run/figures].")
@click.option("--data", default=None, help="Source/reference images (sub-folder per domain) [unseen synthetic faces].")
@click.option("--n", type=click.IntRange(1), default=4, show_default=True, help="Source images per grid.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--video/--no-video", default=True, show_default=True, help="Also write the style interpolation video.")
@click.option("--frames", type=click.IntRange(2), default=16, show_default=True, help="Frames between two styles.")
@click.option("--device", default="auto", show_default=True)
def sample(checkpoint: str, out: str | None, data: str | None, n: int, seed: int, video: bool, frames: int,
           device: str) -> None:
    """Latent-guided and reference-guided grids, and a style interpolation video."""
    with user_errors():
        dev = pick_device(device)
        out_dir = Path(out) if out else Path(checkpoint).resolve().parent.parent / "figures"
        for p in sample_figures(checkpoint, out_dir, data, n, seed, dev, video, frames,
                                precision=resolve_precision("auto", dev)):
            click.echo(f"wrote {p}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("stargan2")
