"""FID of N generated images in seconds: generation + Inception features + statistics.

    python bench/metrics.py                      # GPU: N=10,000 at 256 px (config-f); CPU: N=32 at 64 px
    python bench/metrics.py --n 10000 --size 256 --batch 64 [--ckpt G.pt] [--inception-weights PATH]

Without the Inception weights file on disk the same architecture runs with random weights
(torch-fidelity's network, torchvision's init), so the timing is faithful while the FID values
are meaningless; the output says which. Features are always extracted in full fp32 (TF32 off,
as ``toonlab metrics`` does); a TF32 row shows what that costs.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import header

from stylegan2.networks import Generator
from metrics import (
    GeneratorSource,
    ImageSource,
    build_feature_extractor,
    compute_features,
    feature_statistics,
    frechet_distance,
    kid,
)
from toonlab.runtime import enable_tf32
from toonlab.weights import WeightsNotFound


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds), synchronised around the call."""
    sync()
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sync()
    return out, time.perf_counter() - t


def render_all(src: GeneratorSource, b: int, dev: torch.device) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(list(src.batches(b, dev)))


def features_tf32(ext, imgs: torch.Tensor, b: int) -> None:
    with torch.inference_mode():
        for s in range(0, len(imgs), b):
            ext(imgs[s:s + b])


def fid_end_to_end(src: GeneratorSource, ext, b: int, dev: torch.device):
    f = compute_features(src, ext, b, dev, show_progress=False)
    return feature_statistics(f, dev)


class Tensors(ImageSource):
    """Pre-rendered uint8 images: times the feature extractor alone."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.n, self.label = images, len(images), "pre-rendered"

    def batches(self, batch, device):
        for s in range(0, self.n, batch):
            yield self.images[s:s + batch]


def main() -> None:
    gpu = torch.cuda.is_available()
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000 if gpu else 32)
    ap.add_argument("--size", type=int, default=256 if gpu else 64)
    ap.add_argument("--batch", type=int, default=64 if gpu else 16)
    ap.add_argument("--ckpt", default=None, help="a generator checkpoint (default: random config-f weights)")
    ap.add_argument("--inception-weights", default=None)
    args = ap.parse_args()
    print(header())
    dev = torch.device("cuda" if gpu else "cpu")
    if gpu:
        enable_tf32()  # the generator renders as in training/generate; features switch TF32 off themselves
    try:
        ext = build_feature_extractor("inception", args.inception_weights, dev)
    except WeightsNotFound as e:
        print(f"note: {e}")
        print("note: timing with the same Inception architecture and RANDOM weights (FID values meaningless)")
        ext = build_feature_extractor("inception-random", None, dev)
    for line in ext.describe():
        print(line)
    if args.ckpt:
        G = GeneratorSource(args.ckpt, 1, device=dev).G
    else:
        torch.manual_seed(0)
        G = Generator(args.size).to(dev).eval().requires_grad_(False)
    n, b = args.n, args.batch
    print(f"generator: {args.ckpt or 'random config-f'} at {G.size} px; N = {n:,}; batch {b}; noise random\n")

    # bf16 only where it is fast (GPUs); CPU bf16 convolutions are far slower than fp32
    precisions = ("fp32", "bf16") if gpu else ("fp32",)
    # warm-up (cuDNN autotuning, lazy CUDA op builds) outside the timings
    with torch.inference_mode():
        for prec in precisions:
            for u8 in GeneratorSource(G, 2 * b, seed=99, precision=prec, device=dev).batches(b, dev):
                ext(u8)

    rows = []

    def row(stage: str, prec: str, seconds: float, images: int | None = n) -> None:
        rate = f"{images / seconds:,.0f}" if images else ""
        rows.append(f"| {stage} | {prec} | {seconds:.2f} | {rate} |")

    stats, feats = {}, None
    kid_dev = dev if gpu else None
    for prec in precisions:
        src = GeneratorSource(G, n, seed=0, precision=prec, device=dev)
        imgs, t = timed(render_all, src, b, dev)
        row("generation", f"G {prec}", t)
        if prec == "fp32":
            feats, t = timed(compute_features, Tensors(imgs), ext, b, dev, show_progress=False)
            row("Inception features", "fp32 (TF32 off)", t)
            _, t = timed(features_tf32, ext, imgs, b)
            row("Inception features", "TF32 on", t)
            _, t = timed(feature_statistics, feats, dev)
            row("mean + covariance (float64)", "", t, None)
            _, t = timed(kid, feats, feats[::-1].copy(), 100, 1000, device=kid_dev)
            row("KID (100 subsets of ≤1000)", "float64", t, None)
        del imgs
        stats[prec], t_feat = timed(fid_end_to_end, src, ext, b, dev)
        ref = stats["fp32"] if prec == "bf16" else feature_statistics(feats[: n // 2], dev)
        fid, t_fd = timed(frechet_distance, *stats[prec], *ref)
        row("Fréchet distance (scipy sqrtm)", "", t_fd, None)
        row("**FID end to end** (generate + features + stats + distance)", f"G {prec}", t_feat + t_fd)
        print(f"FID(G {prec} vs {'G fp32' if prec == 'bf16' else 'half of itself'}) = {fid:.3f}"
              f"{'' if ext.comparable else ' (random Inception: meaningless)'}")

    print("\n| stage | precision | seconds | img/s |\n|---|---|---|---|")
    print("\n".join(rows))
    if gpu:
        print(f"\npeak memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
