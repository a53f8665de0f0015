"""The comparison's statistics: rows averaged over seeds, paired differences, verdicts.

Pure functions of per-latent numbers, so the tests can feed them synthetic values. Two sources of
noise are reported separately because they answer different questions:

- **over the scored latents** (``se_latents``): how precisely this run's mean is measured; the
  per-seed standard errors combined as for a mean of independent means, √(Σ se_s²) / S;
- **over seeds** (``se_seeds``): how much the result moves when the fine-tuning is repeated with
  another seed, std(per-seed means) / √S (needs S ≥ 2; with S = 2 it rests on one degree of
  freedom and is itself rough).

A difference is called only when it exceeds two of the *larger* of the two (:func:`verdict`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import Tensor

__all__ = ["Paired", "Row", "se", "paired", "aggregate", "verdict", "levelled", "level_noise_note"]


def se(x: Tensor) -> float:
    """Standard error of the mean of ``x`` (0 for fewer than two values)."""
    x = x.double()
    return float(x.std() / math.sqrt(len(x))) if len(x) > 1 else 0.0


def _over_seeds(means: Sequence[float], ses: Sequence[float]) -> tuple[float, float, float | None]:
    """(mean, s.e. over latents, s.e. over seeds) of per-seed means and their standard errors."""
    S = len(means)
    m = sum(means) / S
    se_lat = math.sqrt(sum(s * s for s in ses)) / S
    se_seed = float(torch.tensor(list(means), dtype=torch.float64).std() / math.sqrt(S)) if S > 1 else None
    return m, se_lat, se_seed


@dataclass
class Paired:
    """Mean over seeds of the per-seed paired difference a − b (same latents, same seed, same target)."""

    diff: float
    se_latents: float
    se_seeds: float | None
    n_seeds: int

    @property
    def se(self) -> float:
        """The larger of the two standard errors: the one a verdict must beat."""
        return max(self.se_latents, self.se_seeds or 0.0)

    def verdict(self) -> str:
        return verdict(self.diff, self.se)

    def to_dict(self) -> dict[str, Any]:
        return {"diff": self.diff, "se_latents": self.se_latents, "se_seeds": self.se_seeds, "n_seeds": self.n_seeds,
                "verdict": self.verdict()}


def verdict(diff: float, se_: float) -> str:
    """"lower" / "higher" when ``diff`` is more than two standard errors from 0, else "not clearly different"."""
    if diff + 2 * se_ < 0:
        return "lower"
    if diff - 2 * se_ > 0:
        return "higher"
    return "not clearly different"


def paired(a: dict[int, Tensor], b: dict[int, Tensor]) -> Paired | None:
    """Paired difference of two rows' per-latent values, ``{seed: tensor [n]}`` each; only the seeds
    both have count (None when they share none). Each seed's latents are the same for a and b."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [(a[s].double() - b[s].double()) for s in seeds]
    m, se_lat, se_seed = _over_seeds([float(d.mean()) for d in diffs], [se(d) for d in diffs])
    return Paired(m, se_lat, se_seed, len(seeds))


@dataclass
class Row:
    """One row of a target's table: a method, its layer-swapped blend, a translator or the source,
    averaged over seeds."""

    name: str
    kind: str  # "source" | "finetune" | "swap" | "translation"
    flags: str
    target: str
    seeds: list[int]
    structure_error: float
    structure_se_latents: float
    structure_se_seeds: float | None
    style_score: float
    style_se_latents: float
    style_se_seeds: float | None
    quality: float | None = None
    quality_se_seeds: float | None = None
    images: list[int] = field(default_factory=list)  # images seen per seed (fine-tuned rows)
    train_seconds: float | None = None  # summed over seeds
    stopped: list[str] = field(default_factory=list)  # per seed: where/why its fine-tuning stopped
    structure: dict[int, Tensor] = field(default_factory=dict, repr=False)  # seed → per-latent structure error
    style: dict[int, Tensor] = field(default_factory=dict, repr=False)  # seed → per-latent P(cartoon)
    vs_ref: Paired | None = None  # structure error minus the reference row's
    style_vs_ref: Paired | None = None
    ref: str | None = None  # the reference row's name

    @property
    def structure_se(self) -> float:
        return max(self.structure_se_latents, self.structure_se_seeds or 0.0)

    def verdict(self) -> str:
        """The table's verdict column, derived from the paired differences only."""
        if self.vs_ref is None or self.style_vs_ref is None:
            return "–"
        return f"structure {self.vs_ref.verdict()}, style {self.style_vs_ref.verdict()}"

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("structure", "style", "vs_ref", "style_vs_ref")}
        out["vs_ref"] = self.vs_ref.to_dict() if self.vs_ref else None
        out["style_vs_ref"] = self.style_vs_ref.to_dict() if self.style_vs_ref else None
        out["verdict"] = self.verdict()
        return out


