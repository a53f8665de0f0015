"""Measured comparison of the fine-tuning methods (FreezeD, FreezeG, FreezeSG, structure loss,
their combination, plain fine-tuning, and layer swapping on top of each), and of the translators
(AnimeGANv2, CartoonGAN, CycleGAN, StarGAN v2) applied to the same source renders.

    python finetune/compare.py --targets webtoon,sketch --seeds 0,1 --kimg 40 --eval-every-kimg 2 \\
        --until-level \\
        --train-translators animegan2,cartoongan,cyclegan --translator-iters 4000
    python finetune/compare.py --quick            # tiny smoke run: a few steps, 64 latents

Every method × target × seed fine-tunes the same source for the same number of images into its
own run folder, ``<out>/<target>/seed<k>/<method>/`` (re-running skips finished runs and resumes
unfinished ones from their checkpoint). The run trains in segments of ``--eval-every-kimg``: after
each, the EMA snapshot is scored (``curve.json`` next to the run: structure error, style score and,
with ``--curve-quality``, the quality score against kimg), and with ``--until-level`` the method
stops once its style score has levelled off (the last ``--level-k`` points within
``--level-tol``). The final generator and its layer-swapped blend with the source
(``blend_generators(source, tuned, k)``) are then scored with the probes of
``metrics/probes.py``:

- structure error (lower = keeps the source's face geometry): the structure regressor's mean
  absolute disagreement between the source and the result rendering the same z (each through its
  own mapping network, as a user samples them) and noise;
- style score (higher = more cartoon): the style classifier's mean P(target domain);
- quality (lower = better): Fréchet distance in the probes' features to renders of the domain.

Translators are scored the same way on the source's renders of the same latents (their rows say
"translation"). The report (per-target tables with standard errors over latents and over seeds,
paired differences against FreezeSG, the curves plot, a grid per target and a paragraph derived
from the numbers) says what the numbers say about the paper's claim that FreezeSG and the
structure loss keep the source's structure better than FreezeG.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
from PIL import Image
from torch import Tensor

from finetune.compare_stats import Paired, Row, aggregate, level_noise_note, levelled, paired, se, verdict
from finetune.compare_translators import TranslatorSpec
from metrics.probes import (
    SCORE_MIN_R2,
    ProbeBundle,
    bundled_probes,
    domain_references,
    geometry_predictions,
    quality_score,
    structure_errors,
    structure_references,
    style_probabilities,
    train_probes,
)
from stylegan2.networks import Generator
from toonlab.atomic import write_json_atomic, write_text_atomic
from toonlab.bundled import trained_kimg
from toonlab.errors import ToonlabError, UserInputError, user_errors
from toonlab.options import ToonCommand
from toonlab.runtime import REPO_ROOT, bundled_generator

__all__ = ["METHODS", "CompareSettings", "MethodResult", "Study", "run_comparison", "write_report",
           "comparison_grid", "what_the_numbers_say", "score_translator", "mean_curves"]

# Method name → FinetuneConfig overrides. The depths follow the paper's 256-px setups scaled to
# the small generators here: 2 frozen blocks for FreezeSG, 2 trained blocks for FreezeG, 2 trained
# D blocks for FreezeD, structure loss on blocks 1..3. "freezeG3" is FreezeG at FreezeSG's depth:
# on a 64-px generator (5 blocks) FreezeG 2 freezes blocks 1..3 but FreezeSG 2 only blocks 1..2,
# so FreezeG 3 (blocks 1..2 frozen) is the row that tells whether FreezeSG's frozen style vectors
# keep more structure than freezing the same blocks does, rather than whether freezing more does.
METHODS: dict[str, dict[str, int | str | bool]] = {
    "freezeD": {"freeze_d": 2},
    "freezeG": {"freeze_g": 2},
    "freezeG3": {"freeze_g": 3},
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
# FreezeG with FreezeSG's frozen blocks (see METHODS), reported beside the claim.
MATCHED_BASELINE = "freezeG3"
# The table's paired differences are against this method (same latents, seed, target and swap state).
REFERENCE = "freezeSG"
_FLAG = {"freeze": "--freeze", "freeze_g": "--freeze-g", "freeze_d": "--freeze-d", "structure_loss": "--structure-loss",
         "freeze_style": "--freeze-style", "freeze_mapping": "--freeze-mapping", "freeze_mode": "--freeze-mode",
         "structure_on": "--structure-on"}


def method_flags(name: str) -> str:
    """The ``finetune/train.py`` flags of a method, e.g. ``--freeze 2 --structure-loss 3``."""
    return " ".join(_FLAG[k] if v is True else f"{_FLAG[k]} {v}" for k, v in METHODS[name].items()) or "(none)"


def _translator_how(spec: TranslatorSpec, seed: int) -> str:
    """A translator row's "how" text. One trained here lives in each seed's folder, so the text names
    the folder with ``seed<k>``: the same for every seed, where the first seed's path would pass
    for all of them."""
    where = _display(spec.path)
    if not spec.trained_here:
        return where
    # In backticks: a bare <k> would be read as an HTML tag and vanish from the rendered table.
    return "`" + re.sub(rf"(^|/)seed{seed}/", r"\1seed<k>/", where) + "` (trained here, one per seed)"


def _display(path: str | Path | None) -> str:
    """A path as the report shows it: relative to the repository root when inside it."""
    p = Path(str(path))
    try:
        return str(p.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(p)


def _csv(value: str | Sequence[Any] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    return [v.strip() for v in items if str(v).strip()]


@dataclass
class CompareSettings:
    """Everything that defines one comparison; ``resolved()`` fills the derived values.

    ``target``/``seed`` are the single-run spellings of ``targets``/``seeds`` (used when those are
    empty)."""

    source: str | None = None  # None → the bundled generator
    target: str = "webtoon"
    targets: list[str] = field(default_factory=list)
    kimg: float = 2.0  # images per method (the most, with until_level), in thousands
    iters: int | None = None  # overrides kimg
    batch: int = 8
    seed: int = 0
    seeds: list[int] = field(default_factory=list)
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    swap_block: int = 2
    n: int = 1000  # latents scored per generator for the table
    truncation: float = 0.7
    ema_kimg: float | None = None  # None → min(10, 5 % of the run), see resolved()
    out_root: str = "runs/compare"
    # comma-separated bundles, each scoring the target it detects: by default every bundled one
    probes: str = field(default_factory=lambda: ",".join(map(str, bundled_probes())))
    device: str = "auto"
    quick: bool = False
    grid_seeds: list[int] = field(default_factory=lambda: list(range(8)))
    snapshot_every: int = 50
    eval_every_kimg: float | None = None  # None → 8 points per run
    eval_every: int | None = None  # steps; set by resolved()
    eval_n: int = 200  # latents per curve point
    curve_quality: bool = False  # also the quality score on the curves
    quality: bool = True  # the quality column (a Fréchet distance per row: the slowest score on a CPU)
    until_level: bool = False
    level_k: int = 3
    level_tol: float = 0.02
    translators: list[str] = field(default_factory=list)  # PATH or TARGET=PATH
    train_translators: list[str] = field(default_factory=list)
    translator_iters: int = 2000
    translator_batch: int = 4
    translator_features: str = "auto"  # auto | imagenet | random (AnimeGANv2/CartoonGAN content features)
    translator_features_weights: str | None = None
    # Network sizes of the trained translators per model ({"cyclegan": {"ngf": 32}}): --translator-arch.
    translator_overrides: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> "CompareSettings":
        """A copy with the source path, lists, iteration counts, EMA half-life and quick-mode sizes set."""
        s = CompareSettings(**{k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                               for k, v in self.__dict__.items()})
        if s.source is None:
            s.source = str(bundled_generator())
        s.targets = list(dict.fromkeys(s.targets or [s.target]))
        s.target = s.targets[0]
        s.seeds = list(dict.fromkeys(int(x) for x in (s.seeds or [s.seed])))
        s.seed = s.seeds[0]
        if s.quick:  # a smoke test of the whole pipeline, numbers meaningless
            s.iters = s.iters or 2
            s.batch = min(s.batch, 4)
            s.n = min(s.n, 64)
            s.eval_n = min(s.eval_n, 16)
            s.grid_seeds = s.grid_seeds[:4]
            s.snapshot_every = 0
            s.translator_iters = min(s.translator_iters, 4)
            s.translator_batch = min(s.translator_batch, 2)
        if s.iters is None:
            s.iters = max(1, int(round(s.kimg * 1000 / s.batch)))
        s.kimg = s.iters * s.batch / 1000
        if s.eval_every is None:
            s.eval_every = (max(1, int(round(s.eval_every_kimg * 1000 / s.batch))) if s.eval_every_kimg
                            else max(1, s.iters // 8))
        s.eval_every_kimg = s.eval_every * s.batch / 1000
        if s.ema_kimg is None:
            # The trainer's 10-kimg EMA half-life (community default) would leave g_ema ≈ 87 % source
            # weights after 2 kimg; StyleGAN2-ADA caps the half-life at 5 % of the images seen
            # (ema_rampup = 0.05). Same for every method, so the comparison stays fair.
            s.ema_kimg = min(10.0, 0.05 * s.kimg)
        from finetune.compare_translators import TRAINABLE
        from toonlab.synthetic import DOMAINS

        for t in s.targets:
            if t not in DOMAINS or t == "photo":
                raise UserInputError(f"--targets {t!r}: choose built-in cartoon domains "
                                     f"({', '.join(d for d in DOMAINS if d != 'photo')})")
        unknown = [m for m in s.methods if m not in METHODS]
        if unknown:
            raise UserInputError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        if not s.methods:
            raise UserInputError("no methods to compare")
        bad = [m for m in s.train_translators if m not in TRAINABLE]
        if bad:
            raise UserInputError(f"--train-translators {bad[0]!r}: choose from {', '.join(TRAINABLE)}")
        if s.level_k < 2:
            raise UserInputError(f"--level-k {s.level_k}: levelling needs at least 2 evaluations")
        return s

    def schedule(self) -> list[int]:
        """The steps at which a run is scored for its curve (the last one = the run's end)."""
        e, n = int(self.eval_every or self.iters), int(self.iters or 1)
        return list(range(e, n, e)) + [n]

    def command(self, out: str | Path) -> str:
        """The command line, run from the repository root, that reproduces this comparison (all
        settings explicit; paths inside the repository relative to it)."""
        args = ["python", "finetune/compare.py", "--ckpt", _display(self.source), "--targets", ",".join(self.targets)]
        args += ["--iters", str(self.iters)] if self.quick else ["--kimg", f"{self.kimg:g}"]
        args += ["--batch", str(self.batch), "--seeds", ",".join(map(str, self.seeds)), "--methods",
                 ",".join(self.methods), "--swap-block", str(self.swap_block), "--n", str(self.n), "--truncation",
                 f"{self.truncation:g}", "--ema-kimg", f"{self.ema_kimg:g}",
                 "--eval-every-kimg", f"{self.eval_every_kimg:g}", "--eval-n", str(self.eval_n)]
        if self.curve_quality:
            args.append("--curve-quality")
        if not self.quality:
            args.append("--no-quality")
        if self.until_level:
            args += ["--until-level", "--level-k", str(self.level_k), "--level-tol", f"{self.level_tol:g}"]
        args += ["--probes", ",".join(_display(p) for p in _csv(self.probes))]
        if self.translators:
            args += ["--translators", ",".join(self.translators)]
        if self.train_translators:
            args += ["--train-translators", ",".join(self.train_translators), "--translator-iters",
                     str(self.translator_iters), "--translator-batch", str(self.translator_batch),
                     "--translator-features", self.translator_features]
            if self.translator_features_weights:
                args += ["--translator-features-weights", _display(self.translator_features_weights)]
            if self.translator_overrides:
                from finetune.compare_translators import format_translator_arch

                args += ["--translator-arch", format_translator_arch(self.translator_overrides)]
        args += ["--out", _display(self.out_root), "--report", _display(out)]
        if self.quick:
            args.append("--quick")
        return shlex.join(args)


@dataclass
class MethodResult:
    """One row on one (target, seed): the source, a fine-tuned generator, its layer-swapped blend
    or a translator applied to the source's renders."""

    name: str
    kind: str  # "source" | "finetune" | "swap" | "translation"
    flags: str
    structure_error: float
    structure_se: float  # standard error over the scored latents
    style_score: float
    quality: float | None = None  # probe-feature Fréchet distance of its samples to its domain's renders
    quality_ref: tuple[float, float] | None = None  # that distance's (floor, scale), see metrics.probes.QualityScore
    images: int | None = None  # images the method saw while fine-tuning
    train_seconds: float | None = None
    checkpoint: str | None = None
    target: str = "webtoon"
    seed: int = 0
    stopped: str | None = None  # where and why fine-tuning stopped
    per_latent: Tensor | None = field(default=None, repr=False, compare=False)
    style_per_latent: Tensor | None = field(default=None, repr=False, compare=False)
    generator: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("per_latent", "style_per_latent", "generator")}


