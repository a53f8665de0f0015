"""Render images from a StyleGAN2 checkpoint: one PNG per seed plus a grid.

    python stylegan2/generate.py --ckpt G.pt --seeds 0-15 --truncation 0.7 --outdir out/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator, Sequence

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from torch import Tensor

from stylegan2.checkpoint import load_generator
from stylegan2.networks import NOISE_MODES, Generator
from toonlab.errors import ToonlabError, user_errors
from toonlab.images import make_grid, save_atomic, to_pil
from toonlab.runtime import autocast, bundled_generator, enable_tf32, parse_seeds, pick_device, progress


def seed_inputs(G: Generator, seed: int) -> tuple[Tensor, list[Tensor]]:
    """The z and random noise maps that ``seed`` stands for (CPU generator: same on every device)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(1, G.style_dim, generator=g)
    noise = [torch.randn(1, 1, r, r, generator=g) for r in G.noise_shapes()]
    return z, noise


@torch.no_grad()
def generate(
    G: Generator,
    seeds: Sequence[int],
    truncation: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    precision: str = "fp32",
    show_progress: bool = True,
) -> Iterator[tuple[int, Tensor]]:
    """Yield ``(seed, image [3,H,W] in [-1,1])`` for each seed, rendered in batches."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}")
    device = G.w_avg.device
    bar = progress(total=len(seeds), desc="generate", unit="img", disable=not show_progress)
    for start in range(0, len(seeds), batch_size):
        chunk = list(seeds[start : start + batch_size])
        inputs = [seed_inputs(G, s) for s in chunk]
        z = torch.cat([i[0] for i in inputs]).to(device)
        noise = None
        if noise_mode == "random":
            noise = [torch.cat([i[1][k] for i in inputs]).to(device) for k in range(G.num_layers)]
        with autocast(device, precision):
            w = G.mapping(z, truncation=truncation)
            img = G.synthesis(w, noise=noise, noise_mode=noise_mode).image
        for s, im in zip(chunk, img.float()):
            yield s, im
        bar.update(len(chunk))
    bar.close()


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
    if dev.type == "cuda":
        enable_tf32()
    G = load_generator(ckpt, device=dev)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    images = []
    for seed, img in generate(G, seeds, truncation, noise_mode, batch_size, precision):
        pil = to_pil(img)
        save_atomic(pil, outdir / f"seed{seed:04d}.png")
        images.append(pil)
    grid = save_atomic(make_grid(images, cols=grid_cols), outdir / "grid.png")
    settings = dict(ckpt=str(ckpt), seeds=list(seeds), truncation=truncation, noise_mode=noise_mode,
                    precision=precision, device=str(dev), size=G.size)
    (outdir / "generate.json").write_text(json.dumps(settings, indent=2))
    return grid


def run_latent(ckpt: str | Path, latent: str | Path, outdir: str | Path, device: str = "auto",
               precision: str = "fp32", noise_mode: str | None = None) -> Path:
    """Render a projected latent file (inversion/project.py) through ``ckpt``; return the image path.

    The file's optimised noise maps are used unless ``noise_mode`` is given.
    """
    from stylegan2.latents import load_latent, render

    dev = pick_device(device)
    G = load_generator(ckpt, device=dev)
    lat = load_latent(latent)
    noise = lat.get("noise") if noise_mode is None else None
    img = render(G, lat["latent"], noise, noise_mode or "const", precision)
    return save_atomic(to_pil(img[0]), Path(outdir) / f"{Path(latent).stem}.png")


@click.command(name="generate")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Generator: community/toonlab .pt, safetensors, or NVIDIA .pkl (read as data). "
                   "Default: the bundled 64-px source generator.")
@click.option("--seeds", default="0-15", show_default=True, help="Seeds, e.g. 0-15 or 1,4,9-12.")
@click.option("--truncation", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation ψ toward the mean w (1 = none; ψ > 1 extrapolates, as NVIDIA's code does).")
@click.option("--noise-mode", type=click.Choice(NOISE_MODES), default="const", show_default=True,
              help="random: per-seed noise; const: the checkpoint's stored noise; none: no noise.")
@click.option("--outdir", type=click.Path(file_okay=False), default="out", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16 autocast (meant for GPUs).")
@click.option("--batch", "batch_size", type=click.IntRange(1), default=16, show_default=True)
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
    main()
