"""`make demo`: the model zoo on the built-in default, offline, on CPU or GPU.

The page shows whatever ``toonlab/assets/`` bundles (``toonlab.bundled``):

(a) samples from the bundled source generator (a small StyleGAN2 trained by toonlab on its
    synthetic `photo` faces);
(b) samples of the same seeds from each bundled cartoon generator (``cartoon_<domain>64.pt``);
(c) layer swapping between the source and each cartoon (rows: seeds; columns: swap level);
(d) a real photo (scikit-image's bundled `astronaut`) aligned with dlib, projected into the source
    generator, rendered through the source, each cartoon and the blends, and through each bundled
    photo → cartoon translator (the aligned photo and the source's render of it);
(e) a SeFa edit of the projected face on the source and on every cartoon;
(f) a short live FreezeSG + structure-loss fine-tune to the built-in `webtoon` domain, run now, to
    show the training loop runs — labelled as such: it is not a finished model.

With no bundled cartoon generator, (b)–(e) use the live fine-tune and say so; with no bundled
translator, (d) says none is bundled. Everything lands in ``demo/`` (``index.html`` + PNGs).
"""

from __future__ import annotations

import html
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from PIL import Image

from stylegan2.checkpoint import load_generator
from stylegan2.networks import Generator
from stylegan2.sampling import generate
from toonlab import bundled
from toonlab.atomic import save_image_atomic, write_text_atomic
from toonlab.errors import UserInputError, user_errors
from toonlab.images import make_grid, to_pil, to_tensor
from toonlab.options import ToonCommand
from toonlab.runtime import pick_device, resolve_precision

#: The truncation every sample grid uses (the one the docs' figures use).
PSI = 0.7
#: Seeds of the swap grids (rows): four faces keep each grid one screen high.
SWAP_SEEDS = 4


@dataclass
class Section:
    """One heading of the page: what the picture is, the picture (a file next to the page, or none), a caption."""

    title: str
    caption: str
    image: str | None = None


@dataclass
class Cartoon:
    """A cartoon generator the page shows: its short name, label, network and whether it is the live run."""

    name: str
    label: str
    G: Generator
    live: bool = False


def demo_generator(device: torch.device) -> tuple[Generator, str]:
    """The bundled source generator, or — until one ships — a seeded, untrained narrow one (said so)."""
    src = bundled.source()
    if src is not None:
        return load_generator(src.path, device=device), f"bundled generator {src.path.name} ({src.label})"
    torch.manual_seed(0)
    G = Generator(64, style_dim=64, n_mlp=4, channel_max=64, channel_base=1024).to(device).eval()
    return G, "UNTRAINED randomly initialised 64-px generator (no bundled generator found)"


def upscale(img: Image.Image, factor: int) -> Image.Image:
    return img.resize((img.width * factor, img.height * factor), resample=Image.Resampling.NEAREST)


def _save(img: Image.Image, G: Generator, path: Path, factor: int = 2) -> str:
    """Small generators' pictures are upscaled (nearest) so that a 64-px face is not a thumbnail."""
    save_image_atomic(upscale(img, factor) if G.size < 128 else img, path)
    return path.name


def _fits(A: Generator, B: Generator) -> bool:
    """Same layout and shapes: B was fine-tuned from A (else layer swapping and shared latents are meaningless)."""
    sa, sb = A.state_dict(), B.state_dict()
    return set(sa) == set(sb) and all(sa[k].shape == sb[k].shape for k in sa)


