"""Fine-tune a face StyleGAN2 to a cartoon domain.

    python finetune/train.py --target webtoon --freeze 2 --structure-loss 3
    python finetune/train.py --ckpt ffhq256.pt --data webtoon.lmdb --freeze-g 3 --freeze-d 3

Methods (combinable; exact definitions in ``finetune/freeze.py``): ``--freeze N`` FreezeSG (blocks
1..N frozen and their style entries from the source's frozen mapping network, ``--freeze-style K``
entries; the target's mapping trains for the rest), ``--freeze-g N`` FreezeG, ``--freeze-d N``
FreezeD, ``--freeze-mapping`` (ablation), ``--structure-loss N``; ``--freeze-mode published``
reproduces Cartoon-StyleGAN's code (``--freeze-g`` = its ``--freezeG``, ``--freeze-style`` = its
``--freezeStyle``). Without ``--data`` the built-in synthetic domain named by ``--target`` is used;
without ``--ckpt`` the bundled 64-px source generator. Re-running the same command resumes.
"""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from finetune.trainer import FinetuneConfig, FinetuneTrainer
from toonlab.errors import UserInputError, user_errors
from toonlab.hooks import HookFactory, hook_factories
from toonlab.options import ToonCommand, config_option
from toonlab.runtime import bundled_generator, enable_tf32
from toonlab.training import run_training


def resolve_config(**opts) -> tuple[FinetuneConfig, str]:
    """Flags → FinetuneConfig and the one-line note about where the data comes from."""
    from toonlab.synthetic import DOMAINS

    data = opts.pop("data", None)
    target = opts.get("target") or "webtoon"
    kimg = opts.pop("kimg", None)
    if opts.get("source") is None:
        opts["source"] = str(bundled_generator())
    if data is None:
        if target not in DOMAINS:
            raise UserInputError(f"--target {target!r} is not a built-in synthetic domain "
                                 f"({', '.join(DOMAINS)}); give --data PATH for your own images")
        data = f"synthetic:{target}"
        note = f"no --data: fine-tuning on built-in synthetic '{target}' faces"
    else:
        note = f"fine-tuning on {data}"
    if opts.get("out") is None:
        opts["out"] = f"runs/finetune-{target}"
    cfg = FinetuneConfig(data=data, **{k: v for k, v in opts.items() if v is not None})
    if cfg.ema_rampup is not None and cfg.ema_rampup <= 0:  # --ema-rampup 0: a fixed half-life
        cfg.ema_rampup = None
    if kimg is not None:
        cfg.iters = max(1, int(round(kimg * 1000 / cfg.batch)))
    if not Path(cfg.source).exists():
        raise UserInputError(f"source generator not found: {cfg.source}")
    return cfg, note


