"""Fine-tune a face StyleGAN2 to a cartoon domain.

    python finetune/train.py --target webtoon --freeze 2 --structure-loss 3
    python finetune/train.py --source ffhq256.pt --data webtoon.lmdb --freeze-g 3 --freeze-d 3

Methods (combinable): ``--freeze N`` FreezeSG, ``--freeze-g N`` FreezeG, ``--freeze-d N`` FreezeD,
``--freeze-style``, ``--structure-loss N``. Without ``--data`` the built-in synthetic domain named by
``--target`` is used; without ``--source`` the bundled 64-px source generator. Re-running the same
command resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from finetune.trainer import FinetuneConfig, FinetuneTrainer
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.hooks import HookFactory, hook_factories
from toonlab.runtime import bundled_generator, enable_tf32


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
    if kimg is not None:
        cfg.iters = max(1, int(round(kimg * 1000 / cfg.batch)))
    if not Path(cfg.source).exists():
        raise UserInputError(f"source generator not found: {cfg.source}")
    return cfg, note


def finetune(cfg: FinetuneConfig, note: str = "", hooks: Sequence[HookFactory] = ()) -> Path | None:
    """Run (or resume) a fine-tuning run; returns the last checkpoint path."""
    from stylegan2.training import init_distributed
    from toonlab.data import infinite_loader, open_dataset

    info, device = init_distributed(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    trainer = FinetuneTrainer(cfg, None, device, info)
    dataset = open_dataset(cfg.data, cfg.size, flip=True)
    trainer.dataset = dataset
    how = trainer.maybe_resume()
    if info.rank == 0:
        if note:
            click.echo(note)
        spec = cfg.freeze_spec()
        n_g = sum(p.numel() for p in trainer.g_params)
        n_all = sum(p.numel() for p in trainer.G.parameters())
        click.echo(f"{how}; source {cfg.source} ({cfg.size} px); G trains {n_g:,}/{n_all:,} parameters "
                   f"[freeze={spec.freeze_sg} freeze_g={spec.freeze_g} freeze_d={spec.freeze_d} "
                   f"style={spec.freeze_style} structure={cfg.structure_loss}:{cfg.structure_on}]")
    data = infinite_loader(dataset, cfg.batch, cfg.workers, seed=cfg.seed + 7919 * trainer.step,
                           distributed=info.enabled)
    return trainer.train(data, hooks)


@click.command(name="finetune")
@click.option("--source", type=click.Path(dir_okay=False), default=None,
              help="Source generator checkpoint (community format). Default: the bundled 64-px face model.")
@click.option("--target", default="webtoon", show_default=True,
              help="Built-in synthetic target domain, used when --data is not given; also names the run.")
@click.option("--data", default=None, help="Target images: folder, zip or LMDB.")
@click.option("--freeze", type=click.IntRange(0), default=None, help="FreezeSG: freeze mapping + first N blocks.")
@click.option("--freeze-g", type=click.IntRange(0), default=None, help="FreezeG: train only the N highest blocks.")
@click.option("--freeze-d", type=click.IntRange(0), default=None, help="FreezeD: train only the N lowest D blocks.")
@click.option("--freeze-style", is_flag=True, default=None, help="Freeze only the mapping network.")
@click.option("--structure-loss", type=click.IntRange(0), default=None, help="Structure loss on blocks 1..N.")
@click.option("--structure-weight", type=click.FloatRange(0), default=None, help="Weight of the structure loss [1].")
@click.option("--structure-on", type=click.Choice(["rgb", "features"]), default=None,
              help="Compare skip-RGB images (paper) or block features (published code) [rgb].")
@click.option("--iter", "iters", type=click.IntRange(1), default=None, help="Steps [1000].")
@click.option("--kimg", type=click.FloatRange(0.001), default=None, help="Length in thousands of images.")
@click.option("--batch", type=click.IntRange(2), default=None, help="Images per GPU [8].")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Learning rate [0.002].")
@click.option("--r1", type=click.FloatRange(0), default=None, help="R1 weight [10].")
@click.option("--path-regularize", type=click.FloatRange(0), default=None, help="Path length (off by default).")
@click.option("--ada/--no-ada", default=None, help="ADA [on].")
@click.option("--seed", type=int, default=None)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder [runs/finetune-TARGET].")
@click.option("--snapshot-every", type=click.IntRange(0), default=None)
@click.option("--sample-every", type=click.IntRange(0), default=None)
@click.option("--keep", type=click.IntRange(0), default=None)
@click.option("--workers", type=click.IntRange(0), default=None)
@click.option("--device", default=None)
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def main(dry_run: bool, **opts) -> None:
    """Fine-tune a StyleGAN2 face model to a cartoon domain."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if "kimg" in opts and "iters" in opts:
        raise click.BadParameter("give --iter or --kimg, not both")
    with user_errors():
        cfg, note = resolve_config(**opts)
        if dry_run:
            click.echo(note)
            click.echo(json.dumps(cfg.to_dict(), indent=2))
            return
        try:
            last = finetune(cfg, note, hook_factories())
        except KeyboardInterrupt:
            raise ToonlabError("interrupted; re-run the same command to resume") from None
        except ValueError as e:  # freeze/structure flags that do not fit this generator
            if isinstance(e, UserInputError):
                raise
            raise ToonlabError(str(e)) from None
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("finetune")
