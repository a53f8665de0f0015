"""Write a slim inference/fine-tuning snapshot of any StyleGAN2 model file, as .pt or safetensors.

    python stylegan2/export.py --ckpt runs/x/checkpoints/012000.pt --out G.pt [--no-d]
    python stylegan2/export.py --ckpt network-snapshot-000800.pkl --out ffhq.pt   # NVIDIA pickle → community
    python stylegan2/export.py --ckpt G.pt --out G.safetensors                    # --format from the suffix

Input: anything ``load_checkpoint`` reads (community/toonlab .pt, safetensors, NVIDIA
stylegan2-ada-pytorch pickles — read as data). Output: the community layout — ``g_ema`` (+ ``g``
and ``d`` unless told otherwise, so FreezeD has a discriminator to start from), ``latent_avg``
(computed when missing) — plus toonlab's network configs in a ``toonlab`` entry other tools
ignore. ``--format safetensors`` writes the same tensors (``g_ema.*``, ``g.*``, ``d.*``,
``latent_avg``) with the ``toonlab`` entry as JSON in the file's metadata: weights only, no code.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch

from stylegan2.checkpoint import load_checkpoint, load_generator, save_safetensors
from toonlab.atomic import torch_save_atomic
from toonlab.errors import UserInputError, user_errors
from toonlab.options import ToonCommand

FORMATS = ("pt", "safetensors")


def export_snapshot(src: str | Path, out: str | Path, keep_d: bool = True, keep_g: bool = True,
                    fmt: str | None = None, half: bool = False) -> Path:
    """Write the slim snapshot of ``src`` to ``out`` (``fmt`` 'pt' or 'safetensors'; None: from the suffix;
    ``half``: floating tensors stored as float16)."""
    return _export(src, out, keep_d, keep_g, fmt, half)[0]


def _half(sd: dict) -> dict:
    """float32 → float16 (integer buffers untouched). Loading copies into float32 parameters, so a
    half file renders like the float32 one up to fp16 rounding of the weights (~1e-3 relative)."""
    return {k: v.half() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in sd.items()}


def _export(src: str | Path, out: str | Path, keep_d: bool, keep_g: bool, fmt: str | None,
            half: bool = False) -> tuple[Path, dict]:
    fmt = fmt or ("safetensors" if Path(out).suffix.lower() == ".safetensors" else "pt")
    if fmt not in FORMATS:
        raise UserInputError(f"unknown format {fmt!r} (use {' or '.join(FORMATS)})")
    ckpt = load_checkpoint(src)
    G = load_generator(src, ckpt=ckpt)
    snap = {"g_ema": ckpt["g_ema"] if "g_ema" in ckpt else G.state_dict()}
    if keep_g and "g" in ckpt:
        snap["g"] = ckpt["g"]
    if keep_d and "d" in ckpt:
        snap["d"] = ckpt["d"]
    if not G.w_avg_known:
        G.mean_latent(10000)
    snap["latent_avg"] = G.w_avg.detach().clone()
    meta = dict(ckpt.get("toonlab") or {})
    # early_mapping: a FreezeSG model's second mapping network, needed to render it from z.
    keep = ("g_config", "d_config", "step", "nimg", "world", "config", "conv_clamp", "source", "early_mapping")
    snap["toonlab"] = {k: meta[k] for k in keep if k in meta}
    snap["toonlab"].setdefault("g_config", G.config)
    snap["toonlab"]["exported_from"] = str(src)
    if half:
        for k in ("g_ema", "g", "d"):
            if k in snap:
                snap[k] = _half(snap[k])
        snap["latent_avg"] = snap["latent_avg"].half()
        early = snap["toonlab"].get("early_mapping")
        if isinstance(early, dict) and isinstance(early.get("state"), dict):
            early = snap["toonlab"]["early_mapping"] = dict(early, state=_half(early["state"]))
            if torch.is_tensor(early.get("w_avg")):
                early["w_avg"] = early["w_avg"].half()
        snap["toonlab"]["dtype"] = "float16"
    if "args" in ckpt and fmt == "pt":
        snap["args"] = ckpt["args"]
    path = save_safetensors(snap, out) if fmt == "safetensors" else torch_save_atomic(snap, out)
    return path, snap["toonlab"]["g_config"]


def community_hint(cfg: dict) -> str:
    """The flags rosinality-style scripts need to rebuild this generator (they do not read configs)."""
    ch = {int(k): int(v) for k, v in cfg["channels"].items()}
    cm = cfg.get("channel_multiplier", 2)
    table = {r: min(512, 16384 * cm // r) for r in ch}
    same = table == ch and list(cfg.get("blur_kernel", [1, 3, 3, 1])) == [1, 3, 3, 1]
    flags = f"--size {cfg['size']} --latent {cfg['style_dim']} --n_mlp {cfg['n_mlp']} --channel_multiplier {cm}"
    return flags if same else f"{flags} (widths {ch} differ from that table: only toonlab rebuilds it exactly)"


@click.command(name="export", cls=ToonCommand, positional=("--ckpt", "--out"))
@click.option("--ckpt", "src", type=click.Path(dir_okay=False), required=True,
              help="The model file: a training checkpoint, safetensors or an NVIDIA pickle.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="The slim snapshot to write.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=None,
              show_default="from the --out suffix", help="Output format (safetensors for a .safetensors name).")
@click.option("--no-d", is_flag=True, help="Drop the discriminator.")
@click.option("--no-g", is_flag=True, help="Drop the non-EMA generator.")
@click.option("--half", is_flag=True, help="Store the weights as float16 (half the file; loads as float32).")
def main(src: str, out: str, fmt: str | None, no_d: bool, no_g: bool, half: bool) -> None:
    """Write a slim snapshot (weights only) of a checkpoint, safetensors file or NVIDIA pickle."""
    with user_errors():
        path, cfg = _export(src, out, keep_d=not no_d, keep_g=not no_g, fmt=fmt, half=half)
    click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB); community scripts: {community_hint(cfg)}")


if __name__ == "__main__":
    main()
