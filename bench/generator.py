"""Generator inference throughput: 256 px config-f, batch 32, fp32 and bf16, CUDA ops vs reference.

    python bench/generator.py [--size 256] [--batch 32]

Community baseline on an H100 (REFERENCE.md §3): 689 img/s fp32.
"""

from __future__ import annotations

import argparse
import os

from _common import cuda_time, header

import torch

from stylegan2.networks import Generator
from toonlab.runtime import autocast, enable_tf32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=20)
    args = ap.parse_args()
    print(header())
    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark measures GPU throughput; nothing to do")
        return
    enable_tf32()
    dev = torch.device("cuda")
    G = Generator(args.size).to(dev).eval()
    z = torch.randn(args.batch, 512, device=dev)
    print("\n| impl | precision | img/s | ms/batch | peak GiB |\n|---|---|---|---|---|")
    for impl in ("cuda", "ref"):
        os.environ["TOONLAB_OPS_IMPL"] = impl
        for prec in ("fp32", "bf16"):
            def run():
                with torch.no_grad(), autocast(dev, prec):
                    G([z], noise_mode="const")
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            t = cuda_time(run, warmup=3, iters=args.iters)
            peak = torch.cuda.max_memory_allocated() / 2**30
            print(f"| {impl} | {prec} | {args.batch / t:.0f} | {t * 1000:.1f} | {peak:.2f} |")


if __name__ == "__main__":
    main()
