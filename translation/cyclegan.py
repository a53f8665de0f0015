"""Train a CycleGAN photo ↔ cartoon translator (resumes by re-running the same command).

    python translation/cyclegan.py --out runs/cyclegan --iters 2000            # built-in photo → webtoon faces
    python translation/cyclegan.py --photos PHOTOS --style STYLE --out runs/cg

The networks are in ``translation/cyclegan_networks.py``, the trainer in ``translation/cyclegan_trainer.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from toonlab.options import ToonCommand, run_config_command
from translation.cyclegan_trainer import CycleGANConfig, train


@click.command(name="cyclegan", cls=ToonCommand, aliases={"--iter": "--iters"})
@click.option("--photos", default=None, help="Domain A (photos): folder, zip, LMDB or synthetic:NAME.")
@click.option("--style", default=None, help="Domain B (cartoons): folder, zip, LMDB or synthetic:NAME.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/cyclegan", show_default=True)
@click.option("--size", type=click.IntRange(32), default=256, show_default=True, help="Random crop size (multiple of 4).")
@click.option("--load-size", type=click.IntRange(32), default=None, help="Resize side before cropping [size + size/8].")
@click.option("--batch", type=click.IntRange(1), default=1, show_default=True)
@click.option("--iters", type=click.IntRange(0), default=None, help="Iterations [--epochs × epoch].")
@click.option("--epochs", type=click.FloatRange(0), default=200.0, show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-4, show_default=True)
@click.option("--lambda-cyc", type=click.FloatRange(0), default=10.0, show_default=True)
@click.option("--lambda-id", type=click.FloatRange(0), default=0.5, show_default=True, help="Identity weight (× λ_cyc).")
@click.option("--pool", type=click.IntRange(0), default=50, show_default=True, help="Image pool size (0 = off).")
@click.option("--ngf", type=click.IntRange(1), default=64, show_default=True, help="Generator width (channels of its first layer).")
@click.option("--ndf", type=click.IntRange(1), default=64, show_default=True, help="Discriminator width.")
@click.option("--n-blocks", type=click.IntRange(1), default=9, show_default=True, help="Generator residual blocks.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True)
@click.option("--sample-every", type=click.IntRange(0), default=None, help="Iterations between sample grids [1 epoch].")
@click.option("--snapshot-every", type=click.IntRange(0), default=None, help="Iterations between checkpoints [1 epoch].")
@click.option("--keep", type=click.IntRange(0), default=5, show_default=True)
@click.option("--log-every", type=click.IntRange(1), default=10, show_default=True)
@click.option("--synthetic-length", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--tensorboard/--no-tensorboard", default=True, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the configuration and exit.")
def main(dry_run: bool, **opts: Any) -> None:
    """Train a CycleGAN photo ↔ cartoon translator (resumes by re-running)."""
    run_config_command(CycleGANConfig, train, dry_run, opts)


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("cyclegan")