def run_demo(outdir: Path, device: str = "auto", seeds: int = 16, finetune_iters: int | None = None,
             project_steps: int | None = None) -> Path:
    """Render the demo pictures and the HTML page; return the page's path."""
    t0 = time.time()
    outdir = Path(outdir)
    dev = pick_device(device)
    G, what = demo_generator(dev)
    seed_list = list(range(seeds))
    click.echo(f"demo: (a) rendering {seeds} faces with the {what} on {dev}")
    grid = make_grid([to_pil(img) for _, img in generate(G, seed_list, truncation=PSI, noise_mode="const")], cols=8)
    sections = [Section("(a) The source generator: samples", f"{html.escape(what)}, seeds 0–{seeds - 1}, "
                        f"truncation {PSI}, constant noise.", _save(grid, G, outdir / "samples.png"))]
    src = bundled.source()
    if src is None:
        sections.append(Section("No bundled source generator",
                                f"{html.escape(str(bundled.folder() / bundled.SOURCE_NAME))} is missing, so the "
                                "cartoon generators, the swaps, the photo projection and the live fine-tune "
                                "(which all start from the source) are left out."))
        return write_page(outdir, sections, dev, t0)

    live_path, iters, live_s = live_finetune(src.path, outdir, dev, finetune_iters)
    B_live = load_generator(live_path, device=dev)
    live_label = (f"live: a {iters}-step fine-tune run now on your machine, to show the loop runs — "
                  "not a finished model")
    cartoons, notes = [], []
    for c in bundled.cartoons():
        B = load_generator(c.path, device=dev)
        if _fits(G, B):
            cartoons.append(Cartoon(c.name, f"{c.path.name}: {c.label}", B))
        else:
            notes.append(f"{c.path.name} was left out: its layout differs from the source's (not fine-tuned from it)")
    fallback = not cartoons
    if fallback:
        cartoons = [Cartoon("webtoon (live)", live_label, B_live, live=True)]
        notes.append("No cartoon generator is bundled (toonlab/assets/cartoon_<domain>64.pt): "
                     "these pictures use the live fine-tune of section (f).")
    click.echo(f"demo: (b, c) samples and layer swaps of {len(cartoons)} cartoon generator(s)"
               + (" — none bundled, using the live fine-tune" if fallback else ""))
    for note in notes:
        click.echo(f"demo: {note}")
    note_html = "".join(f" <strong>{html.escape(n)}</strong>" for n in notes)
    sections += cartoon_samples(G, cartoons, seed_list, outdir, note_html)
    sections += swap_sections(G, cartoons, outdir)
    sections += face_to_cartoon(G, cartoons, outdir, dev, project_steps, note_html)
    sections.append(live_section(G, B_live, live_label, live_path, iters, live_s, outdir, fallback))
    return write_page(outdir, sections, dev, t0)


def write_page(outdir: Path, sections: list[Section], dev: torch.device, t0: float) -> Path:
    """One self-contained HTML file; its pictures are the PNGs beside it."""
    parts = []
    for s in sections:
        img = f"<img src='{s.image}' alt='{html.escape(s.title)}'>" if s.image else ""
        parts.append(f"<section><h2>{html.escape(s.title)}</h2>{img}<p>{s.caption}</p></section>")
    page = outdir / "index.html"
    write_text_atomic(page,
        "<!doctype html><meta charset='utf-8'><title>toonlab demo</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%;"
        "image-rendering:pixelated}</style>"
        "<h1>toonlab demo: the model zoo</h1>"
        f"<p>Rendered in {time.time() - t0:.1f} s on {dev}. The bundled models live in toonlab/assets/; "
        "docs/SOURCE_MODEL.md says how each was made.</p>" + "\n".join(parts))
    return page


