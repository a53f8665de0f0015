"""StarGAN v2 evaluation (§4 protocol) and its ``eval`` command.

For every (source, target) domain pair with source ≠ target, each test image of the source is
translated 10 times (10 latent codes, or 10 reference images of the target); FID between all
outputs and the target's *training* images; LPIPS = mean pairwise distance among each input's 10
outputs. Both are averaged over the pairs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np
import torch

from losses.perceptual import build_lpips
from metrics.features import build_feature_extractor
from metrics.fid import frechet_distance
from metrics.lpips import lpips_diversity
from metrics.sources import DatasetSource, TensorSource
from metrics.stats import source_statistics
from toonlab.atomic import atomic_path
from toonlab.errors import UserInputError, user_errors
from toonlab.images import tensor_to_uint8
from toonlab.options import ToonCommand
from toonlab.runtime import pick_device, progress, resolve_precision
from translation.stargan2_data import open_multidomain
from translation.stargan2_inference import load_stargan2, test_data, translate


def evaluate(ckpt: str | Path, data: str | None = None, train_data: str | None = None, modes: Sequence[str] = ("latent", "reference"),
             n_test: int = 100, n_outputs: int = 10, n_real: int | None = None, features: str = "inception",
             inception_weights: str | None = None, lpips: str = "alex", lpips_random: bool = False,
             lpips_weights: str | None = None, device: str | torch.device = "cpu", batch: int = 32, seed: int = 0,
             precision: str = "fp32", show_progress: bool = True) -> dict[str, Any]:
    """The paper's protocol (module docstring) → ``{mode: {"fid", "lpips", "pairs": {src→trg: {...}}}, ...}``.

    data: test images (class sub-folders; for a synthetic run, unseen synthetic faces by default);
    train_data: the target domains' training images for FID (default: the checkpoint's training data).
    """
    if n_outputs < 2:
        raise UserInputError("--n-outputs must be ≥ 2 (LPIPS is a mean over pairs of outputs)")
    bad = [m for m in modes if m not in ("latent", "reference")]
    if bad:
        raise UserInputError(f"unknown mode {bad[0]!r} (use latent and/or reference)")
    device = torch.device(device)
    ext = build_feature_extractor(features, inception_weights, device)  # fails early when weights are missing
    lp = build_lpips(lpips, lpips_weights, random=lpips_random, device=device)
    nets, meta = load_stargan2(ckpt, device)
    domains, arch = meta["domains"], meta["arch"]
    test = test_data(meta, data, n_test)
    cfg = meta.get("config", {})
    train_specs: list[str]
    if train_data is not None:
        train_specs = open_multidomain(train_data, arch["img_size"], domains).specs
    elif cfg.get("data"):
        train_specs = [str(Path(cfg["data"]) / d) for d in domains]
    else:
        train_specs = [f"synthetic:{d}:{cfg.get('synthetic_length', 1000)}" for d in domains]
    g = torch.Generator().manual_seed(seed)
    results: dict[str, Any] = {"features": ext.describe(), "lpips": lp.description, "domains": domains,
                               "n_outputs": n_outputs, "checkpoint": str(ckpt), "step": meta.get("step")}
    real_stats = {}
    for t, spec in enumerate(train_specs):
        # Training images of synthetic domains were drawn with seed = domain index (open_multidomain).
        src = DatasetSource(spec, arch["img_size"], n_real)
        if spec.startswith("synthetic:"):
            from toonlab.data import open_dataset

            src.ds = open_dataset(spec, arch["img_size"], flip=False, seed=t)
        real_stats[t] = source_statistics(src, ext, batch=batch, device=device, show_progress=show_progress,
                                          desc=f"real {domains[t]}")
    for mode in modes:
        pairs: dict[str, dict[str, float]] = {}
        for s_dom, s_ds in enumerate(test.datasets):
            n_src = min(n_test, len(s_ds))
            xs = torch.stack([s_ds[i] for i in range(n_src)])
            for t_dom, t_ds in enumerate(test.datasets):
                if t_dom == s_dom:
                    continue
                outs = torch.empty(n_src, n_outputs, 3, arch["img_size"], arch["img_size"])
                bar = progress(total=n_outputs, desc=f"{mode} {domains[s_dom]}→{domains[t_dom]}", disable=not show_progress)
                for k in range(n_outputs):
                    for i in range(0, n_src, batch):
                        x = xs[i:i + batch]
                        if mode == "latent":
                            z = torch.randn(len(x), arch["latent_dim"], generator=g)
                            outs[i:i + len(x), k] = translate(nets, x, t_dom, z=z, precision=precision).cpu()
                        else:
                            idx = torch.randint(0, len(t_ds), (len(x),), generator=g).tolist()
                            ref = torch.stack([t_ds[j] for j in idx])
                            outs[i:i + len(x), k] = translate(nets, x, t_dom, ref=ref, precision=precision).cpu()
                    bar.update(1)
                bar.close()
                u8 = tensor_to_uint8(outs.flatten(0, 1))
                fake = source_statistics(TensorSource(u8, f"{mode} {domains[s_dom]}→{domains[t_dom]}"), ext,
                                         batch=batch, device=device, cache=False, show_progress=False)
                real = real_stats[t_dom]
                pairs[f"{domains[s_dom]}→{domains[t_dom]}"] = {
                    "fid": frechet_distance(fake.mu, fake.sigma, real.mu, real.sigma),
                    "lpips": lpips_diversity(outs.to(device), lp, batch=batch),
                    "n": n_src * n_outputs,
                }
        results[mode] = {"fid": float(np.mean([p["fid"] for p in pairs.values()])),
                         "lpips": float(np.mean([p["lpips"] for p in pairs.values()])), "pairs": pairs}
    return results


@click.command(name="eval", cls=ToonCommand, positional=("--ckpt",), aliases={
    "--json-out": "--json", "--lpips=random": "--features=random", "--lpips=alex": "--lpips-net=alex",
    "--lpips=vgg": "--lpips-net=vgg", "--lpips=squeeze": "--lpips-net=squeeze"})
@click.option("--ckpt", "checkpoint", type=click.Path(dir_okay=False), required=True,
              help="A StarGAN v2 checkpoint (translation/stargan2.py train).")
@click.option("--data", default=None, help="Test images, one sub-folder per domain [unseen synthetic faces].")
@click.option("--train-data", default=None, help="Training images for FID (sub-folder per domain) [the run's data].")
@click.option("--mode", type=click.Choice(["latent", "reference", "both"]), default="both", show_default=True)
@click.option("--n-test", type=click.IntRange(2), default=100, show_default=True, help="Test images per source domain (at most).")
@click.option("--n-outputs", type=click.IntRange(2), default=10, show_default=True, help="Outputs per test image.")
@click.option("--n-real", type=click.IntRange(2), default=None, help="Training images per target for FID [all].")
@click.option("--features", type=click.Choice(["inception", "random", "inception-random"]), default="inception",
              show_default=True, help="FID features (and LPIPS trunk): random = offline smoke test, comparable with "
                                      "nothing; inception-random: random Inception for timing.")
@click.option("--inception-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--lpips-net", "lpips_kind", type=click.Choice(["alex", "vgg", "squeeze"]), default="alex",
              show_default=True, help="LPIPS trunk (alex: the paper's).")
@click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None)
@click.option("--batch", type=click.IntRange(1), default=32, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Also write the results as JSON.")
def eval_cmd(checkpoint: str, data: str | None, train_data: str | None, mode: str, n_test: int, n_outputs: int,
             n_real: int | None, features: str, inception_weights: str | None, lpips_kind: str,
             lpips_weights: str | None, batch: int, seed: int, device: str, json_out: str | None) -> None:
    """FID and LPIPS diversity per the StarGAN v2 protocol (10 outputs per test image)."""
    with user_errors():
        dev = pick_device(device)
        res = evaluate(checkpoint, data, train_data, ("latent", "reference") if mode == "both" else (mode,),
                       n_test, n_outputs, n_real, features, inception_weights,
                       lpips=lpips_kind, lpips_random=features != "inception",
                       lpips_weights=lpips_weights, device=dev, batch=batch, seed=seed,
                       precision=resolve_precision("auto", dev))
    for line in res["features"]:
        click.echo(line)
    click.echo(res["lpips"])
    for m in ("latent", "reference"):
        if m in res:
            click.echo(f"{m}-guided: FID {res[m]['fid']:.2f}  LPIPS {res[m]['lpips']:.4f}  "
                       f"({len(res[m]['pairs'])} domain pairs, {n_outputs} outputs per image)")
            for k, v in res[m]["pairs"].items():
                click.echo(f"  {k}: FID {v['fid']:.2f}  LPIPS {v['lpips']:.4f}  (n={v['n']})")
    if json_out:
        with atomic_path(json_out) as tmp:
            Path(tmp).write_text(json.dumps(res, indent=2, default=str))
        click.echo(f"wrote {json_out}")


def extend_cli(group: click.Group) -> click.Group:
    """A copy of the ``stargan2`` command group with the ``eval`` command (composed in ``toonlab/cli.py``)."""
    import copy

    new = copy.copy(group)
    new.commands = {**group.commands, "eval": eval_cmd}
    return new