def finetune(cfg: FinetuneConfig, note: str = "", hooks: Sequence[HookFactory] = ()) -> Path | None:
    """Run (or resume) a fine-tuning run; returns the last checkpoint path."""
    from stylegan2.training import close_distributed, init_distributed
    from toonlab.data import open_dataset

    info, device = init_distributed(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    trainer = FinetuneTrainer(cfg, None, device, info)
    trainer.dataset = open_dataset(cfg.data, cfg.size, flip=True)
    if info.rank == 0 and note:
        click.echo(note)
    spec = cfg.freeze_spec()
    n_g = sum(p.numel() for p in trainer.g_params)
    n_all = sum(p.numel() for p in trainer.G.parameters())
    last = run_training(trainer, hooks, lambda how: (
        f"{how}; source {cfg.source} ({cfg.size} px); G trains {n_g:,}/{n_all:,} parameters "
        f"[mode={spec.mode} freeze={spec.freeze_sg} source_styles={spec.source_entries()} "
        f"freeze_g={spec.freeze_g} freeze_d={spec.freeze_d} mapping_frozen={spec.mapping_frozen()} "
        f"structure={cfg.structure_loss}:{cfg.structure_on}]"))
    close_distributed(info)
    return last


_o = partial(config_option, FinetuneConfig)


@click.command(name="finetune", cls=ToonCommand, aliases={"--iter": "--iters", "--source": "--ckpt"})
@_o("source", "--ckpt", type=click.Path(dir_okay=False), show_default="the bundled 64-px face model",
    help="The source (face) generator to fine-tune (community format).")
@click.option("--target", default="webtoon", show_default=True,
              help="Built-in synthetic target domain, used when --data is not given; also names the run.")
@click.option("--data", default=None, help="Target images: folder, zip or LMDB (default: the synthetic --target).")
@_o("freeze", "--freeze", type=click.IntRange(0),
    help="FreezeSG (paper): freeze blocks 1..N and take their style vectors (W+ entries 0..2N-1, see "
         "--freeze-style) from the source's frozen mapping; the target's mapping trains.")
@_o("freeze_style", "--freeze-style", type=click.IntRange(0), show_default="FreezeSG: 2N; else none",
    help="W+ entries 0..K-1 from the source's mapping network. With --freeze-mode published: "
         "Cartoon-StyleGAN's --freezeStyle K (mixing batches only).")
@_o("freeze_g", "--freeze-g", type=click.IntRange(0),
    help="FreezeG: mapping frozen, train only the N highest-resolution blocks (= Cartoon-StyleGAN --freezeG N).")
@_o("freeze_d", "--freeze-d", type=click.IntRange(0),
    help="FreezeD: train only the N lowest-resolution D blocks + final layers (= --freezeD N).")
@click.option("--freeze-mapping", is_flag=True, default=None,
              help="Freeze the mapping network only (ablation; was --freeze-style before).")
@_o("freeze_mode", "--freeze-mode", type=click.Choice(["paper", "published"]),
    help="paper: FreezeSG as the paper describes it; published: Cartoon-StyleGAN's train.py (freeze style "
         "only on mixing batches, --freeze-g counts trainable blocks).")
@_o("structure_loss", "--structure-loss", type=click.IntRange(0),
    help="Structure loss on N blocks: rgb = blocks 1..N, features = blocks 2..N+1 (0: off).")
@_o("structure_weight", "--structure-weight", type=click.FloatRange(0), help="Weight of the structure loss.")
@_o("structure_on", "--structure-on", type=click.Choice(["rgb", "features"]),
    help="rgb: the paper's — MSE of the skip-RGB images of blocks 1..N, averaged; features: Cartoon-StyleGAN's "
         "code (train.py:344-348) — MSE of the features after blocks 2..N+1, summed.")
@_o("iters", "--iters", type=click.IntRange(1), help="Steps (or give --kimg).")
@click.option("--kimg", type=click.FloatRange(0.001), default=None, help="Length in thousands of images.")
@_o("batch", "--batch", type=click.IntRange(2), help="Images per GPU.")
@_o("lr", "--lr", type=click.FloatRange(0, min_open=True), help="Learning rate.")
@_o("r1", "--r1", type=click.FloatRange(0), help="R1 weight.")
@_o("path_regularize", "--path-regularize", type=click.FloatRange(0), help="Path-length weight (off while fine-tuning).")
@_o("ema_kimg", "--ema-kimg", type=click.FloatRange(0, min_open=True), help="EMA half-life in thousands of images.")
@_o("ema_rampup", "--ema-rampup", type=click.FloatRange(0),
    help="Cap the EMA half-life at this fraction of the images seen; 0 = off.")
@click.option("--ada/--no-ada", default=None, show_default="on", help="Adaptive discriminator augmentation.")
@_o("seed", "--seed", type=int, help="Random seed.")
@_o("precision", "--precision", type=click.Choice(["auto", "fp32", "bf16"]),
    help="bf16 autocast; auto = bf16 on GPUs, fp32 on CPUs.")
@_o("out", "--out", type=click.Path(file_okay=False), show_default="runs/finetune-TARGET", help="Run folder.")
@_o("snapshot_every", "--snapshot-every", type=click.IntRange(0), help="Steps between checkpoints (0: only the last).")
@_o("sample_every", "--sample-every", type=click.IntRange(0), help="Steps between sample grids (0: none).")
@_o("keep", "--keep", type=click.IntRange(0), help="Checkpoints kept (0 = all).")
@_o("workers", "--workers", type=click.IntRange(0), help="Data loader workers.")
@_o("device", "--device", help="auto, cpu, cuda or cuda:N.")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def main(dry_run: bool, **opts) -> None:
    """Fine-tune a StyleGAN2 face model to a cartoon domain."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if "kimg" in opts and "iters" in opts:
        raise click.BadParameter("give --iters or --kimg, not both")
    with user_errors():
        cfg, note = resolve_config(**opts)
        hooks = hook_factories()
        if dry_run:
            click.echo(note)
            extra = {k: v for f in hooks for k, v in dict(getattr(f, "config", {})).items()}
            click.echo(json.dumps({**cfg.to_dict(), **extra}, indent=2))
            return
        last = finetune(cfg, note, hooks)
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("finetune")
