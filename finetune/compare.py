"""Measured comparison of the fine-tuning methods (FreezeD, FreezeG, FreezeSG, structure loss,
their combination, plain fine-tuning, and layer swapping on top of each).

    python finetune/compare.py [--ckpt G.pt] [--target webtoon] [--kimg 2] [--report docs/COMPARISON.md]
    python finetune/compare.py --quick            # tiny smoke run: a few steps, 64 latents

Every method fine-tunes the same source to the same synthetic target for the same number of
images with the same seed, into ``runs/compare/<method>/`` (re-running skips finished methods and
resumes unfinished ones). Each result, and its layer-swapped blend with the source
(``blend_generators(source, tuned, k)``), is then scored with the probes of
``metrics/probes.py``:

- structure error (lower = keeps the source's face geometry): the structure regressor's mean
  absolute disagreement between the source and the result rendering the same z (each through its
  own mapping network, as a user samples them) and noise;
- style score (higher = more cartoon): the style classifier's mean P(target domain).

The report (markdown table + a grid PNG + a paragraph derived from the numbers) says whether the
numbers support the paper's claim that FreezeSG and the structure loss keep the source's
structure better than FreezeG.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from PIL import Image
from torch import Tensor

from metrics.probes import (
    DEFAULT_PROBES,
    SCORE_MIN_R2,
    ProbeBundle,
    domain_references,
    geometry_predictions,
    structure_errors,
    structure_references,
    style_probabilities,
    quality_score,
    train_probes,
)
from stylegan2.networks import Generator
from toonlab.atomic import write_json_atomic
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import REPO_ROOT, bundled_generator

__all__ = ["METHODS", "CompareSettings", "MethodResult", "run_comparison", "write_report", "comparison_grid"]

# Method name → FinetuneConfig overrides. The depths follow the paper's 256-px setups scaled to
# the small generators here: 2 frozen blocks for FreezeSG, 2 trained blocks for FreezeG, 2 trained
# D blocks for FreezeD, structure loss on blocks 1..3.
METHODS: dict[str, dict[str, int | str | bool]] = {
    "freezeD": {"freeze_d": 2},
    "freezeG": {"freeze_g": 2},
    "freezeSG": {"freeze": 2},
    "structure": {"structure_loss": 3},
    "freezeSG+structure": {"freeze": 2, "structure_loss": 3},
    "none": {},
}
# Bumped when a method's meaning changes, so runs of the old meaning are not reused
# (2: issue 11 — FreezeSG with the source's early style vectors, G starting from g_ema).
DEFINITIONS = 2
# The paper's claim is about these methods versus FreezeG.
CLAIMED = ("freezeSG", "structure", "freezeSG+structure")
BASELINE = "freezeG"
_FLAG = {"freeze": "--freeze", "freeze_g": "--freeze-g", "freeze_d": "--freeze-d", "structure_loss": "--structure-loss",
         "freeze_style": "--freeze-style", "freeze_mapping": "--freeze-mapping", "freeze_mode": "--freeze-mode",
         "structure_on": "--structure-on"}


def method_flags(name: str) -> str:
    """The ``finetune/train.py`` flags of a method, e.g. ``--freeze 2 --structure-loss 3``."""
    return " ".join(_FLAG[k] if v is True else f"{_FLAG[k]} {v}" for k, v in METHODS[name].items()) or "(none)"


def _display(path: str | Path | None) -> str:
    """A path as the report shows it: relative to the repository root when inside it."""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


@dataclass
class CompareSettings:
    """Everything that defines one comparison; ``resolved()`` fills the derived values."""

    source: str | None = None  # None → the bundled generator
    target: str = "webtoon"
    kimg: float = 2.0  # images per method, in thousands
    iters: int | None = None  # overrides kimg
    batch: int = 8
    seed: int = 0
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    swap_block: int = 2
    n: int = 1000  # latents scored per generator
    truncation: float = 0.7
    ema_kimg: float | None = None  # None → min(10, 5 % of the run), see resolved()
    out_root: str = "runs/compare"
    probes: str = str(DEFAULT_PROBES)
    device: str = "auto"
    quick: bool = False
    grid_seeds: list[int] = field(default_factory=lambda: list(range(8)))
    snapshot_every: int = 50

    def resolved(self) -> "CompareSettings":
        """A copy with the source path, iteration count, EMA half-life and quick-mode sizes set."""
        s = CompareSettings(**{k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()})
        if s.source is None:
            s.source = str(bundled_generator())
        if s.quick:  # a smoke test of the whole pipeline, numbers meaningless
            s.iters = s.iters or 2
            s.batch = min(s.batch, 4)
            s.n = min(s.n, 64)
            s.grid_seeds = s.grid_seeds[:4]
            s.snapshot_every = 0
        if s.iters is None:
            s.iters = max(1, int(round(s.kimg * 1000 / s.batch)))
        s.kimg = s.iters * s.batch / 1000
        if s.ema_kimg is None:
            # The trainer's 10-kimg EMA half-life (community default) would leave g_ema ≈ 87 % source
            # weights after 2 kimg; StyleGAN2-ADA caps the half-life at 5 % of the images seen
            # (ema_rampup = 0.05). Same for every method, so the comparison stays fair.
            s.ema_kimg = min(10.0, 0.05 * s.kimg)
        from toonlab.synthetic import DOMAINS

        if s.target not in DOMAINS or s.target == "photo":
            raise UserInputError(f"--target {s.target!r}: choose a built-in cartoon domain "
                                 f"({', '.join(d for d in DOMAINS if d != 'photo')})")
        unknown = [m for m in s.methods if m not in METHODS]
        if unknown:
            raise UserInputError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not s.methods:
            raise UserInputError("no methods to compare")
        return s

    def command(self, out: str | Path) -> str:
        """The command line, run from the repository root, that reproduces this comparison (all
        settings explicit; paths inside the repository relative to it)."""
        args = ["python", "finetune/compare.py", "--ckpt", _display(self.source), "--target", self.target]
        args += ["--iters", str(self.iters)] if self.quick else ["--kimg", f"{self.kimg:g}"]
        args += ["--batch", str(self.batch), "--seed", str(self.seed), "--methods", ",".join(self.methods),
                 "--swap-block", str(self.swap_block), "--n", str(self.n), "--truncation", f"{self.truncation:g}",
                 "--ema-kimg", f"{self.ema_kimg:g}", "--probes", _display(self.probes),
                 "--out", _display(self.out_root), "--report", _display(out)]
        if self.quick:
            args.append("--quick")
        return shlex.join(args)


@dataclass
class MethodResult:
    """One row of the comparison: the source, a fine-tuned generator or its layer-swapped blend."""

    name: str
    kind: str  # "source" | "finetune" | "swap"
    flags: str
    structure_error: float
    structure_se: float  # standard error over the scored latents
    style_score: float
    quality: float | None = None  # probe-feature Fréchet distance of its samples to its domain's renders
    quality_ref: tuple[float, float] | None = None  # that distance's (floor, scale), see metrics.probes.QualityScore
    images: int | None = None  # images the method saw while fine-tuning
    train_seconds: float | None = None
    checkpoint: str | None = None
    per_latent: Tensor | None = field(default=None, repr=False, compare=False)
    generator: Generator | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("per_latent", "generator")}


# --------------------------------------------------------------------------- running


def _load_bundle(s: CompareSettings, probes: ProbeBundle | None, log: Callable[[str], None]) -> ProbeBundle:
    if probes is None:
        if s.quick and not Path(s.probes).is_file():
            log(f"--quick: {s.probes} not found, training throw-away tiny probes (their scores mean nothing)")
            probes = train_probes(("photo", s.target), s.target, n_per_domain=32, steps=20, batch=16, seed=s.seed,
                                  width=8, classifier_width=8,
                                  n_eval=16)
        else:
            probes = ProbeBundle.load(s.probes)
    if probes.target != s.target:
        raise UserInputError(f"the probes detect '{probes.target}', not '{s.target}': train matching ones with "
                             f"python -m metrics.probes train --target {s.target} --out PATH, then pass --probes PATH")
    return probes


def _check_source(s: CompareSettings) -> None:
    if not Path(str(s.source)).is_file():
        raise UserInputError(f"source generator not found: {s.source} (pass --ckpt G.pt)")


def _check_record(path: Path, expect: dict[str, Any]) -> dict[str, Any]:
    """A method folder is reused only for the same source, target, seed, batch and method."""
    if not path.exists():
        return {**expect, "train_seconds": 0.0}
    rec = json.loads(path.read_text())
    for k, v in expect.items():
        if rec.get(k) != v:
            raise UserInputError(f"{path.parent} holds a run with other settings ({k}: {rec.get(k)!r}, now {v!r}); "
                                 f"delete it or pass another --out")
    return rec


def finetune_method(name: str, s: CompareSettings, log: Callable[[str], None]) -> tuple[Path, float, int]:
    """Fine-tune (or resume, or skip when done) one method; returns (checkpoint, seconds, images seen).

    Seconds are summed over invocations, an interrupted one included, so a resumed method
    reports the whole time it cost.
    """
    from finetune.train import finetune
    from finetune.trainer import FinetuneConfig
    from toonlab.atomic import write_json_atomic
    from toonlab.checkpoint import file_hash
    from toonlab.run import CKPT_RE, RunDir

    out = Path(s.out_root) / name
    expect = {"method": name, "overrides": METHODS[name], "source_sha256": file_hash(s.source), "target": s.target,
              "seed": s.seed, "batch": s.batch, "ema_kimg": s.ema_kimg, "definitions": DEFINITIONS}
    record_path = out / "compare.json"
    record = _check_record(record_path, expect)
    latest = RunDir(out).latest()
    done = int(CKPT_RE.match(latest.name).group(1)) if latest is not None else 0
    if done < s.iters:
        cfg = FinetuneConfig(source=str(s.source), target=s.target, data=f"synthetic:{s.target}", out=str(out),
                             iters=s.iters, batch=s.batch, seed=s.seed, ema_kimg=float(s.ema_kimg), workers=0,
                             device=s.device, snapshot_every=s.snapshot_every, sample_every=0, keep=2,
                             **METHODS[name])
        log(f"[{name}] fine-tuning {method_flags(name)}: {s.iters} steps × {s.batch} images"
            + (f" (resuming at step {done})" if done else ""))
        record_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            finetune(cfg)
        finally:
            record["train_seconds"] = float(record.get("train_seconds", 0.0)) + time.time() - t0
            write_json_atomic(record_path, record)
        latest = RunDir(out).latest()
        done = int(CKPT_RE.match(latest.name).group(1))
    else:
        log(f"[{name}] already fine-tuned ({latest}), skipping")
    return latest, float(record.get("train_seconds", 0.0)), done * s.batch


def _se(x: Tensor) -> float:
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else 0.0


def run_comparison(
    settings: CompareSettings | None = None,
    probes: ProbeBundle | None = None,
    log: Callable[[str], None] | None = None,
) -> list[MethodResult]:
    """Fine-tune every method of ``settings`` (resumable) and score it and its layer-swapped
    blend; returns the source row first, then each method followed by its ``+swapK`` row.

    ``probes`` overrides ``settings.probes`` (a path). Raises ``UserInputError`` (one line) for a
    missing source or probe bundle and for settings that do not fit the generator.
    """
    from stylegan2.blend import blend_generators
    from stylegan2.checkpoint import load_generator
    from toonlab.runtime import pick_device

    say = log or (lambda msg: None)
    s = (settings or CompareSettings()).resolved()
    _check_source(s)
    bundle = _load_bundle(s, probes, say)
    device = pick_device(s.device)
    src = load_generator(s.source, "g_ema", device)
    if not 1 <= s.swap_block < src.n_blocks:
        raise UserInputError(f"--swap-block {s.swap_block}: this {src.size}-px generator has blocks 1..{src.n_blocks}; "
                             f"use 1..{src.n_blocks - 1}")
    score_kw = dict(n=s.n, seed=s.seed, batch=64, truncation=s.truncation)
    # The source's readings are shared by every row: render it once.
    src_pred = geometry_predictions(bundle, src, src, **score_kw)
    # Quality references (renders, floor, scale) once per domain: the source draws photo, the rest the target.
    refs = {d: domain_references(bundle, d, n=s.n, seed=s.seed) for d in ("photo", s.target)}
    quality_ref = {d: (r[1], r[2]) for d, r in refs.items()}

    def quality(G: Generator, domain: str) -> float:
        return quality_score(bundle, G, domain, n=s.n, seed=s.seed, references=refs[domain]).score

    results = [MethodResult("source", "source", "(reference)", 0.0, 0.0,
                            float(style_probabilities(bundle, src, **score_kw).mean()), quality(src, "photo"),
                            quality_ref["photo"], generator=src, per_latent=torch.zeros(s.n), checkpoint=str(s.source))]
    for name in s.methods:
        ckpt, seconds, images = finetune_method(name, s, say)
        tuned = load_generator(ckpt, "g_ema", device)
        blend = blend_generators(src, tuned, s.swap_block)
        for row_name, kind, G in ((name, "finetune", tuned), (f"{name}+swap{s.swap_block}", "swap", blend)):
            err = structure_errors(bundle, src, G, src_predictions=src_pred, **score_kw)
            style = float(style_probabilities(bundle, G, **score_kw).mean())
            results.append(MethodResult(
                row_name, kind, method_flags(name) + (f" + swap {s.swap_block}" if kind == "swap" else ""),
                float(err.mean()), _se(err), style, quality(G, s.target),
                quality_ref[s.target], images=images, train_seconds=seconds if kind == "finetune" else None,
                checkpoint=str(ckpt), per_latent=err, generator=G))
            say(f"[{row_name}] structure error {err.mean():.4f} ± {_se(err):.4f}, style score {style:.3f}, "
                f"quality {results[-1].quality:.3f}")
    write_json_atomic(Path(s.out_root) / "results.json",
                      {"settings": s.__dict__, "results": [r.to_dict() for r in results]})
    return results


# --------------------------------------------------------------------------- report


@torch.no_grad()
def comparison_grid(results: Sequence[MethodResult], seeds: Sequence[int], truncation: float = 0.7) -> Image.Image:
    """Rows = results (source first), columns = ``seeds``; every row renders the same z (that of
    ``generate.py --seeds``) through its *own* mapping network, truncated toward its own mean w,
    with the source's const noise, as the scores do (``metrics.probes.structure_errors``)."""
    from stylegan2.sampling import seed_inputs
    from toonlab.images import make_grid

    src = results[0].generator
    assert src is not None and results[0].kind == "source"
    dev = src.w_avg.device
    z = torch.cat([seed_inputs(src, s)[0] for s in seeds]).to(dev)
    noise = src.const_noise()
    rows = [r.generator.synthesis(r.generator.mapping(z, truncation=truncation), noise=noise,
                                  noise_mode="const").image.float().cpu()
            for r in results if r.generator is not None]
    return make_grid(torch.cat(rows), cols=len(seeds), col_labels=[f"seed {s}" for s in seeds],
                     row_labels=[r.name for r in results if r.generator is not None])


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, sec = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def _num(x: float) -> str:
    """4 decimals, or scientific notation when that would print 0.0000 for a non-zero value."""
    return f"{x:.4f}" if x == 0 or abs(x) >= 5e-4 else f"{x:.2e}"


