"""StarGAN v2's multi-domain data: one dataset per domain (class sub-folders or the built-in synthetic
domains) and domain-balanced batches of sources and references.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from toonlab.errors import UserInputError
from toonlab.samplers import worker_init

SYNTHETIC_DOMAINS: tuple[str, ...] = ("photo", "webtoon", "pastel")


class _DomainItems(torch.utils.data.Dataset):
    """Items addressed as ``(domain, index, flip)`` → ``(image [3,S,S] in [-1,1], domain)``."""

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[Tensor, int]:
        d, i, flip = (int(k) for k in key)
        img = self.datasets[d][i]
        return (img.flip(-1) if flip else img), d


class _StepKeys:
    """Batch sampler: step ``s`` → ``3B`` keys (B sources, B references, B second references).

    A pure function of (seed, step), so a resumed run sees exactly the batches a straight run sees.
    Source and reference domains are drawn uniformly (the authors' domain-balanced sampling); the
    two references share their domain (the diversity term needs two styles of one target).
    """

    def __init__(self, sizes: Sequence[int], batch: int, seed: int, start_step: int) -> None:
        self.sizes, self.batch, self.seed, self.start = list(sizes), batch, seed, start_step

    def keys(self, step: int) -> list[tuple[int, int, int]]:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 7, step]))
        n_dom, B = len(self.sizes), self.batch
        y_src = rng.integers(0, n_dom, B)
        y_ref = rng.integers(0, n_dom, B)
        doms = np.concatenate([y_src, y_ref, y_ref])
        idx = [int(rng.integers(0, self.sizes[d])) for d in doms]
        flips = rng.integers(0, 2, 3 * B)
        return [(int(d), i, int(f)) for d, i, f in zip(doms, idx, flips)]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        step = self.start
        while True:
            yield self.keys(step)
            step += 1


class MultiDomainData:
    """One dataset per domain (class sub-folders or synthetic domains), read at ``img_size``."""

    def __init__(self, names: Sequence[str], specs: Sequence[str], img_size: int, synthetic: bool = False,
                 synthetic_seed: int = 0) -> None:
        from toonlab.data import open_dataset

        if len(names) < 2:
            raise UserInputError(f"StarGAN v2 needs at least 2 domains, got {len(names)} ({', '.join(names) or 'none'})")
        self.names, self.specs, self.img_size, self.synthetic = list(names), list(specs), img_size, synthetic
        self.datasets = []
        for k, spec in enumerate(specs):
            kw = {"seed": synthetic_seed + k} if spec.startswith("synthetic:") else {}  # different faces per domain
            self.datasets.append(open_dataset(spec, img_size, flip=False, **kw))  # DatasetError when unusable

    def describe(self) -> str:
        head = "built-in synthetic domains; " if self.synthetic else ""
        return head + "; ".join(f"{n}: {len(d):,} images" for n, d in zip(self.names, self.datasets))

    def skip_log(self, path: Path) -> None:
        """Record unreadable items of every domain in ``path`` (the run's ``skipped.txt``)."""
        for ds in self.datasets:
            if hasattr(ds, "skip_log"):
                ds.skip_log = path

    def iters_per_epoch(self, batch: int) -> int:
        return max(1, math.ceil(sum(len(d) for d in self.datasets) / batch))

    def batches(self, batch: int, seed: int = 0, start_step: int = 0,
                workers: int = 0) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """Infinite ``(x_src, y_src, x_ref, x_ref2, y_ref)`` batches from ``start_step`` on."""
        sampler = _StepKeys([len(d) for d in self.datasets], batch, seed, start_step)
        # An own generator: creating the loader's iterator would otherwise draw its base seed from the global
        # RNG, shifting every later latent code of a resumed run against a straight one.
        loader = torch.utils.data.DataLoader(_DomainItems(self.datasets), batch_sampler=sampler, num_workers=workers,
                                             pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                                             worker_init_fn=worker_init if workers > 0 else None,
                                             generator=torch.Generator().manual_seed(seed))
        for x, y in loader:
            xs, xr, xr2 = x.chunk(3)
            ys, yr, _ = y.chunk(3)
            yield xs, ys, xr, xr2, yr

    def fixed(self, n_per_domain: int) -> tuple[Tensor, Tensor]:
        """The first images of each domain (unflipped): the inputs of every sample grid."""
        xs, ys = [], []
        for d, ds in enumerate(self.datasets):
            for i in range(min(n_per_domain, len(ds))):
                xs.append(ds[i])
                ys.append(d)
        return torch.stack(xs), torch.tensor(ys)


def open_multidomain(data: str | None, img_size: int, domains: Sequence[str] | None = None,
                     synthetic_length: int = 1000, synthetic_seed: int = 0) -> MultiDomainData:
    """``data`` = a folder of class sub-folders (one per domain; ``domains`` picks/orders them),
    or None for the built-in synthetic domains (``domains`` defaults to photo, webtoon, pastel)."""
    if data is None:
        from toonlab.synthetic import DOMAINS

        names = list(domains or SYNTHETIC_DOMAINS)
        bad = [n for n in names if n not in DOMAINS]
        if bad:
            raise UserInputError(f"unknown synthetic domain {bad[0]!r} (use {', '.join(DOMAINS)})")
        return MultiDomainData(names, [f"synthetic:{n}:{synthetic_length}" for n in names], img_size, True,
                               synthetic_seed)
    root = Path(data).expanduser()
    if not root.is_dir():
        raise UserInputError(f"--data {root}: not a folder (expected one sub-folder of images per domain)")
    subs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if domains:
        missing = [d for d in domains if d not in subs]
        if missing:
            raise UserInputError(f"--data {root} has no sub-folder {missing[0]!r} (found: {', '.join(subs) or 'none'})")
        subs = list(domains)
    if len(subs) < 2:
        raise UserInputError(f"--data {root} needs one sub-folder per domain, at least 2 (found {len(subs)})")
    return MultiDomainData(subs, [str(root / s) for s in subs], img_size)
