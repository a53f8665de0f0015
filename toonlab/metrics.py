"""Evaluation metrics: FID, KID, LPIPS diversity and reconstruction metrics for projection.

    toonlab metrics fid data/ gen:runs/ffhq/checkpoints/010000.pt --n 50000 --kid
    toonlab metrics kid photos/ cartoons/ --translator animegan.pt
    toonlab metrics lpips-diversity outputs/            # one sub-folder of K outputs per input
    toonlab metrics recon targets/ projections/         # LPIPS, MSE, PSNR of paired images

Features. FID/KID use torch-fidelity's Inception-v3 (``inception-v3-compat``: the TensorFlow
FID graph converted to PyTorch, pool3 2048-d features) with its weights file
``weights-inception-2015-12-05-6726825d.pth`` from ``--inception-weights PATH`` or the torch hub
cache; nothing is downloaded. Images reach it as uint8 RGB and are resized to 299×299 by
torch-fidelity's TensorFlow-1.x-exact bilinear resize (align_corners=False, no half-pixel
offset): the resize of the original TensorFlow FID code (TTUR), so numbers are comparable with
TF-FID/torch-fidelity numbers but not bit-for-bit with pytorch-fid (``F.interpolate``
half-pixel bilinear) or clean-fid (PIL bicubic). Features are computed in full fp32 (TF32 off).
``features="random"`` is a small fixed-seed random conv net for offline smoke runs and tests:
its numbers are comparable with nothing.

Sources. A dataset spec (folder, zip, LMDB, ``synthetic:NAME[:N]``), a StyleGAN2 generator
checkpoint (``gen:G.pt`` or any ``.pt``) sampled N times with fixed seeds, or a translator
applied to a dataset's images. Dataset images not already at the working size are brought to it
by the datasets' LANCZOS resize + centre crop.

Cache. Statistics (mean, covariance; features too when KID needs them) are stored per source
under ``${TOONLAB_CACHE:-~/.cache/toonlab}/metrics/`` keyed by a hash of the source's content
fingerprint (sorted file list with sizes and mtimes; or the checkpoint's sha256, N, truncation,
seed, noise mode), N, size, the feature extractor (incl. its weights' sha256) and the resize.
Touching or adding a file changes the key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
from torch import Tensor, nn

from toonlab.atomic import atomic_path
from toonlab.errors import UserInputError, user_errors
from toonlab.runtime import autocast, enable_tf32, pick_device, progress
from toonlab.weights import load_state, locate_weights

__all__ = [
    "INCEPTION_FILE",
    "LPIPS_TRUNK_FILES",
    "DatasetSource",
    "FeatureExtractor",
    "GeneratorSource",
    "ImageSource",
    "LPIPSDistance",
    "MetricError",
    "SourceStats",
    "TrainingMetrics",
    "TranslatorSource",
    "build_feature_extractor",
    "build_lpips",
    "cache_dir",
    "compare_sources",
    "compute_features",
    "feature_statistics",
    "frechet_distance",
    "kid",
    "lpips_diversity",
    "main",
    "open_source",
    "parse_metrics",
    "reconstruction_metrics",
    "source_statistics",
]

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: torchvision ImageNet trunks the ``lpips`` package builds on (its small linear layers ship with it).
LPIPS_TRUNK_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                     "squeeze": "squeezenet1_1-b8a52dc0.pth"}
CACHE_VERSION = 1
FEATURE_KINDS = ("inception", "random", "inception-random")
INCEPTION_RESIZE = ("uint8 RGB -> 299x299 bilinear, TensorFlow-1.x-exact (align_corners=False, no half-pixel "
                    "offset; torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x) = the resize of the "
                    "original TensorFlow FID code; pytorch-fid (half-pixel F.interpolate) and clean-fid (PIL "
                    "bicubic) resize differently")
_NOISE_CHUNK = 8  # random noise maps are drawn per 8 images, so images do not depend on the batch size


# ============================================================================ maths


class MetricError(UserInputError, ValueError):
    """A metric that cannot be computed from the given images (too few, degenerate)."""


def feature_statistics(feats: np.ndarray | Tensor, device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] of features [N, D], in float64.

    Computed with torch so a GPU does the O(N·D²) product (50k × 2048 features: ~0.4 TFLOP).
    """
    x = torch.as_tensor(np.asarray(feats) if not isinstance(feats, Tensor) else feats)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features of shape [N >= 2, D], got {tuple(x.shape)}")
    x = x.to(device or "cpu", torch.float64)
    mu = x.mean(0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return mu.cpu().numpy(), sigma.cpu().numpy()


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6):
    ``|mu1 - mu2|² + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^½)``.

    The product of two covariances from few samples is near-singular; its square root can come
    back non-finite or with an imaginary part, so it is retried with ``eps·I`` added to both.
    """
    import scipy.linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    diff = mu1 - mu2

    def sqrt_trace(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # singular products are expected and handled below
            covmean = scipy.linalg.sqrtm(a @ b)
        if not np.all(np.isfinite(covmean)):
            return math.nan, math.inf
        if np.iscomplexobj(covmean):
            return float(np.trace(covmean).real), float(np.abs(np.diagonal(covmean).imag).max())
        return float(np.trace(covmean)), 0.0

    tr, imag = sqrt_trace(s1, s2)
    if not math.isfinite(tr) or imag > 1e-3:
        # eps relative to the features' scale once that exceeds 1 (Inception's is below 1, so
        # FID gets the usual absolute 1e-6 offset)
        scale = max(1.0, float(np.mean(np.diag(s1))), float(np.mean(np.diag(s2))))
        offset = np.eye(s1.shape[0]) * eps * scale
        tr, imag = sqrt_trace(s1 + offset, s2 + offset)
        if not math.isfinite(tr) or imag > 1e-3 * scale:
            raise MetricError(f"the covariance product has no usable square root (imaginary part {imag:.3g}); "
                              "use more images")
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr)


def _order_key(x: np.ndarray) -> tuple[int, bytes]:
    return x.shape[0], hashlib.sha1(np.ascontiguousarray(x).tobytes()).digest()


def kid(feats1: np.ndarray | Tensor, feats2: np.ndarray | Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, device: str | torch.device | None = None) -> tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al. 2018): mean and std over ``subsets`` random
    subsets of ``min(subset_size, n1, n2)`` images of the unbiased MMD² with the cubic polynomial
    kernel ``k(x, y) = (x·y / d + 1)³``.

    Unbiased: the diagonal terms k(x_i, x_i) are left out, so two samples of one distribution
    give ≈ 0 (slightly negative values are normal). The two sets are put in a canonical order
    first, so ``kid(a, b) == kid(b, a)`` exactly.
    """
    x = np.asarray(feats1.cpu() if isinstance(feats1, Tensor) else feats1, np.float64)
    y = np.asarray(feats2.cpu() if isinstance(feats2, Tensor) else feats2, np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need features [N, D] with the same D, got {x.shape} and {y.shape}")
    if min(len(x), len(y)) < 2:
        raise ValueError("KID needs at least 2 images per set")
    if subsets < 1:
        raise ValueError("subsets must be >= 1")
    if _order_key(y) < _order_key(x):
        x, y = y, x
    m = min(subset_size, len(x), len(y))
    d = x.shape[1]
    rng = np.random.default_rng(seed)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    tx, ty = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    vals = np.empty(subsets)
    for s in range(subsets):
        a = tx[torch.from_numpy(rng.choice(len(x), m, replace=False)).to(dev)]
        b = ty[torch.from_numpy(rng.choice(len(y), m, replace=False)).to(dev)]
        kxx = (a @ a.T / d + 1) ** 3
        kyy = (b @ b.T / d + 1) ** 3
        kxy = (a @ b.T / d + 1) ** 3
        within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        vals[s] = float(within - 2 * kxy.sum() / (m * m))
    return float(vals.mean()), float(vals.std())


# ============================================================================ feature extractors


class FeatureExtractor(nn.Module):
    """uint8 images [N, 3, H, W] → float32 features [N, D]; ``id`` and ``resize_id`` key the cache."""

    id: str = ""
    resize_id: str = ""
    dim: int = 0
    comparable: bool = False

    def describe(self) -> list[str]:
        """Lines for the output: which network and weights, which resize."""
        raise NotImplementedError


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """Full sha256 hex of a file (memoised per path, size and mtime within the process)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


class InceptionFeatures(FeatureExtractor):
    """torch-fidelity's Inception-v3 (the TF FID graph), pool3 features; TF1-exact 299 px resize."""

    resize_id = "tf1-bilinear-299"
    dim = 2048

    def __init__(self, weights: str | Path | io.BytesIO, label: str, sha: str, comparable: bool = True) -> None:
        super().__init__()
        import torch_fidelity
        from torch_fidelity.feature_extractor_inceptionv3 import (
            FeatureExtractorInceptionV3,
        )

        try:
            self.net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                   feature_extractor_weights_path=weights)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file fails in many ways
            raise UserInputError(f"cannot load Inception weights from {label}: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0] if str(e) else ''}") from None
        self.label, self.sha, self.comparable = label, sha, comparable
        self.id = f"inception-v3-compat/2048/{sha[:16]}"
        self.version = torch_fidelity.__version__

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[0]

    def describe(self) -> list[str]:
        what = f"weights {self.label} (sha256 {self.sha[:8]})" if self.comparable else self.label
        return [f"features: Inception-v3 pool3 2048-d (torch-fidelity {self.version} 'inception-v3-compat'), {what}",
                f"resize: {INCEPTION_RESIZE}"]


