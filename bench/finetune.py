"""Cost of the structure loss: a fine-tuning iteration with ``--structure-loss 3`` vs a plain one.

    python bench/finetune.py [--source G.pt] [--batch 8] [--iters 20]

Target (fine-tuning issue): ≤ 1.5× a plain iteration — the source pass is forward-only, no grad,
shared noise, and stops after block N. Runs on the GPU when there is one, else on the CPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import header

import torch

from finetune.trainer import FinetuneConfig, FinetuneTrainer
from toonlab.runtime import bundled_generator, enable_tf32


def time_iters(source: str, batch: int, iters: int, device: torch.device, **method) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = FinetuneConfig(source=source, out=tmp, batch=batch, snapshot_every=0, sample_every=0,
                             log_every=10**9, iters=10**9, **method)
        t = FinetuneTrainer(cfg, None, device)
        real = torch.rand(batch, 3, cfg.size, cfg.size, device=device) * 2 - 1
        for _ in range(4):
            t.train_step(real)
            t.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            t.train_step(real)
            t.step += 1
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / iters


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", default=str(bundled_generator()))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    print(header())
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        enable_tf32()
    rows = [
        ("plain (no freeze, no structure loss)", {}),
        ("FreezeSG 2", {"freeze": 2}),
        ("FreezeSG 2 + structure loss 3 (rgb)", {"freeze": 2, "structure_loss": 3}),
        ("structure loss 3 (rgb)", {"structure_loss": 3}),
        ("structure loss 3 (features)", {"structure_loss": 3, "structure_on": "features"}),
    ]
    base = None
    print(f"\nsource {args.source}, batch {args.batch}, {args.iters} timed iterations on {dev}\n")
    print("| method | s/iter | × plain |\n|---|---|---|")
    for name, method in rows:
        s = time_iters(args.source, args.batch, args.iters, dev, **method)
        base = base or s
        print(f"| {name} | {s:.3f} | {s / base:.2f} |")


if __name__ == "__main__":
    main()