def _paired(a: MethodResult, b: MethodResult) -> tuple[float, float]:
    """Mean and standard error of a's minus b's per-latent structure error (same latents)."""
    d = a.per_latent - b.per_latent
    return float(d.mean()), _se(d)


def _verdict(diff: float, se: float) -> str:
    if diff + 2 * se < 0:
        return "lower"
    if diff - 2 * se > 0:
        return "higher"
    return "not clearly different"


def what_the_numbers_say(results: Sequence[MethodResult], probes: ProbeBundle | None, swap_block: int,
                         scale: tuple[float, float] | None = None) -> str:
    """The report's conclusion paragraph, derived from the numbers only (nothing hard-coded).

    Differences are paired over the same latents and called only when they exceed two standard
    errors; a lower structure error also needs a comparable style score to mean anything, since
    a generator that never left the source would score 0. ``scale`` = (floor, ceiling) of
    :func:`metrics.probes.structure_references`, quoted for scale.
    """
    by = {r.name: r for r in results}
    tuned = [r for r in results if r.kind == "finetune"]
    src = by["source"]
    out: list[str] = []
    if tuned:
        ranked = sorted(tuned, key=lambda r: r.structure_error)
        out.append("Structure error, lowest first (fine-tuned generators): "
                   + ", ".join(f"{r.name} {_num(r.structure_error)}" for r in ranked)
                   + (f" (for scale: the same synthetic face drawn as photo and as cartoon {_num(scale[0])}, two "
                      f"different faces {_num(scale[1])})" if scale else "") + ".")
        styl = sorted(tuned, key=lambda r: -r.style_score)
        out.append("Style score, highest first: " + ", ".join(f"{r.name} {r.style_score:.3f}" for r in styl)
                   + f" (source {src.style_score:.3f}).")
        weak = [r.name for r in tuned if r.style_score < 0.5]
        if weak:
            out.append(f"Not yet cartoon by the classifier (style score < 0.5): {', '.join(weak)}; their structure "
                       "errors are low partly because they changed little.")
    base = by.get(BASELINE)
    claimed = [by[m] for m in CLAIMED if m in by]
    if base is None or not claimed:
        out.append(f"The paper's claim (FreezeSG and structure loss keep the structure better than FreezeG) cannot be "
                   f"checked here: this run lacks {BASELINE if base is None else 'freezeSG/structure'}.")
    else:
        lower, parts = [], []
        for r in claimed:
            diff, se = _paired(r, base)
            v = _verdict(diff, se)
            dstyle = r.style_score - base.style_score
            parts.append(f"{r.name} {_num(r.structure_error)} vs {BASELINE} {_num(base.structure_error)} "
                         f"(paired difference {'+' if diff >= 0 else '−'}{_num(abs(diff))} ± {_num(se)} s.e.: {v}; "
                         f"style score {dstyle:+.3f})")
            # "Keeps the structure better" only counts when the result is about as cartoon as FreezeG's.
            if v == "lower" and dstyle > -0.1:
                lower.append(r.name)
        out.append("Against FreezeG: " + "; ".join(parts) + ".")
        claim = "the paper's claim that FreezeSG and the structure loss keep the source's structure better than FreezeG"
        rule = ("counting a method only when its structure error is lower by more than two standard errors and its "
                "style score is within 0.1 of FreezeG's")
        if base.style_score < 0.5:
            # FreezeG never reached the target domain: keeping the structure is then trivially easy.
            out.append(f"These numbers cannot test {claim}: FreezeG's style score is {base.style_score:.3f} (< 0.5), "
                       f"so the run was too short to reach the target domain.")
        else:
            if len(lower) == len(claimed):
                verdict = "support"
            elif lower:
                verdict = f"partly support ({', '.join(lower)} only)"
            else:
                verdict = "do not support"
            out.append(f"These numbers {verdict} {claim} ({rule}).")
    swaps = [(by[r.name], by.get(f"{r.name}+swap{swap_block}")) for r in tuned]
    swaps = [(a, b) for a, b in swaps if b is not None]
    if swaps:
        better = [a.name for a, b in swaps if _verdict(*_paired(b, a)) == "lower"]
        dstyle = sum(b.style_score - a.style_score for a, b in swaps) / len(swaps)
        out.append(f"Layer swapping at block {swap_block} (source blocks 1..{swap_block}) lowered the structure error "
                   f"for {len(better)} of {len(swaps)} methods"
                   + (f" ({', '.join(better)})" if better else "")
                   + f", changing the style score by {dstyle:+.3f} on average.")
    if probes is not None and probes.metrics:
        m = probes.metrics
        r2 = probes.field_r2()
        n_readable = sum(v >= SCORE_MIN_R2 for v in r2.values())
        if n_readable < 5 or m.get("accuracy", 1.0) < 0.9:
            out.append(f"Caution: the probes are weak ({n_readable} geometry fields read with R² ≥ "
                       f"{SCORE_MIN_R2:g}, classifier accuracy {m.get('accuracy', float('nan')):.2f}); "
                       "treat these numbers as rough.")
    return " ".join(out)


