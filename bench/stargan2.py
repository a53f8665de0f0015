"""StarGAN v2 training speed: iterations/s of the full iteration (2 D steps + 2 G steps + EMA).

    python bench/stargan2.py [--iters 10] [--size 256] [--batch 8] [--domains 2]

GPU: the paper's networks at 256 px, batch 8, fp32 (TF32 convs/matmuls) and bf16 autocast.
CPU (no GPU): a tiny configuration (32 px, widths ÷8) so the script still runs and prints a table.
Batches are random tensors already on the device: this times the model, not the data loader.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _common import header

import torch

from toonlab.runtime import enable_tf32
from translation.stargan2_networks import count_params
from translation.stargan2_trainer import StarGAN2Config, StarGAN2Trainer


def bench(size: int, batch: int, domains: int, precision: str, iters: int, warmup: int, device: torch.device,
          tiny: bool) -> tuple[float, float, dict[str, int]]:
    """(iterations/s, peak GPU memory GiB or NaN, parameter counts)."""
    arch = dict(dim_in=8, max_conv_dim=64, mapping_hidden=64) if tiny else {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = StarGAN2Config(out=tmp, img_size=size, batch=batch, precision=precision, tensorboard=False, **arch)
        t = StarGAN2Trainer(cfg, None, device, domain_names=[f"d{i}" for i in range(domains)])
        g = torch.Generator(device="cpu").manual_seed(0)

        def batch_() -> list[torch.Tensor]:
            x = lambda: (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
            y = lambda: torch.randint(0, domains, (batch,), generator=g).to(device)
            return [x(), y(), x(), x(), y()]

        batches = [batch_() for _ in range(4)]
        for i in range(warmup):
            t.train_step(batches[i % 4])
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for i in range(iters):
            t.train_step(batches[i % 4])
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        counts = {k: count_params(getattr(t, k)) for k in ("G", "F", "E", "D")}
        t.stats.close()
    return iters / dt, mem, counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=None, help="timed iterations [GPU 20, CPU 5]")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--size", type=int, default=None, help="image side [GPU 256, CPU 32]")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--domains", type=int, default=2)
    args = ap.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        enable_tf32()
    size = args.size or (256 if gpu else 32)
    iters = args.iters or (20 if gpu else 5)
    print(header())
    if not gpu:
        print("no GPU: tiny CPU configuration (widths ÷8, 32 px) — not comparable with GPU numbers")
    print(f"StarGAN v2 training iteration (D latent + D ref + G latent + G ref + EMA), {size} px, batch {args.batch}, "
          f"{args.domains} domains, {iters} timed iterations after {args.warmup} warm-up")
    rows = []
    for prec in (["fp32", "bf16"] if gpu else ["fp32"]):
        ips, mem, counts = bench(size, args.batch, args.domains, prec, iters, args.warmup, device, tiny=not gpu)
        rows.append((prec, ips, mem))
    print("params: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print()
    print("| precision | it/s | images/s | ms / it | peak GPU memory |")
    print("|---|---:|---:|---:|---:|")
    for prec, ips, mem in rows:
        m = f"{mem:.1f} GiB" if mem == mem else "–"
        print(f"| {prec} | {ips:.2f} | {ips * args.batch:.1f} | {1000 / ips:.0f} | {m} |")


if __name__ == "__main__":
    main()
