"""The comparison's style scores again, with another style classifier: does a method's verdict change?

    python bench/style_rescore.py --runs train-state/compare64w --target webtoon \
        --probes train-state/probes/probes64_bg.pt [--n 500]

For every fine-tune of the comparison's run folders (``<runs>/<target>/seed<k>/<method>/``, the last
checkpoint of each), the source and (with ``--source``) the translators it trained applied to the
source's renders (``translate-<model>/``), the style score exactly as ``finetune/compare.py`` computes it
(``metrics.probes.style_probabilities``: the generator's own mapping, ψ 0.7, constant noise, latents
from the seed) with the bundled classifier of the target and with ``--probes``, side by side, mean over
seeds, and each method's difference from FreezeG with both. The comparison itself keeps its
instrument: its curves were scored during fine-tuning from snapshots that are not kept, so a new
classifier cannot re-score them (docs/PROBES.md, "What the quality and style scores read"). About a
minute per target on two CPU cores.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch

from finetune.compare_translators import TranslatedGenerator, TranslatorSpec, load_translator
from metrics.probes import ProbeBundle, probes_for, style_probabilities
from stylegan2.checkpoint import load_generator

REFERENCE = "freezeG"


@click.command()
@click.option("--runs", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="The comparison's --out folder.")
@click.option("--target", default="webtoon", show_default=True)
@click.option("--probes", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The probe bundle whose classifier to compare with the bundled one.")
@click.option("--source", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The comparison's source: its row, and the translators' inputs (compare.json records only "
                   "its hash).")
@click.option("--n", type=click.IntRange(2), default=500, show_default=True)
@click.option("--truncation", type=float, default=0.7, show_default=True)
def main(runs: Path, target: str, probes: str, source: str | None, n: int, truncation: float) -> None:
    """Style score per method with two classifiers."""
    old, new = ProbeBundle.load(probes_for(target)), ProbeBundle.load(probes)
    if new.target != target:
        raise click.UsageError(f"{probes} detects {new.target}, not {target}")
    rows: dict[str, dict[int, tuple[float, float]]] = {}
    seeds = sorted(int(m.group(1)) for p in (runs / target).glob("seed*")
                   if (m := re.fullmatch(r"seed(\d+)", p.name)))
    if not seeds:
        raise click.UsageError(f"no seed folders under {runs / target}")
    src = load_generator(source, "g_ema").eval() if source else None  # the translators' inputs, loaded once
    for seed in seeds:
        gens = {}
        if source:
            gens["source"] = Path(source)
        for d in sorted((runs / target / f"seed{seed}").iterdir()):
            cks = sorted((d / "checkpoints").glob("*.pt")) if (d / "compare.json").is_file() else []
            if cks:
                gens[d.name] = cks[-1]
        # The translators the comparison trained (translate-<model>/), applied to the source's renders.
        for d in sorted((runs / target / f"seed{seed}").glob("translate-*")):
            cks = sorted((d / "checkpoints").glob("*.pt"))
            if cks and source:
                gens[f"{d.name.split('-', 1)[1]} (translation)"] = cks[-1]
        for name, ck in gens.items():
            if name.endswith("(translation)"):
                model = name.split(" ", 1)[0]
                fn = load_translator(TranslatorSpec(str(ck), target, model, name), torch.device("cpu"), seed)
                G = TranslatedGenerator(src, fn)
            else:
                G = load_generator(ck, "g_ema").eval()
            with torch.no_grad():
                a, b = (style_probabilities(bundle, G, n=n, seed=seed, batch=64, truncation=truncation).mean().item()
                        for bundle in (old, new))
            rows.setdefault(name, {})[seed] = (a, b)
            click.echo(f"{target} seed {seed} {name}: bundled classifier {a:.3f}, {Path(probes).name} {b:.3f}",
                       err=True)
    mean = {k: tuple(sum(v[s][i] for s in v) / len(v) for i in (0, 1)) for k, v in rows.items()}
    ref = mean.get(REFERENCE)
    click.echo(f"| method ({target}, {len(seeds)} seeds, n {n}, ψ {truncation:g}) | bundled classifier | "
               f"{Path(probes).name} | bundled − {REFERENCE} | new − {REFERENCE} |")
    click.echo("|---|---:|---:|---:|---:|")
    for k, (a, b) in sorted(mean.items(), key=lambda kv: -kv[1][1]):
        da, db = ("—", "—") if ref is None else (f"{a - ref[0]:+.3f}", f"{b - ref[1]:+.3f}")
        click.echo(f"| {k} | {a:.3f} | {b:.3f} | {da} | {db} |")
    click.echo(f"bundled: {old.summary()}")
    click.echo(f"new: {new.summary()}")


if __name__ == "__main__":
    main()
