"""LPIPS-based metrics: StarGAN v2's diversity and the projection reconstruction metrics (the LPIPS
network itself is a loss: ``losses/perceptual.py``)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

__all__ = ["lpips_diversity", "reconstruction_metrics"]


def lpips_diversity(outputs: Tensor, lpips_fn: Callable[[Tensor, Tensor], Tensor], batch: int = 64) -> float:
    """StarGAN v2's diversity: ``outputs`` [N, K, 3, H, W] holds K outputs per input; the score is
    the mean LPIPS over all K(K−1)/2 pairs of each input's outputs, averaged over inputs."""
    if outputs.ndim != 5 or outputs.shape[1] < 2:
        raise ValueError(f"need outputs [N, K >= 2, 3, H, W], got {tuple(outputs.shape)}")
    n, k = outputs.shape[:2]
    ii, jj = torch.triu_indices(k, k, offset=1)
    pairs = [(a, i, j) for a in range(n) for i, j in zip(ii.tolist(), jj.tolist())]
    total = 0.0
    with torch.inference_mode():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s:s + batch]
            x = torch.stack([outputs[a, i] for a, i, _ in chunk])
            y = torch.stack([outputs[a, j] for a, _, j in chunk])
            total += float(lpips_fn(x, y).double().sum())
    return total / len(pairs)  # every input has the same number of pairs: the mean of the means


def reconstruction_metrics(target: Tensor, recon: Tensor,
                           lpips_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, float]:
    """Projection quality of ``recon`` against ``target`` (images in [-1, 1], [N, 3, H, W] or [3, H, W]).

    ``mse`` is on the [0, 1] pixel scale, ``psnr`` (dB, peak 1) the mean of per-image values,
    ``lpips`` the mean distance (NaN without ``lpips_fn``).
    """
    if target.shape != recon.shape:
        raise ValueError(f"target {tuple(target.shape)} and reconstruction {tuple(recon.shape)} differ in shape")
    if target.ndim == 3:
        target, recon = target[None], recon[None]
    with torch.inference_mode():
        t, r = (target.float().clamp(-1, 1) + 1) / 2, (recon.float().clamp(-1, 1) + 1) / 2
        mse = (t - r).pow(2).flatten(1).mean(1).double()
        psnr = 10 * torch.log10(1.0 / mse.clamp_min(1e-12))
        lp = float(lpips_fn(target, recon).double().mean()) if lpips_fn is not None else math.nan
    return dict(lpips=lp, mse=float(mse.mean()), psnr=float(psnr.mean()))
