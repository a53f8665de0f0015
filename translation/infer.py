"""Turn photos, folders and videos into cartoons with a trained translator (AnimeGAN v1/v2, CartoonGAN).

    python translation/infer.py photo.jpg --out out/          # the bundled photo→webtoon translator
    python translation/infer.py photos/ clip.mp4 --ckpt paprika.pt --out out/
    python translation/infer.py big.jpg --ckpt G.pt --out out/ --retain-color --max-side 2048
    python translation/infer.py --ckpt G.pt --export-onnx G.onnx
    python translation/infer.py --ckpt runs/t/checkpoints/002500.pt --export-pt G.pt   # weights only, fp16

Without ``--ckpt`` the bundled translator is used (``toonlab.bundled.translator()``:
``toonlab/assets/animegan2_webtoon.pt`` when it is there, else the first one bundled — today
``cyclegan_webtoon.pt``; docs/SOURCE_MODEL.md says how each was made); when none is bundled the
command says so in one line (exit 2). ``--export-pt`` writes that kind of file from a training
checkpoint: one generator (``g_ema`` when the run kept one), fp16 weights, and the metadata its label
is made from.

Images keep their size. Generators that accept any size (AnimeGAN v1, and v2 / the port layout
with its default ``align_corners=True`` decoder — it resizes to the encoder's recorded sizes) run
at the input's own size, so a port file gives the port's image at every size; the others
(CartoonGAN, CycleGAN, v2 with ``align_corners=False``: transposed convs or ×2 resizes need sides
divisible by 4; unknown modules: 32) get each side reflect-padded up to their multiple and cropped
back. Padding changes the global statistics of normalisation layers, which is why it is not done
where it is not needed. Sides under 32 px are padded to 32 for every model. Images larger than
``--max-side`` are cut into overlapping tiles whose seams are
blended with a cosine ramp, so memory stays bounded. Videos keep fps, frame count and audio.
Unreadable inputs are skipped and listed at the end; the exit code is 2 only when nothing could
be processed. Every output is written atomically, under the input's relative path.

The fast path (``Translator``) keeps the model in half precision on GPUs (fp16 or bf16 weights,
not autocast: autocast would run every GroupNorm in fp32 and cast around it), in channels-last
layout, with GroupNorm(1)+LeakyReLU and reflection padding swapped for fused, memory-light
versions (at 1080p the v2 generator is bound by memory traffic, not by its convolutions), frames
uploaded as uint8 through pinned memory and the next batch queued on the GPU while the previous
one is copied back; decoding and encoding of video run in their own threads. H100, v2, 1080p,
batch 1: 22 ms per frame in fp16 (port-style eager fp32: 52 ms), 43 fps end to end on video.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from torch import nn

from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.images import MAX_PIXELS, parse_pixels
from toonlab.lock import FolderLock
from toonlab.options import ToonCommand
from toonlab import bundled
from toonlab.runtime import pick_device
from translation.batch import TranslateOptions, collect_jobs, translate_paths
from translation.inference import PRECISIONS, Translator, round_up
from translation.models import export_generator
from translation.onnx_export import export_onnx


def load_model(ckpt: str | os.PathLike, device: str | torch.device = "cpu", which: str = "auto") -> tuple[nn.Module, dict]:
    """Load a generator: our checkpoints or the AnimeGANv2 port's released state dicts.

    ``which``: auto, g or g_ema (training checkpoints). Returns ``(G, metadata)``; bad files raise
    a one-line UserInputError.
    """
    try:
        from translation.models import load_generator
    except ImportError as e:
        raise UserInputError(f"translation.models is not available ({e})") from None
    return load_generator(ckpt, device=device, which=which)


def resolve_ckpt(ckpt: str | os.PathLike | None) -> tuple[Path, bundled.Bundled | None]:
    """``--ckpt`` as given, or the bundled translator (``toonlab.bundled.translator()``: the one
    registry of bundled files) with its entry; none bundled is a one-line error naming the file
    and the folder looked in."""
    if ckpt is not None:
        return Path(ckpt), None
    found = bundled.translator()
    if found is None:
        raise ToonlabError(f"no --ckpt given and no bundled translator: {bundled.DEFAULT_TRANSLATOR} is not in "
                           f"{bundled.folder()}; pass --ckpt G.pt (a toonlab translation checkpoint or an "
                           "AnimeGANv2 port .pt)")
    return found.path, found


def _meta_items(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in value:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"give KEY=VALUE, got {item!r}")
        out[key] = val
    return out


# --------------------------------------------------------------------------- CLI

#: The lock file a ``--skip-existing`` run holds in its output folder.
TRANSLATE_LOCK = ".toonlab-translate.lock"


def _one_line(items: list[tuple[str, str]], limit: int = 3) -> str:
    shown = "; ".join(f"{reason}" if reason.startswith(name) else f"{name}: {reason}" for name, reason in items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _unwritten(items: list[tuple[str, str]]) -> str:
    """``could not write 3 outputs: out/a.jpg: No space left on device; …`` (one line)."""
    dst, cause = items[0]
    more = f" (and {len(items) - 1} more)" if len(items) > 1 else ""
    return f"could not write {len(items)} output{'s' if len(items) != 1 else ''}: {dst}: {cause}{more}"


@click.command(name="translate", cls=ToonCommand)
@click.argument("inputs", nargs=-1, type=click.Path(path_type=Path))
@click.option("--ckpt", type=click.Path(dir_okay=False, path_type=Path), default=None,
              show_default=f"the bundled translator: toonlab/assets/{bundled.DEFAULT_TRANSLATOR}, else the first "
                           "one bundled",
              help="Generator: a toonlab checkpoint, a --export-pt file or a released AnimeGANv2 port .pt "
                   "(paprika.pt, ...). Without it the bundled translator is used; if it is missing the command "
                   "stops with one line saying where it looked.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (outputs mirror the inputs' relative paths).")
@click.option("--which", type=click.Choice(["auto", "g", "g_ema"]), default="auto", show_default=True,
              help="Which generator of a training checkpoint (auto: g_ema when there is one). The architecture "
                   "is read from the file.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="auto = fp16 on CUDA, fp32 on the CPU.")
@click.option("--batch", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Video frames / same-size images / tiles per forward pass.")
@click.option("--max-side", type=click.IntRange(64), default=1536, show_default=True,
              help="Images (and video frames) with a longer side are translated in tiles.")
@click.option("--tile", type=click.IntRange(64), default=None, help="Tile side (default: --max-side), rounded to 32.")
@click.option("--overlap", type=click.IntRange(0), default=128, show_default=True,
              help="Overlap between tiles in pixels (blended with a cosine ramp; at most tile/4).")
@click.option("--retain-color", is_flag=True, help="Keep the photo's colours (input chroma, cartoon luma).")
@click.option("--match-brightness", is_flag=True, help="Scale the output to the input's mean brightness.")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that already exist alone (resume a big folder).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the generator (faster long videos on GPUs).")
@click.option("--channels-last/--no-channels-last", default=None,
              help="Memory layout of the GPU forward (default: the measured faster one).")
@click.option("--export-onnx", "onnx_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the generator as ONNX (dynamic batch/height/width) and check it with onnxruntime.")
@click.option("--opset", type=click.IntRange(17, 23), default=18, show_default=True, help="ONNX opset.")
@click.option("--export-pt", "pt_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the generator alone (weights + metadata, no optimiser or discriminator): how "
                   f"toonlab/assets/{bundled.DEFAULT_TRANSLATOR} is made from a training checkpoint.")
@click.option("--export-dtype", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True,
              help="Weight precision of --export-pt (fp16 halves the file; loading casts back to fp32).")
@click.option("--meta", multiple=True, callback=_meta_items, metavar="KEY=VALUE",
              help="Provenance stored in the --export-pt file (e.g. commit=abc123); repeatable.")
@click.option("--max-pixels", default=str(MAX_PIXELS), show_default="40M",
              help="Downscale larger images on load (e.g. 40M, 100000000; 0: no limit), with a note; the output "
                   "has the downscaled size.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def main(inputs, ckpt, out_dir, which, device, precision, batch, max_side, tile, overlap, retain_color,
         match_brightness, quality, skip_existing, compile_, channels_last, onnx_path, opset, pt_path, export_dtype,
         meta, max_pixels, quiet) -> None:
    """Translate images, folders (recursively) and videos into cartoons with a trained generator."""
    with user_errors():
        if not inputs and onnx_path is None and pt_path is None:
            raise click.UsageError("give INPUT files/folders, or --export-onnx PATH / --export-pt PATH")
        if meta and pt_path is None:
            raise click.UsageError("--meta is stored by --export-pt; give --export-pt PATH")
        if inputs and out_dir is None:
            raise click.UsageError("--out DIR is required with inputs")
        try:
            limit = parse_pixels(max_pixels)
        except ValueError:
            raise click.BadParameter(f"a pixel count like 40M or 40000000, got {max_pixels!r}",
                                     param_hint="--max-pixels") from None
        tile = round_up(tile or max_side)
        if overlap > tile // 4:
            raise click.BadParameter(f"at most a quarter of the tile ({tile // 4})", param_hint="--overlap")
        dev = pick_device(device)
        ckpt, default = resolve_ckpt(ckpt)
        if default is not None:
            click.echo(f"note: no --ckpt: the bundled translator {default.path.name} ({default.label})", err=True)
        G, info = load_model(ckpt, device="cpu", which=which)
        if pt_path is not None:
            if pt_path.exists() and not pt_path.is_file():
                raise ToonlabError(f"--export-pt {pt_path}: exists and is not a file")
            if any(p.exists() and not p.is_dir() for p in pt_path.parents):
                raise ToonlabError(f"--export-pt {pt_path}: {next(p for p in pt_path.parents if p.exists() and not p.is_dir())} is a file, not a folder")
            path, _ = export_generator(ckpt, pt_path, which=which, half=export_dtype == "fp16", extra=meta)
            click.echo(f"wrote {path} ({info['model']}, {info['which']}, {export_dtype} weights, "
                       f"{path.stat().st_size / 1e6:.1f} MB): {bundled.label_of(path)}")
        if onnx_path is not None:
            diff = export_onnx(G, onnx_path, opset=opset)
            click.echo(f"wrote {onnx_path} (opset {opset}, dynamic batch/height/width); "
                       f"onnxruntime vs PyTorch max abs diff {diff:.2e}")
            if not diff <= 1e-3:
                click.echo("warning: the ONNX model's outputs differ from PyTorch's more than expected", err=True)
        if not inputs:
            return
        jobs, skipped = collect_jobs(inputs, out_dir)
        tr = Translator(G, dev, precision, channels_last=channels_last, compile=compile_)
        opts = TranslateOptions(max_side=max_side, tile=tile, overlap=overlap, retain_color=retain_color,
                                match_brightness=match_brightness, batch=batch, jpeg_quality=quality,
                                skip_existing=skip_existing, show_progress=not quiet, max_pixels=limit or None)
        t0 = time.perf_counter()
        # --skip-existing runs are resumable batch jobs: two of them on one folder would both take
        # the same missing files. The folder is owned by one run (toonlab.lock); a lock left by a
        # killed run is taken over.
        lock = FolderLock(out_dir, what="output folder", name=TRANSLATE_LOCK) if skip_existing else None
        if lock is not None:
            lock.acquire()
            if lock.took_over:
                click.echo(f"note: {lock.took_over}", err=True)
        try:
            report = translate_paths(tr, jobs, opts)
        finally:
            if lock is not None:
                lock.release()
        report.skipped[:0] = skipped
        dt = time.perf_counter() - t0
        if report.unwritten and report.processed == 0:
            raise ToonlabError(_unwritten(report.unwritten))
        if report.processed == 0 and report.existing == 0:
            raise ToonlabError(f"nothing could be processed: {len(report.skipped)} unreadable input"
                               f"{'s' if len(report.skipped) != 1 else ''} ({_one_line(report.skipped)})")
        frames = sum(v.frames for v in report.videos)
        parts = [f"{len(report.images)} image{'s' if len(report.images) != 1 else ''}"]
        if report.videos:
            parts.append(f"{len(report.videos)} video{'s' if len(report.videos) != 1 else ''} ({frames} frames)")
        if report.existing:
            parts.append(f"{report.existing} already there")
        click.echo(f"translated {' and '.join(parts)} into {out_dir} in {dt:.1f} s "
                   f"({info.get('model', '?')}, {tr.device.type}, {tr.precision})")
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        if report.skipped:
            click.echo(f"skipped {len(report.skipped)} input{'s' if len(report.skipped) != 1 else ''}:", err=True)
            for name, reason in report.skipped:
                click.echo(f"  {reason if reason.startswith(name) else f'{name}: {reason}'}", err=True)
        if report.unwritten:
            raise ToonlabError(_unwritten(report.unwritten))
        short = [v for v in report.videos if v.incomplete]
        if short:  # a partial result must not look like a complete one
            v = short[0]
            more = f" (and {len(short) - 1} more videos)" if len(short) > 1 else ""
            raise ToonlabError(f"{v.source}: only {v.frames} of the {v.expected} frames its header announces could be "
                               f"decoded (a truncated or damaged file?); {v.path} holds those {v.frames}{more}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("translate")
