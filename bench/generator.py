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
    print("\n| impl | precision | img/s | ms/batch |\n|---|---|---|---|")
    for impl in ("cuda", "ref"):
        os.environ["TOONLAB_OPS_IMPL"] = impl
        for prec in ("fp32", "bf16"):
            def run():
                with torch.no_grad(), autocast(dev, prec):
                    G([z], noise_mode="const")
            t = cuda_time(run, warmup=3, iters=args.iters)
            print(f"| {impl} | {prec} | {args.batch / t:.0f} | {t * 1000:.1f} |")
    print(f"\npeak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