def aggregate(runs: Sequence[Any], target: str, reference: str | None = "freezeSG") -> list[Row]:
    """Rows of one target from per-seed results (objects with ``name kind flags target seed
    per_latent style_per_latent quality images train_seconds stopped``), in first-seen order.

    Each fine-tuned row is paired with ``reference`` in the same swap state (``X+swapK`` with
    ``reference+swapK``), translator rows with ``reference`` itself; the source row is not paired.
    """
    by: dict[str, list[Any]] = {}
    for r in runs:
        if r.target == target:
            by.setdefault(r.name, []).append(r)
    rows: list[Row] = []
    for name, rs in by.items():
        rs = sorted(rs, key=lambda r: r.seed)
        st = {r.seed: r.per_latent for r in rs}
        sy = {r.seed: r.style_per_latent for r in rs}
        m, sl, ss = _over_seeds([float(t.double().mean()) for t in st.values()], [se(t) for t in st.values()])
        ym, yl, ys = _over_seeds([float(t.double().mean()) for t in sy.values()], [se(t) for t in sy.values()])
        q = [r.quality for r in rs if r.quality is not None]
        secs = [r.train_seconds for r in rs if r.train_seconds is not None]
        rows.append(Row(
            # Seeds made differently (e.g. a translator per seed) show every way, not the first seed's.
            name, rs[0].kind, " / ".join(dict.fromkeys(r.flags for r in rs)), target, [r.seed for r in rs],
            m, sl, ss, ym, yl, ys,
            sum(q) / len(q) if q else None,
            float(torch.tensor(q, dtype=torch.float64).std() / math.sqrt(len(q))) if len(q) > 1 else None,
            [r.images for r in rs if r.images is not None], sum(secs) if secs else None,
            [r.stopped for r in rs if getattr(r, "stopped", None)], st, sy))
    named = {r.name: r for r in rows}
    if reference is not None:
        for r in rows:
            if r.kind == "source" or r.name == reference:
                continue
            ref_name = reference
            if r.kind == "swap" and "+swap" in r.name:
                ref_name = f"{reference}+swap{r.name.rsplit('+swap', 1)[1]}"
            ref = named.get(ref_name)
            if ref is None or ref is r:
                continue
            r.ref = ref_name
            r.vs_ref = paired(r.structure, ref.structure)
            r.style_vs_ref = paired(r.style, ref.style)
    return rows


def levelled(values: Sequence[float], k: int, tol: float) -> bool:
    """True when the last ``k`` values (k ≥ 2) lie within ``tol`` of each other: the style score
    has stopped moving. False while fewer than ``k`` values exist."""
    if k < 2 or len(values) < k:
        return False
    last = list(values)[-k:]
    return max(last) - min(last) < tol


def level_noise_note(style_se: float, eval_n: int, tol: float) -> str | None:
    """A one-line warning when ``tol`` is within the noise of one curve point, else None.

    Why: :func:`levelled` compares raw curve points, and each point's style score carries a
    standard error ``style_se`` from its ``eval_n`` latents. When ``tol`` < 2·se, a flat curve's
    points fall outside ``tol`` by chance about as often as not, so a run stops (or runs to the
    limit) by chance. Measured on the 64-px source (2026-12-07): se 0.020–0.027 at eval-n 200
    against the default tol 0.02. The standard error falls as 1/√n, so the note names the
    ``--eval-n`` at which 2·se reaches ``tol``.
    """
    if style_se <= 0 or tol <= 0 or 2 * style_se <= tol:
        return None
    need = math.ceil(eval_n * (2 * style_se / tol) ** 2)
    return (f"--level-tol {tol:g} is within the noise of one curve point (style score s.e. {style_se:.3f} at "
            f"--eval-n {eval_n}): the levelling rule would stop by chance; use --eval-n {need} or more, "
            f"or a --level-tol of at least {2 * style_se:.2f}")