class RandomFeatures(FeatureExtractor):
    """A small conv net with fixed-seed random weights: offline smoke runs and tests only.

    Its numbers measure *something* about the two image sets but are comparable with nothing
    (not with FID from Inception, not with other tools).
    """

    resize_id = "bilinear-64-antialias"
    dim = 64
    comparable = False

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        widths = [3, 16, 32, 64]
        self.convs = nn.ModuleList()
        for cin, cout in zip(widths[:-1], widths[1:]):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            with torch.no_grad():  # He init from our own generator: the same net everywhere
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * math.sqrt(2.0 / (cin * 9)))
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False).eval()
        self.id = f"random-conv-v1/seed{seed}"

    def forward(self, x: Tensor) -> Tensor:
        x = x.to(self.convs[0].weight.dtype) / 127.5 - 1
        x = nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.2)
        return x.mean((2, 3)).float()

    def describe(self) -> list[str]:
        return ["features: RANDOM fixed-seed conv net (--features random): a smoke test, comparable with nothing",
                "resize: uint8 RGB -> 64x64 bilinear (antialiased)"]


def _random_inception_state(seed: int = 0) -> io.BytesIO:
    """A state dict for torch-fidelity's Inception with random weights (torchvision's init).

    torchvision's inception_v3 has the same layer names and shapes except the classifier (1000
    vs the TF graph's 1008 classes), which FID never uses; it is replaced by a random one.
    """
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True)
        # Random convs behind identity batch norms blow activations up layer by layer (inf on CPU
        # is slow, so timing would be off); one forward pass on noise sets every BN's statistics.
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = None
        with torch.no_grad():  # smooth noise: closer to images than white noise
            x = nn.functional.interpolate(torch.rand(4, 3, 19, 19) * 2 - 1, size=(299, 299), mode="bilinear")
            net.train()(x)
        sd = net.state_dict()
        fc = nn.Linear(2048, 1008)
    sd["fc.weight"], sd["fc.bias"] = fc.weight.detach(), fc.bias.detach()
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    return buf


