"""Periodic metrics during StyleGAN2 training and fine-tuning: a trainer hook, and the command-line
extension that adds ``--metrics fid10k --metrics-every N`` to the trainer commands.

Trainers (layer 3) never import this package: the entry point (``toonlab/cli.py``) composes the
trainer commands with :func:`extend_training_command`, which hands the trainer a hook factory.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import click
import torch
from torch import nn

from metrics.features import INCEPTION_FILE, build_feature_extractor
from metrics.fid import feature_statistics, frechet_distance, kid
from metrics.sources import DatasetSource, GeneratorSource
from metrics.stats import SourceStats, compute_features, source_statistics
from toonlab.errors import UserInputError
from toonlab.hooks import Hook, add_hook_factory

__all__ = ["METRIC_OPTIONS", "MetricsHookFactory", "TrainingMetrics", "extend_training_command", "parse_metrics"]

_METRIC_RE = re.compile(r"^(fid|kid)(\d+)(k?)$")


def parse_metrics(spec: str | Sequence[str]) -> list[tuple[str, str, int]]:
    """``"fid10k,kid1k"`` → ``[("fid10k", "fid", 10000), ("kid1k", "kid", 1000)]`` (``fid500`` = 500 images)."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out = []
    for name in names:
        m = _METRIC_RE.match(name)
        if not m or int(m.group(2)) == 0:
            raise UserInputError(f"unknown metric {name!r} (use fid1k, fid10k, fid50k, kid10k ... or fidN/kidN)")
        out.append((name, m.group(1), int(m.group(2)) * (1000 if m.group(3) else 1)))
    return out


class TrainingMetrics(Hook):
    """Periodic metrics of the EMA generator during StyleGAN2 training / fine-tuning.

    Real statistics are computed once (and cached on disk); every evaluation samples the
    generator with the same fixed seeds, so successive values are comparable. Results are
    named ``metrics/<name>`` for the stats sink.
    """

    def __init__(self, spec: str, real: str, size: int, device: torch.device, *, every: int = 0,
                 features: str = "inception", inception_weights: str | None = None, batch: int = 64,
                 workers: int = 0, seed: int = 0, show_progress: bool = True) -> None:
        self.metrics = parse_metrics(spec)
        if not self.metrics:
            raise UserInputError("--metrics is empty")
        self.real, self.size, self.device, self.every = real, size, device, every
        self.batch, self.workers, self.seed, self.show_progress = batch, workers, seed, show_progress
        self.extractor = build_feature_extractor(features, inception_weights, device,  # fails fast when missing
                                                 offline_flag="--features random")
        self._real: dict[tuple[int, bool], SourceStats] = {}

    def after_step(self, trainer: Any) -> dict[str, float]:
        """``metrics/NAME`` of ``trainer.G_ema`` when due (every ``every`` steps and at the last one)."""
        return self(trainer.G_ema) if self.due(trainer.step, trainer.total_steps) else {}

    def due(self, step: int, last: int) -> bool:
        return step == last or (self.every > 0 and step % self.every == 0)

    def _real_stats(self, n: int, need: bool) -> SourceStats:
        if (n, need) not in self._real:
            src = DatasetSource(self.real, self.size, n, self.workers)
            self._real[(n, need)] = source_statistics(src, self.extractor, batch=self.batch, device=self.device,
                                                      need_features=need, show_progress=self.show_progress,
                                                      desc="metrics: real")
        return self._real[(n, need)]

    def __call__(self, G: nn.Module) -> dict[str, float]:
        n_max = max(n for _, _, n in self.metrics)
        fake = compute_features(GeneratorSource(G, n_max, seed=self.seed, device=self.device), self.extractor,
                                self.batch, self.device, self.show_progress, "metrics: fake")
        out: dict[str, float] = {}
        for name, kind, n in self.metrics:
            real = self._real_stats(n, kind == "kid")
            f = fake[: min(n, len(fake))]
            if kind == "fid":
                mu, sigma = feature_statistics(f, self.device)
                out[f"metrics/{name}"] = frechet_distance(mu, sigma, real.mu, real.sigma)
            else:
                out[f"metrics/{name}"] = kid(f, real.feats, 100, 1000,
                                             device=self.device if self.device.type == "cuda" else None)[0]
        return out


#: The options the extension adds to a trainer command; their values are recorded in config.json.
METRIC_OPTIONS: list[click.Option] = [
    click.Option(["--metrics"], default=None, help="Periodic metrics of the EMA generator, e.g. fid10k or "
                 "fid10k,kid10k (fid1k/fid50k/kidN...); logged as metrics/NAME."),
    click.Option(["--metrics-every"], type=click.IntRange(0), default=None,
                 help="Steps between metric evaluations [0 = at every checkpoint]; always at the end."),
    click.Option(["--metrics-real"], default=None, help="Real images for the metrics [the training data]."),
    click.Option(["--features", "metrics_features"], type=click.Choice(["inception", "random"]), default=None,
                 show_default="inception",
                 help="Feature network of the metrics; random = offline smoke runs only (comparable with nothing)."),
    click.Option(["--inception-weights"], type=click.Path(dir_okay=False), default=None,
                 help=f"Inception weights ({INCEPTION_FILE}) [the torch hub cache]."),
]
_KEYS = ("metrics", "metrics_every", "metrics_real", "metrics_features", "inception_weights")


class MetricsHookFactory:
    """Builds the periodic-metrics hook of a StyleGAN2 trainer (``trainer.cfg``, ``trainer.G_ema``)."""

    def __init__(self, metrics: str, metrics_every: int | None = None, metrics_real: str | None = None,
                 metrics_features: str | None = None, inception_weights: str | None = None) -> None:
        parse_metrics(metrics)  # a typo fails before anything is built
        self.config = dict(metrics=metrics, metrics_every=metrics_every or 0, metrics_real=metrics_real,
                           metrics_features=metrics_features or "inception", inception_weights=inception_weights)

    def __call__(self, trainer: Any) -> "TrainingMetrics":
        c, k = trainer.cfg, self.config
        return TrainingMetrics(k["metrics"], real=k["metrics_real"] or c.data, size=c.size, device=trainer.device,
                               every=k["metrics_every"] or c.snapshot_every, features=k["metrics_features"],
                               inception_weights=k["inception_weights"], workers=c.workers, seed=c.seed)


def extend_training_command(cmd: click.Command) -> click.Command:
    """A copy of a StyleGAN2 trainer command with the periodic-metrics options.

    The options are taken off before the trainer's own callback runs; when ``--metrics`` is given a
    :class:`MetricsHookFactory` is registered for the trainer (``toonlab.hooks``).
    """
    import copy
    import functools

    new = copy.copy(cmd)
    new.params = [*cmd.params[:-1], *[copy.copy(o) for o in METRIC_OPTIONS], cmd.params[-1]] \
        if cmd.params and cmd.params[-1].name == "dry_run" else [*cmd.params, *[copy.copy(o) for o in METRIC_OPTIONS]]
    inner = cmd.callback

    @functools.wraps(inner)
    def callback(*args: Any, **kw: Any) -> Any:
        spec = {k: kw.pop(k, None) for k in _KEYS}
        if spec["metrics"]:
            add_hook_factory(MetricsHookFactory(**spec))
        elif any(v is not None for v in spec.values()):
            raise click.UsageError("--metrics-every/--metrics-real/--features/--inception-weights need --metrics")
        return inner(*args, **kw)

    new.callback = callback
    if hasattr(cmd, "aliases"):
        new.aliases = {**cmd.aliases, "--metrics-features": "--features"}
    return new