def live_finetune(source: Path, outdir: Path, dev: torch.device, iters: int | None) -> tuple[Path, int, float | None]:
    """Short FreezeSG + structure-loss fine-tune to synthetic webtoon faces; re-running resumes (instant).

    Returns the last checkpoint, the steps and the seconds it trained (None: an earlier run's was reused)."""
    from finetune.train import finetune, resolve_config

    iters = iters or (400 if dev.type == "cuda" else 60)
    cfg, note = resolve_config(source=str(source), target="webtoon", freeze=2, structure_loss=3, iters=iters,
                               out=str(outdir / "finetune"), batch=8, workers=1, device=str(dev),
                               sample_every=0, snapshot_every=0, ema_kimg=0.1)
    click.echo(f"demo: (f) live fine-tune, {iters} steps (FreezeSG 2 + structure loss 3); re-running resumes")
    # A finished run of the same length is resumed, not re-trained: the page says which it was.
    resumed = (Path(cfg.out) / "checkpoints" / f"{iters:06d}.pt").is_file()
    t = time.time()
    last = finetune(cfg, note)
    if last is None:  # only a non-zero rank returns None; the demo is one process
        raise UserInputError("the live fine-tune wrote no checkpoint")
    return Path(last), iters, None if resumed else time.time() - t


def cartoon_samples(G: Generator, cartoons: list[Cartoon], seeds: list[int], outdir: Path,
                    note: str) -> list[Section]:
    """(b) The same seeds through each cartoon generator (its own mapping: FreezeSG's two-network W+)."""
    out = []
    for c in cartoons:
        imgs = [to_pil(img) for _, img in generate(c.G, seeds, truncation=PSI, noise_mode="const", show_progress=False)]
        name = _save(make_grid(imgs, cols=8), G, outdir / f"cartoon_{_slug(c.name)}.png")
        out.append(Section(f"(b) Cartoon generator “{c.name}”: the same seeds", f"{html.escape(c.label)}. "
                           f"Seeds 0–{len(seeds) - 1} as in (a), truncation {PSI}, constant noise.{note}", name))
    return out


def swap_sections(G: Generator, cartoons: list[Cartoon], outdir: Path) -> list[Section]:
    """(c) Layer swapping between the source and each cartoon (stylegan2.blend, as finetune/swap.py)."""
    from stylegan2.blend import swap_grid

    blocks = list(range(1, G.n_blocks))
    out = []
    for c in cartoons:
        img = swap_grid(G, c.G, list(range(SWAP_SEEDS)), blocks, truncation=PSI)
        name = _save(img, G, outdir / f"swap_{_slug(c.name)}.png")
        out.append(Section(f"(c) Layer swapping: source × “{c.name}”",
                           f"Rows: seeds 0–{SWAP_SEEDS - 1} (the source's W, truncation {PSI}). Columns: the source, "
                           f"the cartoon ({html.escape(c.label)}), weight blends blend@k with blocks 1..k "
                           "from the source, and feature swaps swap@k running the source to block k. "
                           f"Low k keeps more of the cartoon; k = {G.n_blocks - 1} is nearly the source.", name))
    return out


def _blend_levels(G: Generator) -> tuple[int, ...]:
    # Blocks 1..k from the source: at 64 px (5 blocks) the face's layout lives up to block 3-4;
    # at 256 px and above, up to 2-3.
    return (2, 3) if G.size >= 256 else tuple(k for k in (G.n_blocks - 2, G.n_blocks - 1) if k >= 1)