def build_feature_extractor(kind: str = "inception", weights: str | Path | None = None,
                            device: str | torch.device = "cpu", *,
                            offline_flag: str = "--features random") -> FeatureExtractor:
    """``inception`` (real weights: explicit path or the hub cache, else a one-line error),
    ``random`` (small random conv net) or ``inception-random`` (the Inception architecture with
    random weights: faithful *timing* without the weights file, numbers meaningless)."""
    if kind == "inception":
        path = locate_weights(INCEPTION_FILE, weights, what="Inception-v3 FID weights", option="--inception-weights",
                              offline_hint=f"{offline_flag} for an offline smoke run (not comparable)")
        sha = sha256_file(path)
        if path.name == INCEPTION_FILE and not sha.startswith("6726825d"):
            warnings.warn(f"{path}: sha256 {sha[:8]} does not match the name's 6726825d (a different file?)",
                          stacklevel=2)
        ext: FeatureExtractor = InceptionFeatures(str(path), str(path), sha)
    elif kind == "inception-random":
        if weights is not None:
            raise UserInputError("--inception-weights and --features inception-random exclude each other")
        ext = InceptionFeatures(_random_inception_state(), "RANDOM weights (timing only, comparable with nothing)",
                                "random-seed0", comparable=False)
    elif kind == "random":
        if weights is not None:
            raise UserInputError("--inception-weights and --features random exclude each other")
        ext = RandomFeatures()
    else:
        raise UserInputError(f"unknown feature extractor {kind!r} (use {', '.join(FEATURE_KINDS)})")
    return ext.to(device).eval().requires_grad_(False)


