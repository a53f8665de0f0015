"""Feature statistics of image sources, cached on disk, and FID/KID between two sources.

Cache. Statistics (mean, covariance; features too when KID needs them) are stored per source
under ``${TOONLAB_CACHE:-~/.cache/toonlab}/metrics/`` keyed by a hash of the source's content
fingerprint (sorted file list with sizes and mtimes; or the checkpoint's sha256, N, truncation,
seed, noise mode), N, size, the feature extractor (incl. its weights' sha256) and the resize.
Touching or adding a file changes the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from metrics.features import FeatureExtractor, exact_fp32
from metrics.fid import feature_statistics, frechet_distance, kid
from metrics.sources import ImageSource
from toonlab.atomic import atomic_path
from toonlab.errors import UserInputError
from toonlab.runtime import progress

__all__ = ["CACHE_VERSION", "SourceStats", "cache_dir", "compare_sources", "compute_features", "source_statistics"]

CACHE_VERSION = 1


@dataclasses.dataclass
class SourceStats:
    """Statistics of one source's features; ``feats`` only when asked for (KID)."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    feats: np.ndarray | None = None
    cached: bool = False
    seconds: float = 0.0
    path: Path | None = None


def cache_dir() -> Path:
    """``${TOONLAB_CACHE:-~/.cache/toonlab}/metrics``."""
    root = os.environ.get("TOONLAB_CACHE") or os.path.join("~", ".cache", "toonlab")
    return Path(root).expanduser() / "metrics"


def _cache_path(source: ImageSource, extractor: FeatureExtractor) -> tuple[Path, str] | None:
    fp = source.fingerprint()
    if fp is None:
        return None
    meta = json.dumps(dict(version=CACHE_VERSION, source=fp, features=extractor.id, resize=extractor.resize_id),
                      sort_keys=True, default=str)
    return cache_dir() / f"{hashlib.sha256(meta.encode()).hexdigest()[:32]}.npz", meta


def compute_features(source: ImageSource, extractor: FeatureExtractor, batch: int = 64,
                     device: str | torch.device = "cpu", show_progress: bool = True, desc: str = "features") -> np.ndarray:
    """Run every image of ``source`` through ``extractor``: float32 [n, D] (GPU batches, inference mode)."""
    device = torch.device(device)
    out: list[Tensor] = []
    bar = progress(total=len(source), desc=desc, unit="img", disable=not show_progress)
    try:
        with torch.inference_mode():
            for u8 in source.batches(batch, device):
                with exact_fp32():  # the features only: rendering keeps the caller's TF32 setting
                    out.append(extractor(u8.to(device, non_blocking=True)).float().cpu())
                bar.update(len(u8))
    finally:
        bar.close()
    if not out:
        raise UserInputError(f"no readable images in {source.describe()}")
    return torch.cat(out).numpy()


def source_statistics(source: ImageSource, extractor: FeatureExtractor, *, batch: int = 64,
                      device: str | torch.device = "cpu", need_features: bool = False, cache: bool = True,
                      show_progress: bool = True, desc: str = "features") -> SourceStats:
    """Mean/covariance (and features with ``need_features``) of a source, from the cache when present.

    A cache entry holds the features too if they were computed for KID; an entry without them
    is recomputed when features are needed. Writes are atomic.
    """
    where = _cache_path(source, extractor) if cache else None
    if where is not None and where[0].is_file():
        try:
            with np.load(where[0], allow_pickle=False) as z:
                if str(z["meta"]) == where[1] and (not need_features or "feats" in z.files):
                    return SourceStats(z["mu"], z["sigma"], int(z["n"]), z["feats"] if need_features else None,
                                       cached=True, path=where[0])
        except (OSError, ValueError, KeyError):  # unreadable entry: recompute and overwrite
            pass
    t0 = time.perf_counter()
    feats = compute_features(source, extractor, batch, device, show_progress, desc)
    if len(feats) < 2:
        raise UserInputError(f"need at least 2 readable images, got {len(feats)} from {source.describe()}")
    mu, sigma = feature_statistics(feats, device)
    st = SourceStats(mu, sigma, len(feats), feats if need_features else None, seconds=time.perf_counter() - t0)
    if where is not None:
        arrays = dict(mu=mu, sigma=sigma, n=np.int64(len(feats)), meta=np.str_(where[1]))
        if need_features:
            arrays["feats"] = feats
        with atomic_path(where[0]) as tmp:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
                np.savez(f, **arrays)
        st.path = where[0]
    return st


def compare_sources(src1: ImageSource, src2: ImageSource, extractor: FeatureExtractor, *, fid: bool = True,
                    kid_subsets: int | None = None, kid_subset_size: int = 1000, batch: int = 64,
                    device: str | torch.device = "cpu", cache: bool = True,
                    show_progress: bool = True) -> dict[str, Any]:
    """FID (and KID when ``kid_subsets``) between two sources; returns numbers plus provenance."""
    need = kid_subsets is not None
    s1 = source_statistics(src1, extractor, batch=batch, device=device, need_features=need, cache=cache,
                           show_progress=show_progress, desc="features 1")
    s2 = source_statistics(src2, extractor, batch=batch, device=device, need_features=need, cache=cache,
                           show_progress=show_progress, desc="features 2")
    out: dict[str, Any] = dict(n1=s1.n, n2=s2.n, features=extractor.id, resize=extractor.resize_id,
                               cached=[s1.cached, s2.cached], comparable=extractor.comparable)
    if fid:
        out["fid"] = frechet_distance(s1.mu, s1.sigma, s2.mu, s2.sigma)
    if need:
        dev = torch.device(device)
        out["kid"], out["kid_std"] = kid(s1.feats, s2.feats, kid_subsets, kid_subset_size,
                                         device=dev if dev.type == "cuda" else None)
        out["kid_subsets"], out["kid_subset_size"] = kid_subsets, min(kid_subset_size, s1.n, s2.n)
    out["stats"] = [s1, s2]
    return out