def _machine() -> str:
    dev = f"CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only"
    return (f"{platform.platform()}, {os.cpu_count()} CPUs, {dev}, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def write_report(
    results: Sequence[MethodResult],
    out: str | Path = "docs/COMPARISON.md",
    *,
    settings: CompareSettings,
    probes: ProbeBundle | None = None,
    grid: str | Path | None = None,
    command: str | None = None,
) -> tuple[Path, Path]:
    """Write the markdown report and the grid PNG (default ``<out dir>/images/comparison.png``)."""
    from toonlab.atomic import save_image_atomic

    s = settings.resolved()
    out = Path(out)
    grid = Path(grid) if grid is not None else out.parent / "images" / "comparison.png"
    save_image_atomic(comparison_grid(results, s.grid_seeds, s.truncation), grid)
    grid_rel = os.path.relpath(grid.resolve(), out.parent.resolve())
    from toonlab.synthetic import GEOMETRY_FIELDS

    fields = ", ".join(GEOMETRY_FIELDS[i] for i in (probes.readable_fields() if probes is not None
                                                    else range(len(GEOMETRY_FIELDS))))
    images = {r.images for r in results if r.images is not None}
    size = results[0].generator.size if results[0].generator is not None else "?"
    floor, ceiling = structure_references(probes, s.target, seed=s.seed) if probes is not None else (0.0, 0.0)
    quality_refs = {("photo" if r.kind == "source" else s.target): r.quality_ref for r in results if r.quality_ref}
    lines = [
        "# Fine-tuning methods compared (measured)",
        "",
        "_Generated by `finetune/compare.py`; re-run the command below to regenerate._"
        + (" **Quick smoke run: the numbers mean nothing.**" if s.quick else ""),
        "",
        f"- Command: `{command or s.command(out)}`",
        f"- Machine: {_machine()}",
        f"- Source: `{_display(s.source)}` ({size} px); "
        f"target: built-in `synthetic:{s.target}`",
        f"- Fine-tuning: {s.iters} steps × batch {s.batch} = {s.iters * s.batch:,} images per method "
        f"(seen: {', '.join(f'{i:,}' for i in sorted(images)) or '–'}), seed {s.seed}, "
        f"EMA half-life {s.ema_kimg:g} kimg, other settings the `finetune/train.py` defaults",
        f"- Scoring: {s.n:,} latents (z seed {s.seed}), truncation ψ = {s.truncation:g} toward the source's mean w, "
        f"the source's stored (const) noise; layer swap = source blocks 1..{s.swap_block}, the rest fine-tuned",
    ]
    if probes is not None:
        lines.append(f"- Probes: `{_display(s.probes)}` — {probes.summary()}")
    lines += [
        "",
        "| method | flags | images seen | fine-tune time | structure error ↓ | ± s.e. | style score ↑ "
        "| quality ↓ |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        img = f"{r.images:,}" if r.images is not None and r.kind == "finetune" else "–"
        se = _num(r.structure_se) if r.kind != "source" else "–"
        err = "0 (by definition)" if r.kind == "source" else _num(r.structure_error)
        lines.append(f"| {r.name} | {r.flags} | {img} | {_fmt_time(r.train_seconds)} | {err} | {se} | "
                     f"{r.style_score:.3f} | {'–' if r.quality is None else f'{r.quality:.3f}'} |")
    lines += [
        "",
        f"![rows = methods (source first), columns = the same seeds]({grid_rel})",
        "",
        f"_Grid: rows = the source, then each method and its `+swap{s.swap_block}` blend; columns = seeds "
        f"{', '.join(map(str, s.grid_seeds))} (the z of `generate.py --seeds`), each row through its own mapping "
        f"network, ψ = {s.truncation:g}, const noise — the same z in every row._",
        "",
        "## What the numbers say",
        "",
        what_the_numbers_say(results, probes, s.swap_block, (floor, ceiling) if probes is not None else None),
        "",
        "## How the scores are computed",
        "",
        "- **Structure error**: for each latent, the structure regressor (`metrics/probes.py`) reads the "
        "normalised face geometry (each field in [0, 1] over its sampling range) from the source image and from "
        "the fine-tuned image of the same z (through the fine-tuned model's own mapping network, which FreezeSG's "
        "later style entries, FreezeD and the structure loss train) and noise; the error is the mean absolute difference over the fields "
        f"it reads with held-out R² ≥ {SCORE_MIN_R2:g} on GAN-look images ({fields}; the others, and why, in "
        "docs/PROBES.md), averaged over latents (0.05 = the readings differ "
        "by 5 % of a parameter's range). The regressor was trained on all synthetic domains with the same face "
        "parameters, so it reads geometry, not drawing style. "
        + (f"For scale, on synthetic faces: the same face drawn as photo and as {s.target} scores {_num(floor)} "
           f"(the floor a perfect style transfer would reach), two different faces {_num(ceiling)}."
           if probes is not None else ""),
        "- **Style score**: mean probability that the style classifier (photo vs "
        f"{s.target}) calls the generator's own samples (its own mapping network, ψ = {s.truncation:g}) cartoon.",
        "- **Quality**: Fréchet distance in the probes' feature space (`metrics.probes quality`) between "
        f"{s.n:,} of the generator's own samples (ψ = 1, random noise) and {s.n:,} fresh renders of its domain "
        f"(photo for the source, {s.target} for the rest); lower is better. "
        + ("; ".join(f"{d}: floor (renders vs renders) {f:.3f}, scale (photo vs {s.target if d == 'photo' else d} "
                     f"renders) {c:.3f}" for d, (f, c) in quality_refs.items()) + "."
           if quality_refs else ""),
        "- Differences between methods are paired over the same latents; the text calls one only when it "
        "exceeds two standard errors. A low structure error alone is not a win: the untouched source scores 0.",
        "- Fine-tune time is the wall time of `finetune()` for that method on this machine (summed over resumed runs).",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines), encoding="utf-8")
    os.replace(tmp, out)
    return out, grid


