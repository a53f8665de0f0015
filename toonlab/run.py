"""Run folders: their lock, resolved config, the one stats sink (JSONL + TensorBoard), checkpoint
writing and rotation, RNG state.

Every trainer (StyleGAN2 pretraining, fine-tuning, the translators) writes through this module
(driven by the skeleton in ``toonlab/training.py``) so their folders look the same and resume the
same way: re-running the same command finds the newest complete checkpoint and continues from it.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Mapping

import torch

from toonlab.atomic import remove_stale_temporaries, torch_save_atomic, write_json_atomic
from toonlab.errors import UserInputError, environment_message
from toonlab.lock import FolderLock

CKPT_RE = re.compile(r"^(\d{6,})\.pt$")


class CheckpointWriteError(UserInputError):
    """A checkpoint could not be written (full disk, read-only folder); the previous one is kept."""


class RunDir:
    """A training run's folder: ``config.json``, ``stats.jsonl``, ``checkpoints/NNNNNN.pt``, ``samples/``.

    One process owns it at a time (``acquire``: the lock file ``.lock``, see ``toonlab.lock``); the
    owner then removes the temporaries a killed write left behind. A folder that cannot be created
    or written (read-only file system, no permission) is one line naming the path and the cause.
    """

    def __init__(self, root: str | Path, rank: int = 0) -> None:
        self.root = Path(root)
        self.rank = rank
        self.ckpt_dir = self.root / "checkpoints"
        self.samples = self.root / "samples"
        self._lock: FolderLock | None = None
        if rank == 0:
            try:
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                self.samples.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise UserInputError(f"cannot create the run folder {self.root}: "
                                     f"{environment_message(e)}") from None

    # ---- ownership ------------------------------------------------------------------------------

    @property
    def locked(self) -> bool:
        return self._lock is not None and self._lock.held

    def acquire(self) -> str | None:
        """Lock the folder for this process; returns a note about a stale lock or stale files removed."""
        if self.rank != 0 or self.locked:
            return None
        lock = FolderLock(self.root, what="run folder")
        try:
            lock.acquire()
        except OSError as e:
            raise UserInputError(f"cannot write to the run folder {self.root}: {environment_message(e)}") from None
        self._lock = lock
        notes = [lock.took_over] if lock.took_over else []
        stale = [p for d in (self.root, self.ckpt_dir, self.samples) for p in remove_stale_temporaries(d)]
        if stale:
            names = ", ".join(p.name for p in stale[:3]) + (f" (+{len(stale) - 3} more)" if len(stale) > 3 else "")
            notes.append(f"removed {len(stale)} temporary file{'s' if len(stale) != 1 else ''} of an interrupted "
                         f"write ({names})")
        return "; ".join(notes) or None

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # ---- files ----------------------------------------------------------------------------------

    def write_config(self, config: Mapping[str, Any]) -> None:
        if self.rank == 0:
            write_json_atomic(self.root / "config.json", config, sort_keys=True)

    def read_config(self) -> dict[str, Any] | None:
        p = self.root / "config.json"
        return json.loads(p.read_text()) if p.exists() else None

    def record_changes(self, step: int, changes: Sequence[str]) -> None:
        """Append settings changed on resume to ``config_changes.jsonl`` (``config.json`` holds the new ones)."""
        if self.rank == 0 and changes:
            with open(self.root / "config_changes.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "time": time.time(), "changed": list(changes)}) + "\n")

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

    def write_checkpoint(self, state: Mapping[str, Any], step: int, keep: int = 0) -> Path:
        """Write ``state`` atomically as the checkpoint of ``step``, then prune to ``keep``.

        A failed write (full disk, read-only folder, torch's "unexpected pos" when the disk fills
        during the zip) leaves the previous complete checkpoint untouched and raises
        ``CheckpointWriteError`` with one line saying so.
        """
        path = self.checkpoint_path(step)
        previous = self.latest()
        try:
            torch_save_atomic(dict(state), path)
        except (OSError, RuntimeError) as e:
            if isinstance(e, OSError):
                cause = environment_message(e).split(": ", 1)[-1] if e.filename else (e.strerror or str(e))
            else:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                full = "unexpected pos" in first or "PytorchStreamWriter" in first or "write" in first.lower()
                cause = ("the file could not be written (is the disk full?): " if full else "") + first[:160]
            kept = f"the previous checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
            raise CheckpointWriteError(f"could not write checkpoint {path}: {cause}; {kept}; stopping (fix the "
                                       "problem and re-run the same command to resume)") from None
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
        self.tensorboard = tensorboard
        self._acc: dict[str, list[float]] = {}
        self._tb = None
        self._fh = None
        self._opened = False

    def _open(self) -> None:
        """Open the files on the first flush: a run refused by the folder's lock never touches them."""
        self._opened = True
        if self.run is None or self.run.rank != 0:
            return
        self._fh = open(self.run.root / "stats.jsonl", "a", buffering=1)
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run.root / "tb"))
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
        if not self._opened:
            self._open()
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
        self._fh = self._tb = None
        self._opened = False


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