@dataclass
class Study:
    """What :func:`run_comparison` measured: per-(target, seed) results, the rows per target
    (averaged over seeds, paired against FreezeSG), the curves, the probes."""

    settings: CompareSettings
    results: list[MethodResult]
    rows: dict[str, list[Row]]
    curves: dict[str, dict[str, dict[int, dict[str, Any]]]]  # target → method → seed → curve.json content
    probes: dict[str, ProbeBundle]
    probe_paths: dict[str, str]
    notes: list[str] = field(default_factory=list)

    def __iter__(self):  # the old return value was the list of results
        return iter(self.results)

    def __getitem__(self, i: int) -> MethodResult:
        return self.results[i]

    def __len__(self) -> int:
        return len(self.results)


# --------------------------------------------------------------------------- probes


def load_bundles(s: CompareSettings, probes: ProbeBundle | Mapping[str, ProbeBundle] | None,
                 log: Callable[[str], None]) -> tuple[dict[str, ProbeBundle], dict[str, str]]:
    """One probe bundle per target (each bundle scores the target its style classifier detects) and
    where each came from. ``probes`` overrides ``s.probes`` (a bundle, or target → bundle)."""
    found: dict[str, ProbeBundle] = {}
    where: dict[str, str] = {}
    if probes is not None:
        given = {probes.target: probes} if isinstance(probes, ProbeBundle) else dict(probes)
        for t, b in given.items():
            found[t], where[t] = b, "(given)"
    else:
        for p in _csv(s.probes):
            if not Path(p).is_file():
                if s.quick:
                    continue
                ProbeBundle.load(p)  # the one-line "not found, train it with …"
            b = ProbeBundle.load(p)
            found.setdefault(b.target, b)
            where.setdefault(b.target, p)
    for t in s.targets:
        if t in found:
            continue
        if s.quick:
            log(f"--quick: no probe bundle for '{t}', training throw-away tiny probes (their scores mean nothing)")
            found[t] = train_probes(("photo", t), t, n_per_domain=32, steps=20, batch=16, seed=s.seed, width=8,
                                    classifier_width=8, n_eval=16)
            where[t] = "(throw-away quick probes)"
        else:
            raise UserInputError(f"no probe bundle detects '{t}' (given: {', '.join(where) or 'none'}): train one with "
                                 f"python -m metrics.probes train --target {t} --out runs/probes_{t}.pt, then pass "
                                 f"--probes {','.join([*(_csv(s.probes)), f'runs/probes_{t}.pt'])}")
    return {t: found[t] for t in s.targets}, {t: where[t] for t in s.targets}


