"""Run folders: resolved config, the one stats sink (JSONL + TensorBoard), checkpoint rotation.

Every trainer (StyleGAN2 pretraining, fine-tuning, the translators) writes through this module so
their folders look the same and resume the same way: re-running the same command finds the
newest complete checkpoint and continues from it.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Mapping

import torch

from toonlab.errors import UserInputError

CKPT_RE = re.compile(r"^(\d{6,})\.pt$")


class RunDir:
    """A training run's folder: ``config.json``, ``stats.jsonl``, ``checkpoints/NNNNNN.pt``, ``samples/``."""

    def __init__(self, root: str | Path, rank: int = 0) -> None:
        self.root = Path(root)
        self.rank = rank
        self.ckpt_dir = self.root / "checkpoints"
        self.samples = self.root / "samples"
        if rank == 0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            self.samples.mkdir(parents=True, exist_ok=True)

    def write_config(self, config: Mapping[str, Any]) -> None:
        if self.rank == 0:
            tmp = self.root / ".config.json.tmp"
            tmp.write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
            os.replace(tmp, self.root / "config.json")

    def read_config(self) -> dict[str, Any] | None:
        p = self.root / "config.json"
        return json.loads(p.read_text()) if p.exists() else None

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (temporary files of a killed save are ignored)."""
        if not self.ckpt_dir.exists():
            return []
        found = [p for p in self.ckpt_dir.iterdir() if CKPT_RE.match(p.name)]
        return sorted(found, key=lambda p: int(CKPT_RE.match(p.name).group(1)))

    def latest(self) -> Path | None:
        ckpts = self.checkpoints()
        return ckpts[-1] if ckpts else None

    def checkpoint_path(self, step: int) -> Path:
        return self.ckpt_dir / f"{step:06d}.pt"

    def save_checkpoint(self, state: Mapping[str, Any], step: int, keep: int = 0) -> Path:
        """Write ``state`` atomically as this run's checkpoint for ``step``, then prune to ``keep``."""
        from toonlab.atomic import atomic_path

        path = self.checkpoint_path(step)
        with atomic_path(path) as tmp:
            torch.save(dict(state), tmp)
        self.prune(keep)
        return path

    def prune(self, keep: int) -> None:
        """Keep the newest ``keep`` checkpoints (0 keeps all)."""
        if self.rank != 0 or keep <= 0:
            return
        for p in self.checkpoints()[:-keep]:
            p.unlink(missing_ok=True)


def step_from_name(path: str | Path) -> int | None:
    """The community convention: a checkpoint named ``550000.pt`` was saved at step 550000."""
    m = re.match(r"^(\d+)\.pt$", Path(path).name)
    return int(m.group(1)) if m else None


class Stats:
    """The one stats sink: ``report(name, value)`` during a tick, ``flush(step)`` writes a JSONL line
    and TensorBoard scalars and returns the means for the progress bar."""

    def __init__(self, run: RunDir | None, tensorboard: bool = True) -> None:
        self.run = run
        self._acc: dict[str, list[float]] = {}
        self._tb = None
        self._fh = None
        if run is not None and run.rank == 0:
            self._fh = open(run.root / "stats.jsonl", "a", buffering=1)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self._tb = SummaryWriter(str(run.root / "tb"))
                except Exception:  # tensorboard is optional at run time
                    self._tb = None

    def report(self, name: str, value: float | torch.Tensor) -> None:
        if isinstance(value, torch.Tensor):
            value = float(value.detach().float().mean())
        self._acc.setdefault(name, []).append(float(value))

    def flush(self, step: int, **extra: float) -> dict[str, float]:
        means = {k: sum(v) / len(v) for k, v in self._acc.items() if v}
        means.update(extra)
        self._acc.clear()
        if self._fh is not None:
            self._fh.write(json.dumps({"step": step, "time": time.time(), **means}) + "\n")
        if self._tb is not None:
            for k, v in means.items():
                if math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        return means

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
        if self._tb is not None:
            self._tb.close()


class NonFiniteLoss(UserInputError):
    """A loss became NaN/Inf; the run stops, keeping its last good checkpoint."""


def check_finite(step: int, **losses: torch.Tensor) -> None:
    for name, v in losses.items():
        if not torch.isfinite(v.detach()).all():
            raise NonFiniteLoss(f"{name} is {float(v.detach().float().mean())} at step {step}; stopping "
                                f"(the last good checkpoint is kept)")


def rng_state(device: torch.device) -> dict[str, Any]:
    """The torch, Python and (on CUDA) device RNG states, in a form ``weights_only`` loads back."""
    py = random.getstate()
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [py[0], list(py[1]), py[2]]}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def set_rng_state(rng: Mapping[str, Any], device: torch.device) -> None:
    """Restore what ``rng_state`` saved, so a resumed run draws the numbers a straight one would."""
    torch.set_rng_state(rng["torch"])
    v, state, gauss = rng["python"]
    random.setstate((v, tuple(state), gauss))
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


def run_training_loop(trainer: Any, batches: Iterator[Any], total: int, *, log_every: int, sample_every: int,
                      snapshot_every: int, desc: str, show: Sequence[str] = (),
                      on_batch: Callable[[Any], None] | None = None) -> Path:
    """The schedule the translation trainers share: step, log, sample, snapshot, final checkpoint.

    ``trainer`` provides ``step``, ``train_step(batch)``, ``stats`` (a ``Stats``), ``run`` (a
    ``RunDir``), ``save()`` and ``save_samples()``; ``show`` names the stats for the progress bar.
    Returns the newest checkpoint (written now unless the last step already has one).
    """
    from toonlab.runtime import progress

    bar = progress(total=total, initial=trainer.step, desc=desc, unit="it")
    t_last, step_last = time.time(), trainer.step
    try:
        while trainer.step < total:
            batch = next(batches)
            if on_batch is not None:
                on_batch(batch)
            trainer.train_step(batch)
            trainer.step += 1
            bar.update(1)
            if trainer.step % log_every == 0 or trainer.step == total:
                dt = time.time() - t_last
                s = trainer.stats.flush(trainer.step, sec_per_it=dt / max(trainer.step - step_last, 1))
                t_last, step_last = time.time(), trainer.step
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in s.items() if k in show})
            if sample_every and trainer.step % sample_every == 0:
                trainer.save_samples()
            if snapshot_every and trainer.step % snapshot_every == 0:
                trainer.save()
        latest = trainer.run.latest()
        if latest is None or int(latest.stem) != trainer.step:
            latest = trainer.save()
            trainer.save_samples()
    finally:
        bar.close()
        trainer.stats.close()
    return latest