# --------------------------------------------------------------------------- CLI


@click.command(name="compare", cls=ToonCommand, aliases={
    "--source": "--ckpt", "--iter": "--iters", "--out=*.md": "--report", "--out-root": "--out"})
@click.option("--ckpt", "source", type=click.Path(dir_okay=False), default=None,
              show_default="the bundled 64-px face model", help="Source (face) generator checkpoint.")
@click.option("--target", default="webtoon", show_default=True, help="Built-in synthetic target domain.")
@click.option("--kimg", type=click.FloatRange(0.001), default=2.0, show_default=True,
              help="Fine-tuning length per method, thousands of images.")
@click.option("--iters", "iters", type=click.IntRange(1), default=None, help="Steps per method (overrides --kimg).")
@click.option("--batch", type=click.IntRange(2), default=8, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated subset.")
@click.option("--swap-block", type=click.IntRange(1), default=2, show_default=True,
              help="Layer swap: blocks 1..K from the source, the rest from the fine-tuned model.")
@click.option("--n", type=click.IntRange(2), default=1000, show_default=True, help="Latents scored per generator.")
@click.option("--truncation", type=click.FloatRange(0.0, 1.0), default=0.7, show_default=True)
@click.option("--ema-kimg", type=click.FloatRange(0.0, min_open=True), default=None,
              show_default="min(10, 5 % of the run)", help="EMA half-life while fine-tuning.")
@click.option("--probes", type=click.Path(dir_okay=False), default=str(DEFAULT_PROBES), show_default=True,
              help="Probe bundle from `python -m metrics.probes train`.")
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="runs/compare", show_default=True,
              help="Folder of the methods' run folders.")
