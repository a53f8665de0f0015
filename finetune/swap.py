"""Layer swapping between two generators of the same shape.

    python finetune/swap.py --source A.pt --cartoon B.pt --swap 2 [--blend-width 0.5] --out blended.pt

Two forms (REFERENCE.md §4):
- weight blending (Toonify): per block b a factor y(b) — a hard switch (y = 0 for b ≤ swap, 1
  after) or a logistic ``y = 1/(1+exp(-(b − swap − ½)/width))`` — and every weight becomes
  ``(1−y)·A + y·B``; the mapping network comes from A, the low-resolution model. The result is an
  ordinary checkpoint.
- feature swap at inference: run A up to block k and finish with B's remaining blocks.
With the same W+ latent and noise, a hard blend at k renders exactly the feature swap at k.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.blend import SKIPS, blend_generators, swap_grid
from stylegan2.checkpoint import load_generator, snapshot
from toonlab.atomic import save_image_atomic, torch_save_atomic
from toonlab.checkpoint import CheckpointError
from toonlab.errors import user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import parse_seeds


@click.command(name="swap", cls=ToonCommand, aliases={"--target": "--cartoon"})
@click.option("--source", "source", type=click.Path(dir_okay=False), required=True,
              help="Low-resolution model A (e.g. the face generator).")
@click.option("--cartoon", "target", type=click.Path(dir_okay=False), required=True,
              help="High-resolution model B (e.g. the fine-tuned cartoon generator).")
@click.option("--swap", type=click.IntRange(1), required=True, help="Last block taken from A.")
@click.option("--blend-width", type=click.FloatRange(0), default=None,
              help="Logistic blend width in blocks (default: hard switch).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Blended checkpoint to write.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None, help="Also write a comparison grid here.")
@click.option("--seeds", default="0-3", show_default=True, help="Seeds (rows) of the grid.")
@click.option("--skip", type=click.Choice(SKIPS), default="source", show_default=True,
              help="Skip-RGB image of the swapped blocks in the grid's feature swaps: source (Toonify; what the "
                   "blended checkpoint holds) or target (Cartoon-StyleGAN; its swap_layer_num k = --swap k+1).")
def main(source: str, target: str, swap: int, blend_width: float | None, out: str, grid: str | None, seeds: str,
         skip: str) -> None:
    """Blend two generators (layer swapping) into a new checkpoint."""
    with user_errors():
        A = load_generator(source)
        B = load_generator(target)
        if A.config["channels"] != B.config["channels"] or A.size != B.size:
            raise CheckpointError(f"{source} and {target} have different shapes; layer swapping needs the same architecture")
        if swap > A.n_blocks:
            raise click.BadParameter(f"this {A.size}-px generator has blocks 1..{A.n_blocks}", param_hint="--swap")
        G = blend_generators(A, B, swap, blend_width)
        meta = {"swap": {"source": source, "cartoon": target, "swap": swap, "blend_width": blend_width}}
        torch_save_atomic(snapshot(G, toonlab=meta), out)
        click.echo(f"wrote {out} (blocks 1..{swap} from {source}, the rest from {target}"
                   f"{'' if not blend_width else f', logistic width {blend_width}'})")
        if grid:
            img = swap_grid(A, B, parse_seeds(seeds), list(range(1, A.n_blocks)), blend_width, skip=skip)
            save_image_atomic(img, grid)
            click.echo(f"wrote {grid}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("swap")
