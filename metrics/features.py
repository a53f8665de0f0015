"""Feature extractors for FID/KID: torch-fidelity's Inception-v3 from a local weights file, or the
explicitly offline random networks (smoke runs and timing only; their numbers compare with nothing).

Images reach the extractor as uint8 RGB ``[N, 3, H, W]``; Inception resizes them to 299×299 with
torch-fidelity's TensorFlow-1.x-exact bilinear resize (see ``INCEPTION_RESIZE``).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from toonlab.checkpoint import sha256_file
from toonlab.errors import UserInputError
from toonlab.images import uint8_to_float
from toonlab.weights import locate_weights

__all__ = ["FEATURE_KINDS", "INCEPTION_FILE", "INCEPTION_RESIZE", "FeatureExtractor", "InceptionFeatures",
           "RandomFeatures", "build_feature_extractor", "exact_fp32"]

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
FEATURE_KINDS = ("inception", "random", "inception-random")
INCEPTION_RESIZE = ("uint8 RGB -> 299x299 bilinear, TensorFlow-1.x-exact (align_corners=False, no half-pixel "
                    "offset; torch-fidelity's interpolate_bilinear_2d_like_tensorflow1x) = the resize of the "
                    "original TensorFlow FID code; pytorch-fid (half-pixel F.interpolate) and clean-fid (PIL "
                    "bicubic) resize differently")


class FeatureExtractor(nn.Module):
    """uint8 images [N, 3, H, W] → float32 features [N, D]; ``id`` and ``resize_id`` key the cache."""

    id: str = ""
    resize_id: str = ""
    dim: int = 0
    comparable: bool = False

    def describe(self) -> list[str]:
        """Lines for the output: which network and weights, which resize."""
        raise NotImplementedError


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
        x = uint8_to_float(x).to(self.convs[0].weight.dtype)
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
def exact_fp32() -> Iterator[None]:
    """TF32 off while features are extracted: FID must not depend on the GPU generation."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