@contextlib.contextmanager
def _exact_fp32() -> Iterator[None]:
    """TF32 off while features are extracted: FID must not depend on the GPU generation."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _to_uint8(img: Tensor) -> Tensor:
    """[-1, 1] float images → uint8 (same rounding as toonlab.images.to_uint8)."""
    return img.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


# ============================================================================ image sources


class ImageSource:
    """N images as uint8 batches [B, 3, H, W]; ``fingerprint()`` (None = never cached) keys the cache."""

    n: int = 0
    label: str = ""

    def __len__(self) -> int:
        return self.n

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any] | None:
        return None

    def describe(self) -> str:
        return self.label

    @property
    def skipped(self) -> list[str]:
        return []


def _synthetic_renderer_hash() -> str:
    import toonlab.synthetic as syn

    return sha256_file(syn.__file__)[:16]


def _listing_hash(rows: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


class _Items(torch.utils.data.Dataset):
    """uint8 items of a toonlab dataset; an unreadable item comes back flagged (skipped and listed,
    not replaced by a neighbour as the training datasets do)."""

    def __init__(self, ds: Any, n: int) -> None:
        self.ds, self.n = ds, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[Tensor, bool, str]:
        from toonlab.data import ImageError, resize_center_crop
        from toonlab.synthetic import SyntheticFaces, render

        ds = self.ds
        try:
            if isinstance(ds, SyntheticFaces):
                arr = render(ds.params(i), ds.domain, ds.size)
            elif hasattr(ds, "_read"):
                arr = np.asarray(resize_center_crop(ds._read(i), ds.size))
            else:
                return _to_uint8(ds[i]), True, ""
        except ImageError as e:
            return torch.zeros(3, ds.size, ds.size, dtype=torch.uint8), False, str(e)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))), True, ""


class DatasetSource(ImageSource):
    """The first ``n`` images (sorted order) of a folder / zip / LMDB / ``synthetic:NAME[:N]`` at ``size`` px."""

    def __init__(self, spec: str, size: int | None = None, n: int | None = None, workers: int = 0) -> None:
        from toonlab.data import open_dataset

        self.spec = str(spec)
        size = size or native_size(self.spec)
        try:
            self.ds = open_dataset(self.spec, size, flip=False)
        except UserInputError:
            raise
        except ValueError as e:  # e.g. a size the synthetic renderer does not support
            raise UserInputError(f"{self.spec}: {e}") from None
        self.size = size
        self.n = len(self.ds) if n is None else min(int(n), len(self.ds))
        self.workers = workers
        self._skipped: list[str] = []
        self.label = f"{self.spec}: {self.n:,} of {len(self.ds):,} images at {size} px"

    @property
    def skipped(self) -> list[str]:
        return self._skipped

    def fingerprint(self) -> dict[str, Any]:
        from toonlab.data import ImageFolder, LMDBImages, ZipImages
        from toonlab.synthetic import SyntheticFaces

        ds = self.ds
        if isinstance(ds, SyntheticFaces):
            fp: dict[str, Any] = dict(kind="synthetic", domain=ds.domain, seed=ds.seed, length=len(ds),
                                      renderer=_synthetic_renderer_hash())
        elif isinstance(ds, ImageFolder):
            rows = []
            for f in ds.files:
                st = f.stat()
                rows.append(f"{f.relative_to(ds.root)}\t{st.st_size}\t{st.st_mtime_ns}")
            fp = dict(kind="folder", root=str(ds.root.resolve()), files=_listing_hash(rows))
        elif isinstance(ds, ZipImages):
            st = ds.path.stat()
            fp = dict(kind="zip", path=str(ds.path.resolve()), bytes=st.st_size, mtime=st.st_mtime_ns,
                      members=_listing_hash(ds.names))
        elif isinstance(ds, LMDBImages):
            st = (ds.path / "data.mdb").stat()
            fp = dict(kind="lmdb", path=str(ds.path.resolve()), bytes=st.st_size, mtime=st.st_mtime_ns)
        else:
            raise UserInputError(f"cannot fingerprint {type(ds).__name__} for the statistics cache")
        return dict(source=fp, n=self.n, size=self.size, crop="lanczos-center-crop")

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        self._skipped = []
        loader = torch.utils.data.DataLoader(
            _Items(self.ds, self.n), batch_size=batch, shuffle=False, num_workers=self.workers,
            pin_memory=device.type == "cuda", generator=torch.Generator())  # own generator: global RNG untouched
        for imgs, ok, errs in loader:
            if not bool(ok.all()):
                self._skipped.extend(e for e, good in zip(errs, ok.tolist()) if not good)
                imgs = imgs[ok]
            if len(imgs):
                yield imgs


def native_size(spec: str) -> int:
    """The working size of a dataset when none is given: its first image's short side, an LMDB's
    largest stored size, 256 for synthetic domains."""
    from toonlab.data import DatasetError, open_dataset

    if str(spec).startswith("synthetic:"):
        return 256
    path = Path(spec).expanduser()
    if path.is_dir() and ((path / "data.mdb").is_file() or path.suffix.lower() == ".lmdb") or path.name == "data.mdb":
        from toonlab.data import _lmdb_env, _lmdb_sizes

        root = path.parent if path.name == "data.mdb" else path
        try:
            with _lmdb_env(root).begin(write=False) as txn:
                sizes = _lmdb_sizes(txn)
        except Exception as e:
            raise DatasetError(f"cannot open LMDB {root}: {e}".splitlines()[0]) from None
        if not sizes:
            raise DatasetError(f"no images found in {root}")
        return max(sizes)
    ds = open_dataset(spec, 8, flip=False)  # scanning only; images are decoded lazily
    from toonlab.data import ImageError

    for i in range(min(len(ds), 16)):  # the first readable image
        try:
            return min(ds._read(i).size)
        except ImageError:
            continue
    raise DatasetError(f"no readable images among the first {min(len(ds), 16)} of {spec}")


class GeneratorSource(ImageSource):
    """``n`` images of a StyleGAN2 generator with fixed seeds.

    z for image i is row i of ``randn(n, D)`` from a CPU generator seeded with ``seed`` (the same on
    every device); per-image noise maps (``noise_mode="random"``) come from a generator on the
    sampling device seeded with ``seed + 1``, drawn per 8 images so the batch size does not change
    the images. The global RNG is never touched (safe inside a training loop).
    """

    def __init__(self, generator: str | Path | nn.Module, n: int, truncation: float = 1.0, seed: int = 0,
                 noise_mode: str = "random", precision: str = "fp32", device: str | torch.device = "cpu") -> None:
        from stylegan2.networks import NOISE_MODES

        if noise_mode not in NOISE_MODES:
            raise UserInputError(f"noise mode {noise_mode!r} not one of {', '.join(NOISE_MODES)}")
        if n < 1:
            raise UserInputError(f"need at least one image, got n={n}")
        self.device = torch.device(device)
        if isinstance(generator, nn.Module):
            self.G, self.path = generator, None
            name = "generator (in memory)"
        else:
            from stylegan2.checkpoint import load_generator

            self.path = Path(generator)
            self.G = load_generator(self.path, device=self.device)
            name = f"gen:{self.path}"
        self.n, self.truncation, self.seed = int(n), float(truncation), int(seed)
        self.noise_mode, self.precision = noise_mode, precision
        self.size = int(self.G.size)
        self.label = (f"{name}: {self.n:,} samples at {self.size} px, truncation {self.truncation:g}, "
                      f"seed {self.seed}, noise {noise_mode}, {precision}")

    def fingerprint(self) -> dict[str, Any] | None:
        if self.path is None:
            return None  # a network in memory (EMA during training) changes under us: never cached
        return dict(source=dict(kind="generator", sha256=sha256_file(self.path)), n=self.n,
                    truncation=self.truncation, seed=self.seed, noise_mode=self.noise_mode,
                    precision=self.precision, device=self.device.type)

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        G, dev = self.G, self.device
        batch = max(_NOISE_CHUNK, batch - batch % _NOISE_CHUNK)
        z_all = torch.randn(self.n, G.style_dim, generator=torch.Generator().manual_seed(self.seed))
        noise_gen = torch.Generator(device=dev).manual_seed(self.seed + 1)
        ndtype = torch.bfloat16 if self.precision == "bf16" and dev.type == "cuda" else torch.float32
        for start in range(0, self.n, batch):
            b = min(batch, self.n - start)
            z = z_all[start:start + b].to(dev)
            noise = None
            if self.noise_mode == "random":
                chunks = [[torch.randn(min(_NOISE_CHUNK, b - c), 1, r, r, generator=noise_gen, device=dev)
                           for r in G.noise_shapes()] for c in range(0, b, _NOISE_CHUNK)]
                noise = [torch.cat([ch[k] for ch in chunks]).to(ndtype) for k in range(len(G.noise_shapes()))]
            with autocast(dev, self.precision):
                w = G.mapping(z, truncation=self.truncation)
                img = G.synthesis(w, noise=noise, noise_mode=self.noise_mode).image
            yield _to_uint8(img).to(device)


class TranslatorSource(ImageSource):
    """A translator (``[-1, 1]`` images in and out) applied to a dataset's images.

    ``translator_id`` (e.g. the checkpoint's sha256) makes the statistics cacheable; without it
    they are recomputed every time.
    """

    def __init__(self, data: DatasetSource, translator: Callable[[Tensor], Tensor], translator_id: str | None = None,
                 label: str = "translator", precision: str = "fp32") -> None:
        self.data, self.translator, self.translator_id = data, translator, translator_id
        self.n, self.precision = data.n, precision
        self.label = f"{label} applied to {data.describe()}"

    @property
    def skipped(self) -> list[str]:
        return self.data.skipped

    def fingerprint(self) -> dict[str, Any] | None:
        if self.translator_id is None:
            return None
        return dict(translator=self.translator_id, data=self.data.fingerprint(), precision=self.precision)

    def batches(self, batch: int, device: torch.device) -> Iterator[Tensor]:
        for u8 in self.data.batches(batch, device):
            x = u8.to(device, non_blocking=True).float() / 127.5 - 1
            with autocast(device, self.precision):
                y = self.translator(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            yield _to_uint8(y)


def _looks_like_checkpoint(spec: str) -> bool:
    return spec.startswith("gen:") or (Path(spec).suffix.lower() in (".pt", ".pth") and Path(spec).is_file())


def open_source(spec: str, *, n: int = 50000, size: int | None = None, truncation: float = 1.0, seed: int = 0,
                noise_mode: str = "random", precision: str = "fp32", device: str | torch.device = "cpu",
                translator: str | Path | None = None, workers: int = 0) -> ImageSource:
    """A CLI-style spec → an ImageSource: ``gen:G.pt`` / ``*.pt`` (generator), else a dataset
    spec; ``translator`` (a translation checkpoint) is then applied to the dataset's images."""
    spec = str(spec)
    if _looks_like_checkpoint(spec):
        if translator is not None:
            raise UserInputError("--translator applies to a dataset of photos, not to a generator checkpoint")
        path = spec[4:] if spec.startswith("gen:") else spec
        if not Path(path).is_file():
            raise UserInputError(f"generator checkpoint not found: {path}")
        return GeneratorSource(path, n, truncation, seed, noise_mode, precision, device)
    data = DatasetSource(spec, size, n, workers)
    if translator is None:
        return data
    from translation.models import (
        load_generator as load_translator,  # only when asked for
    )

    T, meta = load_translator(translator)
    T = T.to(device).eval().requires_grad_(False)
    return TranslatorSource(data, T, translator_id=sha256_file(translator), label=f"translator {translator}",
                            precision=precision)


# ============================================================================ statistics + cache


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
                with _exact_fp32():  # the features only: rendering keeps the caller's TF32 setting
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


# ============================================================================ LPIPS


class LPIPSDistance(nn.Module):
    """LPIPS (Zhang et al. 2018) between images in [-1, 1]: ``forward(a, b) -> [N]`` distances.

    Differentiable with respect to its inputs (a perceptual loss); its own weights are frozen
    and it stays in eval mode even inside a module that is put in training mode (the lpips
    linear layers carry dropout).
    """

    def __init__(self, model: nn.Module, description: str, net: str, random: bool) -> None:
        super().__init__()
        self.model = model
        self.description, self.net, self.random = description, net, random
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LPIPSDistance:
        return super().train(False)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.ndim != 4 or a.shape[1] != 3:
            raise ValueError(f"LPIPS needs two [N, 3, H, W] batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        return self.model(a, b).reshape(a.shape[0])


def build_lpips(net: str = "vgg", weights: str | Path | None = None, random: bool = False,
                device: str | torch.device = "cpu") -> LPIPSDistance:
    """The ``lpips`` package's LPIPS (v0.1 linear layers, shipped with it) on a torchvision trunk.

    The ImageNet trunk (``vgg16-397923af.pth`` for vgg) comes from ``weights`` or the torch hub
    cache, else a one-line error; ``random=True`` is the explicit offline alternative (a
    fixed-seed random trunk: a smoke test, numbers comparable with nothing). Note StarGAN v2's
    published LPIPS diversity used the AlexNet trunk (``net="alex"``).
    """
    if net not in LPIPS_TRUNK_FILES:
        raise UserInputError(f"unknown LPIPS network {net!r} (use {', '.join(LPIPS_TRUNK_FILES)})")
    if random and weights is not None:
        raise UserInputError("--lpips-weights and --lpips random exclude each other")
    path = None
    if not random:
        path = locate_weights(LPIPS_TRUNK_FILES[net], weights, what=f"{net} ImageNet trunk for LPIPS",
                              option="--lpips-weights", offline_hint="--lpips random (not comparable)")
    import lpips

    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)  # the random trunk is the same every time
        warnings.simplefilter("ignore")  # torchvision's 'pretrained' deprecation inside lpips
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    if path is not None:
        _load_trunk(model.net, load_state(path), path)
        description = f"LPIPS-{net} v0.1, trunk {path} (sha256 {sha256_file(path)[:8]})"
    else:
        description = f"LPIPS-{net} v0.1 with a RANDOM trunk (--lpips random): comparable with nothing"
    return LPIPSDistance(model, description, net, random).to(device)


def _load_trunk(trunk: nn.Module, sd: dict[str, Tensor], path: Path) -> None:
    """torchvision's ``features.{i}.*`` → lpips' ``slice{k}.{i}.*`` (the slices keep torchvision's indices)."""
    mapped: dict[str, Tensor] = {}
    for key, ref in trunk.state_dict().items():
        src = "features." + key.split(".", 1)[1]
        if src not in sd:
            raise UserInputError(f"{path}: no {src!r}; not the torchvision ImageNet weights this LPIPS needs")
        if tuple(sd[src].shape) != tuple(ref.shape):
            raise UserInputError(f"{path}: {src} has shape {tuple(sd[src].shape)}, expected {tuple(ref.shape)}")
        mapped[key] = sd[src]
    trunk.load_state_dict(mapped, strict=True)


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


# ============================================================================ training hook

_METRIC_RE = re.compile(r"^(fid|kid)(\d+)(k?)$")


def parse_metrics(spec: str | Sequence[str]) -> list[tuple[str, str, int]]:
    """``"fid10k,kid1k"`` → ``[("fid10k", "fid", 10000), ("kid1k", "kid", 1000)]`` (``fid500`` = 500 images)."""
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out = []
    for name in names:
        m = _METRIC_RE.match(name)
        if not m or int(m.group(2)) == 0:
            raise UserInputError(f"unknown metric {name!r} (use fid1k, fid10k, fid50k, kid10k ... or fidN/kidN)")
        out.append((name, m.group(1), int(m.group(2)) * (1000 if m.group(3) else 1)))
    return out


class TrainingMetrics:
    """Periodic metrics of the EMA generator during StyleGAN2 training / fine-tuning.

    Real statistics are computed once (and cached on disk); every evaluation samples the
    generator with the same fixed seeds, so successive values are comparable. Results are
    named ``metrics/<name>`` for the stats sink.
    """

    def __init__(self, spec: str, real: str, size: int, device: torch.device, *, every: int = 0,
                 features: str = "inception", inception_weights: str | None = None, batch: int = 64,
                 workers: int = 0, seed: int = 0, show_progress: bool = True) -> None:
        self.metrics = parse_metrics(spec)
        if not self.metrics:
            raise UserInputError("--metrics is empty")
        self.real, self.size, self.device, self.every = real, size, device, every
        self.batch, self.workers, self.seed, self.show_progress = batch, workers, seed, show_progress
        self.extractor = build_feature_extractor(features, inception_weights, device,  # fails fast when missing
                                                 offline_flag="--metrics-features random")
        self._real: dict[tuple[int, bool], SourceStats] = {}

    def due(self, step: int, last: int) -> bool:
        return step == last or (self.every > 0 and step % self.every == 0)

    def _real_stats(self, n: int, need: bool) -> SourceStats:
        if (n, need) not in self._real:
            src = DatasetSource(self.real, self.size, n, self.workers)
            self._real[(n, need)] = source_statistics(src, self.extractor, batch=self.batch, device=self.device,
                                                      need_features=need, show_progress=self.show_progress,
                                                      desc="metrics: real")
        return self._real[(n, need)]

    def __call__(self, G: nn.Module) -> dict[str, float]:
        n_max = max(n for _, _, n in self.metrics)
        fake = compute_features(GeneratorSource(G, n_max, seed=self.seed, device=self.device), self.extractor,
                                self.batch, self.device, self.show_progress, "metrics: fake")
        out: dict[str, float] = {}
        for name, kind, n in self.metrics:
            real = self._real_stats(n, kind == "kid")
            f = fake[: min(n, len(fake))]
            if kind == "fid":
                mu, sigma = feature_statistics(f, self.device)
                out[f"metrics/{name}"] = frechet_distance(mu, sigma, real.mu, real.sigma)
            else:
                out[f"metrics/{name}"] = kid(f, real.feats, 100, 1000,
                                             device=self.device if self.device.type == "cuda" else None)[0]
        return out


def training_cli_options() -> list[Callable]:
    """The click options a trainer CLI adds for periodic metrics (config field names match)."""
    return [
        click.option("--metrics", default=None, help="Periodic metrics of the EMA generator, e.g. fid10k or "
                     "fid10k,kid10k (fid1k/fid50k/kidN...); logged as metrics/NAME."),
        click.option("--metrics-every", type=click.IntRange(0), default=None,
                     help="Steps between metric evaluations [0 = at every checkpoint]; always at the end."),
        click.option("--metrics-real", default=None, help="Real images for the metrics [the training data]."),
        click.option("--metrics-features", type=click.Choice(["inception", "random"]), default=None,
                     help="random = offline smoke runs only (numbers comparable with nothing) [inception]."),
        click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
                     help=f"Inception weights ({INCEPTION_FILE}) [the torch hub cache]."),
    ]


