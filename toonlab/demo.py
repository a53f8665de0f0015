"""`make demo`: the main job on the built-in default, offline, on CPU or GPU.

1. samples from the bundled source generator (a small StyleGAN2 trained by toonlab on its
   synthetic `photo` faces);
2. a short FreezeSG + structure-loss fine-tune of it to the built-in `webtoon` domain;
3. layer swapping between the two (weight blends and feature swaps);
4. face to cartoon: a real photo (scikit-image's bundled `astronaut`) aligned with dlib, projected
   into the source generator, rendered through the fine-tuned and layer-swapped generators;
5. a SeFa edit of the projected face, on the source and on the cartoon side by side;
and ``demo/index.html`` showing all of it.
"""

from __future__ import annotations

import html
import sys
import time
from pathlib import Path

from toonlab.images import to_tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from PIL import Image

from stylegan2.checkpoint import load_generator
from stylegan2.networks import Generator
from stylegan2.sampling import generate
from toonlab.atomic import save_image_atomic, write_text_atomic
from toonlab.errors import user_errors
from toonlab.images import make_grid, to_pil
from toonlab.runtime import bundled_generator, pick_device, resolve_precision


def demo_generator(device: torch.device) -> tuple[Generator, str]:
    """The bundled generator, or — until one ships — a seeded, untrained narrow one (said so)."""
    path = bundled_generator()
    if path.exists():
        return load_generator(path, device=device), f"bundled generator {path.name}"
    torch.manual_seed(0)
    G = Generator(64, style_dim=64, n_mlp=4, channel_max=64, channel_base=1024).to(device).eval()
    return G, "UNTRAINED randomly initialised 64-px generator (no bundled generator found)"


def upscale(img, factor: int):
    return img.resize((img.width * factor, img.height * factor), resample=0)


def run_demo(outdir: Path, device: str = "auto", seeds: int = 16, finetune_iters: int | None = None,
             project_steps: int | None = None) -> Path:
    """Render the demo pictures and the HTML page; return the page's path."""
    t0 = time.time()
    dev = pick_device(device)
    G, what = demo_generator(dev)
    click.echo(f"demo: rendering {seeds} faces with the {what} on {dev}")
    images = [to_pil(img) for _, img in generate(G, list(range(seeds)), truncation=0.7, noise_mode="const")]
    grid = make_grid(images, cols=8)
    save_image_atomic(upscale(grid, 2) if G.size < 128 else grid, outdir / "samples.png")
    sections = [("Samples from the source generator", "samples.png",
                 f"{html.escape(what)}, seeds 0–{seeds - 1}, truncation 0.7, constant noise.")]
    source = bundled_generator()
    if source.exists():
        swap_sections, cartoon = finetune_and_swap(G, source, outdir, dev, finetune_iters)
        sections += swap_sections
        sections += face_to_cartoon(G, cartoon, outdir, dev, project_steps)
    page = outdir / "index.html"
    body = "\n".join(
        f"<section><h2>{t}</h2><img src='{src}' alt='{t}'><p>{cap}</p></section>" for t, src, cap in sections
    )
    write_text_atomic(page,
        "<!doctype html><meta charset='utf-8'><title>toonlab demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "image-rendering:pixelated}</style>"
        f"<h1>toonlab demo</h1><p>Rendered in {time.time() - t0:.1f} s on {dev}.</p>{body}"
    )
    return page


def finetune_and_swap(A: Generator, source: Path, outdir: Path, dev: torch.device, iters: int | None) -> tuple[list[tuple[str, str, str]], Path]:
    """Short FreezeSG + structure-loss fine-tune to synthetic webtoon faces, then layer swapping."""
    from finetune.train import finetune, resolve_config
    from stylegan2.blend import swap_grid

    iters = iters or (400 if dev.type == "cuda" else 60)
    cfg, note = resolve_config(source=str(source), target="webtoon", freeze=2, structure_loss=3, iters=iters,
                               out=str(outdir / "finetune"), batch=8, workers=1, device=str(dev),
                               sample_every=0, snapshot_every=0, ema_kimg=0.1)
    click.echo(f"demo: fine-tuning for {iters} steps (FreezeSG 2 + structure loss 3); re-running resumes")
    last = finetune(cfg, note)
    B = load_generator(last, device=dev)
    img = swap_grid(A, B, list(range(4)), list(range(1, A.n_blocks)))
    save_image_atomic(upscale(img, 2) if A.size < 128 else img, outdir / "swap.png")
    return [
        ("Fine-tuned to the built-in webtoon faces, with layer swapping", "swap.png",
         f"Columns: source, fine-tuned target ({iters} steps of FreezeSG 2 + structure loss 3, batch 8), "
         "weight blends with blocks 1..k from the source, and feature swaps running the source to block k. "
         f"Checkpoint: {html.escape(str(last))}. A demo-length run: expect rough cartoons."),
    ], Path(last)


