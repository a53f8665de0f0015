"""Shared bits of the GPU benchmarks: environment header and timing with CUDA events."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch


def header() -> str:
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({platform.processor() or 'unknown'})"
    return f"device: {dev} | torch {torch.__version__} | CUDA {torch.version.cuda} | python {platform.python_version()}"


def cuda_time(fn: Callable[[], object], warmup: int = 3, iters: int = 10) -> float:
    """Mean seconds per call, measured with CUDA events after warm-up (CPU wall clock without CUDA)."""
    for _ in range(warmup):
        fn()
    if not torch.cuda.is_available():
        t = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t) / iters
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / iters
