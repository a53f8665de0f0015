"""The one training skeleton every trainer is built on (StyleGAN2 pretraining and fine-tuning,
AnimeGAN/CartoonGAN, CycleGAN, StarGAN v2).

A trainer says *what* to train — named modules and optimisers (their names are the checkpoint's
keys), a list of :class:`Phase`\\ s, the length of the run, its samples — and the skeleton owns
*how*: the loop, the run folder and its lock, resuming from the newest complete checkpoint,
atomic checkpoint writes, RNG state, the data position, the stats sink, hooks, the NaN stop and
the interrupt message. Phases are data the loop walks, as in NVIDIA's StyleGAN2-ADA training
loop: each has a name, an interval and an optional condition, so "R1 every 16 steps" or
"content-only initialisation for the first N steps" is a line in a list, not a copy of the loop.

Resume rules (``resume``): the run folder's newest readable checkpoint wins (an unreadable one is
moved aside with a message and the previous one is used); its settings are compared with the
command's — settings in ``MUTABLE`` (run length, intervals, workers, device, …) may change and the
change is recorded, any other difference is refused with the settings named.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from toonlab.checkpoint import CheckpointError, load_torch_file
from toonlab.errors import UserInputError
from toonlab.hooks import Hook, HookFactory
from toonlab.run import CheckpointWriteError, RunDir, Stats, rng_state, set_rng_state
from toonlab.samplers import SAMPLER_VERSION

__all__ = ["Phase", "Trainer", "TrainingStopped", "ema_update", "check_finite", "NonFiniteLoss", "SettingsChanged",
           "TrainingInterrupted", "CheckpointWriteError", "MUTABLE"]

#: Settings that may differ between the run in a folder and the command resuming it. Everything
#: else (architecture, data, losses, learning rates, seed, precision, ...) must match.
MUTABLE = frozenset({
    "iters", "kimg", "epochs", "out", "resume", "device", "workers", "keep", "snapshot_every", "sample_every",
    "log_every", "n_samples", "tensorboard", "metrics", "metrics_every", "metrics_real", "metrics_features",
    "inception_weights", "features_weights", "vgg_weights",
})


class NonFiniteLoss(UserInputError):
    """A loss became NaN/Inf; the run stops, keeping its last good checkpoint."""


class SettingsChanged(UserInputError):
    """A resume with settings that cannot change in the middle of a run."""


class TrainingInterrupted(UserInputError):
    """Ctrl-C: one line saying how to continue."""


class TrainingStopped(UserInputError):
    """SIGTERM (``timeout``, a batch scheduler's pre-emption, ``kill``): the run saved a checkpoint at a
    step boundary and stopped; one line saying how to continue. Exit code 2 like every user-facing stop."""


#: The signals that stop a run after the current step, with a checkpoint (Ctrl-C stops at once instead,
#: from the last checkpoint: a person at the keyboard wants the prompt back now).
STOP_SIGNALS = (signal.SIGTERM,)


def check_finite(step: int, **losses: torch.Tensor) -> None:
    """Stop the run (``NonFiniteLoss``) when any loss is NaN/Inf."""
    for name, v in losses.items():
        if not torch.isfinite(v.detach()).all():
            raise NonFiniteLoss(f"{name} is {float(v.detach().float().mean())} at step {step}; stopping "
                                f"(the last good checkpoint is kept)")


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """``ema ← decay·ema + (1−decay)·model`` for parameters; buffers (noise maps, norms) are copied."""
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


@dataclass
class Phase:
    """One part of a training step: ``run(batch)`` when ``step % every == 0`` and ``when(step)`` holds."""

    name: str
    run: Callable[[Any], None]
    every: int = 1
    when: Callable[[int], bool] | None = None

    def due(self, step: int) -> bool:
        return (self.every <= 1 or step % self.every == 0) and (self.when is None or self.when(step))




def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


class Trainer:
    """The skeleton. Subclasses set, in ``__init__`` after ``super().__init__``:

    * ``self.modules`` — ``{checkpoint key: module}`` (networks and their EMA copies);
    * ``self.optimizers`` — ``{checkpoint key: optimiser}``;
    and implement ``phases()`` and ``total_steps``; optionally ``extra_state()`` /
    ``load_extra_state()`` (pools, ADA state, …), ``metadata()`` (the ``toonlab`` entry: model name,
    architecture), ``check_compatible()``, ``batches()``, ``save_samples()``, ``tick_stats()``.
    """

    #: Name used in messages and the progress bar.
    desc = "train"
    #: Stats shown on the progress bar.
    show: Sequence[str] = ()
    #: What a checkpoint of this trainer is called in messages.
    what = "training checkpoint"
    #: The ``toonlab.model`` entry a checkpoint of this trainer must hold (None: not checked).
    model_name: str | None = None
    mutable: frozenset[str] = MUTABLE
    #: The translators' layout keeps ``step`` and ``rng`` at the top level of a checkpoint (StyleGAN2's
    #: community layout has them inside ``toonlab``).
    top_level_step_rng = False
    #: Config field → the command-line flag that sets it, where the names differ (for messages).
    flags: Mapping[str, str] = {}

    def flag(self, key: str) -> str:
        return self.flags.get(key) or "--" + key.replace("_", "-")

    def __init__(self, cfg: Any, device: torch.device | str, *, rank: int = 0, world: int = 1,
                 tensorboard: bool = True) -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self.rank, self.world = rank, world
        self.run = RunDir(cfg.out, rank)
        self.stats = Stats(self.run if rank == 0 else None, tensorboard=tensorboard)
        self.step = 0
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.notes: list[str] = []  # one-line notes of the resume (changed settings, stale files)
        self._phases: list[Phase] | None = None
        self._stop_signal: str | None = None  # set by a stop signal; the loop saves and ends at the step's end

    # ---- what subclasses provide ------------------------------------------------------------------

    @property
    def total_steps(self) -> int:
        raise NotImplementedError

    def phases(self) -> list[Phase]:
        raise NotImplementedError

    def config_dict(self) -> dict[str, Any]:
        """The run's settings as recorded in ``config.json`` and every checkpoint."""
        return self.cfg.to_dict()

    def metadata(self) -> dict[str, Any]:
        """Entries of the checkpoint's ``toonlab`` dict besides step, config, RNG and data position."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Top-level checkpoint entries besides the modules and optimisers."""
        return {}

    def load_extra_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Restore what ``extra_state`` saved."""

    def check_compatible(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Raise ``UserInputError`` when ``ckpt`` belongs to another kind of run."""
        meta = ckpt.get("toonlab")
        if not isinstance(meta, dict):
            raise UserInputError(f"{path} is not a toonlab {self.what}")
        if self.model_name is not None and meta.get("model") != self.model_name:
            held = meta.get("model")
            raise UserInputError(f"{path} holds a {held or 'different'} run, not {self.model_name}; "
                                 "use another --out or the same model")

    def batches(self) -> Iterator[Any]:
        """The training batches from ``self.step`` on (the data position of a resumed run)."""
        raise UserInputError("no data: pass a batch iterator")

    def before_step(self, batch: Any) -> Any:
        """Called with each batch before the phases; returns what the phases get."""
        return batch

    def save_samples(self) -> Path | None:
        return None

    def tick_stats(self, seconds: float, steps: int) -> dict[str, float]:
        """Timing scalars of one logging interval."""
        return {"sec_per_it": seconds / max(steps, 1)}

    def train_mode(self) -> None:
        """Put the trained networks in training mode before the loop."""
        for k, m in self.modules.items():
            if not k.endswith("_ema"):
                m.train()

    # ---- checkpoints --------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: m.state_dict() for k, m in self.modules.items()}
        out.update({k: o.state_dict() for k, o in self.optimizers.items()})
        out.update(self.extra_state())
        meta = dict(self.metadata())
        meta.update(step=self.step, config=self.config_dict(), world=self.world,
                    data={"sampler": SAMPLER_VERSION, "seed": getattr(self.cfg, "seed", 0), "position": self.step})
        if self.top_level_step_rng:
            out.update(step=self.step, rng=rng_state(self.device))
        else:
            meta["rng"] = rng_state(self.device)
        out["toonlab"] = meta
        return out

    def load_state_dict(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Restore modules, optimisers, step, RNG and the subclass's extra state from ``ckpt``."""
        meta = ckpt["toonlab"]
        try:
            for k, m in self.modules.items():
                if k not in ckpt:
                    raise KeyError(k)
                m.load_state_dict(ckpt[k])
            for k, o in self.optimizers.items():
                o.load_state_dict(ckpt[k])
        except (RuntimeError, KeyError, ValueError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0][:200]
            raise UserInputError(f"{path}: cannot resume from it: {first}") from None
        self.load_extra_state(ckpt, path)
        self.step = int(meta.get("step", ckpt.get("step", 0)))
        rng = meta.get("rng") or ckpt.get("rng")
        if rng:
            set_rng_state(rng, self.device)

    def _check_settings(self, saved: Mapping[str, Any] | None, path: Path) -> list[str]:
        """Changed mutable settings (as notes); raise ``SettingsChanged`` for any other difference."""
        if not isinstance(saved, Mapping):
            return []
        now = json.loads(json.dumps(self.config_dict(), default=str))
        old = json.loads(json.dumps(dict(saved), default=str))
        fixed, changed = [], []
        for k in sorted(set(now) & set(old)):
            if now[k] == old[k]:
                continue
            (changed if k in self.mutable else fixed).append(f"{self.flag(k)} {_short(old[k])} → {_short(now[k])}")
        if fixed:
            raise SettingsChanged(f"refusing to resume {self.run.root}: {', '.join(fixed)} differ from the run's "
                                  f"settings ({path.name}); re-run with the run's settings, or use another --out")
        return changed

    def resume(self) -> str:
        """Take the run folder, then continue from its newest readable checkpoint (or start)."""
        self.lock()
        try:
            return self._resume()
        except BaseException:
            self.run.release()  # a refused resume leaves the folder to the next command
            raise

    def _resume(self) -> str:
        for path in reversed(self.run.checkpoints()):
            try:
                ckpt = load_torch_file(path, self.what)
                if not isinstance(ckpt, dict):
                    raise CheckpointError(f"{path} is not a {self.what}")
            except CheckpointError as e:
                aside = path.with_name(path.name + ".corrupt")
                if self.rank == 0:
                    path.replace(aside)
                self.notes.append(f"{path.name} is unreadable ({str(e).split(': ', 1)[-1]}); moved it to "
                                  f"{aside.name} and resumed from the previous checkpoint")
                continue
            self.check_compatible(ckpt, path)
            changed = self._check_settings(ckpt["toonlab"].get("config"), path)
            self.load_state_dict(ckpt, path)
            if changed:
                self.notes.append("applied changed settings: " + ", ".join(changed))
                self.run.record_changes(self.step, changed)
            return f"resumed from {path} at step {self.step}"
        return self.start_fresh()

    def start_fresh(self) -> str:
        """No checkpoint in the run folder: a new run (subclasses may initialise from ``cfg.resume``)."""
        return "starting a new run"

    def lock(self) -> None:
        """Own the run folder (rank 0): a second writer stops with one line; stale temporaries go."""
        if self.rank != 0 or self.run.locked:
            return
        note = self.run.acquire()
        if note:
            self.notes.append(note)

    def save(self) -> Path | None:
        """Write this step's checkpoint atomically and prune old ones (rank 0)."""
        if self.rank != 0:
            return None
        state = self.state_dict()
        return self.run.write_checkpoint(state, self.step, getattr(self.cfg, "keep", 0))

    # ---- the loop -----------------------------------------------------------------------------------

    def train_step(self, batch: Any) -> None:
        """One step at ``self.step``: every due phase on the batch (the loop then advances the step)."""
        batch = self.before_step(batch)
        for ph in self._phases if self._phases is not None else self.phases():
            if ph.due(self.step):
                ph.run(batch)

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Turn SIGTERM into "save at the end of this step and stop"; returns the handlers to put back.

        Only in a single-process run's main thread: in a torchrun group each rank would stop at its own
        step and the others would wait for it in a collective, so there the default (die, resume from the
        last snapshot) is the safe one."""
        if self.world != 1 or threading.current_thread() is not threading.main_thread():
            return {}

        def stop(signum: int, _frame: Any) -> None:
            self._stop_signal = signal.Signals(signum).name

        return {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}

    def _resume_hint(self) -> str:
        latest = self.run.latest()
        where = f"from {latest}" if latest is not None else "from the start (no checkpoint yet)"
        return f"re-run the same command to resume {where}"

    def train(self, batches: Iterator[Any] | None = None, hooks: Sequence[HookFactory] = ()) -> Path | None:
        """Run to ``total_steps``; returns the newest checkpoint. ``hooks`` are built before the first step."""
        from toonlab.runtime import progress

        self.lock()
        c = self.cfg
        built: list[Hook] = []
        bar = None
        restore: dict[int, Any] = {}
        try:
            built = [f(self) for f in hooks] if self.rank == 0 else []  # a missing weights file fails here
            if self.rank == 0:
                extra = {k: v for f in hooks for k, v in dict(getattr(f, "config", {}) or {}).items()}
                self.run.write_config({**self.config_dict(), **extra})
            if batches is None:
                batches = self.batches()
            self._phases = self.phases()
            log_every = max(1, int(getattr(c, "log_every", 10) or 10))
            sample_every = int(getattr(c, "sample_every", 0) or 0)
            snapshot_every = int(getattr(c, "snapshot_every", 0) or 0)
            total = self.total_steps
            self.train_mode()
            bar = progress(total=total, initial=self.step, desc=self.desc, unit="it", disable=self.rank != 0)
            t_last, step_last = time.time(), self.step
            for h in built:
                h.start(self)
            restore.update(self._catch_stop_signals())
            while self.step < total:
                if self._stop_signal is not None:
                    latest = self.run.latest()
                    if self.rank == 0 and (latest is None or int(latest.stem) != self.step):
                        latest = self.save()
                    raise TrainingStopped(f"stopped by {self._stop_signal} at step {self.step} (saved {latest}); "
                                          f"re-run the same command to resume")
                self.train_step(next(batches))
                self.step += 1
                bar.update(1)
                reported = False
                for h in built:
                    t_hook = time.time()
                    for k, v in h.after_step(self).items():
                        self.stats.report(k, v)
                        reported = True
                    t_last += time.time() - t_hook  # timing stays about training
                if self.step % log_every == 0 or self.step == total or reported:
                    dt = time.time() - t_last
                    s = self.stats.flush(self.step, **self.tick_stats(dt, self.step - step_last))
                    t_last, step_last = time.time(), self.step
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in s.items()
                                     if k in self.show and math.isfinite(v)})
                if sample_every and self.step % sample_every == 0:
                    self.save_samples()
                if snapshot_every and self.step % snapshot_every == 0:
                    self.save()
            latest = self.run.latest()
            if self.rank == 0 and (latest is None or int(latest.stem) != self.step):
                latest = self.save()
                self.save_samples()
        except KeyboardInterrupt:
            raise TrainingInterrupted(f"interrupted at step {self.step}; {self._resume_hint()}") from None
        except RuntimeError as e:
            # A loader worker killed from outside (`pkill -f train.py` signals the workers too; the OOM
            # killer) surfaces as PyTorch's RuntimeError in the middle of a step, so that step is not
            # whole and is not saved: the run continues from its last checkpoint.
            if not str(e).startswith("DataLoader worker"):
                raise
            raise TrainingInterrupted(f"{str(e).strip().splitlines()[0]} (at step {self.step}); "
                                      f"{self._resume_hint()}") from None
        finally:
            for sig, handler in restore.items():
                signal.signal(sig, handler)
            self._phases = None
            if bar is not None:
                bar.close()
            for h in built:
                h.end(self)
            self.stats.close()
            self.run.release()
        return latest


def run_training(trainer: Trainer, hooks: Sequence[HookFactory] = (), describe: Callable[[str], str] | None = None,
                 echo: Callable[[str], Any] | None = None) -> Path | None:
    """What every trainer command does: resume (or start), say so, train, summarise skipped images.

    ``describe`` turns the resume line ("resumed from … at step N") into the command's first line.
    """
    import click

    from toonlab.data import skip_summary
    from toonlab.errors import one_line_warnings

    echo = echo or click.echo
    one_line_warnings()  # skipped images: one line each, no source lines (workers inherit it)
    how = trainer.resume()
    if trainer.rank == 0:
        echo(describe(how) if describe else how)
        for note in trainer.notes:
            echo(f"note: {note}")
    last = trainer.train(hooks=hooks)
    if trainer.rank == 0:
        summary = skip_summary(trainer.run.root / "skipped.txt")
        if summary:
            echo(summary)
    return last