def face_to_cartoon(G: Generator, cartoon: Path, outdir: Path, dev: torch.device,
                    steps: int | None) -> list[tuple[str, str, str]]:
    """Align the astronaut photo, project it, render it as a cartoon, and edit it with SeFa."""
    from skimage import data

    from inversion.align import align_face, detect_faces
    from inversion.encoder import bundled_encoder_path, encode, load_encoder
    from inversion.project import LOSS_NAMES, ProjectConfig, build_perceptual, project, resolve_perceptual
    from inversion.sefa import edit_grid, factorize
    from stylegan2.blend import blend_generators
    from stylegan2.sampling import render

    # The bundled encoder was trained for the bundled source: its W+ starts the optimisation, which
    # then needs far fewer steps (docs/BENCHMARKS.md "Encoder": encoder + 61 steps reach plain 400).
    use_encoder = bundled_generator().exists() and bundled_encoder_path().exists()
    steps = steps or (1000 if dev.type == "cuda" else (200 if use_encoder else 400))
    photo = Image.fromarray(data.astronaut())
    faces = detect_faces(photo)
    B = load_generator(cartoon, device=dev)
    aligned = align_face(photo, faces[0], 256)
    save_image_atomic(aligned, outdir / "aligned.png")
    # The projector's own default: LPIPS-VGG when its trunk is on disk, else pixel + MS-SSIM (offline).
    choice, missing = resolve_perceptual("auto")
    percept = build_perceptual(choice, None, dev)
    pnote = LOSS_NAMES[choice] + ("" if missing is None else
                                  " — offline fallback: torchvision's vgg16-397923af.pth is not in the torch hub "
                                  "cache here; with it LPIPS-VGG is used")
    click.echo(f"demo: projecting the astronaut photo ({'encoder + ' if use_encoder else ''}{steps} steps, "
               f"{LOSS_NAMES[choice]})")
    target = to_tensor(aligned.resize((G.size, G.size), Image.Resampling.LANCZOS))[None].to(dev)
    init = encode(load_encoder(None, device=dev), G, target) if use_encoder else None
    if use_encoder:
        pnote = f"started from the bundled encoder's W+; {pnote}"
    # On CPU keep the noise maps fixed (half the time per step; at 64 px they add little).
    cfg = ProjectConfig(steps=steps, precision=resolve_precision("auto", dev),
                        mse=1.0 if choice == "random" else 0.0, optimize_noise=dev.type == "cuda")
    res = project(G, target, percept, cfg, init=init)
    # Blocks 1..k from the source: at 64 px (5 blocks) the face's layout lives up to block 3-4.
    blends = [(f"blend@{k}", blend_generators(G, B, k)) for k in ((2, 3) if G.size >= 256 else (3, 4))]
    tiles = [aligned.resize((G.size, G.size), Image.Resampling.LANCZOS), to_pil(res.image[0]),
             to_pil(render(B, res.latent, res.noise)[0])] + [to_pil(render(X, res.latent, res.noise)[0]) for _, X in blends]
    labels = ["photo", "projected", "cartoon"] + [n for n, _ in blends]
    grid = make_grid(tiles, cols=len(tiles), col_labels=labels, fit_labels=True)
    save_image_atomic(upscale(grid, 3) if G.size < 128 else grid, outdir / "face_to_cartoon.png")
    dirs, _ = factorize(G)
    edit = edit_grid([("source", G), ("cartoon", B)], res.latent, res.noise, dirs[0].to(dev), [-6, -3, 0, 3, 6])
    save_image_atomic(upscale(edit, 2) if G.size < 128 else edit, outdir / "sefa.png")
    return [
        ("Face to cartoon", "face_to_cartoon.png",
         f"scikit-image's astronaut photo, aligned with dlib (FFHQ crop, <a href='aligned.png'>256 px</a>), "
         f"projected into the source generator's W+ ({steps} steps, {html.escape(pnote)}; "
         f"{res.seconds:.1f} s), then rendered through the fine-tuned generator and two layer-swapped blends (blend@k: blocks 1..k from the source). "
         "The bundled source is a small generator trained only on synthetic faces, so the likeness is loose: "
         "with an FFHQ generator the same command gives a recognisable face."),
        ("Editing with SeFa", "sefa.png",
         "The strongest closed-form direction of the source's style modulations, applied to the projected face "
         "with degrees −6…+6: the same latent edit on the source (top) and the cartoon (bottom)."),
    ]


@click.command()
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--finetune-iters", type=click.IntRange(1), default=None,
              help="Fine-tuning steps (default 60 on CPU, 400 on GPU).")
@click.option("--project-steps", type=click.IntRange(1), default=None,
              help="Projection steps (default 400 on CPU, 1000 on GPU).")
def main(outdir: Path, device: str, finetune_iters: int | None, project_steps: int | None) -> None:
    """Run the demo and say which file to open."""
    with user_errors():
        page = run_demo(outdir, device, finetune_iters=finetune_iters, project_steps=project_steps)
    click.echo(f"demo ready: open {page.resolve()}")


if __name__ == "__main__":
    main()
