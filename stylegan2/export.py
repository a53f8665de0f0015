"""Strip a training checkpoint down to an inference/fine-tuning snapshot (no optimiser state).

    python stylegan2/export.py --ckpt runs/x/checkpoints/012000.pt --out G.pt [--no-d]

Keeps ``g_ema`` (+ ``g`` and ``d`` unless told otherwise, so FreezeD has a discriminator to start
from), ``latent_avg`` (computed when missing) and toonlab's network configs.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from stylegan2.checkpoint import load_checkpoint, load_generator
from toonlab.atomic import torch_save_atomic
from toonlab.errors import user_errors
from toonlab.options import ToonCommand


def export_snapshot(src: str | Path, out: str | Path, keep_d: bool = True, keep_g: bool = True) -> Path:
    """Write the slim snapshot of ``src`` to ``out`` and return its path."""
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
    snap["toonlab"] = {k: meta[k] for k in ("g_config", "d_config", "step", "config") if k in meta}
    snap["toonlab"].setdefault("g_config", G.config)
    snap["toonlab"]["exported_from"] = str(src)
    if "args" in ckpt:
        snap["args"] = ckpt["args"]
    return torch_save_atomic(snap, out)


@click.command(name="export", cls=ToonCommand, positional=("--ckpt", "--out"))
@click.option("--ckpt", "src", type=click.Path(dir_okay=False), required=True, help="The training checkpoint to strip.")
@click.option("--out", "out", type=click.Path(dir_okay=False), required=True, help="The slim snapshot to write.")
@click.option("--no-d", is_flag=True, help="Drop the discriminator.")
@click.option("--no-g", is_flag=True, help="Drop the non-EMA generator.")
def main(src: str, out: str, no_d: bool, no_g: bool) -> None:
    """Write a slim snapshot (weights only) of a training checkpoint."""
    with user_errors():
        path = export_snapshot(src, out, keep_d=not no_d, keep_g=not no_g)
    click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("export")
