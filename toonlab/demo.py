"""`make demo`: the main job on the built-in default, offline, on CPU or GPU.

Today it renders a sample grid from the bundled source generator (a small StyleGAN2 trained by
toonlab on its synthetic `photo` faces) and writes ``demo/index.html``. Fine-tuning, projection
and editing join the page as their issues land.
"""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch

from stylegan2.checkpoint import load_generator
from stylegan2.generate import generate
from stylegan2.networks import Generator
from toonlab.errors import user_errors
from toonlab.images import make_grid, save_atomic, to_pil
from toonlab.runtime import bundled_generator, pick_device


def demo_generator(device: torch.device) -> tuple[Generator, str]:
    """The bundled generator, or — until one ships — a seeded, untrained narrow one (said so)."""
    path = bundled_generator()
    if path.exists():
        return load_generator(path, device=device), f"bundled generator {path.name}"
    torch.manual_seed(0)
    G = Generator(64, style_dim=64, n_mlp=4, channel_max=64, channel_base=1024).to(device).eval()
    return G, "UNTRAINED randomly initialised 64-px generator (no bundled generator found)"


def run_demo(outdir: Path, device: str = "auto", seeds: int = 16) -> Path:
    """Render the demo pictures and the HTML page; return the page's path."""
    t0 = time.time()
    dev = pick_device(device)
    G, what = demo_generator(dev)
    click.echo(f"demo: rendering {seeds} faces with the {what} on {dev}")
    images = [to_pil(img) for _, img in generate(G, list(range(seeds)), truncation=0.7, noise_mode="const")]
    grid = make_grid(images, cols=8).resize((8 * 128 + 18, 2 * 128 + 6)) if G.size < 128 else make_grid(images, cols=8)
    save_atomic(grid, outdir / "samples.png")
    sections = [("Samples from the source generator", "samples.png",
                 f"{html.escape(what)}, seeds 0–{seeds - 1}, truncation 0.7, constant noise.")]
    page = outdir / "index.html"
    body = "\n".join(
        f"<section><h2>{t}</h2><img src='{src}' alt='{t}'><p>{cap}</p></section>" for t, src, cap in sections
    )
    page.write_text(
        "<!doctype html><meta charset='utf-8'><title>toonlab demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "image-rendering:pixelated}</style>"
        f"<h1>toonlab demo</h1><p>Rendered in {time.time() - t0:.1f} s on {dev}.</p>{body}"
    )
    return page


@click.command()
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True)
@click.option("--device", default="auto", show_default=True)
def main(outdir: Path, device: str) -> None:
    """Run the demo and say which file to open."""
    with user_errors():
        page = run_demo(outdir, device)
    click.echo(f"demo ready: open {page.resolve()}")


if __name__ == "__main__":
    main()
