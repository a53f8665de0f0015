"""The seed study's comparison, rerun: CartoonGAN vs CycleGAN (and AnimeGANv2) on the same data.

A measurement (it needs FID), so it lives in ``metrics/``; ``python translation/compare.py`` runs it.

    python translation/compare.py                       # CPU-sized: 32 px, 40 iterations each, a few minutes
    python translation/compare.py --iters 20000 --size 256 --batch 8 --report docs/TRANSLATION_COMPARISON.md

Every method trains on the built-in synthetic ``photo`` → ``webtoon`` faces with the same crops,
batch size, seed and number of iterations (for CartoonGAN/AnimeGANv2 the content-only
initialisation phase counts towards that number: ``--init-frac`` of it). Reported per method: the
generator's size, training seconds per iteration and per epoch (one pass over the larger domain,
the AnimeGAN trainer's epoch) and FID of the translated *unseen* test photos against the webtoon
training images. The seed study's claim to check: CycleGAN (two G, two D) costs about twice the
training time per epoch of CartoonGAN.

Features. FID uses Inception-v3 weights from ``--inception-weights`` or the torch hub cache; when
there are none (``--features auto``) it falls back to ``--features random`` — a fixed random conv
net whose numbers rank methods on this data but are comparable with nothing else — and says so
loudly in the output and in the table. Likewise the content loss of CartoonGAN/AnimeGANv2 uses
random VGG19 features when no ImageNet VGG19 weights are on disk (also ``--features auto``).
"""

from __future__ import annotations

import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import torch

from toonlab.atomic import save_image_atomic, write_text_atomic
from toonlab.errors import UserInputError, user_errors
from toonlab.images import make_grid
from toonlab.options import ToonCommand
from toonlab.runtime import pick_device

__all__ = ["CompareSettings", "MethodResult", "run_comparison", "write_report", "main"]

METHODS = ("cartoongan", "cyclegan", "animegan2")
TEST_SEED = 100  # unseen faces: training photos use seed 0, webtoon images seed 1


@dataclass
class CompareSettings:
    """What every method shares."""

    methods: tuple[str, ...] = METHODS
    iters: int = 40
    size: int = 32
    batch: int = 2
    init_frac: float = 0.2  # share of the iterations CartoonGAN/AnimeGANv2 spend in the content-only phase
    cartoongan: str = "cartoongan"  # or cartoongan-improved (the seed study's variant; needs ResNet-50 weights)
    synthetic_length: int = 200
    n_test: int = 64
    n_real: int = 200
    features: str = "auto"  # auto | inception | random
    inception_weights: str | None = None
    vgg: str = "auto"  # auto | imagenet | random
    vgg_weights: str | None = None
    seed: int = 0
    device: str = "auto"
    out_root: str = "runs/translate-compare"
    overwrite: bool = False


@dataclass
class MethodResult:
    method: str
    params_g: int
    iters: int
    seconds: float  # wall time of the whole run (initialisation phase, the final checkpoint and samples included)
    sec_per_iter: float  # steady state: adversarial iterations after the first, data loading included
    iters_per_epoch: int
    fid: float
    notes: list[str] = field(default_factory=list)

    @property
    def sec_per_epoch(self) -> float:
        return self.sec_per_iter * self.iters_per_epoch


def _fresh(folder: Path, overwrite: bool) -> Path:
    if (folder / "checkpoints").is_dir() and any((folder / "checkpoints").iterdir()):
        if not overwrite:
            raise UserInputError(f"{folder} already holds a run (its timing would be a resume); "
                                 "use --overwrite or another --out")
        shutil.rmtree(folder)
    return folder


def _features(s: CompareSettings, device: torch.device, echo) -> tuple[Any, bool]:
    from metrics.features import build_feature_extractor
    from toonlab.weights import WeightsNotFound

    if s.features == "auto":
        try:
            return build_feature_extractor("inception", s.inception_weights, device), False
        except WeightsNotFound as e:
            echo("!" * 100, err=True)
            echo(f"!! NO INCEPTION WEIGHTS ({str(e).splitlines()[0]})", err=True)
            echo("!! FID BELOW USES --features random: it ranks the methods on this data but is comparable with "
                 "NOTHING else", err=True)
            echo("!" * 100, err=True)
            return build_feature_extractor("random", None, device), True
    return build_feature_extractor(s.features, s.inception_weights, device), s.features != "inception"


