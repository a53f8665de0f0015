"""Truncation sweep: rows of seeds, columns of ψ, optionally through fine-tuned generators too.

    python stylegan2/truncation.py --ckpt ffhq.pkl --seeds 0-5 --truncation 0,0.25,0.5,0.75,1 --out sweep.png

Each cell renders w' = w̄ + ψ (w − w̄), with w̄ the source checkpoint's mean w (NVIDIA's
``w_avg`` / the community ``latent_avg``; estimated from 4096 samples when the file has none).
ψ = 0 is the mean face, ψ = 1 the untruncated sample; ψ < 0 gives the "anti-face".
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.figures import truncation_sweep_figure
from stylegan2.mix import panel_options, resolve_panels
from toonlab.atomic import save_image_atomic
from toonlab.errors import UserInputError, user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import parse_seeds


def parse_floats(spec: str, what: str = "--truncation") -> list[float]:
    """'0,0.5,1' → [0.0, 0.5, 1.0] (one-line error otherwise)."""
    try:
        values = [float(s) for s in spec.split(",") if s.strip()]
    except ValueError:
        raise UserInputError(f"{what} {spec!r}: use comma-separated numbers like 0,0.5,0.7,1") from None
    if not values:
        raise UserInputError(f"{what} {spec!r}: no values")
    return values


@click.command(name="truncation", cls=ToonCommand)
@panel_options
@click.option("--seeds", default="0-5", show_default=True, help="Seeds (rows), e.g. 0-5 or 1,4,9.")
@click.option("--truncation", default="-0.5,0,0.25,0.5,0.75,1", show_default=True,
              help="Truncation ψ values (columns), comma-separated.")
@click.option("--out", type=click.Path(dir_okay=False), default="truncation.png", show_default=True)
def main(ckpt, cartoons, noise_mode, size, device, precision, batch_size, seeds, truncation, out) -> None:
    """Truncation sweep grid: seeds × ψ."""
    with user_errors():
        seed_list, psis = parse_seeds(seeds), parse_floats(truncation)
        panels = resolve_panels(ckpt, cartoons, device)
        img = truncation_sweep_figure(panels, seed_list, psis, noise_mode, size, batch_size, precision)
        path = save_image_atomic(img, out)
    click.echo(f"wrote {path} ({len(seed_list)} seeds × {len(psis)} ψ values, {len(panels)} generator(s))")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("truncation")
