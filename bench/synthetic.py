"""Throughput of the built-in synthetic face domains (toonlab.synthetic).

    python bench/synthetic.py                    # all domains, 64 and 256 px
    python bench/synthetic.py --sizes 64 --domains photo --seconds 5

For each domain and size it measures images/s of

* ``render``: the numpy renderer alone, in this process (wall clock, and per
  CPU-second of this process -- the latter is less disturbed by other load on
  a shared machine);
* ``item``: ``SyntheticFaces[i]`` (render + conversion to a [-1, 1] tensor), in this process;
* ``loader``: a ``DataLoader`` with ``--workers`` worker processes and batches
  of ``--batch``, after a warm-up (worker start-up is not counted).

and prints a markdown table. The target is >= 300 images/s at 64 px.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import PIL  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from toonlab.synthetic import DOMAINS, SyntheticFaces, render, sample_params  # noqa: E402


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _rate(step, seconds: float, min_items: int, cpu: bool = False):  # noqa: ANN001, ANN201
    """Items/s of calling ``step(i)`` for at least ``seconds`` and ``min_items`` items
    (with ``cpu``: also items per CPU-second of this process)."""
    done, i = 0, 0
    t0, c0 = time.perf_counter(), time.process_time()
    while True:
        done += step(i)
        i += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and done >= min_items:
            rate = done / dt
            return (rate, done / max(time.process_time() - c0, 1e-9)) if cpu else rate


def bench_render(domain: str, size: int, seconds: float) -> tuple[float, float]:
    params = [sample_params(i) for i in range(256)]
    render(params[0], domain, size)  # warm caches (noise tiles per size)

    def step(i: int) -> int:
        render(params[i % len(params)], domain, size)
        return 1

    return _rate(step, seconds, 20, cpu=True)


def bench_item(domain: str, size: int, seconds: float) -> float:
    ds = SyntheticFaces(domain, size, length=10**6, flip=True)
    ds[0]

    def step(i: int) -> int:
        ds[i]
        return 1

    return _rate(step, seconds, 20)


def bench_loader(domain: str, size: int, seconds: float, workers: int, batch: int) -> float:
    ds = SyntheticFaces(domain, size, length=10**6, flip=True)
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, shuffle=True, drop_last=True,
                        persistent_workers=workers > 0)
    it = iter(loader)
    for _ in range(max(2, workers)):  # worker start-up and first batches are not throughput
        next(it)

    def step(i: int) -> int:
        return next(it).shape[0]

    rate = _rate(step, seconds, 4 * batch)
    del it, loader
    return rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--domains", default=",".join(DOMAINS))
    ap.add_argument("--sizes", default="64,256")
    ap.add_argument("--seconds", type=float, default=2.0, help="minimum timing window per cell")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args(argv)
    domains = [d.strip() for d in a.domains.split(",") if d.strip()]
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]

    torch.set_num_threads(1)  # rendering is numpy/PIL; keep torch from competing for the cores
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# synthetic faces throughput ({_cpu_model()}, {os.cpu_count()} CPUs, {affinity} usable, "
          f"load {load:.2f} at start)")
    print(f"python {platform.python_version()}, torch {torch.__version__}, pillow {PIL.__version__}; "
          f"loader: {a.workers} workers, batch {a.batch}; >= {a.seconds:g} s per cell\n")
    print(f"| domain | size | render img/s | render img/CPU-s | item img/s | loader ({a.workers} workers) img/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for size in sizes:
        for domain in domains:
            r, rc = bench_render(domain, size, a.seconds)
            it = bench_item(domain, size, a.seconds)
            ld = bench_loader(domain, size, a.seconds, a.workers, a.batch)
            print(f"| {domain} | {size} | {r:,.0f} | {rc:,.0f} | {it:,.0f} | {ld:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
