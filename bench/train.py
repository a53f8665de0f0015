"""Full StyleGAN2 training iterations (G, D, lazy R1 + path length, EMA, ADA) on synthetic input.

    python bench/train.py [--size 256] [--batch 32] [--iters 30] [--profile]

Community baseline on an H100 (REFERENCE.md §3): 58.5 img/s, 75 GB peak. Target ≥ 150 img/s, ≤ 40 GB.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from _common import header

import torch

from stylegan2.training import StyleGAN2Trainer, TrainConfig
from toonlab.runtime import enable_tf32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=32)
    ap.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--impl", nargs="+", default=["cuda"])
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of a few steps")
    args = ap.parse_args()
    print(header())
    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark measures GPU training throughput; nothing to do")
        return
    enable_tf32()
    dev = torch.device("cuda")
    print("\n| impl | precision | img/s | s/kimg | peak GiB |\n|---|---|---|---|---|")
    for impl in args.impl:
        os.environ["TOONLAB_OPS_IMPL"] = impl
        for prec in args.precision:
            with tempfile.TemporaryDirectory() as tmp:
                cfg = TrainConfig(out=tmp, size=args.size, batch=args.batch, precision=prec, snapshot_every=0,
                                  sample_every=0, iters=10**9, log_every=10**9)
                t = StyleGAN2Trainer(cfg, None, dev)
                real = torch.rand(args.batch, 3, args.size, args.size, device=dev) * 2 - 1
                for _ in range(16):  # warm-up covers one R1 and several path-length steps
                    t.train_step(real)
                    t.step += 1
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                for _ in range(args.iters):
                    t.train_step(real)
                    t.step += 1
                torch.cuda.synchronize()
                dt = time.perf_counter() - start
                ips = args.iters * args.batch / dt
                print(f"| {impl} | {prec} | {ips:.1f} | {1000 / ips:.2f} | "
                      f"{torch.cuda.max_memory_allocated() / 2**30:.1f} |")
                if args.profile:
                    from torch.profiler import ProfilerActivity, profile

                    with profile(activities=[ProfilerActivity.CUDA]) as prof:
                        for _ in range(16):
                            t.train_step(real)
                            t.step += 1
                        torch.cuda.synchronize()
                    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))
                del t


if __name__ == "__main__":
    main()