# ============================================================================ CLI


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def _source_options(f: Callable) -> Callable:
    opts = [
        click.argument("src1"),
        click.argument("src2"),
        click.option("--n", type=click.IntRange(2), default=50000, show_default=True,
                     help="Images per source: generators are sampled N times; datasets use their first N (or all)."),
        click.option("--size", type=click.IntRange(8), default=None,
                     help="Working size of dataset images (LANCZOS resize + centre crop) [the generator's size "
                          "when one source is a generator, else each dataset's own]."),
        click.option("--truncation", type=click.FloatRange(0, 2), default=1.0, show_default=True),
        click.option("--seed", type=click.IntRange(0), default=0, show_default=True,
                     help="Seed of a generator's z and noise."),
        click.option("--noise-mode", type=click.Choice(["random", "const", "none"]), default="random",
                     show_default=True),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
                     help="Rendering precision of generators/translators (features are always fp32)."),
        click.option("--translator", type=click.Path(dir_okay=False, exists=True), default=None,
                     help="Translation checkpoint applied to SRC1's images (e.g. photos → cartoons)."),
        click.option("--inception-weights", type=click.Path(dir_okay=False), default=None,
                     help=f"{INCEPTION_FILE} [the torch hub cache]."),
        click.option("--features", type=click.Choice(FEATURE_KINDS), default="inception", show_default=True,
                     help="random / inception-random: offline smoke runs and timing only (not comparable)."),
        click.option("--batch", type=click.IntRange(1), default=64, show_default=True),
        click.option("--workers", type=click.IntRange(0), default=None, help="Data loader workers [min(8, CPUs)]."),
        click.option("--device", default="auto", show_default=True),
        click.option("--no-cache", is_flag=True, help="Recompute statistics (and do not store them)."),
        click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None,
                     help="Also write the results to this JSON file."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _open_pair(opts: dict[str, Any], device: torch.device) -> tuple[ImageSource, ImageSource]:
    common = dict(n=opts["n"], truncation=opts["truncation"], seed=opts["seed"], noise_mode=opts["noise_mode"],
                  precision=opts["precision"], device=device,
                  workers=_default_workers() if opts["workers"] is None else opts["workers"])
    specs = (opts["src1"], opts["src2"])
    opened: dict[int, ImageSource] = {}
    for i, spec in enumerate(specs):  # generators first: their size is the real images' working size
        if _looks_like_checkpoint(spec):
            opened[i] = open_source(spec, translator=opts["translator"] if i == 0 else None, **common)
    size = opts["size"]
    if size is None and opened:
        size = next(iter(opened.values())).size  # as StyleGAN2's own metrics: reals at the model's resolution
    for i, spec in enumerate(specs):
        if i not in opened:
            opened[i] = open_source(spec, size=size, translator=opts["translator"] if i == 0 else None, **common)
    return opened[0], opened[1]


