"""Interpolation video between seeds and/or projected latents, through one or several generators.

    python stylegan2/interpolate.py --ckpt ffhq.pkl --seeds 0,5,9 --frames 60 --fps 30 --out walk.mp4
    python stylegan2/interpolate.py --ckpt face.pt --cartoon toon.pt --cartoon blend2.pt \\
        --latent projections/me/latent.pt --latent projections/you/latent.pt --out one_face_every_style.mp4

Keyframes are the ``--latent`` files (inversion/project.py; in the order given) followed by the
``--seeds``. ``--space w`` lerps W+ (seeds and latents), ``--space z`` slerps z and maps each
frame (seeds only; StyleGAN's PPL uses these two paths). ``--frames`` per transition; with
``--loop`` (default) the clip returns to its first key. Each ``--cartoon`` renders the same
latents beside the source — for layer-swapped blends, write them first with
``toonlab swap --source face.pt --target toon.pt --swap 2 --out blend2.pt``. The mp4 is H.264
(imageio-ffmpeg's ffmpeg), written atomically; ``--preview`` adds a PNG contact sheet.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.figures import interpolation_video, latent_keys, seed_keys
from stylegan2.mix import resolve_panels
from stylegan2.networks import NOISE_MODES
from toonlab.errors import UserInputError, user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import parse_seeds


@click.command(name="interpolate", cls=ToonCommand)
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Source generator: toonlab/community .pt, safetensors or NVIDIA .pkl. "
                   "Default: the bundled 64-px generator.")
@click.option("--cartoon", "cartoons", multiple=True, type=click.Path(dir_okay=False),
              help="Generator(s) fine-tuned from --ckpt (or layer-swapped blends), rendered beside it; "
                   "repeat or comma-separate.")
@click.option("--seeds", default=None, help="Seed keyframes, e.g. 0,5,9 (default 0-3 when no --latent).")
@click.option("--latent", "latents", multiple=True, type=click.Path(dir_okay=False),
              help="Projected latent.pt keyframe(s) (inversion/project.py); repeatable.")
@click.option("--space", type=click.Choice(["w", "z"]), default="w", show_default=True,
              help="w: lerp in W+; z: slerp in Z, then map (seeds only).")
@click.option("--frames", type=click.IntRange(1), default=30, show_default=True, help="Frames per transition.")
@click.option("--fps", type=click.FloatRange(1, 240), default=30.0, show_default=True)
@click.option("--loop/--no-loop", default=True, show_default=True, help="Return to the first keyframe.")
@click.option("--truncation", type=click.FloatRange(0.0, 2.0), default=1.0, show_default=True,
              help="Truncation ψ of the seed keyframes (latent files are used as they are).")
@click.option("--noise-mode", type=click.Choice(["auto", "projected", *NOISE_MODES]), default="auto",
              show_default=True, help="auto: projected when every key is a latent file with noise maps, else const; "
                                      "random: one fixed set of maps (from --seed) for the whole clip.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random noise maps.")
@click.option("--size", type=click.IntRange(8), default=None, help="Tile size in px (default: the generator's).")
@click.option("--out", type=click.Path(dir_okay=False), default="interpolation.mp4", show_default=True)
@click.option("--preview", is_flag=True, help="Also write <out>.png, a contact sheet of 8 frames.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True)
@click.option("--batch", "batch_size", type=click.IntRange(1), default=8, show_default=True)
def main(ckpt, cartoons, seeds, latents, space, frames, fps, loop, truncation, noise_mode, seed, size, out, preview,
         device, precision, batch_size) -> None:
    """Interpolation video (mp4) between seeds and/or projected latents."""
    with user_errors():
        if Path(out).suffix.lower() != ".mp4":
            raise UserInputError(f"--out {out}: the video is an .mp4")
        panels = resolve_panels(ckpt, cartoons, device)
        src = panels[0].G
        keys = latent_keys(src, latents)
        if seeds is not None or not latents:
            keys += seed_keys(src, parse_seeds(seeds or "0-3"), truncation)
        if noise_mode == "auto":
            noise_mode = "projected" if keys and all(k.noise is not None for k in keys) else "const"
        sheet = Path(out).with_suffix(".png") if preview else None
        info = interpolation_video(panels, keys, out, frames, fps, space, loop, truncation, noise_mode, size,
                                   batch_size, precision, seed, sheet)
    w, h = info["size"]
    click.echo(f"wrote {info['path']} ({info['frames']} frames, {w}×{h}, {info['fps']:g} fps, {len(keys)} keys, "
               f"{len(panels)} generator(s))" + (f" and {sheet}" if sheet else ""))


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("interpolate")
