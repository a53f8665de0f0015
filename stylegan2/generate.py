"""Render images from a StyleGAN2 checkpoint: one PNG per seed plus a grid.

    python stylegan2/generate.py --ckpt G.pt --seeds 0-15 --truncation 0.7 --out out/
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.checkpoint import load_generator
from stylegan2.latents import load_latent
from stylegan2.networks import NOISE_MODES
from stylegan2.sampling import generate, render
from toonlab.atomic import save_image_atomic, write_json_atomic
from toonlab.errors import ToonlabError, user_errors
from toonlab.images import make_grid, to_pil
from toonlab.options import ToonCommand
from toonlab.runtime import bundled_generator, enable_tf32, parse_seeds, pick_device, resolve_precision


def run_generate(
    ckpt: str | Path,
    seeds: Sequence[int],
    outdir: str | Path,
    truncation: float = 1.0,
    noise_mode: str = "const",
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int = 16,
    grid_cols: int | None = None,
) -> Path:
    """Load ``ckpt``, write ``seedNNNN.png`` per seed and ``grid.png`` into ``outdir``; return the grid path."""
    dev = pick_device(device)
    precision = resolve_precision(precision, dev)
    if dev.type == "cuda":
        enable_tf32()
    G = load_generator(ckpt, device=dev)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    images = []
    for seed, img in generate(G, seeds, truncation, noise_mode, batch_size, precision):
        pil = to_pil(img)
        save_image_atomic(pil, outdir / f"seed{seed:04d}.png")
        images.append(pil)
    grid = save_image_atomic(make_grid(images, cols=grid_cols), outdir / "grid.png")
    settings = dict(ckpt=str(ckpt), seeds=list(seeds), truncation=truncation, noise_mode=noise_mode,
                    precision=precision, device=str(dev), size=G.size)
    write_json_atomic(outdir / "generate.json", settings)
    return grid


def run_latent(ckpt: str | Path, latent: str | Path, outdir: str | Path, device: str = "auto",
               precision: str = "fp32", noise_mode: str | None = None) -> Path:
    """Render a projected latent file (inversion/project.py) through ``ckpt``; return the image path.

    The file's optimised noise maps are used unless ``noise_mode`` is given.
    """
    dev = pick_device(device)
    precision = resolve_precision(precision, dev)
    G = load_generator(ckpt, device=dev)
    lat = load_latent(latent)
    noise = lat.get("noise") if noise_mode is None else None
    img = render(G, lat["latent"], noise, noise_mode or "const", precision)
    return save_image_atomic(to_pil(img[0]), Path(outdir) / f"{Path(latent).stem}.png")


@click.command(name="generate", cls=ToonCommand, aliases={"--outdir": "--out"})
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Generator: community/toonlab .pt, safetensors, or NVIDIA .pkl (read as data). "
                   "Default: the bundled 64-px source generator.")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,4,9-12.")
@click.option("--truncation", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation ψ toward the mean w (1 = none; ψ > 1 extrapolates, as NVIDIA's code does).")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True,
              help="random: per-seed noise; const: the checkpoint's stored noise; none: no noise.")
@click.option("--out", "outdir", type=click.Path(file_okay=False), default="out", show_default=True,
              help="Output folder: seedNNNN.png, grid.png, generate.json.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16 autocast (meant for GPUs); auto = bf16 on GPUs, fp32 on CPUs.")
@click.option("--batch", "batch_size", type=click.IntRange(1), default=16, show_default=True, help="Images per forward pass.")
@click.option("--grid-cols", type=click.IntRange(1), default=None, help="Columns of grid.png (default: square).")
@click.option("--latent", type=click.Path(dir_okay=False), default=None,
              help="Render a projected latent.pt (inversion/project.py) with its optimised noise instead of seeds.")
def main(ckpt, seeds, truncation, noise_mode, outdir, device, precision, batch_size, grid_cols, latent) -> None:
    """Render one PNG per seed plus grid.png from a StyleGAN2 generator."""
    with user_errors():
        if latent is not None:
            ckpt = ckpt or bundled_generator()
            source = click.get_current_context().get_parameter_source("noise_mode")
            explicit = noise_mode if source == click.core.ParameterSource.COMMANDLINE else None
            path = run_latent(ckpt, latent, outdir, device, precision, explicit)
            click.echo(f"wrote {path}")
            return
        seed_list = parse_seeds(seeds)
        if ckpt is None:
            ckpt = bundled_generator()
            if not ckpt.exists():
                raise ToonlabError(f"no --ckpt given and the bundled generator is missing at {ckpt}")
        grid = run_generate(ckpt, seed_list, outdir, truncation, noise_mode, device, precision, batch_size, grid_cols)
    click.echo(f"wrote {len(seed_list)} images and {grid}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("generate")