def _report(opts: dict[str, Any], extractor: FeatureExtractor, srcs: Sequence[ImageSource], res: dict[str, Any]) -> None:
    for line in extractor.describe():
        click.echo(line)
    for i, (src, st) in enumerate(zip(srcs, res["stats"]), 1):
        how = f"cached ({st.path})" if st.cached else f"computed in {st.seconds:.1f} s"
        click.echo(f"source {i}: {src.describe()} [{st.n:,} used; {how}]")
        if src.skipped:
            more = f" (+{len(src.skipped) - 10} more)" if len(src.skipped) > 10 else ""
            click.echo(f"  skipped {len(src.skipped)} unreadable image(s): {'; '.join(src.skipped[:10])}{more}")
    if "fid" in res:
        click.echo(f"FID: {res['fid']:.4f}")
    if "kid" in res:
        click.echo(f"KID: {res['kid']:.6f} ± {res['kid_std']:.6f} ({res['kid_subsets']} subsets of "
                   f"{res['kid_subset_size']})")
    if opts.get("json_out"):
        doc = {k: v for k, v in res.items() if k != "stats"}
        doc.update(src1=srcs[0].describe(), src2=srcs[1].describe(), describe=extractor.describe())
        with atomic_path(opts["json_out"]) as tmp:
            tmp.write_text(json.dumps(doc, indent=2))