def _bundle_key(b: ProbeBundle) -> str:
    """A fingerprint of a bundle's weights (cached scores are reused only for the same probes)."""
    import hashlib

    h = hashlib.sha256()
    for m in (b.regressor, b.classifier):
        for k, v in sorted(m.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- running


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


def run_dir(s: CompareSettings, target: str, seed: int, name: str) -> Path:
    """The run folder of one method (or trained translator) on one target and seed."""
    return Path(s.out_root) / target / f"seed{seed}" / name


def _cached(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``, or what ``path`` stored for the same ``key`` (scores are costly; runs are not re-scored)."""
    if path.is_file():
        try:
            obj = json.loads(path.read_text())
            if obj.get("key") == key:
                return obj["value"]
        except (OSError, ValueError):
            pass
    value = compute()
    write_json_atomic(path, {"key": key, "value": value})
    return value


@dataclass
class _Scorer:
    """The scoring of one (target, seed): the source's readings and the quality references, computed
    once and shared by every row."""

    bundle: ProbeBundle
    src: Generator
    target: str
    seed: int
    n: int
    truncation: float
    quality: bool = True
    refs: dict[str, Any] = field(default_factory=dict)
    src_pred: Tensor | None = None

    def kw(self) -> dict[str, Any]:
        return dict(n=self.n, seed=self.seed, batch=64, truncation=self.truncation)

    def source_predictions(self) -> Tensor:
        if self.src_pred is None:
            self.src_pred = geometry_predictions(self.bundle, self.src, self.src, **self.kw())
        return self.src_pred

    def reference(self, domain: str):
        if domain not in self.refs:
            self.refs[domain] = domain_references(self.bundle, domain, n=self.n, seed=self.seed)
        return self.refs[domain]

    def score(self, G: Any, domain: str, quality: bool = True) -> dict[str, Any]:
        """Per-latent structure error and P(cartoon), and the quality score, of ``G`` (a generator or
        a :class:`~finetune.compare_translators.TranslatedGenerator`) against this source."""
        err = structure_errors(self.bundle, self.src, G, src_predictions=self.source_predictions(), **self.kw())
        style = style_probabilities(self.bundle, G, **self.kw())
        out: dict[str, Any] = {"structure": err.tolist(), "style": style.tolist(), "quality": None,
                               "quality_ref": None}
        if quality and self.quality:
            ref = self.reference(domain)
            out["quality"] = quality_score(self.bundle, G, domain, n=self.n, seed=self.seed, references=ref).score
            out["quality_ref"] = [ref[1], ref[2]]
        return out


def score_translator(bundle: ProbeBundle, src: Generator, translate: Callable[[Tensor], Tensor], target: str,
                     n: int = 1000, seed: int = 0, truncation: float = 0.7, quality: bool = True) -> dict[str, Any]:
    """Score ``translate`` applied to ``src``'s renders exactly as a fine-tuned generator is scored:
    structure error against ``src``'s own render of the same z (ψ, const noise), style score, and
    the quality score against ``target`` renders. Returns per-latent lists and the quality."""
    from finetune.compare_translators import TranslatedGenerator

    return _Scorer(bundle, src, target, seed, n, truncation).score(TranslatedGenerator(src, translate), target,
                                                                    quality)


def _result(name: str, kind: str, flags: str, target: str, seed: int, sc: dict[str, Any], **kw: Any) -> MethodResult:
    err, style = torch.tensor(sc["structure"]), torch.tensor(sc["style"])
    q = sc.get("quality_ref")
    return MethodResult(name, kind, flags, float(err.mean()), se(err), float(style.mean()), sc.get("quality"),
                        tuple(q) if q else None, target=target, seed=seed, per_latent=err, style_per_latent=style,
                        **kw)


def _curve_point(scorer: _Scorer, G: Generator, step: int, s: CompareSettings) -> dict[str, Any]:
    sc = scorer.score(G, scorer.target, quality=s.curve_quality)
    err, style = torch.tensor(sc["structure"]), torch.tensor(sc["style"])
    return {"step": step, "kimg": step * s.batch / 1000, "structure_error": float(err.mean()),
            "structure_se": se(err), "style_score": float(style.mean()), "style_se": se(style),
            "quality": sc["quality"]}


def finetune_method(name: str, s: CompareSettings, log: Callable[[str], None], target: str | None = None,
                    seed: int | None = None, curve_scorer: _Scorer | None = None, probe_key: str = ""
                    ) -> tuple[Path, float, int, dict[str, Any]]:
    """Fine-tune (or resume, or skip when done) one method on one target and seed, in segments
    ending at ``s.schedule()``'s steps, scoring each segment's EMA snapshot into ``curve.json``;
    returns (checkpoint, seconds, images seen, curve).

    A segment is a resume of the same run with a longer ``--iters`` (a setting the run folder lets
    change), so the segmented run trains exactly as one straight run would. With ``until_level``
    the run ends at the first point where the style score has levelled off. Seconds are summed
    over invocations, an interrupted one included, so a resumed method reports the whole time it cost.
    """
    from finetune.train import finetune
    from finetune.trainer import FinetuneConfig
    from stylegan2.checkpoint import load_generator
    from toonlab.checkpoint import file_hash
    from toonlab.run import CKPT_RE, RunDir

    target = s.target if target is None else target
    seed = s.seed if seed is None else seed
    out = run_dir(s, target, seed, name)
    tag = f"[{name} · {target} · seed {seed}]"
    expect = {"method": name, "overrides": METHODS[name], "source_sha256": file_hash(s.source), "target": target,
              "seed": seed, "batch": s.batch, "ema_kimg": s.ema_kimg, "definitions": DEFINITIONS}
    record_path = out / "compare.json"
    record = _check_record(record_path, expect)
    curve_path = out / "curve.json"
    scoring = {"eval_n": s.eval_n, "truncation": s.truncation, "probes": probe_key, "quality": s.curve_quality}
    curve: dict[str, Any] = {"method": name, "target": target, "seed": seed, "scoring": scoring, "points": [],
                             "levelled_at_step": None}
    if curve_path.is_file():
        old = json.loads(curve_path.read_text())
        if old.get("scoring") == scoring:
            curve = old
        else:
            log(f"{tag} curve.json was scored with other settings ({old.get('scoring')}); starting a new curve "
                f"(points of steps no longer on disk are lost)")
    points = {int(p["step"]): p for p in curve["points"]}

    def latest_step() -> tuple[Path | None, int]:
        latest = RunDir(out).latest()
        return latest, (int(CKPT_RE.match(latest.name).group(1)) if latest is not None else 0)

    _, done = latest_step()
    if not s.until_level:  # a run stopped early by an earlier --until-level continues to the full length
        curve["levelled_at_step"] = None
    if curve.get("levelled_at_step") is not None and done >= int(curve["levelled_at_step"]):
        log(f"{tag} already fine-tuned: levelled off at step {curve['levelled_at_step']}, skipping")
    elif done >= s.iters:
        log(f"{tag} already fine-tuned ({done} steps), skipping")
    noise_noted = False  # the level-tol-vs-noise note is said once per run
    for stop in s.schedule():
        if curve.get("levelled_at_step") is not None:
            break
        if done < stop:
            cfg = FinetuneConfig(source=str(s.source), target=target, data=f"synthetic:{target}", out=str(out),
                                 iters=stop, batch=s.batch, seed=seed, ema_kimg=float(s.ema_kimg), workers=0,
                                 device=s.device, snapshot_every=s.snapshot_every, sample_every=0, keep=2,
                                 **METHODS[name])
            log(f"{tag} fine-tuning {method_flags(name)}: steps {done}..{stop} of {s.iters} × {s.batch} images")
            record_path.parent.mkdir(parents=True, exist_ok=True)
            t0 = time.time()
            try:
                finetune(cfg)
            finally:
                record["train_seconds"] = float(record.get("train_seconds", 0.0)) + time.time() - t0
                write_json_atomic(record_path, record)
            _, done = latest_step()
        if curve_scorer is not None and stop not in points:
            ck = out / "checkpoints" / f"{stop:06d}.pt"
            if ck.is_file():
                G = load_generator(ck, "g_ema", curve_scorer.src.w_avg.device)
                points[stop] = _curve_point(curve_scorer, G, stop, s)
                curve["points"] = [points[k] for k in sorted(points)]
                write_json_atomic(curve_path, curve)
        if s.until_level and stop in points and not noise_noted:
            note = level_noise_note(float(points[stop].get("style_se") or 0.0), s.eval_n, s.level_tol)
            if note:
                log(f"{tag} note: {note}")
            noise_noted = True
        if s.until_level and levelled([points[k]["style_score"] for k in sorted(points) if k <= stop],
                                      s.level_k, s.level_tol):
            curve["levelled_at_step"] = stop
            write_json_atomic(curve_path, curve)
            log(f"{tag} style score levelled off at {stop * s.batch / 1000:g} kimg (last {s.level_k} points within "
                f"{s.level_tol:g}); stopping")
            break
    latest, done = latest_step()
    if latest is None:
        raise UserInputError(f"{out}: fine-tuning wrote no checkpoint")
    return latest, float(record.get("train_seconds", 0.0)), done * s.batch, curve


def _stopped(curve: dict[str, Any], s: CompareSettings, done_steps: int) -> str:
    lv = curve.get("levelled_at_step")
    if lv is not None:
        return f"levelled off at {int(lv) * s.batch / 1000:g} kimg"
    if s.until_level:
        return f"not levelled off by {done_steps * s.batch / 1000:g} kimg (the limit)"
    return f"fixed length {done_steps * s.batch / 1000:g} kimg"


def _translator_specs(s: CompareSettings, target: str, seed: int, log: Callable[[str], None]):
    """The translators scored on (target, seed): the given files for this target, then the trained ones."""
    from finetune.compare_translators import parse_translators, train_translator
    from toonlab.runtime import pick_device

    specs = [t for t in parse_translators(s.translators, s.targets) if t.target == target]
    size = None
    for model in s.train_translators:
        if size is None:
            from stylegan2.checkpoint import load_generator

            size = load_generator(s.source, "g_ema", "cpu").size
        dev = str(pick_device(s.device))
        last = train_translator(model, target, seed, run_dir(s, target, seed, f"translate-{model}"),
                                s.translator_iters, size, s.translator_batch, dev, log, s.translator_features,
                                s.translator_features_weights, s.translator_overrides.get(model))
        specs.append(TranslatorSpec(str(last), target, model, f"{model} (translation)", trained_here=True))
    return specs


def run_comparison(
    settings: CompareSettings | None = None,
    probes: ProbeBundle | Mapping[str, ProbeBundle] | None = None,
    log: Callable[[str], None] | None = None,
) -> Study:
    """Fine-tune every method × target × seed of ``settings`` (resumable), score each run and its
    layer-swapped blend, score the translators on the same latents; returns the :class:`Study`
    (iterating it gives the per-(target, seed) results: per target and seed the source row first,
    then each method followed by its ``+swapK`` row, then the translators).

    ``probes`` overrides ``settings.probes`` (a bundle, or target → bundle). Raises
    ``UserInputError`` (one line) for a missing source or probe bundle and for settings that do not
    fit the generator.
    """
    from finetune.compare_translators import TranslatedGenerator, load_translator
    from stylegan2.blend import blend_generators
    from stylegan2.checkpoint import load_generator
    from toonlab.checkpoint import file_hash
    from toonlab.runtime import pick_device, progress

    say = log or (lambda msg: None)
    s = (settings or CompareSettings()).resolved()
    _check_source(s)
    bundles, where = load_bundles(s, probes, say)
    device = pick_device(s.device)
    src = load_generator(s.source, "g_ema", device)
    if not 1 <= s.swap_block < src.n_blocks:
        raise UserInputError(f"--swap-block {s.swap_block}: this {src.size}-px generator has blocks 1..{src.n_blocks}; "
                             f"use 1..{src.n_blocks - 1}")
    src_sha = file_hash(s.source)
    results: list[MethodResult] = []
    curves: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    jobs = [(t, seed) for t in s.targets for seed in s.seeds]
    bar = progress(total=len(jobs) * len(s.methods), desc="compare", unit="run")
    try:
        for target, seed in jobs:
            bundle = bundles[target]
            pkey = _bundle_key(bundle)
            scorer = _Scorer(bundle, src, target, seed, s.n, s.truncation, s.quality)
            curve_scorer = _Scorer(bundle, src, target, seed, s.eval_n, s.truncation)
            keep = seed == s.seeds[0]  # the grid shows the first seed's generators
            base = Path(s.out_root) / target / f"seed{seed}"
            key = {"source": src_sha, "probes": pkey, "n": s.n, "truncation": s.truncation, "seed": seed,
                   "quality": s.quality}
            sc = _cached(base / "source_scores.json", key, lambda: scorer.score(src, "photo"))
            sc["structure"] = [0.0] * s.n  # by definition (the source against itself)
            results.append(_result("source", "source", "(reference)", target, seed, sc, checkpoint=str(s.source),
                                   generator=src if keep else None))
            for name in s.methods:
                ckpt, seconds, images, curve = finetune_method(name, s, say, target, seed, curve_scorer, pkey)
                curves.setdefault(target, {}).setdefault(name, {})[seed] = curve
                step = images // s.batch
                tuned = load_generator(ckpt, "g_ema", device)
                blend = blend_generators(src, tuned, s.swap_block)
                rkey = {**key, "checkpoint_step": step, "swap_block": s.swap_block}
                both = _cached(run_dir(s, target, seed, name) / "scores.json", rkey, lambda: {
                    "finetune": scorer.score(tuned, target), "swap": scorer.score(blend, target)})
                stopped = _stopped(curve, s, step)
                for row_name, kind, G in ((name, "finetune", tuned), (f"{name}+swap{s.swap_block}", "swap", blend)):
                    r = _result(row_name, kind, method_flags(name) + (f" + swap {s.swap_block}" if kind == "swap" else ""),
                                target, seed, both[kind], images=images, stopped=stopped,
                                train_seconds=seconds if kind == "finetune" else None, checkpoint=str(ckpt),
                                generator=G if keep else None)
                    results.append(r)
                    say(f"[{row_name} · {target} · seed {seed}] structure error {r.structure_error:.4f} ± "
                        f"{r.structure_se:.4f}, style score {r.style_score:.3f}, quality {_num(r.quality)}")
                bar.update(1)
            for spec in _translator_specs(s, target, seed, say):
                fn = load_translator(spec, device, seed)
                TG = TranslatedGenerator(src, fn)
                tkey = {**key, "translator": file_hash(spec.path)}
                safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.model)
                sc = _cached(base / "translators" / f"{safe}-{tkey['translator']}.json", tkey,
                             lambda: scorer.score(TG, target))
                r = _result(spec.label, "translation", _translator_how(spec, seed),
                            target, seed, sc, checkpoint=spec.path, generator=TG if keep else None)
                results.append(r)
                say(f"[{spec.label} · {target} · seed {seed}] structure error {r.structure_error:.4f}, style score "
                    f"{r.style_score:.3f}, quality {_num(r.quality)}")
    finally:
        bar.close()
    rows = {t: aggregate(results, t, REFERENCE) for t in s.targets}
    study = Study(s, results, rows, curves, bundles, where)
    write_json_atomic(Path(s.out_root) / "results.json", {
        "settings": {k: v for k, v in s.__dict__.items()}, "probes": where,
        "results": [r.to_dict() for r in results],
        "rows": {t: [r.to_dict() for r in rs] for t, rs in rows.items()},
        "curves": mean_curves(study)})
    return study


def mean_curves(study: Study) -> dict[str, dict[str, dict[str, list[float]]]]:
    """target → method → {"kimg", "structure_error", "style_score"[, "quality"], "n_seeds"}: the mean
    over the seeds that reached each point (a run that levelled off earlier stops contributing)."""
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for target, per in study.curves.items():
        for method, by_seed in per.items():
            steps = sorted({int(p["step"]) for c in by_seed.values() for p in c["points"]})
            agg: dict[str, list[float]] = {"kimg": [], "structure_error": [], "style_score": [], "quality": [],
                                           "n_seeds": []}
            for st in steps:
                pts = [p for c in by_seed.values() for p in c["points"] if int(p["step"]) == st]
                agg["kimg"].append(float(pts[0]["kimg"]))
                agg["n_seeds"].append(len(pts))
                for k in ("structure_error", "style_score", "quality"):
                    v = [p[k] for p in pts if p.get(k) is not None]
                    agg[k].append(sum(v) / len(v) if v else None)  # type: ignore[arg-type]
            if all(v is None for v in agg["quality"]):
                del agg["quality"]
            out.setdefault(target, {})[method] = agg
    return out


# --------------------------------------------------------------------------- report


@torch.no_grad()
def comparison_grid(results: Sequence[MethodResult], seeds: Sequence[int], truncation: float = 0.7) -> Image.Image:
    """Rows = results (source first), columns = ``seeds``; every row renders the same z (that of
    ``generate.py --seeds``) through its *own* mapping network, truncated toward its own mean w,
    with the source's const noise, as the scores do (``metrics.probes.structure_errors``);
    translator rows are the translated source renders."""
    from stylegan2.sampling import seed_inputs
    from toonlab.images import make_grid

    src = results[0].generator
    assert src is not None and results[0].kind == "source"
    dev = src.w_avg.device
    z = torch.cat([seed_inputs(src, s)[0] for s in seeds]).to(dev)
    noise = src.const_noise()
    shown = [r for r in results if r.generator is not None]
    rows = [r.generator.synthesis(r.generator.mapping(z, truncation=truncation), noise=noise,
                                  noise_mode="const").image.float().cpu() for r in shown]
    return make_grid(torch.cat(rows), cols=len(seeds), col_labels=[f"seed {s}" for s in seeds],
                     row_labels=[r.name for r in shown])


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    m, sec = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s" if m else f"{sec}s"


def _num(x: float | None) -> str:
    """4 decimals, or scientific notation when that would print 0.0000 for a non-zero value."""
    if x is None:
        return "–"
    return f"{x:.4f}" if x == 0 or abs(x) >= 5e-4 else f"{x:.2e}"


def _signed(p: Paired | None, digits: int = 4) -> str:
    if p is None:
        return "–"
    sign = "+" if p.diff >= 0 else "−"
    seeds = f" / {_num(p.se_seeds) if digits == 4 else f'{p.se_seeds:.3f}'}" if p.se_seeds is not None else ""
    body = _num(abs(p.diff)) if digits == 4 else f"{abs(p.diff):.3f}"
    lat = _num(p.se_latents) if digits == 4 else f"{p.se_latents:.3f}"
    return f"{sign}{body} ± {lat}{seeds}"


# A style score this close to 1 for every fine-tuned row says only "all of them are cartoon".
STYLE_SATURATED = 0.99


def _claim_verdict(rows: Sequence[Row]) -> tuple[str, str]:
    """(short verdict, sentences) for one target: the paper's claim, FreezeSG/structure vs FreezeG."""
    by = {r.name: r for r in rows}
    base = by.get(BASELINE)
    claimed = [by[m] for m in CLAIMED if m in by]
    if base is None or not claimed:
        return "n/a", (f"The paper's claim (FreezeSG and structure loss keep the structure better than FreezeG) cannot "
                       f"be checked here: this run lacks {BASELINE if base is None else 'freezeSG/structure'}.")
    lower, parts = [], []
    for r in claimed:
        d, ds = paired(r.structure, base.structure), paired(r.style, base.style)
        if d is None or ds is None:
            continue
        v = d.verdict()
        parts.append(f"{r.name} {_num(r.structure_error)} vs {BASELINE} {_num(base.structure_error)} (paired "
                     f"difference {_signed(d)}: {v}; style score {ds.diff:+.3f})")
        # "Keeps the structure better" only counts when the result is about as cartoon as FreezeG's.
        if v == "lower" and ds.diff > -0.1:
            lower.append(r.name)
    text = ["Against FreezeG: " + "; ".join(parts) + "."]
    claim = "the paper's claim that FreezeSG and the structure loss keep the source's structure better than FreezeG"
    rule = ("counting a method only when its structure error is lower by more than two standard errors and its "
            "style score is within 0.1 of FreezeG's")
    if base.style_score < 0.5:
        # FreezeG never reached the target domain: keeping the structure is then trivially easy.
        text.append(f"These numbers cannot test {claim}: FreezeG's style score is {base.style_score:.3f} (< 0.5), "
                    f"so the run was too short to reach the target domain.")
        return "cannot test", " ".join(text)
    if len(lower) == len(claimed):
        short = "support"
    elif lower:
        short = f"partly support ({', '.join(lower)} only)"
    else:
        short = "do not support"
    text.append(f"These numbers {short} {claim} ({rule}).")
    matched, sg = by.get(MATCHED_BASELINE), by.get("freezeSG")
    if matched is not None and sg is not None:
        d, ds = paired(sg.structure, matched.structure), paired(sg.style, matched.style)
        if d is not None and ds is not None:
            # Separates "FreezeSG's frozen style vectors keep structure" from "freezing more blocks does".
            text.append(f"At the same frozen blocks (FreezeG {METHODS[MATCHED_BASELINE]['freeze_g']}, `{MATCHED_BASELINE}`): "
                        f"freezeSG {_num(sg.structure_error)} vs {MATCHED_BASELINE} {_num(matched.structure_error)} "
                        f"(paired difference {_signed(d)}: {d.verdict()}; style score {ds.diff:+.3f}).")
    return short, " ".join(text)


def what_the_numbers_say(rows: Sequence[Row] | Mapping[str, Sequence[Row]], probes: ProbeBundle | None, swap_block: int,
                         scale: tuple[float, float] | None = None) -> str:
    """The report's conclusion, derived from the numbers only (nothing hard-coded).

    ``rows``: one target's rows (:func:`finetune.compare_stats.aggregate`), or target → rows (a
    paragraph per target, then one line across targets). Differences are paired over the same
    latents and seeds and called only when they exceed two standard errors (the larger of the
    s.e. over latents and over seeds); a lower structure error also needs a comparable style
    score to mean anything, since a generator that never left the source would score 0.
    ``scale`` = (floor, ceiling) of :func:`metrics.probes.structure_references`, quoted for scale.
    """
    if isinstance(rows, Mapping):
        paras, verdicts = [], {}
        for target, rs in rows.items():
            text = what_the_numbers_say(rs, probes, swap_block, scale)
            verdicts[target] = _claim_verdict(rs)[0]
            paras.append(f"**{target}.** {text}")
        if len(verdicts) > 1:
            same = len(set(verdicts.values())) == 1
            paras.append("**Across targets:** " + (f"the numbers {next(iter(verdicts.values()))} the claim on every "
                                                   f"target." if same else
                                                   "the targets disagree: " + "; ".join(f"{t}: {v}" for t, v in
                                                                                        verdicts.items()) + "."))
        return "\n\n".join(paras)
    by = {r.name: r for r in rows}
    tuned = [r for r in rows if r.kind == "finetune"]
    src = by.get("source")
    out: list[str] = []
    if tuned:
        ranked = sorted(tuned, key=lambda r: r.structure_error)
        out.append("Structure error, lowest first (fine-tuned generators): "
                   + ", ".join(f"{r.name} {_num(r.structure_error)}" for r in ranked)
                   + (f" (for scale: the same synthetic face drawn as photo and as cartoon {_num(scale[0])}, two "
                      f"different faces {_num(scale[1])})" if scale else "") + ".")
        styl = sorted(tuned, key=lambda r: -r.style_score)
        out.append("Style score, highest first: " + ", ".join(f"{r.name} {r.style_score:.3f}" for r in styl)
                   + (f" (source {src.style_score:.3f})" if src else "") + ".")
        if len(tuned) > 1 and min(r.style_score for r in tuned) >= STYLE_SATURATED:
            # Every generator is "cartoon" with certainty: the classifier cannot say which went further.
            q = sorted((r for r in tuned if r.quality is not None), key=lambda r: r.quality)
            out.append(f"The style classifier is saturated on this target (every fine-tuned generator scores "
                       f"≥ {STYLE_SATURATED}), so the style score cannot rank them"
                       + ("; the quality score (distance to the target's renders, lower = closer) does: "
                          + ", ".join(f"{r.name} {r.quality:.1f}" for r in q) if q else "") + ".")
        weak = [r.name for r in tuned if r.style_score < 0.5]
        if weak:
            out.append(f"Not yet cartoon by the classifier (style score < 0.5): {', '.join(weak)}; their structure "
                       "errors are low partly because they changed little.")
    out.append(_claim_verdict(rows)[1])
    seeds = max((len(r.seeds) for r in rows), default=1)
    if seeds == 2:
        out.append("With two seeds the standard error over seeds rests on one degree of freedom: treat a verdict "
                   "that hinges on it as provisional.")
    elif seeds == 1:
        out.append("One seed: the standard errors cover the scored latents only, not a repeat of the fine-tuning.")
    swaps = [(by[r.name], by.get(f"{r.name}+swap{swap_block}")) for r in tuned]
    swaps = [(a, b) for a, b in swaps if b is not None]
    if swaps:
        better = []
        for a, b in swaps:
            d = paired(b.structure, a.structure)
            if d is not None and d.verdict() == "lower":
                better.append(a.name)
        dstyle = sum(b.style_score - a.style_score for a, b in swaps) / len(swaps)
        out.append(f"Layer swapping at block {swap_block} (source blocks 1..{swap_block}) lowered the structure error "
                   f"for {len(better)} of {len(swaps)} methods"
                   + (f" ({', '.join(better)})" if better else "")
                   + f", changing the style score by {dstyle:+.3f} on average.")
    trans = [r for r in rows if r.kind == "translation"]
    ref = by.get(REFERENCE)
    for r in trans:
        d, ds = (paired(r.structure, ref.structure), paired(r.style, ref.style)) if ref else (None, None)
        vs = (f"; against {REFERENCE}: structure {d.verdict()} ({_signed(d)}), style {ds.verdict()} "
              f"({ds.diff:+.3f})" if d is not None and ds is not None else "")
        out.append(f"The translator {r.name}: structure error {_num(r.structure_error)}, style score "
                   f"{r.style_score:.3f}, quality {_num(r.quality)}{vs}.")
    if trans and tuned:
        # The question across the roads: the best of each, paired on the same latents.
        bt, bf = min(trans, key=lambda r: r.structure_error), min(tuned, key=lambda r: r.structure_error)
        d, ds = paired(bt.structure, bf.structure), paired(bt.style, bf.style)
        if d is not None and ds is not None:
            out.append(f"The two roads: the best translator ({bt.name}, {_num(bt.structure_error)}) against the best "
                       f"fine-tuned generator ({bf.name}, {_num(bf.structure_error)}): structure {d.verdict()} "
                       f"({_signed(d)}), style score {ds.diff:+.3f}"
                       + (f", quality {bt.quality:.1f} vs {bf.quality:.1f}"
                          if bt.quality is not None and bf.quality is not None else "") + ".")
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
    return (f"{platform.platform()}, {os.cpu_count()} CPUs (torch uses {torch.get_num_threads()} threads), {dev}, "
            f"Python {platform.python_version()}, torch {torch.__version__}")


def source_description(path: str | Path) -> str:
    """The source model as the report names it: path, sha256 and (when the file says) kimg trained."""
    from toonlab.checkpoint import load_torch_file, sha256_file

    desc = f"`{_display(path)}`, sha256 `{sha256_file(path)[:16]}`"
    try:
        ck = load_torch_file(path, "generator checkpoint")
        meta = ck.get("toonlab") if isinstance(ck, dict) else None
        if isinstance(meta, dict) and isinstance(meta.get("step"), int):
            batch = (meta.get("config") or {}).get("batch")
            desc += f", {meta['step']:,} steps"
            kimg = trained_kimg(meta["step"], batch, meta.get("nimg"))
            if isinstance(meta.get("nimg"), int):  # the trainer's own count (right across batch changes)
                desc += f", {kimg:.1f} kimg"
            elif kimg is not None:
                desc += f" × batch {batch} = {kimg:g} kimg"
    except Exception:  # noqa: BLE001 - a source without metadata (an NVIDIA pickle) is described by path and hash
        pass
    return desc


def _r2_table(probes: Mapping[str, ProbeBundle], where: Mapping[str, str]) -> list[str]:
    from toonlab.synthetic import GEOMETRY_FIELDS

    seen: dict[int, str] = {}
    bundles = []
    for t, b in probes.items():
        if id(b) not in seen:
            seen[id(b)] = t
            bundles.append((t, b))
    lines = []
    for t, b in bundles:
        crisp, gan = b.metrics.get("r2_per_field") or {}, b.metrics.get("r2_per_field_gan") or {}
        lines += [f"Probes for **{t}** (`{_display(where[t]) if not where[t].startswith('(') else where[t]}`): "
                  f"{b.summary()}", ""]
        if not crisp:
            lines += ["(no held-out R² stored in this bundle)", ""]
            continue
        readable = set(b.readable_fields())
        lines += ["| field | held-out R², crisp | held-out R², GAN look | scored |", "|---|---:|---:|:---:|"]
        for i, f in enumerate(GEOMETRY_FIELDS):
            c, g = crisp.get(f), gan.get(f)
            lines.append(f"| {f} | {'–' if c is None else f'{c:.3f}'} | {'–' if g is None else f'{g:.3f}'} | "
                         f"{'yes' if i in readable else '**no**'} |")
        lines.append("")
    return lines


def _grid_path(grid: str | Path | None, out: Path, target: str, n_targets: int) -> Path:
    if grid is None:
        return out.parent / "images" / f"comparison_{target}.png"
    g = str(grid)
    if "{target}" in g:
        return Path(g.format(target=target))
    p = Path(g)
    return p if n_targets == 1 else p.with_name(f"{p.stem}_{target}{p.suffix}")


def write_curves(study: Study, path: str | Path) -> tuple[Path, Path]:
    """The curves plot (PNG) and its numbers (JSON beside it): structure error, style score (and the
    quality score when measured) against kimg, one line per method, per target, mean over seeds."""
    from finetune.compare_plot import curves_figure
    from toonlab.atomic import save_image_atomic

    curves = mean_curves(study)
    panels = [("structure_error", "structure error (lower = structure kept)"),
              ("style_score", "style score (higher = more cartoon)")]
    if any("quality" in m for per in curves.values() for m in per.values()):
        panels.append(("quality", "quality: probe-feature FD (lower better)"))
    path = Path(path)
    png = save_image_atomic(curves_figure(curves, panels), path)
    js = write_json_atomic(path.with_suffix(".json"), curves)
    return png, js


def write_report(
    results: Study | Sequence[MethodResult],
    out: str | Path = "docs/COMPARISON.md",
    *,
    settings: CompareSettings | None = None,
    probes: ProbeBundle | Mapping[str, ProbeBundle] | None = None,
    grid: str | Path | None = None,
    curves: str | Path | None = None,
    command: str | None = None,
) -> tuple[Path, list[Path], Path]:
    """Write the markdown report, one grid PNG per target (default
    ``<out dir>/images/comparison_<target>.png``) and the curves plot (default
    ``<out dir>/images/comparison_curves.png``, its numbers in the ``.json`` beside it).
    Returns (report, grids, curves PNG)."""
    from toonlab.atomic import save_image_atomic

    if not isinstance(results, Study):  # a plain list of results: build the study around it
        s0 = (settings or CompareSettings()).resolved()
        bundles = probes if isinstance(probes, Mapping) else ({s0.target: probes} if probes is not None else {})
        results = Study(s0, list(results), {t: aggregate(list(results), t, REFERENCE) for t in s0.targets}, {},
                        dict(bundles), {t: "(given)" for t in bundles})
    study = results
    s = study.settings if settings is None else settings.resolved()
    out = Path(out)
    curves_png = Path(curves) if curves is not None else out.parent / "images" / "comparison_curves.png"
    curves_png, curves_json = write_curves(study, curves_png)
    grids = []
    for target in s.targets:
        rs = [r for r in study.results if r.target == target and r.generator is not None]
        if rs and rs[0].kind == "source":
            grids.append(save_image_atomic(comparison_grid(rs, s.grid_seeds, s.truncation),
                                           _grid_path(grid, out, target, len(s.targets))))
    rel = lambda p: os.path.relpath(Path(p).resolve(), out.parent.resolve())  # noqa: E731
    size = next((r.generator.size for r in study.results if r.kind == "source" and r.generator is not None), "?")
    lines = [
        "# Fine-tuning methods and translators compared (measured)",
        "",
        "_Generated by `finetune/compare.py`; re-run the command below to regenerate (finished runs are reused, "
        "unfinished ones resume)._" + (" **Quick smoke run: the numbers mean nothing.**" if s.quick else ""),
        "",
        f"- Command: `{command or s.command(out)}`",
        f"- Machine: {_machine()}",
        f"- Source model: {source_description(s.source)} ({size} px)",
        f"- Targets: {', '.join(f'built-in `synthetic:{t}`' for t in s.targets)}; seeds {', '.join(map(str, s.seeds))} "
        f"(each seed = its own fine-tuning run *and* its own {s.n:,} scored latents)",
        f"- Fine-tuning: up to {s.iters} steps × batch {s.batch} = {s.iters * s.batch:,} images per run, "
        + (f"stopped earlier once the style score levelled off (the last {s.level_k} curve points within "
           f"{s.level_tol:g}); " if s.until_level else "")
        + f"EMA half-life {s.ema_kimg:g} kimg, other settings the `finetune/train.py` defaults",
        f"- Curves: every {s.eval_every_kimg:g} kimg the run's EMA snapshot is scored on {s.eval_n:,} latents "
        f"(`curve.json` in each run folder; means over seeds in `{rel(curves_json)}`)",
        f"- Scoring: {s.n:,} latents per seed (z seed = the run's seed), truncation ψ = {s.truncation:g} toward each "
        f"model's mean w, the source's stored (const) noise; layer swap = source blocks 1..{s.swap_block}, "
        f"the rest fine-tuned",
    ]
    if any(r.kind == "translation" for r in study.results):
        from finetune.compare_translators import INIT_FRAC, format_translator_arch

        trained = ""
        if s.train_translators:
            init = (f" (AnimeGANv2/CartoonGAN: {INIT_FRAC:.0%} content-only initialisation)"
                    if {"animegan2", "cartoongan"} & set(s.train_translators) else "")
            sizes = (f", networks sized `--translator-arch {format_translator_arch(s.translator_overrides)}`"
                     if s.translator_overrides else ", the published network sizes")
            trained = (f"; trained here: {', '.join(s.train_translators)} on `synthetic:photo` → `synthetic:TARGET`, "
                       f"{s.translator_iters} iterations{init}, batch {s.translator_batch}, at the source's size, "
                       f"one run per target and seed{sizes}")
        lines.append("- Translators: applied to the source's renders of the same latents (same ψ, same noise) and "
                     "scored with the same probes" + trained)
    lines += ["", "## The probes (measuring instruments)", ""] + _r2_table(study.probes, study.probe_paths)
    lines += ["## Curves", "",
              f"![structure error and style score against kimg, one line per method, per target]({rel(curves_png)})",
              "",
              "_Mean over seeds of each curve point (a run that levelled off stops contributing); layer-swapped "
              "blends are not on the curves._", ""]
    for target in s.targets:
        rows = study.rows.get(target, [])
        bundle = study.probes.get(target)
        floor, ceiling = structure_references(bundle, target, seed=s.seed) if bundle is not None else (None, None)
        lines += [f"## Target: {target}", "",
                  "| method | kind | flags | images seen | stopped | fine-tune time | structure error ↓ | ± s.e. latents "
                  "| ± s.e. seeds | style score ↑ | ± s.e. latents / seeds | quality ↓ | Δ structure vs "
                  f"{REFERENCE} ± s.e. latents / seeds | Δ style vs {REFERENCE} | verdict |",
                  "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            img = ", ".join(f"{i:,}" for i in r.images) if r.kind == "finetune" and r.images else "–"
            err = "0 (by definition)" if r.kind == "source" else _num(r.structure_error)
            sel = "–" if r.kind == "source" else _num(r.structure_se_latents)
            ses = "–" if r.kind == "source" else _num(r.structure_se_seeds)
            sty_se = f"{r.style_se_latents:.3f}" + (f" / {r.style_se_seeds:.3f}" if r.style_se_seeds is not None else "")
            q = "–" if r.quality is None else f"{r.quality:.3f}" + (f" ± {r.quality_se_seeds:.3f}"
                                                                    if r.quality_se_seeds is not None else "")
            kind = {"translation": "**translation**", "swap": "layer swap"}.get(r.kind, r.kind)
            stopped = "; ".join(sorted(set(r.stopped))) if r.kind == "finetune" and r.stopped else "–"
            lines.append(f"| {r.name} | {kind} | {r.flags} | {img} | {stopped} | {_fmt_time(r.train_seconds)} | {err} "
                         f"| {sel} | {ses} | {r.style_score:.3f} | {sty_se} | {q} | {_signed(r.vs_ref)} | "
                         f"{_signed(r.style_vs_ref, 3)} | {r.verdict()} |")
        g = next((p for p in grids if p.stem.endswith(target) or len(s.targets) == 1), None)
        if g is not None:
            lines += ["", f"![{target}: rows = the source, each method and blend, translators; columns = seeds]"
                          f"({rel(g)})", "",
                      f"_Grid ({target}, the first seed's models): rows = the source, each method and its "
                      f"`+swap{s.swap_block}` blend, then the translators; columns = z seeds "
                      f"{', '.join(map(str, s.grid_seeds))} (the z of `generate.py --seeds`), each row through its own "
                      f"mapping network, ψ = {s.truncation:g}, const noise — the same z in every row._"]
        if floor is not None:
            lines += ["", f"_For scale ({target}): the same synthetic face drawn as photo and as {target} reads "
                          f"{_num(floor)} apart (what a perfect style transfer would score), two different faces "
                          f"{_num(ceiling)}._"]
        lines.append("")
    lines += ["## What the numbers say", "",
              what_the_numbers_say({t: study.rows.get(t, []) for t in s.targets},
                                   next(iter(study.probes.values()), None), s.swap_block),
              "",
              "## How the scores are computed",
              "",
              "- **Structure error**: for each latent, the structure regressor (`metrics/probes.py`) reads the "
              "normalised face geometry (each field in [0, 1] over its sampling range) from the source image and from "
              "the fine-tuned image of the same z (through the fine-tuned model's own mapping network) and noise; "
              f"the error is the mean absolute difference over the fields it reads with held-out R² ≥ {SCORE_MIN_R2:g} "
              "on GAN-look images (the table above; docs/PROBES.md says why the others are left out), averaged over "
              "latents. A translator is scored on the source's own render of that z, translated.",
              "- **Style score**: mean probability that the target's style classifier (photo vs the target) calls "
              f"the generator's own samples (ψ = {s.truncation:g}) cartoon. The bundled webtoon classifier reads "
              "mostly the background: webtoon renders with their backgrounds painted grey score 0.08 "
              "(`bench/quality_background.py`, docs/PROBES.md), so on webtoon this says a generator paints the "
              "target's backgrounds, not how it draws the face; a classifier trained with random backgrounds "
              "(`metrics.probes train --classifier-backgrounds`) scores every webtoon fine-tune here 1.000.",
              "- **Quality**: Fréchet distance in the probes' feature space (`metrics.probes quality`) between "
              f"{s.n:,} of the generator's own samples (ψ = 1, random noise) and {s.n:,} fresh renders of its domain "
              "(photo for the source, the target for the rest); lower is better. On webtoon about half of it is the "
              "background, not the face: painting every background grey halves the fine-tunes' scores and "
              "reorders them (same page).",
              "- **Standard errors**: *over latents* = how precisely each run's mean is measured (the per-seed "
              "standard errors combined, √(Σ se²)/S); *over seeds* = how much the result moves when the fine-tuning "
              "is repeated, std(per-seed means)/√S. A difference is called (verdict) only when it exceeds two of the "
              "larger of the two.",
              f"- **Paired differences** are per latent, same latents, same seed, same target, against {REFERENCE} "
              f"in the same swap state (`X+swap{s.swap_block}` against `{REFERENCE}+swap{s.swap_block}`; translators "
              f"against `{REFERENCE}`), then averaged over seeds. A low structure error alone is not a win: the "
              "untouched source scores 0.",
              "- Fine-tune time is the wall time of `finetune()` for that method on this machine, summed over seeds "
              "and resumed runs (curve scoring excluded).",
              ""]
    write_text_atomic(out, "\n".join(lines))
    return out, grids, curves_png


# --------------------------------------------------------------------------- CLI


def _ints(text: str | None, flag: str) -> list[int]:
    try:
        return [int(v) for v in _csv(text)]
    except ValueError:
        raise UserInputError(f"{flag} {text!r}: give comma-separated integers, e.g. 0,1") from None


@click.command(name="compare", cls=ToonCommand, aliases={
    "--source": "--ckpt", "--iter": "--iters", "--out=*.md": "--report", "--out-root": "--out"})
@click.option("--ckpt", "source", type=click.Path(dir_okay=False), default=None,
              show_default="the bundled 64-px face model", help="Source (face) generator checkpoint.")
@click.option("--targets", default=None, show_default="--target", help="Built-in synthetic target domains, comma-separated.")
@click.option("--target", default="webtoon", show_default=True, help="One target (when --targets is not given).")
@click.option("--kimg", type=click.FloatRange(0.001), default=2.0, show_default=True,
              help="Fine-tuning length per run (the limit, with --until-level), thousands of images.")
@click.option("--iters", "iters", type=click.IntRange(1), default=None, help="Steps per run (overrides --kimg).")
@click.option("--batch", type=click.IntRange(2), default=8, show_default=True)
@click.option("--seeds", default=None, show_default="--seed", help="Seeds, comma-separated: each a fine-tuning run.")
@click.option("--seed", type=int, default=0, show_default=True, help="One seed (when --seeds is not given).")
@click.option("--methods", default=",".join(METHODS), show_default=True, help="Comma-separated subset.")
@click.option("--swap-block", type=click.IntRange(1), default=2, show_default=True,
              help="Layer swap: blocks 1..K from the source, the rest from the fine-tuned model.")
@click.option("--n", type=click.IntRange(2), default=1000, show_default=True, help="Latents scored per generator.")
@click.option("--truncation", type=click.FloatRange(0.0, 1.0), default=0.7, show_default=True)
@click.option("--ema-kimg", type=click.FloatRange(0.0, min_open=True), default=None,
              show_default="min(10, 5 % of the run)", help="EMA half-life while fine-tuning.")
@click.option("--eval-every-kimg", type=click.FloatRange(0.0, min_open=True), default=None,
              show_default="1/8 of the run", help="Score the EMA snapshot every this many kimg (the curves).")
@click.option("--eval-n", type=click.IntRange(2), default=200, show_default=True, help="Latents per curve point.")
@click.option("--curve-quality", is_flag=True, help="Also score the quality on the curves (slower).")
@click.option("--quality/--no-quality", default=True, show_default=True,
              help="The quality column (probe-feature Fréchet distance; the slowest score on a CPU).")
@click.option("--until-level", is_flag=True,
              help="Stop a run once its style score has levelled off (the last --level-k points within --level-tol).")
@click.option("--level-k", type=click.IntRange(2), default=3, show_default=True)
@click.option("--level-tol", type=click.FloatRange(0.0, min_open=True), default=0.02, show_default=True)
@click.option("--probes", default=None, show_default="every bundled one: probes64.pt, probes64_<target>.pt",
              help="Probe bundles (`python -m metrics.probes train`), comma-separated; each scores the target its "
                   "style classifier detects.")
@click.option("--translators", default=None, help="Translator checkpoints PATH or TARGET=PATH, comma-separated "
                                                  "(AnimeGAN/CartoonGAN/CycleGAN/StarGAN v2).")
@click.option("--train-translators", default=None, help="Train these on synthetic photo → each target and score them "
                                                        "(animegan2,cartoongan,cyclegan).")
@click.option("--translator-iters", type=click.IntRange(2), default=2000, show_default=True)
@click.option("--translator-batch", type=click.IntRange(1), default=4, show_default=True)
@click.option("--translator-features", type=click.Choice(["auto", "imagenet", "random"]), default="auto",
              show_default=True, help="AnimeGANv2/CartoonGAN content features: ImageNet VGG19 from disk, random, or "
                                      "auto (ImageNet when found, else random, said so).")
@click.option("--translator-features-weights", type=click.Path(dir_okay=False), default=None,
              show_default="the torch hub cache", help="VGG19 weights file (vgg19-dcbb9e9d.pth).")
@click.option("--translator-arch", default=None, show_default="each trainer's published size",
              help="Sizes of the trained translators, MODEL.FIELD=N comma-separated (cyclegan.ngf, cyclegan.ndf, "
                   "cyclegan.n_blocks), e.g. to match the source generator's parameter count.")
@click.option("--out", "out_root", type=click.Path(file_okay=False), default="runs/compare", show_default=True,
              help="Folder of the run folders (<out>/<target>/seed<k>/<method>/).")
@click.option("--report", "out", type=click.Path(dir_okay=False), default="docs/COMPARISON.md", show_default=True,
              help="The markdown report to write.")
@click.option("--grid", type=click.Path(dir_okay=False), default=None,
              show_default="<report folder>/images/comparison_<target>.png", help="Grid PNG ({target} = the target).")
@click.option("--curves", type=click.Path(dir_okay=False), default=None,
              show_default="<report folder>/images/comparison_curves.png", help="Curves PNG (numbers in .json beside).")
@click.option("--device", default="auto", show_default=True)
@click.option("--quick", is_flag=True, help="Tiny smoke run: 2 steps per run, 64 latents.")
def main(source: str | None, targets: str | None, target: str, kimg: float, iters: int | None, batch: int,
         seeds: str | None, seed: int, methods: str, swap_block: int, n: int, truncation: float,
         ema_kimg: float | None, eval_every_kimg: float | None, eval_n: int, curve_quality: bool, quality: bool,
         until_level: bool,
         level_k: int, level_tol: float, probes: str | None, translators: str | None, train_translators: str | None,
         translator_iters: int, translator_batch: int, translator_features: str,
         translator_features_weights: str | None, translator_arch: str | None, out_root: str, out: str,
         grid: str | None, curves: str | None, device: str, quick: bool) -> None:
    """Fine-tune one source with every method on each target and seed, score translators on the same
    latents, and write a measured comparison."""
    if source is None and not bundled_generator().exists():
        raise ToonlabError(f"no --ckpt given and the bundled generator is missing at {bundled_generator()}; "
                           f"pass --ckpt G.pt (a StyleGAN2 checkpoint)")
    from finetune.compare_translators import parse_translator_arch

    with user_errors():
        settings = CompareSettings(
            source=source, target=target, targets=_csv(targets), kimg=kimg, iters=iters, batch=batch, seed=seed,
            seeds=_ints(seeds, "--seeds"), methods=_csv(methods), swap_block=swap_block, n=n, truncation=truncation,
            ema_kimg=ema_kimg, eval_every_kimg=eval_every_kimg, eval_n=eval_n, curve_quality=curve_quality, quality=quality,
            until_level=until_level, level_k=level_k, level_tol=level_tol, out_root=out_root,
            probes=probes or ",".join(map(str, bundled_probes())), translators=_csv(translators),
            train_translators=_csv(train_translators),
            translator_iters=translator_iters, translator_batch=translator_batch,
            translator_features=translator_features, translator_features_weights=translator_features_weights,
            translator_overrides=parse_translator_arch(translator_arch), device=device, quick=quick)
        # The source is checked before the probes (a missing source is the likelier mistake);
        # Ctrl-C: the trainer's "re-run to resume" line.
        study = run_comparison(settings, None, click.echo)
        report, grids, curves_png = write_report(study, out, grid=grid, curves=curves)
    click.echo(f"wrote {report}, {', '.join(map(str, grids))} and {curves_png}")


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("compare")