def _vgg_mode(s: CompareSettings, echo) -> str:
    if s.vgg != "auto":
        return s.vgg
    from losses.features import vgg19_features
    from toonlab.weights import WeightsNotFound

    try:
        vgg19_features(s.vgg_weights)
        return "imagenet"
    except WeightsNotFound:
        echo("!! no ImageNet VGG19 weights found: CartoonGAN/AnimeGANv2 content losses use RANDOM VGG19 features",
             err=True)
        return "random"


def _timed(trainer: Any, adversarial: Any) -> list[float]:
    """Wrap ``trainer.train_step``; the returned list fills with the end times of adversarial steps.

    Steady-state seconds per iteration = the gaps between consecutive adversarial steps: data
    loading counts, the first (warm-up) step, the content-only phase and the final save do not.
    """
    ends: list[float] = []
    step = trainer.train_step

    def wrapped(batch: Any) -> None:
        is_adv = adversarial()
        step(batch)
        if device_sync is not None:
            device_sync()
        if is_adv:
            ends.append(time.perf_counter())
        else:
            ends.clear()

    device_sync = torch.cuda.synchronize if trainer.device.type == "cuda" else None
    trainer.train_step = wrapped
    return ends


def _steady(ends: list[float]) -> float:
    return (ends[-1] - ends[0]) / (len(ends) - 1) if len(ends) > 1 else float("nan")