def face_to_cartoon(G: Generator, cartoons: list[Cartoon], outdir: Path, dev: torch.device,
                    steps: int | None, note: str) -> list[Section]:
    """(d) Align the astronaut photo, project it, render it through every generator and translator; (e) SeFa."""
    from skimage import data

    from inversion.align import align_face, detect_faces
    from inversion.encoder import encode, load_encoder
    from inversion.project import LOSS_NAMES, ProjectConfig, build_perceptual, project, resolve_perceptual
    from inversion.sefa import edit_grid, factorize
    from stylegan2.blend import blend_generators
    from stylegan2.sampling import render

    # The bundled encoder was trained for the bundled source: its W+ starts the optimisation, which
    # then needs far fewer steps (docs/BENCHMARKS.md "Encoder": encoder + 61 steps reach plain 400).
    enc = bundled.encoder()
    steps = steps or (1000 if dev.type == "cuda" else (200 if enc else 400))
    photo = Image.fromarray(data.astronaut())
    faces = detect_faces(photo)
    aligned = align_face(photo, faces[0], 256)
    save_image_atomic(aligned, outdir / "aligned.png")
    # The projector's own default: LPIPS-VGG when its trunk is on disk, else pixel + MS-SSIM (offline).
    choice, missing = resolve_perceptual("auto")
    percept = build_perceptual(choice, None, dev)
    pnote = LOSS_NAMES[choice] + ("" if missing is None else
                                  " — offline fallback: torchvision's vgg16-397923af.pth is not in the torch hub "
                                  "cache here; with it LPIPS-VGG is used")
    click.echo(f"demo: (d) projecting the astronaut photo ({'encoder + ' if enc else ''}{steps} steps, "
               f"{LOSS_NAMES[choice]})")
    small = aligned.resize((G.size, G.size), Image.Resampling.LANCZOS)
    target = to_tensor(small)[None].to(dev)
    init = encode(load_encoder(enc.path, device=dev), G, target) if enc else None
    if enc:
        pnote = f"started from the bundled encoder's W+; {pnote}"
    # On CPU keep the noise maps fixed (half the time per step; at 64 px they add little).
    cfg = ProjectConfig(steps=steps, precision=resolve_precision("auto", dev),
                        mse=1.0 if choice == "random" else 0.0, optimize_noise=dev.type == "cuda")
    res = project(G, target, percept, cfg, init=init)
    projected = to_pil(res.image[0])

    levels = _blend_levels(G)
    tiles, rows = [], []
    for c in cartoons:
        row = [small, projected, to_pil(render(c.G, res.latent, res.noise)[0])]
        row += [to_pil(render(blend_generators(G, c.G, k), res.latent, res.noise)[0]) for k in levels]
        tiles += row
        rows.append(c.name)
    labels = ["photo", "projected", "cartoon"] + [f"blend@{k}" for k in levels]
    grid = make_grid(tiles, cols=len(labels), col_labels=labels, row_labels=rows, fit_labels=True)
    out = [Section("(d) Face to cartoon: the astronaut through the source and each cartoon generator",
                   f"scikit-image's astronaut photo, aligned with dlib (FFHQ crop, <a href='aligned.png'>256 px</a>), "
                   f"projected into the source generator's W+ ({steps} steps, {html.escape(pnote)}; "
                   f"{res.seconds:.1f} s), then rendered with the same latent through each cartoon generator (one row "
                   "each) and two layer-swapped blends (blend@k: blocks 1..k from the source). The bundled source is a "
                   "small generator trained only on synthetic faces, so the likeness is loose: with an FFHQ generator "
                   f"the same commands give a recognisable face.{note}",
                   _save(grid, G, outdir / "face_to_cartoon.png", 3))]
    out += translator_sections(aligned, projected, outdir, dev)

    click.echo("demo: (e) SeFa on the source and the cartoons")
    dirs, _ = factorize(G)
    gens = [("source", G)] + [(c.name, c.G) for c in cartoons]
    edit = edit_grid(gens, res.latent, res.noise, dirs[0].to(dev), [-6, -3, 0, 3, 6])
    out.append(Section("(e) Editing with SeFa: the same edit on the source and on each cartoon",
                       "The strongest closed-form direction of the source's style modulations, applied to the "
                       "projected face with degrees −6…+6: the same latent edit on the source (top row) and on "
                       f"each cartoon generator (one row each: {html.escape(', '.join(c.name for c in cartoons))})."
                       f"{note}", _save(edit, G, outdir / "sefa.png")))
    return out