def _run_pair(opts: dict[str, Any], fid: bool, kid_subsets: int | None, kid_subset_size: int) -> None:
    if opts["inception_weights"] and opts["features"] != "inception":
        raise UserInputError(f"--inception-weights and --features {opts['features']} exclude each other")
    device = pick_device(opts["device"])
    if device.type == "cuda":
        enable_tf32()  # generators/translators render as `toonlab generate` does; features stay exact fp32
    extractor = build_feature_extractor(opts["features"], opts["inception_weights"], device)
    src1, src2 = _open_pair(opts, device)
    res = compare_sources(src1, src2, extractor, fid=fid, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                          batch=opts["batch"], device=device, cache=not opts["no_cache"])
    _report(opts, extractor, (src1, src2), res)


@click.group(name="metrics", context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Evaluation metrics: FID, KID, LPIPS diversity, projection reconstruction.

    A SRC is a folder, zip, LMDB, synthetic:NAME[:N], or a StyleGAN2 checkpoint (gen:G.pt or a .pt
    file) sampled --n times with fixed seeds.
    """


@main.command(name="fid")
@_source_options
@click.option("--kid", "with_kid", is_flag=True, help="Also compute KID (100 subsets of ≤1000).")
def fid_cmd(with_kid: bool, **opts: Any) -> None:
    """FID between SRC1 and SRC2 (statistics cached per source)."""
    with user_errors():
        _run_pair(opts, True, 100 if with_kid else None, 1000)


@main.command(name="kid")
@_source_options
@click.option("--subsets", type=click.IntRange(1), default=100, show_default=True)
@click.option("--subset-size", type=click.IntRange(2), default=1000, show_default=True)
def kid_cmd(subsets: int, subset_size: int, **opts: Any) -> None:
    """KID (unbiased MMD², cubic kernel) between SRC1 and SRC2: mean ± std over subsets."""
    with user_errors():
        _run_pair(opts, False, subsets, subset_size)


def _lpips_options(f: Callable) -> Callable:
    opts = [
        click.option("--lpips", "lpips_mode", type=click.Choice(["pretrained", "random"]), default="pretrained",
                     show_default=True, help="random: offline smoke runs only (comparable with nothing)."),
        click.option("--lpips-net", type=click.Choice(sorted(LPIPS_TRUNK_FILES)), default="vgg", show_default=True,
                     help="Trunk; StarGAN v2's published diversity numbers used alex."),
        click.option("--lpips-weights", type=click.Path(dir_okay=False), default=None,
                     help="The trunk's torchvision ImageNet weights [the torch hub cache]."),
        click.option("--size", type=click.IntRange(8), default=None, help="Resize images to this size [first image's]."),
        click.option("--batch", type=click.IntRange(1), default=32, show_default=True),
        click.option("--device", default="auto", show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _load_images(paths: Sequence[Path], size: int) -> tuple[Tensor, list[str]]:
    from toonlab.data import ImageError, load_image, resize_center_crop, to_tensor

    out, bad = [], []
    for p in paths:
        try:
            out.append(to_tensor(resize_center_crop(load_image(p), size)))
        except ImageError as e:
            bad.append(str(e))
    return (torch.stack(out) if out else torch.empty(0, 3, size, size)), bad


def _load_pairs(pairs: Sequence[tuple[Path, Path]], size: int) -> tuple[Tensor, Tensor, list[str]]:
    """Both sides of each pair, dropping a pair when either side is unreadable (sides stay aligned)."""
    a, b, bad = [], [], []
    for p, q in pairs:
        x, e1 = _load_images([p], size)
        y, e2 = _load_images([q], size)
        if e1 or e2:
            bad += e1 + e2
            continue
        a.append(x)
        b.append(y)
    empty = torch.empty(0, 3, size, size)
    return (torch.cat(a) if a else empty), (torch.cat(b) if b else empty), bad


def _image_files(folder: Path) -> list[Path]:
    from toonlab.data import IMAGE_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not p.name.startswith("."))


def _first_size(paths: Sequence[Path]) -> int:
    from toonlab.data import ImageError, load_image

    for p in paths:
        try:
            return min(load_image(p).size)
        except ImageError:
            continue
    raise UserInputError("no readable images")


@main.command(name="lpips-diversity")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@_lpips_options
def lpips_diversity_cmd(folder: str, lpips_mode: str, lpips_net: str, lpips_weights: str | None, size: int | None,
                        batch: int, device: str) -> None:
    """LPIPS diversity (StarGAN v2 protocol) of FOLDER: one sub-folder per input holding its K outputs."""
    with user_errors():
        groups = [d for d in sorted(Path(folder).iterdir()) if d.is_dir() and not d.name.startswith(".")]
        files = [_image_files(d) for d in groups]
        files = [f for f in files if f]
        if not files:
            raise UserInputError(f"{folder}: no sub-folders with images (expected one sub-folder per input)")
        dev = pick_device(device)
        fn = build_lpips(lpips_net, lpips_weights, lpips_mode == "random", dev)
        size = size or _first_size(files[0])
        scores, skipped, ks = [], [], set()
        for group in progress(files, desc="lpips", unit="input"):
            imgs, bad = _load_images(group, size)
            skipped += bad
            if len(imgs) < 2:
                continue
            ks.add(len(imgs))
            scores.append(lpips_diversity(imgs[None].to(dev), fn, batch))
        if not scores:
            raise UserInputError(f"{folder}: no input has two readable outputs")
        click.echo(f"lpips: {fn.description}; images at {size} px")
        if skipped:
            click.echo(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:10])}")
        k = "/".join(str(v) for v in sorted(ks))
        click.echo(f"inputs: {len(scores)}, outputs per input: {k}")
        click.echo(f"LPIPS diversity: {float(np.mean(scores)):.4f}")


@main.command(name="recon")
@click.argument("targets", type=click.Path(exists=True))
@click.argument("recons", type=click.Path(exists=True))
@_lpips_options
def recon_cmd(targets: str, recons: str, lpips_mode: str, lpips_net: str, lpips_weights: str | None,
              size: int | None, batch: int, device: str) -> None:
    """Reconstruction metrics (LPIPS, MSE, PSNR) of RECONS against TARGETS, paired by file stem."""
    with user_errors():
        tp, rp = Path(targets), Path(recons)
        if tp.is_dir() and rp.is_dir():
            t = {f.stem: f for f in _image_files(tp)}
            r = {f.stem: f for f in _image_files(rp)}
            pairs = [(t[s], r[s]) for s in sorted(set(t) & set(r))]
        elif tp.is_file() and rp.is_file():
            pairs = [(tp, rp)]
        else:
            raise UserInputError("give two folders (paired by file stem) or two image files")
        if not pairs:
            raise UserInputError(f"no images with the same name in {targets} and {recons}")
        dev = pick_device(device)
        fn = build_lpips(lpips_net, lpips_weights, lpips_mode == "random", dev)
        size = size or _first_size([p for p, _ in pairs])
        sums, count, skipped = dict(lpips=0.0, mse=0.0, psnr=0.0), 0, []
        for s in progress(range(0, len(pairs), batch), desc="recon", unit="batch"):
            a, b, bad = _load_pairs(pairs[s:s + batch], size)
            skipped += bad
            if not len(a):
                continue
            m = reconstruction_metrics(a.to(dev), b.to(dev), fn)
            for k in sums:
                sums[k] += m[k] * len(a)
            count += len(a)
        if not count:
            raise UserInputError("no readable pairs")
        click.echo(f"lpips: {fn.description}; images at {size} px; pairs: {count}")
        if skipped:
            click.echo(f"skipped {len(skipped)} unreadable image(s): {'; '.join(skipped[:10])}")
        click.echo(f"LPIPS: {sums['lpips'] / count:.4f}  MSE: {sums['mse'] / count:.6f}  "
                   f"PSNR: {sums['psnr'] / count:.2f} dB")


if __name__ == "__main__":
    main()