def _train(method: str, s: CompareSettings, data, device: torch.device, vgg: str
           ) -> tuple[torch.nn.Module, float, float, int]:
    """Train one method; returns (photo → cartoon G in eval mode, total seconds, steady s/it, iterations)."""
    out = _fresh(Path(s.out_root) / method, s.overwrite)
    common = dict(size=s.size, batch=s.batch, seed=s.seed, workers=0, device=str(device), tensorboard=False,
                  sample_every=0, snapshot_every=0, log_every=max(1, s.iters // 10), synthetic_length=s.synthetic_length)
    if method == "cyclegan":
        from translation.cyclegan_trainer import CycleGANConfig, CycleGANTrainer

        tr = CycleGANTrainer(CycleGANConfig(out=str(out), iters=s.iters, **common), data, device)
        ends = _timed(tr, lambda: True)
        t0 = time.perf_counter()
        tr.train()
        return tr.G_A.eval(), time.perf_counter() - t0, _steady(ends), s.iters
    from translation.trainer import TranslateConfig, TranslationTrainer

    init = int(round(s.iters * s.init_frac))
    model = s.cartoongan if method == "cartoongan" else method
    cfg = TranslateConfig(model=model, out=str(out), iters=s.iters - init, init_iters=init, vgg=vgg,
                          vgg_weights=s.vgg_weights, **common)
    tr = TranslationTrainer(cfg, data, device)
    ends = _timed(tr, lambda: tr.phase == "adversarial")
    t0 = time.perf_counter()
    tr.train()
    return tr.G.eval(), time.perf_counter() - t0, _steady(ends), s.iters


def _synthetic_source(domain: str, size: int, n: int, seed: int):
    from metrics.sources import DatasetSource
    from toonlab.data import open_dataset

    src = DatasetSource(f"synthetic:{domain}:{n}", size, n)
    src.ds = open_dataset(f"synthetic:{domain}:{n}", size, flip=False, seed=seed)  # the fingerprint keys on ds.seed
    src.label = f"synthetic:{domain} seed {seed}: {n} images at {size} px"
    return src


def run_comparison(s: CompareSettings, echo=click.echo) -> tuple[list[MethodResult], dict[str, Any]]:
    """Train every method, score it; returns the results and what the report needs to say about the setup."""
    from metrics.sources import TranslatorSource
    from metrics.stats import compare_sources
    from translation.data import open_translation_data

    bad = [m for m in s.methods if m not in METHODS]
    if bad or not s.methods:
        raise UserInputError(f"unknown method {bad[0] if bad else ''!r} (use {', '.join(METHODS)})")
    if s.iters < 2:
        raise UserInputError("--iters must be ≥ 2")
    if s.size % 8 or s.size < 32:
        raise UserInputError(f"--size {s.size} must be a multiple of 8 and ≥ 32")
    device = pick_device(s.device)
    ext, random_feats = _features(s, device, echo)
    vgg = _vgg_mode(s, echo) if any(m != "cyclegan" for m in s.methods) else "n/a"
    data = open_translation_data(None, None, size=s.size, synthetic_length=s.synthetic_length)
    ipe = data.iters_per_epoch(s.batch)
    test = _synthetic_source("photo", s.size, s.n_test, TEST_SEED)
    target = _synthetic_source("webtoon", s.size, s.n_real, 1)
    fixed = torch.stack([test.ds[i] for i in range(min(8, s.n_test))])
    rows, labels = [fixed], ["photo"]
    results: list[MethodResult] = []
    base = compare_sources(test, target, ext, device=device, show_progress=False)
    for method in s.methods:
        echo(f"== {method}: {s.iters} iterations, batch {s.batch}, {s.size} px")
        G, secs, spi, iters = _train(method, s, data, device, vgg)
        G.requires_grad_(False)
        res = compare_sources(TranslatorSource(test, G, label=method), target, ext, device=device, show_progress=False)
        with torch.no_grad():
            rows.append(G(fixed.to(device)).float().clamp(-1, 1).cpu())
        labels.append(method)
        r = MethodResult(method, sum(p.numel() for p in G.parameters()), iters, secs, spi, ipe, float(res["fid"]))
        echo(f"   {secs:.1f} s ({r.sec_per_iter:.3f} s/it, {r.sec_per_epoch:.1f} s/epoch), FID {r.fid:.2f}")
        results.append(r)
    grid = make_grid(torch.cat(rows), cols=len(fixed), row_labels=labels)
    grid_path = save_image_atomic(grid, Path(s.out_root) / "samples.png")
    setup = dict(features=ext.describe(), random_features=random_feats, vgg=vgg, device=str(device),
                 iters_per_epoch=ipe, baseline_fid=float(base["fid"]), grid=str(grid_path),
                 machine=f"{platform.platform()}, {torch.get_num_threads()} threads, "
                         f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU only'}, "
                         f"torch {torch.__version__}")
    return results, setup


def write_report(results: list[MethodResult], setup: dict[str, Any], s: CompareSettings, path: str | Path,
                 command: str) -> Path:
    """A docs-ready markdown table (written atomically)."""
    ref = next((r for r in results if r.method == "cartoongan"), None)
    lines = ["# Photo → cartoon translators compared (measured)", "",
             "_Generated by `translation/compare.py`; re-run the command below to regenerate._", "",
             f"- Command: `{command}`",
             f"- Machine: {setup['machine']}",
             f"- Data: built-in synthetic `photo` → `webtoon` faces ({s.synthetic_length} each, seeds 0/1), "
             f"{s.size} px crops, batch {s.batch}, seed {s.seed}; epoch = {setup['iters_per_epoch']} iterations",
             f"- Training: {s.iters} iterations per method (CartoonGAN/AnimeGANv2: {int(round(s.iters * s.init_frac))} "
             f"of them content-only initialisation); content features: VGG19 {setup['vgg']}",
             f"- FID: {s.n_test} unseen test photos (seed {TEST_SEED}) translated, vs {s.n_real} webtoon training images; "
             + "; ".join(setup["features"]),
             ]
    if setup["random_features"]:
        lines += ["", "> **FID here uses RANDOM features (no Inception weights were found): it ranks these methods on "
                      "this data and is comparable with no published number.**"]
    lines += ["", "| method | G params | iterations | run time | s / iteration | s / epoch | time vs CartoonGAN | FID ↓ |",
              "|---|---:|---:|---:|---:|---:|---:|---:|",
              f"| photos as-is (reference) | – | – | – | – | – | – | {setup['baseline_fid']:.2f} |"]
    for r in results:
        rel = f"{r.sec_per_epoch / ref.sec_per_epoch:.2f}×" if ref is not None and ref.sec_per_epoch > 0 else "–"
        lines.append(f"| {r.method} | {r.params_g / 1e6:.2f} M | {r.iters:,} | {r.seconds:.1f} s | {r.sec_per_iter:.3f} | "
                     f"{r.sec_per_epoch:.1f} | {rel} | {r.fid:.2f} |")
    lines += ["", "s / iteration: steady state of the adversarial phase (data loading included; the warm-up step, "
                  "the content-only phase and checkpoint writing excluded); s / epoch = s / iteration × iterations "
                  "per epoch.", "", f"Sample grid (rows: test photos, then each method): `{setup['grid']}`", ""]
    path = Path(path)
    return write_text_atomic(path, "\n".join(lines))


@click.command(name="translate-compare", cls=ToonCommand, aliases={
    "--out=*.md": "--report", "--out-root": "--out", "--features=inception": "--features=pretrained",
    "--vgg=random": "--features=random", "--vgg=imagenet": "--features=pretrained", "--vgg=auto": "--features=auto",
    "--vgg-weights": "--features-weights"})
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated methods.")
@click.option("--iters", type=click.IntRange(2), default=40, show_default=True, help="Iterations per method.")
@click.option("--size", type=click.IntRange(32), default=32, show_default=True, help="Crop size (multiple of 8).")
@click.option("--batch", type=click.IntRange(1), default=2, show_default=True)
@click.option("--init-frac", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="Share of the iterations in CartoonGAN/AnimeGANv2's content-only phase.")
@click.option("--cartoongan", type=click.Choice(["cartoongan", "cartoongan-improved"]), default="cartoongan",
              show_default=True)
@click.option("--synthetic-length", type=click.IntRange(2), default=200, show_default=True, help="Training images per domain.")
@click.option("--n-test", type=click.IntRange(2), default=64, show_default=True, help="Test photos translated for FID.")
@click.option("--n-real", type=click.IntRange(2), default=200, show_default=True, help="Webtoon images for FID.")
@click.option("--features", type=click.Choice(["auto", "pretrained", "random"]), default="auto", show_default=True,
              help="Feature networks (Inception for FID, VGG19 for the content loss): pretrained weights from "
                   "disk, random ones, or auto = pretrained where found, else random (said loudly).")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None, show_default="the torch hub cache")
@click.option("--features-weights", "vgg_weights", type=click.Path(dir_okay=False), default=None,
              show_default="the torch hub cache", help="VGG19 ImageNet weights (vgg19-dcbb9e9d.pth).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="runs/translate-compare",
              show_default=True, help="Folder of the methods' run folders and the sample grid.")
@click.option("--report", "out", type=click.Path(dir_okay=False), default=None, show_default="OUT/COMPARISON.md",
              help="The markdown report to write.")
@click.option("--overwrite", is_flag=True, help="Replace earlier runs under --out.")
def main(methods: str, out: str | None, features: str, **opts: Any) -> None:
    """Train CartoonGAN, CycleGAN (and AnimeGANv2) on the same data; table of FID and time per epoch."""
    fid, vgg = {"auto": ("auto", "auto"), "pretrained": ("inception", "imagenet"), "random": ("random", "random")}[features]
    with user_errors():
        s = CompareSettings(methods=tuple(m.strip() for m in methods.split(",") if m.strip()), features=fid, vgg=vgg,
                            **opts)
        results, setup = run_comparison(s)
        report = write_report(results, setup, s, out or Path(s.out_root) / "COMPARISON.md",
                              "python translation/compare.py " + " ".join(sys.argv[1:]))
    click.echo(report.read_text())
    click.echo(f"wrote {report} and {setup['grid']}")


if __name__ == "__main__":
    main()
