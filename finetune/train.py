"""Fine-tune a face StyleGAN2 to a cartoon domain.

    python finetune/train.py --target webtoon --freeze 2 --structure-loss 3
    python finetune/train.py --source ffhq256.pt --data webtoon.lmdb --freeze-g 3 --freeze-d 3

Methods (combinable; exact definitions in ``finetune/freeze.py``): ``--freeze N`` FreezeSG (blocks
1..N frozen and their style entries from the source's frozen mapping network, ``--freeze-style K``
entries; the target's mapping trains for the rest), ``--freeze-g N`` FreezeG, ``--freeze-d N``
FreezeD, ``--freeze-mapping`` (ablation), ``--structure-loss N``; ``--freeze-mode published``
reproduces Cartoon-StyleGAN's code (``--freeze-g`` = its ``--freezeG``, ``--freeze-style`` = its
``--freezeStyle``). Without ``--data`` the built-in synthetic domain named by ``--target`` is used;
without ``--source`` the bundled 64-px source generator. Re-running the same command resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from finetune.trainer import FinetuneConfig, FinetuneTrainer
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.metrics import training_cli_options
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
    if cfg.ema_rampup is not None and cfg.ema_rampup <= 0:  # --ema-rampup 0: a fixed half-life
        cfg.ema_rampup = None
    if kimg is not None:
        cfg.iters = max(1, int(round(kimg * 1000 / cfg.batch)))
    if not Path(cfg.source).exists():
        raise UserInputError(f"source generator not found: {cfg.source}")
    return cfg, note


def finetune(cfg: FinetuneConfig, note: str = "") -> Path | None:
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
                   f"[mode={spec.mode} freeze={spec.freeze_sg} source_styles={spec.source_entries()} "
                   f"freeze_g={spec.freeze_g} freeze_d={spec.freeze_d} mapping_frozen={spec.mapping_frozen()} "
                   f"structure={cfg.structure_loss}:{cfg.structure_on}]")
    data = infinite_loader(dataset, cfg.batch, cfg.workers, seed=cfg.seed + 7919 * trainer.step,
                           distributed=info.enabled)
    return trainer.train(data)


def with_metrics_options(f):
    for opt in reversed(training_cli_options()):
        f = opt(f)
    return f


@click.command(name="finetune")
@click.option("--source", type=click.Path(dir_okay=False), default=None,
              help="Source generator checkpoint (community format). Default: the bundled 64-px face model.")
@click.option("--target", default="webtoon", show_default=True,
              help="Built-in synthetic target domain, used when --data is not given; also names the run.")
@click.option("--data", default=None, help="Target images: folder, zip or LMDB.")
@click.option("--freeze", type=click.IntRange(0), default=None,
              help="FreezeSG (paper): freeze blocks 1..N and take their style vectors (W+ entries 0..2N-1, "
                   "see --freeze-style) from the source's frozen mapping; the target's mapping trains. [0]")
@click.option("--freeze-style", type=click.IntRange(0), default=None,
              help="W+ entries 0..K-1 from the source's mapping network [FreezeSG: 2N; else none]. With "
                   "--freeze-mode published: Cartoon-StyleGAN's --freezeStyle K (mixing batches only).")
@click.option("--freeze-g", type=click.IntRange(0), default=None,
              help="FreezeG: mapping frozen, train only the N highest-resolution blocks (= Cartoon-StyleGAN "
                   "--freezeG N). [0]")
@click.option("--freeze-d", type=click.IntRange(0), default=None,
              help="FreezeD: train only the N lowest-resolution D blocks + final layers (= --freezeD N). [0]")
@click.option("--freeze-mapping", is_flag=True, default=None,
              help="Freeze the mapping network only (ablation; was --freeze-style before).")
@click.option("--freeze-mode", type=click.Choice(["paper", "published"]), default=None,
              help="paper: FreezeSG as the paper describes it; published: Cartoon-StyleGAN's train.py "
                   "(freeze style only on mixing batches, --freeze-g counts trainable blocks). [paper]")
@click.option("--structure-loss", type=click.IntRange(0), default=None,
              help="Structure loss on N blocks: rgb = blocks 1..N, features = blocks 2..N+1. [0]")
@click.option("--structure-weight", type=click.FloatRange(0), default=None, help="Weight of the structure loss [1].")
@click.option("--structure-on", type=click.Choice(["rgb", "features"]), default=None,
              help="rgb: the paper's — MSE of the skip-RGB images of blocks 1..N, averaged; features: "
                   "Cartoon-StyleGAN's code (train.py:344-348) — MSE of the features after blocks 2..N+1, "
                   "summed. [rgb]")
@click.option("--iter", "iters", type=click.IntRange(1), default=None, help="Steps [1000].")
@click.option("--kimg", type=click.FloatRange(0.001), default=None, help="Length in thousands of images.")
@click.option("--batch", type=click.IntRange(2), default=None, help="Images per GPU [8].")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None, help="Learning rate [0.002].")
@click.option("--r1", type=click.FloatRange(0), default=None, help="R1 weight [10].")
@click.option("--path-regularize", type=click.FloatRange(0), default=None, help="Path length (off by default).")
@click.option("--ema-kimg", type=click.FloatRange(0, min_open=True), default=None,
              help="EMA half-life in thousands of images [10].")
@click.option("--ema-rampup", type=click.FloatRange(0), default=None,
              help="Cap the EMA half-life at this fraction of the images seen; 0 = off [0.05].")
@click.option("--ada/--no-ada", default=None, help="ADA [on].")
@click.option("--seed", type=int, default=None)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default=None)
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run folder [runs/finetune-TARGET].")
@click.option("--snapshot-every", type=click.IntRange(0), default=None)
@click.option("--sample-every", type=click.IntRange(0), default=None)
@click.option("--keep", type=click.IntRange(0), default=None)
@click.option("--workers", type=click.IntRange(0), default=None)
@click.option("--device", default=None)
@with_metrics_options
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
            last = finetune(cfg, note)
        except KeyboardInterrupt:
            raise ToonlabError("interrupted; re-run the same command to resume") from None
        except ValueError as e:  # freeze/structure flags that do not fit this generator
            if isinstance(e, UserInputError):
                raise
            raise ToonlabError(str(e)) from None
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    main()
