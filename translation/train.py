"""Train a photo-to-cartoon translator (AnimeGAN v1/v2, CartoonGAN) on unpaired photos and style images.

    python translation/train.py --photos PHOTOS --style STYLE [--smooth SMOOTH_DIR] \\
        --model animegan2 --preset hayao --out runs/hayao
    python translation/train.py --features random --iters 200 --out runs/demo   # built-in synthetic faces

PHOTOS / STYLE are folders, zips, LMDBs or ``synthetic:NAME``; without both, the built-in synthetic
``photo`` → ``webtoon`` faces are used. ``--iters`` / ``--init-iters`` count the adversarial and the
initialisation phase in iterations (default: ``--epochs`` / the model's init epochs over the larger
domain). Re-running the same command resumes from the run folder's newest checkpoint. The VGG19
(or ResNet-50) ImageNet weights are read from ``--features-weights PATH`` or the torch hub cache; nothing
is downloaded — ``--features random`` trains with random features instead (offline, lower quality).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from toonlab.errors import user_errors
from toonlab.options import ToonCommand
from translation.models import MODELS
from translation.trainer import PRESET_NAMES, TranslateConfig, resolve_config


def _floats4(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value.split(","))
    except ValueError:
        out = ()
    if len(out) != 4:
        raise click.BadParameter("give 4 comma-separated numbers: real,fake,gray,smooth (e.g. 1.2,1.2,1.2,0.8)")
    return out


def train(cfg: TranslateConfig, echo=click.echo) -> Path | None:
    """Open the data, build the trainer, resume if the run folder has a checkpoint, train."""
    from toonlab.runtime import enable_tf32, pick_device
    from translation.data import open_translation_data
    from translation.trainer import TranslationTrainer

    device = pick_device(cfg.device)
    if device.type == "cuda":
        enable_tf32()
    data = open_translation_data(cfg.photos, cfg.style, cfg.smooth, cfg.size, cfg.load_size, cfg.synthetic_length)
    if data.synthetic:
        echo("no --photos/--style given: training on the built-in synthetic photo → webtoon faces")
    from toonlab.training import run_training

    trainer = TranslationTrainer(cfg, data, device)
    c = trainer.cfg
    return run_training(trainer, describe=lambda how: (
        f"{how}; {c.model} ({c.preset}), {c.init_iters} init + {c.iters} adversarial iterations, "
        f"batch {c.batch}, {c.size} px, device {device} ({trainer.precision}), features {trainer.F.name} "
        f"({trainer.F.source})\ndata: {data.describe()}"), echo=echo)


@click.command(name="translate-train", cls=ToonCommand, aliases={
    "--vgg": "--features", "--vgg-weights": "--features-weights", "--resume": "--ckpt", "--iter": "--iters",
    "--features=auto": "--feature-net=auto", "--features=vgg19": "--feature-net=vgg19",
    "--features=resnet50": "--feature-net=resnet50"})
@click.option("--photos", default=None, help="Photos: folder, zip, LMDB or synthetic:NAME.")
@click.option("--style", default=None, help="Style images (anime frames, cartoons): folder, zip, LMDB or synthetic:NAME.")
@click.option("--smooth", default=None, type=click.Path(file_okay=False),
              help="Pre-made edge-smoothed style images (translation/edges.py); else smoothed on the fly.")
@click.option("--model", type=click.Choice(list(MODELS)), default="animegan2", show_default=True)
@click.option("--preset", type=click.Choice(PRESET_NAMES), default="hayao", show_default=True,
              help="Published loss weights (v2: Hayao/Shinkai/Paprika; v1 and CartoonGAN have one set).")
@click.option("--out", type=click.Path(file_okay=False), default="runs/translate", show_default=True,
              help="Run folder (checkpoints, samples, stats, config.json).")
@click.option("--iters", type=click.IntRange(0), default=None, help="Adversarial iterations.", show_default="--epochs × epoch")
@click.option("--init-iters", type=click.IntRange(0), default=None,
              help="Initialisation (content-only) iterations.", show_default="v1 5, v2 10, CartoonGAN 10 epochs")
@click.option("--epochs", type=click.FloatRange(0), default=None, help="Adversarial epochs.", show_default="100")
@click.option("--init-epochs", type=click.FloatRange(0), default=None, help="Initialisation epochs.")
@click.option("--batch", type=click.IntRange(1), default=None, help="Batch size.", show_default="8")
@click.option("--size", type=click.IntRange(32), default=None, help="Random crop size, multiple of 8.", show_default="256")
@click.option("--load-size", type=click.IntRange(32), default=None, help="Resize side before cropping.", show_default="size + size/8")
@click.option("--init-lr", type=click.FloatRange(0, min_open=True), default=None, help="Init-phase G lr.", show_default="v1 1e-4, v2 2e-4")
@click.option("--g-lr", type=click.FloatRange(0, min_open=True), default=None, help="G lr.", show_default="v1 8e-5, v2 2e-5, CartoonGAN 2e-4")
@click.option("--d-lr", type=click.FloatRange(0, min_open=True), default=None, help="D lr.", show_default="v1 1.6e-4, v2 4e-5, CartoonGAN 2e-4")
@click.option("--w-adv", type=click.FloatRange(0), default=None, help="G adversarial weight.", show_default="preset")
@click.option("--w-d-adv", type=click.FloatRange(0), default=None, help="D adversarial weight.", show_default="preset")
@click.option("--w-con", type=click.FloatRange(0), default=None, help="Content weight.", show_default="preset")
@click.option("--w-sty", type=click.FloatRange(0), default=None, help="Gram style weight.", show_default="preset")
@click.option("--w-col", type=click.FloatRange(0), default=None, help="Colour (YUV) weight.", show_default="preset")
@click.option("--w-tv", type=click.FloatRange(0), default=None, help="Total-variation weight.", show_default="preset")
@click.option("--w-init-col", type=click.FloatRange(0), default=None, show_default="0, as published",
              help="Colour (YUV) weight in the init phase too (helps with --features random).")
@click.option("--d-weights", callback=_floats4, default=None, help="D term weights real,fake,gray,smooth.", show_default="preset")
@click.option("--features", "vgg", type=click.Choice(["imagenet", "random"]), default=None, show_default="imagenet",
              help="Weights of the content/style feature network: ImageNet from disk, or random (offline, lower "
                   "quality).")
@click.option("--features-weights", "vgg_weights", type=click.Path(dir_okay=False), default=None,
              show_default="the torch hub cache",
              help="Weights file of the feature network (vgg19-dcbb9e9d.pth; resnet50-0676ba61.pth for ResNet).")
@click.option("--feature-net", "features", type=click.Choice(["auto", "vgg19", "resnet50"]), default=None,
              help="Content/style feature network.", show_default="auto: resnet50 for cartoongan-improved, else vgg19")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=None, help="EMA decay of a g_ema copy (0 = off)", show_default="0")
@click.option("--ckpt", "resume", type=click.Path(dir_okay=False), default=None,
              help="Initialise G from this file (ours or an animegan2-pytorch .pt); the run folder's checkpoint wins.")
@click.option("--seed", type=int, default=None, help="Random seed.", show_default="0")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="bf16 autocast; auto = bf16 on GPUs, fp32 on CPUs.", show_default="auto")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N.", show_default="auto")
@click.option("--workers", type=click.IntRange(0), default=None, help="Data loader workers.", show_default="2")
@click.option("--sample-every", type=click.IntRange(0), default=None, help="Iterations between sample grids.", show_default="1 epoch")
@click.option("--snapshot-every", type=click.IntRange(0), default=None, help="Iterations between checkpoints.", show_default="1 epoch")
@click.option("--keep", type=click.IntRange(0), default=None, help="Checkpoints kept (0 = all)", show_default="5")
@click.option("--log-every", type=click.IntRange(1), default=None, help="Iterations between stats lines.", show_default="10")
@click.option("--n-samples", type=click.IntRange(1), default=None, help="Fixed photos in each sample grid.", show_default="8")
@click.option("--tensorboard/--no-tensorboard", default=None, help="Also write TensorBoard scalars.", show_default="on")
@click.option("--dry-run", is_flag=True, help="Print the resolved configuration and exit.")
def main(dry_run: bool, **opts) -> None:
    """Train an AnimeGAN / CartoonGAN photo-to-cartoon translator (resumes by re-running)."""
    opts = {k: v for k, v in opts.items() if v is not None}
    if "iters" in opts and "epochs" in opts:
        raise click.BadParameter("give --iters or --epochs, not both")
    if "init_iters" in opts and "init_epochs" in opts:
        raise click.BadParameter("give --init-iters or --init-epochs, not both")
    with user_errors():
        cfg = TranslateConfig(**opts)
        if dry_run:
            from translation.data import open_translation_data

            data = open_translation_data(cfg.photos, cfg.style, cfg.smooth, cfg.size, cfg.load_size,
                                         cfg.synthetic_length)
            click.echo(json.dumps(resolve_config(cfg, data.iters_per_epoch(cfg.batch)).to_dict(), indent=2))
            return
        last = train(cfg)
    if last is not None:
        click.echo(f"done: {last}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("translate-train")