@click.option("--report", "out", type=click.Path(dir_okay=False), default="docs/COMPARISON.md", show_default=True,
              help="The markdown report to write.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None,
              show_default="<report folder>/images/comparison.png", help="Grid PNG.")
@click.option("--device", default="auto", show_default=True)
@click.option("--quick", is_flag=True, help="Tiny smoke run: 2 steps per method, 64 latents.")
def main(source: str | None, target: str, kimg: float, iters: int | None, batch: int, seed: int, methods: str,
         swap_block: int, n: int, truncation: float, ema_kimg: float | None, probes: str, out_root: str, out: str,
         grid: str | None, device: str, quick: bool) -> None:
    """Fine-tune one source with every method and write a measured comparison."""
    if source is None and not bundled_generator().exists():
        raise ToonlabError(f"no --ckpt given and the bundled generator is missing at {bundled_generator()}; "
                           f"pass --ckpt G.pt (a StyleGAN2 checkpoint)")
    settings = CompareSettings(source=source, target=target, kimg=kimg, iters=iters, batch=batch, seed=seed,
                               methods=[m.strip() for m in methods.split(",") if m.strip()], swap_block=swap_block,
                               n=n, truncation=truncation, ema_kimg=ema_kimg, out_root=out_root, probes=probes,
                               device=device, quick=quick)
    with user_errors():
        s = settings.resolved()
        _check_source(s)  # before the probes: a missing source is the likelier mistake
        bundle = _load_bundle(s, None, click.echo)
        results = run_comparison(s, bundle, click.echo)  # Ctrl-C: the trainer's "re-run to resume" line
        report, grid_path = write_report(results, out, settings=s, probes=bundle, grid=grid)
    click.echo(f"wrote {report} and {grid_path}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("compare")
