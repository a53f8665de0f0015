"""SeFa: closed-form semantic directions of a StyleGAN2 generator (Shen & Zhou, 2021).

    python inversion/sefa.py factorize --ckpt G.pt --out factors.pt
    python inversion/sefa.py apply --factors factors.pt --index 0 --degree 5 [--latent latent.pt] [--cartoon B.pt]

The style modulations of every style conv (not the ToRGBs, whose styles only tint the output)
are affine maps A_l: w -> s_l.  Stacking their weights into A, the directions that change the
styles most are the top eigenvectors of A^T A, i.e. A's right singular vectors.  An edit moves
w (or chosen W+ layers) by ``degree x direction``.  A cartoon generator fine-tuned from the source
shares its W space, so the same edit carries over to the cartoon.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from PIL import Image
from torch import Tensor

from stylegan2.checkpoint import load_generator
from stylegan2.latents import load_latent
from stylegan2.networks import Generator
from stylegan2.sampling import render
from toonlab.atomic import save_image_atomic, torch_save_atomic
from toonlab.checkpoint import file_hash, read_tagged
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.images import make_grid, to_pil
from toonlab.options import ToonGroup
from toonlab.runtime import bundled_generator, parse_seeds, pick_device

FACTORS_FORMAT = "toonlab-sefa/1"


def style_conv_modulations(G: Generator) -> list[Tensor]:
    """The effective modulation weights [in_ch, style_dim] of conv1 and every conv in ``G.convs``."""
    layers = [G.conv1, *G.convs]
    return [(m.conv.modulation.weight * m.conv.modulation.scale).detach().float() for m in layers]


def factorize(G: Generator, layers: Sequence[int] | None = None) -> tuple[Tensor, Tensor]:
    """Directions [k, style_dim] (unit, orthogonal, strongest first) and their eigenvalues [k].

    ``layers`` restricts the factorisation to some style convs (W+ indices 0..num_layers-1).
    """
    mods = style_conv_modulations(G)
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < len(mods)]
        if bad:
            raise UserInputError(f"layers {bad} out of range: this generator has style convs 0..{len(mods) - 1}")
        mods = [mods[i] for i in layers]
    A = torch.cat(mods, dim=0).double()  # [sum of in_ch, style_dim]
    eigvals, eigvecs = torch.linalg.eigh(A.T @ A)  # ascending
    order = torch.argsort(eigvals, descending=True)
    return eigvecs[:, order].T.float().contiguous(), eigvals[order].float()


def edit_latents(latent: Tensor, direction: Tensor, degrees: Sequence[float], layers: Sequence[int] | None = None) -> Tensor:
    """W+ latents [N, L, D] moved along ``direction`` by each degree → [N, len(degrees), L, D]."""
    lat = latent.unsqueeze(1).repeat(1, len(degrees), 1, 1)
    mask = torch.zeros(latent.shape[1], 1, dtype=latent.dtype, device=latent.device)
    mask[list(layers) if layers is not None else slice(None)] = 1
    deg = torch.tensor(list(degrees), dtype=latent.dtype, device=latent.device)
    return lat + deg[None, :, None, None] * mask * direction.to(latent)


def parse_layers(spec: str | None) -> list[int] | None:
    if not spec or spec == "all":
        return None
    try:
        return parse_seeds(spec)  # same "0-3,7" syntax as seeds
    except Exception:
        raise UserInputError(f"--layers takes W+ indices like 0-5 or 2,3; got {spec!r}") from None


def save_factors(path: str | os.PathLike, directions: Tensor, eigvals: Tensor, ckpt: str | os.PathLike,
                 layers: Sequence[int] | None) -> Path:
    return torch_save_atomic({"format": FACTORS_FORMAT, "directions": directions, "eigenvalues": eigvals,
                              "ckpt": str(ckpt), "ckpt_hash": file_hash(ckpt),
                              "layers": list(layers) if layers is not None else None}, path)


def load_factors(path: str | os.PathLike) -> dict:
    return read_tagged(path, FACTORS_FORMAT, "SeFa factors file", "write one with `sefa.py factorize`")


@torch.no_grad()
def edit_grid(generators: Sequence[tuple[str, Generator]], latent: Tensor, noise: Sequence[Tensor] | None,
              direction: Tensor, degrees: Sequence[float], layers: Sequence[int] | None = None) -> Image.Image:
    """Rows: each latent x each generator; columns: the degrees.  Labelled."""
    edits = edit_latents(latent, direction, degrees, layers)  # [N, K, L, D]
    n, k = edits.shape[:2]
    tiles, rows = [], []
    for i in range(n):
        for name, G in generators:
            nz = [t[i : i + 1].expand(k, -1, -1, -1) for t in noise] if noise is not None else None
            imgs = render(G, edits[i], nz, "const")
            tiles += [to_pil(im) for im in imgs]
            rows.append(name if n == 1 else f"{name} #{i}")
    return make_grid(tiles, cols=k, col_labels=[f"{d:+g}" for d in degrees], row_labels=rows)


@click.group(name="sefa", cls=ToonGroup)
def main() -> None:
    """SeFa: closed-form editing directions (factorize, then apply)."""


@main.command(name="factorize")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None, help="Generator (default: the bundled one).")
@click.option("--out", default="factors.pt", show_default=True, type=click.Path(dir_okay=False))
@click.option("--layers", default="all", show_default=True, help="Only these style convs (W+ indices), e.g. 0-5.")
def factorize_cmd(ckpt: str | None, out: str, layers: str) -> None:
    """Compute the directions and write them to --out."""
    with user_errors():
        ckpt = ckpt or str(bundled_generator())
        G = load_generator(ckpt)
        lay = parse_layers(layers)
        dirs, vals = factorize(G, lay)
        save_factors(out, dirs, vals, ckpt, lay)
    share = (vals[:5] / vals.sum() * 100).tolist()
    click.echo(f"wrote {out}: {dirs.shape[0]} directions; top 5 carry " + ", ".join(f"{s:.1f}%" for s in share))


@main.command(name="apply", aliases={"--steps": "--columns"})
@click.option("--factors", required=True, type=click.Path(dir_okay=False))
@click.option("--index", "indices", default="0", show_default=True, help="Direction(s), e.g. 0 or 0-4 (one grid each).")
@click.option("--degree", type=float, default=5.0, show_default=True, help="Largest step; the grid spans ±degree.")
@click.option("--columns", "steps", type=click.IntRange(2), default=5, show_default=True,
              help="Edit strengths per grid, from -degree to +degree.")
@click.option("--latent", type=click.Path(dir_okay=False), default=None,
              help="Edit a projected latent (inversion/project.py); default: random seeds.")
@click.option("--seeds", default="0-3", show_default=True, help="Seeds to edit when no --latent.")
@click.option("--truncation", type=float, default=0.7, show_default=True)
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Source generator (default: the one the factors were computed from).")
@click.option("--cartoon", "cartoons", multiple=True, type=click.Path(dir_okay=False),
              help="Also render the edit through these cartoon generators (rows side by side).")
@click.option("--layers", default=None, help="Apply only on these W+ layers (default: the factorised ones, or all).")
@click.option("--out", default="sefa", show_default=True, type=click.Path(file_okay=False))
@click.option("--device", default="auto", show_default=True)
def apply(factors: str, indices: str, degree: float, steps: int, latent: str | None, seeds: str, truncation: float,
          ckpt: str | None, cartoons: tuple[str, ...], layers: str | None, out: str, device: str) -> None:
    """Render edit grids: source and cartoon rows, degrees as columns."""
    with user_errors():
        dev = pick_device(device)
        fac = load_factors(factors)
        ckpt = ckpt or fac["ckpt"]
        if not Path(ckpt).is_file():
            raise ToonlabError(f"the factors' generator {ckpt} is missing; pass --ckpt")
        G = load_generator(ckpt, device=dev)
        gens = [("source", G)] + [(Path(c).stem, load_generator(c, device=dev)) for c in cartoons]
        noise = None
        if latent is not None:
            lat_file = load_latent(latent)
            lat, noise = lat_file["latent"].to(dev), lat_file.get("noise")
        else:
            seed_list = parse_seeds(seeds)
            z = torch.cat([torch.randn(1, G.style_dim, generator=torch.Generator().manual_seed(s)) for s in seed_list])
            if truncation != 1 and not G.w_avg_known:
                G.mean_latent(4096)
            lat = G.broadcast(G.mapping(z.to(dev), truncation=truncation))
        lay = parse_layers(layers) if layers is not None else fac.get("layers")
        degrees = torch.linspace(-degree, degree, steps).tolist()
        outdir = Path(out)
        for i in parse_seeds(indices):
            if i >= fac["directions"].shape[0]:
                raise ToonlabError(f"--index {i}: the factors hold {fac['directions'].shape[0]} directions")
            grid = edit_grid(gens, lat, noise, fac["directions"][i].to(dev), degrees, lay)
            path = save_image_atomic(grid, outdir / f"sefa_{i:02d}.png")
            click.echo(f"wrote {path}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("sefa")
