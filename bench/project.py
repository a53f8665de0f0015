"""Projection speed: seconds per 1000 steps (W+, noise maps, LPIPS-VGG) for 1 image and a batch.

    python bench/project.py                 # GPU: 256-px config-f, batch 1 and 8, fp32 and bf16
    python bench/project.py --cpu           # CPU: bundled 64-px model, 1 image, 100 steps

Speed does not depend on weight values, so the GPU rows use a randomly initialised config-f
generator and LPIPS with a random VGG16 trunk (same architecture and cost as the trained one;
nothing is downloaded).  The "community-style" row runs the same loop the way the reference
projector does: reference (unfused) ops, fp32, LPIPS recomputing the target's features every step.
Community projector measured on an H100 (REFERENCE/issue): 51 s per 1000 steps (1 image), 65.5 s (batch 8).
"""

from __future__ import annotations

import argparse
import os

import torch
from _common import header

import inversion.project as pj
from stylegan2.checkpoint import load_generator
from stylegan2.networks import Generator
from toonlab.runtime import bundled_generator, enable_tf32


class _FullLPIPS(torch.nn.Module):
    """LPIPS that runs the trunk on both images every call (what the community projector does)."""

    def __init__(self, model: torch.nn.Module, target: torch.Tensor) -> None:
        super().__init__()
        self.model, self.target = model, target

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.target).reshape(x.shape[0])


def run(G: Generator, lp: torch.nn.Module, batch: int, steps: int, precision: str, community: bool) -> tuple[float, float]:
    """(seconds for ``steps`` steps, final LPIPS) after a short warm-up."""
    dev = G.w_avg.device
    target = torch.rand(batch, 3, G.size, G.size, generator=torch.Generator().manual_seed(1)).to(dev) * 2 - 1
    os.environ["TOONLAB_OPS_IMPL"] = "ref" if community else "auto"
    saved = pj.TargetLPIPS  # the projector's module global is what must be swapped, not a local name
    if community:
        pj.TargetLPIPS = _FullLPIPS
    try:
        cfg = dict(precision=precision, n_mean_latent=10000)
        pj.project(G, target, lp, pj.ProjectConfig(steps=10, **cfg), show_progress=False)  # warm-up (cudnn autotune)
        res = pj.project(G, target, lp, pj.ProjectConfig(steps=steps, **cfg), show_progress=False)
    finally:
        pj.TargetLPIPS = saved
        os.environ.pop("TOONLAB_OPS_IMPL", None)
    return res.seconds, res.history[-1]["perceptual"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpu", action="store_true", help="CPU figures: bundled 64-px model, 1 image")
    ap.add_argument("--steps", type=int, default=None, help="default 1000 (GPU) / 100 (CPU)")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--precisions", default="fp32,bf16")
    args = ap.parse_args()
    print(header())
    if args.cpu or not torch.cuda.is_available():
        torch.set_num_threads(os.cpu_count() or 1)
        steps = args.steps or 100
        G = load_generator(bundled_generator())
        lp = pj.build_perceptual("random", None, torch.device("cpu"))
        print(f"\nCPU, bundled {G.size}-px generator, W+ and noise maps, LPIPS-VGG (random trunk), {steps} steps\n")
        print("| loop | batch | s per 100 steps | final LPIPS |\n|---|---|---:|---:|")
        for community in (True, False):
            s, loss = run(G, lp, 1, steps, "fp32", community)
            name = "community-style (ref ops, LPIPS recomputes the target)" if community else "toonlab"
            print(f"| {name} | 1 | {s * 100 / steps:.1f} | {loss:.4f} |")
        return
    enable_tf32()
    dev = torch.device("cuda")
    steps = args.steps or 1000
    torch.manual_seed(0)
    G = Generator(256).to(dev).eval()
    lp = pj.build_perceptual("random", None, dev)
    print(f"\n256-px config-f, W+ and noise maps, LPIPS-VGG (random trunk), {steps} steps; "
          "targets: <= 15 s (1 image), <= 30 s (batch 8)\n")
    print("| loop | precision | batch | s per 1000 steps | peak GiB | final LPIPS |\n|---|---|---:|---:|---:|---:|")
    for batch in [int(b) for b in args.batches.split(",")]:
        rows = [(True, "fp32")] + [(False, p) for p in args.precisions.split(",")]
        for community, prec in rows:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            s, loss = run(G, lp, batch, steps, prec, community)
            name = "community-style" if community else "toonlab"
            print(f"| {name} | {prec} | {batch} | {s * 1000 / steps:.1f} | "
                  f"{torch.cuda.max_memory_allocated() / 2**30:.2f} | {loss:.4f} |", flush=True)


if __name__ == "__main__":
    main()
