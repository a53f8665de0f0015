"""Device, precision and seed handling shared by every CLI."""

from __future__ import annotations

import contextlib
import random
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from toonlab.errors import UserInputError

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "toonlab" / "assets"


def pick_device(name: str = "auto") -> torch.device:
    """'auto' → the first GPU when there is one, else the CPU; 'cuda' without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserInputError(f"--device {name} asked for, but no CUDA GPU is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserInputError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None


def cpu_limit() -> int:
    """How many CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota
    (Docker ``--cpus``, CI containers). torch sizes its thread pool from the cores it *sees*; with 16
    visible and a 2-CPU quota, 16 OpenMP threads are throttled in turn and every op waits for the
    slowest: 10× and worse on small convolutions."""
    import math
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = None
    try:  # cgroup v2: "max 100000" or "200000 100000"
        q, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if q != "max":
            quota = int(q) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            q = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
            if q > 0:
                quota = q / int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            pass
    return max(1, min(n, math.ceil(quota))) if quota else max(1, n)


def limit_cpu_threads() -> int:
    """Size torch's CPU thread pool to :func:`cpu_limit` unless the user chose (``OMP_NUM_THREADS``);
    also exported, so the commands this process starts follow. Returns the thread count."""
    import os

    if os.environ.get("OMP_NUM_THREADS"):
        return torch.get_num_threads()
    n = cpu_limit()
    os.environ["OMP_NUM_THREADS"] = str(n)
    if torch.get_num_threads() > n:
        torch.set_num_threads(n)
    return n


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def resolve_precision(precision: str, device: torch.device | str, *, allowed: tuple[str, ...] = ("fp32", "bf16"),
                      gpu_default: str = "bf16") -> str:
    """The one "auto" precision resolver: ``auto`` → ``gpu_default`` on CUDA, fp32 elsewhere.

    ``allowed`` lists what the command supports besides ``auto`` (a one-line error otherwise).
    """
    device = torch.device(device)
    if precision == "auto":
        return gpu_default if device.type == "cuda" else "fp32"
    if precision not in allowed:
        raise UserInputError(f"unknown precision {precision!r} (use auto, {', '.join(allowed)})")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on request; fp32 runs with TF32 matmuls/convs on GPUs (same as the reference code)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=device.type, dtype=dtype)
    raise UserInputError(f"unknown precision {precision!r} (use fp32 or bf16)")


def enable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parse_seeds(spec: str) -> list[int]:
    """'0-3,7,10-11' → [0, 1, 2, 3, 7, 10, 11]."""
    seeds: list[int] = []
    try:
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserInputError(f"bad seed list {spec!r}: use e.g. 0-15 or 1,4,9-12") from None
    if not seeds:
        raise UserInputError(f"bad seed list {spec!r}: no seeds")
    if any(s < 0 for s in seeds):
        raise UserInputError(f"bad seed list {spec!r}: seeds must be ≥ 0")
    return seeds


def bundled_generator() -> Path:
    """Path of the small source generator shipped with the repository."""
    return ASSETS / "source_synthetic64.pt"


def progress(iterable=None, **kw):
    """tqdm progress bar that stays quiet when stderr is not a terminal unless asked."""
    from tqdm.auto import tqdm

    kw.setdefault("dynamic_ncols", True)
    if not sys.stderr.isatty():  # logs and CI: fewer redraws so the file stays readable
        kw.setdefault("mininterval", 10.0)
    return tqdm(iterable, **kw)


@contextlib.contextmanager
def eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    states = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, s in zip(modules, states):
            m.train(s)