def translator_sections(aligned: Image.Image, projected: Image.Image, outdir: Path,
                        dev: torch.device) -> list[Section]:
    """(d) Each bundled photo → cartoon translator on the aligned photo and on the source's render of it."""
    found = bundled.translators()
    if not found:
        click.echo("demo: (d) no translator is bundled")
        return [Section("(d) Photo → cartoon translator: not bundled",
                        f"No translator is bundled ({html.escape(bundled.DEFAULT_TRANSLATOR)} is not in "
                        "toonlab/assets/), so this row is empty. Any AnimeGAN/CartoonGAN generator runs with "
                        "<code>python translation/infer.py PHOTO --ckpt T.pt</code>.")]
    from translation.inference import Translator, translate_image
    from translation.models import load_generator as load_translator

    side = aligned.width
    photo_in = aligned
    render_in = projected
    out = []
    for t in found:
        click.echo(f"demo: (d) translating the photo and its render with {t.path.name}")
        T, meta = load_translator(t.path, device=dev)
        tr = Translator(T, device=dev)
        t_photo = Image.fromarray(translate_image(tr, photo_in))
        t_render = Image.fromarray(translate_image(tr, render_in))
        k = max(1, side // render_in.width)
        tiles = [photo_in, t_photo, upscale(render_in, k), upscale(t_render, k)]
        grid = make_grid(tiles, cols=4, col_labels=["aligned photo", "translated", "source render",
                                                    "render translated"], fit_labels=True)
        save_image_atomic(grid, outdir / f"translator_{_slug(t.name)}.png")
        out.append(Section(f"(d) Photo → cartoon translator “{t.name}”",
                           f"{html.escape(t.path.name)}: {html.escape(t.label)} ({html.escape(meta['model'])}). "
                           f"Applied to the aligned photo ({side} px) and to the source generator's render of the "
                           f"projected face ({render_in.width} px, shown ×{k}, nearest): the second road from photo "
                           "to cartoon, one forward pass and no latent.", f"translator_{_slug(t.name)}.png"))
    return out


def live_section(G: Generator, B: Generator, label: str, path: Path, iters: int, seconds: float | None,
                 outdir: Path, used_above: bool) -> Section:
    """(f) Source above live fine-tune for the same seeds: the loop ran here, just now."""
    seeds = list(range(8))
    src = [to_pil(i) for _, i in generate(G, seeds, truncation=PSI, noise_mode="const", show_progress=False)]
    tgt = [to_pil(i) for _, i in generate(B, seeds, truncation=PSI, noise_mode="const", show_progress=False)]
    grid = make_grid(src + tgt, cols=len(seeds), row_labels=["source", "live"])
    when = (f"{seconds:.1f} s here, just now" if seconds is not None else
            "resumed from the finished run of an earlier demo in the same folder; delete it to train again")
    used = (" Sections (b)–(e) use it because no cartoon generator is bundled." if used_above else
            " Sections (b)–(e) show the bundled cartoon generators instead.")
    return Section(f"(f) {label[0].upper()}{label[1:]}",
                   f"FreezeSG 2 + structure loss 3, batch 8, {iters} steps to the built-in synthetic webtoon faces "
                   f"({when}). Top: the source; "
                   f"bottom: the live run, seeds 0–7. Checkpoint: {html.escape(str(path))}. Expect rough cartoons."
                   + used, _save(grid, G, outdir / "live_finetune.png"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9-]+", "_", name).strip("_") or "model"


@click.command(name="demo", cls=ToonCommand)
@click.option("--outdir", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--finetune-iters", type=click.IntRange(1), default=None,
              help="Steps of the live fine-tune (default 60 on CPU, 400 on GPU).")
@click.option("--project-steps", type=click.IntRange(1), default=None,
              help="Projection steps (default 200 after the bundled encoder, else 400, on CPU; 1000 on GPU).")
def main(outdir: Path, device: str, finetune_iters: int | None, project_steps: int | None) -> None:
    """Run the demo and say which file to open."""
    with user_errors():
        page = run_demo(outdir, device, finetune_iters=finetune_iters, project_steps=project_steps)
    click.echo(f"demo ready: open {page.resolve()}")


if __name__ == "__main__":
    main()
