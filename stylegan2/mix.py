"""Style-mixing figure: row seeds × column seeds, chosen layers taken from the columns.

    python stylegan2/mix.py --ckpt ffhq.pkl --rows 85,100,75 --cols 55,821,1789 --styles coarse --out mix.png
    python stylegan2/mix.py --ckpt face.pt --cartoon toon.pt --styles 0-3 --truncation 0.7

As NVIDIA's style_mixing.py: the top row shows the column seeds, the left column the row seeds,
and cell (r, c) renders row r's W+ latent with the ``--styles`` entries replaced by column c's.
``--styles`` takes a preset — coarse (4–8 px: pose, face shape), middle (16–32 px: features),
fine (64 px and up: colours, texture) — or indices like 0-3 or 0,2,6-7. With ``--cartoon``
(repeatable) the same latents are rendered through each fine-tuned generator, side by side.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.figures import load_panels, style_mixing_figure
from stylegan2.networks import NOISE_MODES
from toonlab.atomic import save_image_atomic
from toonlab.errors import ToonlabError, user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import bundled_generator, enable_tf32, parse_seeds, pick_device


def panel_options(f: Callable) -> Callable:
    """Options shared by the figure/video commands (one vocabulary)."""
    opts = [
        click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
                     help="Source generator: toonlab/community .pt, safetensors or NVIDIA .pkl. "
                          "Default: the bundled 64-px generator."),
        click.option("--cartoon", "cartoons", multiple=True, type=click.Path(dir_okay=False),
                     help="Generator(s) fine-tuned from --ckpt (or layer-swapped blends), rendered beside it; "
                          "repeat or comma-separate."),
        click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True,
                     help="const: each checkpoint's stored noise; random: seeded per image, same in every panel."),
        click.option("--size", type=click.IntRange(8), default=None, help="Tile size in px (default: the generator's)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True),
        click.option("--batch", "batch_size", type=click.IntRange(1), default=8, show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def resolve_panels(ckpt: str | None, cartoons: tuple[str, ...], device: str):
    """--ckpt (or the bundled generator) and the --cartoon list → loaded panels on the device."""
    dev = pick_device(device)
    if dev.type == "cuda":
        enable_tf32()
    if ckpt is None:
        ckpt = bundled_generator()
        if not ckpt.exists():
            raise ToonlabError(f"no --ckpt given and the bundled generator is missing at {ckpt}")
    toons = [c for item in cartoons for c in item.split(",") if c]
    return load_panels(ckpt, toons, dev)


@click.command(name="mix", cls=ToonCommand)
@panel_options
@click.option("--rows", default="0-3", show_default=True, help="Row seeds (their latents are the base).")
@click.option("--cols", default="10-14", show_default=True, help="Column seeds (they give the --styles layers).")
@click.option("--styles", default="coarse", show_default=True,
              help="Layers taken from the columns: coarse, middle, fine, or W+ indices like 0-3 or 0,2,6-7.")
@click.option("--truncation", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation ψ toward the source's mean w (1 = none).")
@click.option("--out", type=click.Path(dir_okay=False), default="mix.png", show_default=True)
def main(ckpt, cartoons, noise_mode, size, device, precision, batch_size, rows, cols, styles, truncation, out) -> None:
    """Style-mixing figure (NVIDIA's style_mixing.py), optionally through fine-tuned generators too."""
    with user_errors():
        row_seeds, col_seeds = parse_seeds(rows), parse_seeds(cols)
        panels = resolve_panels(ckpt, cartoons, device)
        img = style_mixing_figure(panels, row_seeds, col_seeds, styles, truncation, noise_mode, size, batch_size,
                                  precision)
        path = save_image_atomic(img, out)
    click.echo(f"wrote {path} ({len(row_seeds)}×{len(col_seeds)} mixes, {len(panels)} generator(s))")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("mix")
