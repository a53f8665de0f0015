"""``python -m metrics`` / ``toonlab metrics``: FID, KID, LPIPS diversity and reconstruction metrics.

    python -m metrics fid data/ gen:runs/ffhq/checkpoints/010000.pt --n 50000 --kid
    python -m metrics kid photos/ cartoons/ --translator animegan.pt
    python -m metrics lpips-diversity outputs/            # one sub-folder of K outputs per input
    python -m metrics recon targets/ projections/         # LPIPS, MSE, PSNR of paired images

Features. FID/KID use torch-fidelity's Inception-v3 (``inception-v3-compat``: the TensorFlow
FID graph converted to PyTorch, pool3 2048-d features) with its weights file
``weights-inception-2015-12-05-6726825d.pth`` from ``--inception-weights PATH`` or the torch hub
cache; nothing is downloaded. Images reach it as uint8 RGB and are resized to 299×299 by
torch-fidelity's TensorFlow-1.x-exact bilinear resize (align_corners=False, no half-pixel
offset): the resize of the original TensorFlow FID code (TTUR), so numbers are comparable with
TF-FID/torch-fidelity numbers but not bit-for-bit with pytorch-fid (``F.interpolate``
half-pixel bilinear) or clean-fid (PIL bicubic). Features are computed in full fp32 (TF32 off).
``--features random`` is a small fixed-seed random conv net for offline smoke runs and tests:
its numbers are comparable with nothing.

Sources. A dataset spec (folder, zip, LMDB, ``synthetic:NAME[:N]``), a StyleGAN2 generator
checkpoint (``gen:G.pt`` or any ``.pt``) sampled N times with fixed seeds, or a translator
applied to a dataset's images. Dataset images not already at the working size are brought to it
by the datasets' LANCZOS resize + centre crop.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

import click
import numpy as np
import torch
from torch import Tensor

from losses.perceptual import LPIPS_TRUNK_FILES, build_lpips
from metrics.features import FEATURE_KINDS, INCEPTION_FILE, FeatureExtractor, build_feature_extractor
from metrics.lpips import lpips_diversity, reconstruction_metrics
from metrics.sources import ImageSource, looks_like_checkpoint, open_source
from metrics.stats import compare_sources
from toonlab.atomic import write_json_atomic
from toonlab.errors import UserInputError, user_errors
from toonlab.options import ToonGroup
from toonlab.runtime import enable_tf32, pick_device, progress

# ============================================================================ CLI


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def _source_options(f: Callable) -> Callable:
    opts = [
        click.argument("src1"),
        click.argument("src2"),
        click.option("--n", type=click.IntRange(2), default=50000, show_default=True,
                     help="Images per source: generators are sampled N times; datasets use their first N (or all)."),
        click.option("--size", type=click.IntRange(8), default=None,
                     help="Working size of dataset images (LANCZOS resize + centre crop) [the generator's size "
                          "when one source is a generator, else each dataset's own]."),
        click.option("--truncation", type=click.FloatRange(0, 2), default=1.0, show_default=True),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Seed of a generator's z and noise."),
        click.option("--noise-mode", type=click.Choice(["random", "const", "none"]), default="random",
                     show_default=True),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="Rendering precision of generators/translators (features are always fp32)."),
        click.option("--translator", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="Translation checkpoint applied to SRC1's images (e.g. photos → cartoons)."),
        click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
                     help=f"{INCEPTION_FILE} [the torch hub cache]."),
        click.option("--features", type=click.Choice(FEATURE_KINDS), default="inception", show_default=True,
                     help="random / inception-random: offline smoke runs and timing only (not comparable)."),
        click.option("--batch", type=click.IntRange(1), default=64, show_default=True),
        click.option("--workers", type=click.IntRange(0), default=None, help="Data loader workers [min(8, CPUs)]."),
        click.option("--device", default="auto", show_default=True),
        click.option("--no-cache", is_flag=True, help="Recompute statistics (and do not store them)."),
        click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
                     help="Also write the results to this JSON file."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _open_pair(opts: dict[str, Any], device: torch.device) -> tuple[ImageSource, ImageSource]:
    common = dict(n=opts["n"], truncation=opts["truncation"], seed=opts["seed"], noise_mode=opts["noise_mode"],
                  precision=opts["precision"], device=device,
                  workers=_default_workers() if opts["workers"] is None else opts["workers"])
    specs = (opts["src1"], opts["src2"])
    opened: dict[int, ImageSource] = {}
    for i, spec in enumerate(specs):  # generators first: their size is the real images' working size
        if looks_like_checkpoint(spec):
            opened[i] = open_source(spec, translator=opts["translator"] if i == 0 else None, **common)
    size = opts["size"]
    if size is None and opened:
        size = next(iter(opened.values())).size  # as StyleGAN2's own metrics: reals at the model's resolution
    for i, spec in enumerate(specs):
        if i not in opened:
            opened[i] = open_source(spec, size=size, translator=opts["translator"] if i == 0 else None, **common)
    return opened[0], opened[1]


def _report(opts: dict[str, Any], extractor: FeatureExtractor, srcs: Sequence[ImageSource], res: dict[str, Any]) -> None:
    for line in extractor.describe():
        click.echo(line)
    for i, (src, st) in enumerate(zip(srcs, res["stats"]), 1):
        how = f"cached ({st.path})" if st.cached else f"computed in {st.seconds:.1f} s"
        click.echo(f"source {i}: {src.describe()} [{st.n:,} used; {how}]")
        if src.skipped:
            more = f" (+{len(src.skipped) - 10} more)" if len(src.skipped) > 10 else ""
            click.echo(f"  skipped {len(src.skipped)} unreadable image(s): {'; '.join(src.skipped[:10])}{more}")
    if "fid" in res:
        click.echo(f"FID: {res['fid']:.4f}")
    if "kid" in res:
        click.echo(f"KID: {res['kid']:.6f} ± {res['kid_std']:.6f} ({res['kid_subsets']} subsets of "
                   f"{res['kid_subset_size']})")
    if opts.get("json_out"):
        doc = {k: v for k, v in res.items() if k != "stats"}
        doc.update(src1=srcs[0].describe(), src2=srcs[1].describe(), describe=extractor.describe())
        write_json_atomic(opts["json_out"], doc)


def _run_pair(opts: dict[str, Any], fid: bool, kid_subsets: int | None, kid_subset_size: int) -> None:
    if opts["inception_weights"] and opts["features"] != "inception":
        raise UserInputError(f"--inception-weights and --features {opts['features']} exclude each other")
    device = pick_device(opts["device"])
    if device.type == "cuda":
        enable_tf32()  # generators/translators render as `toonlab generate` does; features stay exact fp32
    extractor = build_feature_extractor(opts["features"], opts["inception_weights"], device)
    src1, src2 = _open_pair(opts, device)
    res = compare_sources(src1, src2, extractor, fid=fid, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                          batch=opts["batch"], device=device, cache=not opts["no_cache"])
    _report(opts, extractor, (src1, src2), res)


@click.group(name="metrics", cls=ToonGroup)
def main() -> None:
    """Evaluation metrics: FID, KID, LPIPS diversity, projection reconstruction.

    A SRC is a folder, zip, LMDB, synthetic:NAME[:N], or a StyleGAN2 checkpoint (gen:G.pt or a .pt
    file) sampled --n times with fixed seeds.
    """


@main.command(name="fid")
@_source_options
@click.option("--kid", "with_kid", is_flag=True, help="Also compute KID (100 subsets of ≤1000).")
def fid_cmd(with_kid: bool, **opts: Any) -> None:
    """FID between SRC1 and SRC2 (statistics cached per source)."""
    with user_errors():
        _run_pair(opts, True, 100 if with_kid else None, 1000)


@main.command(name="kid")
@_source_options
@click.option("--subsets", type=click.IntRange(1), default=100, show_default=True)
@click.option("--subset-size", type=click.IntRange(2), default=1000, show_default=True)
def kid_cmd(subsets: int, subset_size: int, **opts: Any) -> None:
    """KID (unbiased MMD², cubic kernel) between SRC1 and SRC2: mean ± std over subsets."""
    with user_errors():
        _run_pair(opts, False, subsets, subset_size)


#: ``--lpips random`` / ``--lpips pretrained`` were the old spellings of the trunk's weights.
_LPIPS_ALIASES = {"--lpips=random": "--features=random", "--lpips=pretrained": "--features=imagenet"}


def _lpips_options(f: Callable) -> Callable:
    opts = [
        click.option("--features", "lpips_mode", type=click.Choice(["imagenet", "random"]), default="imagenet",
                     show_default=True, help="random: offline smoke runs only (comparable with nothing)."),
        click.option("--lpips-net", type=click.Choice(sorted(LPIPS_TRUNK_FILES)), default="vgg", show_default=True,
                     help="Trunk; StarGAN v2's published diversity numbers used alex."),
        click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None,
                     help="The trunk's torchvision ImageNet weights [the torch hub cache]."),
        click.option("--size", type=click.IntRange(8), default=None, help="Resize images to this size [first image's]."),
        click.option("--batch", type=click.IntRange(1), default=32, show_default=True),
        click.option("--device", default="auto", show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _load_images(paths: Sequence[Path], size: int) -> tuple[Tensor, list[str]]:
    from toonlab.images import ImageError, load_image, resize_center_crop, to_tensor

    out, bad = [], []
    for p in paths:
        try:
            out.append(to_tensor(resize_center_crop(load_image(p), size)))
        except ImageError as e:
            bad.append(str(e))
    return (torch.stack(out) if out else torch.empty(0, 3, size, size)), bad


def _load_pairs(pairs: Sequence[tuple[Path, Path]], size: int) -> tuple[Tensor, Tensor, list[str]]:
    """Both sides of each pair, dropping a pair when either side is unreadable (sides stay aligned)."""
    a, b, bad = [], [], []
    for p, q in pairs:
        x, e1 = _load_images([p], size)
        y, e2 = _load_images([q], size)
        if e1 or e2:
            bad += e1 + e2
            continue
        a.append(x)
        b.append(y)
    empty = torch.empty(0, 3, size, size)
    return (torch.cat(a) if a else empty), (torch.cat(b) if b else empty), bad


def _image_files(folder: Path) -> list[Path]:
    from toonlab.images import IMAGE_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def _first_size(paths: Sequence[Path]) -> int:
    from toonlab.images import ImageError, load_image

    for p in paths:
        try:
            return min(load_image(p).size)
        except ImageError:
            continue
    raise UserInputError("no readable images")


@main.command(name="lpips-diversity", aliases=_LPIPS_ALIASES)
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@_lpips_options
def lpips_diversity_cmd(folder: str, lpips_mode: str, lpips_net: str, lpips_weights: str | None, size: int | None,
                        batch: int, device: str) -> None:
    """LPIPS diversity (StarGAN v2 protocol) of FOLDER: one sub-folder per input holding its K outputs."""
    with user_errors():
        groups = [d for d in sorted(Path(folder).iterdir()) if d.is_dir() and not d.name.startswith(".")]
        files = [_image_files(d) for d in groups]
        files = [f for f in files if f]
        if not files:
            raise UserInputError(f"{folder}: no sub-folders with images (expected one sub-folder per input)")
        dev = pick_device(device)
        fn = build_lpips(lpips_net, lpips_weights, lpips_mode == "random", dev)
        size = size or _first_size(files[0])
        scores, skipped, ks = [], [], set()
        for group in progress(files, desc="lpips", unit="input"):
            imgs, bad = _load_images(group, size)
            skipped += bad
            if len(imgs) < 2:
                continue
            ks.add(len(imgs))
            scores.append(lpips_diversity(imgs[None].to(dev), fn, batch))
        if not scores:
            raise UserInputError(f"{folder}: no input has two readable outputs")
        click.echo(f"lpips: {fn.description}; images at {size} px")
        if skipped:
            click.echo(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:10])}")
        k = "/".join(str(v) for v in sorted(ks))
        click.echo(f"inputs: {len(scores)}, outputs per input: {k}")
        click.echo(f"LPIPS diversity: {float(np.mean(scores)):.4f}")


@main.command(name="recon", aliases=_LPIPS_ALIASES)
@click.argument("targets", type=click.Path(exists=True))
@click.argument("recons", type=click.Path(exists=True))
@_lpips_options
def recon_cmd(targets: str, recons: str, lpips_mode: str, lpips_net: str, lpips_weights: str | None,
              size: int | None, batch: int, device: str) -> None:
    """Reconstruction metrics (LPIPS, MSE, PSNR) of RECONS against TARGETS, paired by file stem."""
    with user_errors():
        tp, rp = Path(targets), Path(recons)
        if tp.is_dir() and rp.is_dir():
            t = {f.stem: f for f in _image_files(tp)}
            r = {f.stem: f for f in _image_files(rp)}
            pairs = [(t[s], r[s]) for s in sorted(set(t) & set(r))]
        elif tp.is_file() and rp.is_file():
            pairs = [(tp, rp)]
        else:
            raise UserInputError("give two folders (paired by file stem) or two image files")
        if not pairs:
            raise UserInputError(f"no images with the same name in {targets} and {recons}")
        dev = pick_device(device)
        fn = build_lpips(lpips_net, lpips_weights, lpips_mode == "random", dev)
        size = size or _first_size([p for p, _ in pairs])
        sums, count, skipped = dict(lpips=0.0, mse=0.0, psnr=0.0), 0, []
        for s in progress(range(0, len(pairs), batch), desc="recon", unit="batch"):
            a, b, bad = _load_pairs(pairs[s:s + batch], size)
            skipped += bad
            if not len(a):
                continue
            m = reconstruction_metrics(a.to(dev), b.to(dev), fn)
            for k in sums:
                sums[k] += m[k] * len(a)
            count += len(a)
        if not count:
            raise UserInputError("no readable pairs")
        click.echo(f"lpips: {fn.description}; images at {size} px; pairs: {count}")
        if skipped:
            click.echo(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:10])}")
        click.echo(f"LPIPS: {sums['lpips'] / count:.4f}  MSE: {sums['mse'] / count:.6f}  "
                   f"PSNR: {sums['psnr'] / count:.2f} dB")


if __name__ == "__main__":
    main()
