"""Small scorers for comparing fine-tuning methods, trained on the built-in synthetic domains.

    python -m metrics.probes train [--out toonlab/assets/probes64.pt] [--target webtoon]
    python -m metrics.probes show [toonlab/assets/probes64.pt]

Two probes, both tiny CNNs reading 64×64 RGB in [-1, 1] (other sizes are resized with
antialiasing):

- :class:`StructureRegressor` predicts the normalised face geometry (``GEOMETRY_FIELDS`` of
  :class:`toonlab.synthetic.FaceParams`, each in [0, 1] over its sampling range). It is trained on
  *every* domain with the *same* parameters, so the only thing that predicts the target is the
  geometry, not the drawing style: it reads a cartoon's face layout the same way as a photo's.
- :class:`StyleClassifier` says photo (0) or the target cartoon domain (1); it outputs a logit.

The synthetic parameters are the ground truth no real dataset has, which is what makes these
probes possible: "did fine-tuning keep the source face's structure?" becomes "do the regressor's
readings of the source image and the fine-tuned image agree?" (:func:`structure_error`).

Both probes are trained with a mild "GAN look" augmentation (down/up-sampling blur and pixel
noise, applied to every class alike) because they score generator samples, which are softer
than the crisp renders; without it the classifier can learn "sharp = cartoon".
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from toonlab.images import uint8_to_tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylegan2.networks import Generator
from toonlab.checkpoint import load_torch_file
from toonlab.errors import UserInputError, user_errors
from toonlab.runtime import ASSETS
from toonlab.synthetic import DOMAINS, GEOMETRY_FIELDS, render, sample_params

__all__ = [
    "DEFAULT_PROBES",
    "PROBE_SIZE",
    "StructureRegressor",
    "StyleClassifier",
    "ProbeBundle",
    "train_probes",
    "load_probes",
    "fixed_latents",
    "geometry_predictions",
    "structure_errors",
    "structure_error",
    "structure_references",
    "style_probabilities",
    "style_score",
]

DEFAULT_PROBES = ASSETS / "probes64.pt"
PROBE_SIZE = 64
FORMAT = "toonlab-probes-v1"
# Indices of the held-out faces: far beyond any n_per_domain anyone will train with, so the
# evaluation faces are fresh draws of the same parameter stream.
EVAL_OFFSET = 10_000_000
# FaceParams.flipped() mirrors center_x and roll; both ranges are symmetric, so in normalised
# units the mirrored value is 1 - v (used by the flip augmentation).
_FLIP_FIELDS = [GEOMETRY_FIELDS.index("center_x"), GEOMETRY_FIELDS.index("roll")]


# --------------------------------------------------------------------------- networks


def to_probe_input(images: Tensor, size: int = PROBE_SIZE) -> Tensor:
    """[N,3,H,W] in [-1, 1] → [N,3,size,size] float32, resized with antialiasing when needed."""
    x = images.float().clamp(-1, 1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


class _SmallCNN(nn.Module):
    """Six 3×3 convolutions, four of them stride 2 (64 → 4 px), and a 2-layer head.

    The head is a *flattened* 4×4 map, not global pooling: the geometry targets include
    positions (centre, eye line), which pooling would throw away. BatchNorm speeds up the short
    CPU training; scoring always runs in eval mode, so an image scores the same in any batch.
    """

    def __init__(self, out_dim: int, width: int = 24, size: int = PROBE_SIZE) -> None:
        super().__init__()
        self.size = size
        w = width

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]

        self.features = nn.Sequential(
            *block(3, w, 2), *block(w, w, 1),  # 32 px: eyes, brows and mouth are a few pixels wide
            *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1),  # 16 px
            *block(2 * w, 4 * w, 2),  # 8 px
            *block(4 * w, 4 * w, 2),  # 4 px
            nn.AdaptiveAvgPool2d(4),  # a no-op at 64 px; keeps other probe sizes working
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 128), nn.LeakyReLU(0.2), nn.Linear(128, out_dim))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(to_probe_input(images, self.size)))


class StructureRegressor(_SmallCNN):
    """Images → the normalised geometry vector (``GEOMETRY_FIELDS``, each in [0, 1]).

    Trained on standardised targets; ``target_mean``/``target_std`` undo that so
    :meth:`forward` answers in the [0, 1] units of ``FaceParams.geometry_vector()``.
    """

    def __init__(self, width: int = 24, size: int = PROBE_SIZE, n_fields: int = len(GEOMETRY_FIELDS)) -> None:
        super().__init__(n_fields, width, size)
        self.register_buffer("target_mean", torch.full((n_fields,), 0.5))
        self.register_buffer("target_std", torch.full((n_fields,), math.sqrt(1 / 12)))  # uniform on [0, 1]

    def standardised(self, images: Tensor) -> Tensor:
        """The raw network output (what the MSE is taken on)."""
        return super().forward(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.standardised(images) * self.target_std + self.target_mean


class StyleClassifier(_SmallCNN):
    """Images → one logit: > 0 means the target cartoon domain, < 0 photo."""

    def __init__(self, width: int = 24, size: int = PROBE_SIZE) -> None:
        super().__init__(1, width, size)

    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images).squeeze(1)


# --------------------------------------------------------------------------- bundle


@dataclass
class ProbeBundle:
    """Both probes, how they were trained (``config``) and their held-out quality (``metrics``)."""

    regressor: StructureRegressor
    classifier: StyleClassifier
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return str(self.config["target"])

    @property
    def device(self) -> torch.device:
        return self.regressor.target_mean.device

    def to(self, device: str | torch.device) -> "ProbeBundle":
        self.regressor.to(device)
        self.classifier.to(device)
        return self

    def eval(self) -> "ProbeBundle":
        self.regressor.eval().requires_grad_(False)
        self.classifier.eval().requires_grad_(False)
        return self

    def save(self, path: str | Path) -> Path:
        """Write plain tensors, strings and numbers only, so :meth:`load` works with ``weights_only``."""
        from toonlab.atomic import torch_save_atomic

        obj = {
            "format": FORMAT,
            "regressor": {k: v.detach().cpu() for k, v in self.regressor.state_dict().items()},
            "classifier": {k: v.detach().cpu() for k, v in self.classifier.state_dict().items()},
            "config": self.config,
            "metrics": self.metrics,
        }
        return torch_save_atomic(obj, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "ProbeBundle":
        """Load a bundle written by :meth:`save`; bad files raise a one-line ``UserInputError``."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"probe bundle not found: {path} (train it with: python -m metrics.probes train "
                                 f"--out {path})")
        obj = load_torch_file(path, "probe bundle")
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise UserInputError(f"{path} is not a toonlab probe bundle (expected format {FORMAT})")
        cfg = dict(obj["config"])
        fields = list(cfg.get("geometry_fields", GEOMETRY_FIELDS))
        if fields != list(GEOMETRY_FIELDS):
            raise UserInputError(f"{path} was trained on other geometry fields than this toonlab's; retrain it")
        reg = StructureRegressor(cfg["width"], cfg["size"], len(fields))
        clf = StyleClassifier(cfg["width"], cfg["size"])
        try:
            reg.load_state_dict(obj["regressor"])
            clf.load_state_dict(obj["classifier"])
        except RuntimeError as e:
            raise UserInputError(f"{path}: probe weights do not fit: {str(e).splitlines()[0][:200]}") from None
        return cls(reg, clf, cfg, dict(obj.get("metrics") or {})).to(device).eval()

    def readable_fields(self, min_r2: float = 0.5) -> list[int]:
        """Indices of the geometry fields the regressor reads with held-out R² ≥ ``min_r2``.

        Fine details (mouth curvature, nose width) are a few pixels at 64 px and barely readable;
        their near-constant readings would only dilute the structure error. All fields when no
        metrics are stored or none qualifies (``min_r2 <= -inf`` also gives all)."""
        r2 = self.metrics.get("r2_per_field") or {}
        idx = [i for i, f in enumerate(GEOMETRY_FIELDS) if r2.get(f, -math.inf) >= min_r2]
        return idx or list(range(len(GEOMETRY_FIELDS)))

    def summary(self) -> str:
        """One line of probe quality, e.g. for reports and logs."""
        m = self.metrics
        if not m:
            return "probe quality unknown (no held-out metrics stored)"
        n_read = sum(v >= 0.5 for v in (m.get("r2_per_field") or {}).values())
        return (f"structure regressor held-out R² {m['r2_mean']:.3f} (mean over {len(GEOMETRY_FIELDS)} geometry "
                f"fields, all domains; {n_read} fields with R² ≥ 0.5); style classifier held-out accuracy "
                f"{m['accuracy']:.3f} photo vs {self.target} ({m['accuracy_blurred']:.3f} on blurred images)")


def load_probes(path: str | Path = DEFAULT_PROBES, device: str | torch.device = "cpu") -> ProbeBundle:
    """:meth:`ProbeBundle.load` with the default bundle path."""
    return ProbeBundle.load(path, device)


# --------------------------------------------------------------------------- data


def render_domain(domain: str, indices: Sequence[int], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images [N,size,size,3] and float32 geometry [N,F] of faces ``indices`` in ``domain``.

    uint8 keeps the in-memory training set small (4 domains × 3000 faces at 64 px ≈ 150 MB).
    """
    imgs = np.empty((len(indices), size, size, 3), dtype=np.uint8)
    geo = np.empty((len(indices), len(GEOMETRY_FIELDS)), dtype=np.float32)
    for j, i in enumerate(indices):
        p = sample_params(int(i), seed)
        imgs[j] = render(p, domain, size)
        geo[j] = p.geometry_vector()
    return imgs, geo


def _to_float(batch_u8: np.ndarray | Tensor) -> Tensor:
    # uint8_to_tensor returns a contiguous batch: a permuted (channels-last) one sends CPU convolutions
    # down a far slower path
    return uint8_to_tensor(torch.as_tensor(batch_u8))


def degrade(x: Tensor, g: torch.Generator, p: float = 0.3) -> Tensor:
    """The "GAN look": per image, with probability p a down/up-sample blur (factor 0.55–0.85) and
    with probability p Gaussian pixel noise (σ up to 0.04). Applied to every class alike; stronger
    blur wipes out the few-pixel features (eyes, mouth) the regressor must read."""
    n, _, h, w = x.shape
    out = x.clone()
    blur = torch.rand(n, generator=g) < p
    for i in torch.nonzero(blur).flatten().tolist():
        s = max(8, int(round(h * (0.55 + 0.3 * float(torch.rand((), generator=g))))))
        small = F.interpolate(x[i : i + 1], size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        out[i : i + 1] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    sigma = (torch.rand(n, 1, 1, 1, generator=g) < p).float() * torch.rand(n, 1, 1, 1, generator=g) * 0.04
    return (out + sigma * torch.randn(out.shape, generator=g)).clamp_(-1, 1)


def _flip(x: Tensor, geo: Tensor | None, g: torch.Generator) -> tuple[Tensor, Tensor | None]:
    """Mirror half of the batch; mirrored geometry is exact (see ``_FLIP_FIELDS``)."""
    m = torch.rand(x.shape[0], generator=g) < 0.5
    x = torch.where(m.view(-1, 1, 1, 1), x.flip(-1), x)
    if geo is not None:
        idx = torch.tensor(_FLIP_FIELDS)
        geo = geo.clone()
        geo[:, idx] = torch.where(m[:, None], 1 - geo[:, idx], geo[:, idx])
    return x, geo


def _cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, total: int, warmup: int = 30) -> None:
    lr = base * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / max(total, 1), 1.0)))
    for group in opt.param_groups:
        group["lr"] = lr


def _r2(pred: Tensor, target: Tensor) -> Tensor:
    """Coefficient of determination per field (columns)."""
    ss_res = ((pred - target) ** 2).sum(0)
    ss_tot = ((target - target.mean(0)) ** 2).sum(0).clamp_min(1e-12)
    return 1 - ss_res / ss_tot


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch: int, device: torch.device) -> Tensor:
    return torch.cat([model(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def train_probes(
    domains: Sequence[str] = DOMAINS,
    target: str = "webtoon",
    n_per_domain: int = 3000,
    size: int = PROBE_SIZE,
    steps: int = 1000,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    classifier_steps: int | None = None,
    n_eval: int = 300,
    width: int = 24,
    lr: float = 2e-3,
    log: Callable[[str], None] | None = None,
) -> ProbeBundle:
    """Render synthetic faces once into memory and train both probes; returns the bundle with
    held-out metrics on ``n_eval`` fresh faces per domain (indices ≥ ``EVAL_OFFSET``).

    ``steps`` are regressor steps of ``batch`` images drawn from all ``domains``;
    ``classifier_steps`` (default ``steps // 4``: photo vs cartoon is an easy task) train the
    classifier on ``photo`` vs ``target``. Rendering 4 × 3000 faces takes ~40 s on one core; the
    defaults train in ~3 minutes on two free CPU cores (twice that on a busy machine).
    """
    say = log or (lambda s: None)
    domains = list(dict.fromkeys(domains))
    for d in [*domains, target]:
        if d not in DOMAINS:
            raise UserInputError(f"unknown synthetic domain {d!r}; choose from {', '.join(DOMAINS)}")
    if target == "photo":
        raise UserInputError("the style classifier separates photo from a cartoon domain: --target cannot be photo")
    if n_per_domain < 1 or steps < 1 or batch < 2:
        raise UserInputError("n_per_domain, steps must be ≥ 1 and batch ≥ 2")
    classifier_steps = max(1, steps // 4) if classifier_steps is None else int(classifier_steps)
    device = torch.device(device)
    t0 = time.time()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)

    # The same faces (indices) in every domain: the regressor cannot use style to predict geometry.
    needed = list(dict.fromkeys([*domains, "photo", target]))
    train_idx = range(n_per_domain)
    eval_idx = range(EVAL_OFFSET, EVAL_OFFSET + n_eval)
    train_imgs: dict[str, np.ndarray] = {}
    eval_imgs: dict[str, np.ndarray] = {}
    for d in needed:
        train_imgs[d], geo_train = render_domain(d, train_idx, size, seed)
        eval_imgs[d], geo_eval = render_domain(d, eval_idx, size, seed)
    say(f"rendered {n_per_domain:,} + {n_eval:,} held-out faces in each of {', '.join(needed)} "
        f"at {size} px ({time.time() - t0:.0f} s)")
    geo_train_t, geo_eval_t = torch.from_numpy(geo_train), torch.from_numpy(geo_eval)

    # ---- structure regressor: MSE on standardised targets, batches mixed across domains
    reg = StructureRegressor(width, size).to(device)
    with torch.no_grad():
        reg.target_mean.copy_(geo_train_t.mean(0))
        reg.target_std.copy_(geo_train_t.std(0).clamp_min(1e-3))
    stack = np.stack([train_imgs[d] for d in domains])  # [D, N, H, W, 3]
    opt = torch.optim.Adam(reg.parameters(), lr=lr)
    reg.train()
    for step in range(steps):
        di = torch.randint(len(domains), (batch,), generator=g)
        fi = torch.randint(n_per_domain, (batch,), generator=g)
        x = _to_float(stack[di.numpy(), fi.numpy()])
        x, y = _flip(x, geo_train_t[fi], g)
        x = degrade(x, g)
        _cosine_lr(opt, lr, step, steps)
        pred = reg.standardised(x.to(device))
        loss = F.mse_loss(pred, ((y.to(device) - reg.target_mean) / reg.target_std))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % max(1, steps // 5) == 0:
            say(f"regressor step {step + 1}/{steps}: mse {loss.item():.3f}")
    reg.eval().requires_grad_(False)

    # ---- style classifier: photo (0) vs target (1), same faces in both classes
    clf = StyleClassifier(width, size).to(device)
    pair = np.stack([train_imgs["photo"], train_imgs[target]])
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    clf.train()
    for step in range(classifier_steps):
        label = torch.randint(2, (batch,), generator=g)
        fi = torch.randint(n_per_domain, (batch,), generator=g)
        x, _ = _flip(_to_float(pair[label.numpy(), fi.numpy()]), None, g)
        x = degrade(x, g)
        _cosine_lr(opt, lr, step, classifier_steps)
        loss = F.binary_cross_entropy_with_logits(clf(x.to(device)), label.float().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    say(f"classifier: {classifier_steps} steps, last bce {loss.item():.3f}")
    clf.eval().requires_grad_(False)

    # ---- held-out quality (fresh faces, never seen in training)
    metrics: dict[str, Any] = {"n_eval_per_domain": n_eval}
    preds = {d: _predict(reg, _to_float(eval_imgs[d]), 256, device) for d in domains}
    all_pred = torch.cat([preds[d] for d in domains])
    all_true = geo_eval_t.repeat(len(domains), 1)
    r2 = _r2(all_pred, all_true)
    metrics["r2_mean"] = float(r2.mean())
    metrics["r2_per_field"] = {f: float(v) for f, v in zip(GEOMETRY_FIELDS, r2)}
    metrics["r2_per_domain"] = {d: float(_r2(preds[d], geo_eval_t).mean()) for d in domains}
    metrics["mae_per_domain"] = {d: float((preds[d] - geo_eval_t).abs().mean()) for d in domains}
    probs = {d: torch.sigmoid(_predict(clf, _to_float(eval_imgs[d]), 256, device)) for d in needed}
    correct = torch.cat([probs["photo"] < 0.5, probs[target] >= 0.5]).float()
    metrics["accuracy"] = float(correct.mean())
    gb = torch.Generator().manual_seed(seed + 1)
    blurred = {d: _blur_all(_to_float(eval_imgs[d]), gb) for d in ("photo", target)}
    pb = {d: torch.sigmoid(_predict(clf, blurred[d], 256, device)) for d in blurred}
    metrics["accuracy_blurred"] = float(torch.cat([pb["photo"] < 0.5, pb[target] >= 0.5]).float().mean())
    metrics["cartoon_prob_per_domain"] = {d: float(probs[d].mean()) for d in needed}
    metrics["train_seconds"] = round(time.time() - t0, 1)

    config = dict(format=FORMAT, domains=list(domains), target=target, n_per_domain=int(n_per_domain), size=int(size),
                  steps=int(steps), classifier_steps=int(classifier_steps), batch=int(batch), seed=int(seed),
                  width=int(width), lr=float(lr), geometry_fields=list(GEOMETRY_FIELDS))
    bundle = ProbeBundle(reg.cpu(), clf.cpu(), config, metrics).eval()
    say(bundle.summary())
    return bundle


def _blur_all(x: Tensor, g: torch.Generator) -> Tensor:
    """Every image blurred by a half-resolution round trip (how soft a 64-px GAN sample looks)."""
    h = x.shape[-1]
    small = F.interpolate(x, size=(h // 2, h // 2), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, h), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- scoring generators


@torch.no_grad()
def structure_references(bundle: ProbeBundle, domain: str | None = None, n: int = 200, seed: int = 0,
                         min_r2: float = 0.5) -> tuple[float, float]:
    """(floor, ceiling) to read structure errors against, on ``n`` fresh synthetic faces.

    floor: the regressor's mean disagreement between the *same* faces drawn as ``photo`` and as
    ``domain`` (default: the bundle's target) — what a perfect style transfer would score, i.e.
    the probe's own sensitivity to style. ceiling: the same between *different* faces (each photo
    paired with the next face's cartoon) — what losing the structure altogether scores. Same
    readable fields as :func:`structure_errors`."""
    domain = domain or bundle.target
    idx = range(2 * EVAL_OFFSET, 2 * EVAL_OFFSET + n)  # fresh faces, not the training or held-out ones
    size = int(bundle.config["size"])
    dev = bundle.device
    a = _predict(bundle.regressor, _to_float(render_domain("photo", idx, size, seed)[0]), 256, dev)
    b = _predict(bundle.regressor, _to_float(render_domain(domain, idx, size, seed)[0]), 256, dev)
    fields = bundle.readable_fields(min_r2)
    return float((a - b).abs()[:, fields].mean()), float((a - b.roll(1, 0)).abs()[:, fields].mean())


def fixed_latents(style_dim: int, n: int, seed: int = 0) -> Tensor:
    """The ``n`` z vectors every scorer uses for ``seed`` (CPU generator: same on every device)."""
    return torch.randn(n, style_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _render(G: Generator, w: Tensor, noise: list[Tensor]) -> Tensor:
    return G.synthesis(w, noise=noise, noise_mode="const").image


@torch.no_grad()
def geometry_predictions(
    bundle: ProbeBundle,
    G: Generator,
    mapping: Generator | None = None,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
) -> Tensor:
    """Regressor readings [n, F] (CPU) of ``G``'s images for latents z(``seed``) mapped to W by
    ``mapping`` (default ``G``; truncated toward that network's mean w), rendered with
    ``mapping``'s stored (const) noise so two generators can be compared image for image."""
    mapping = mapping or G
    if G.config != mapping.config:
        raise ValueError("the two generators differ in architecture; scores need the same shape")
    dev = mapping.w_avg.device
    bundle.to(dev).eval()
    noise = mapping.const_noise()
    z = fixed_latents(mapping.style_dim, n, seed)
    out = []
    for i in range(0, n, batch):
        w = mapping.mapping(z[i : i + batch].to(dev), truncation=truncation)
        out.append(bundle.regressor(_render(G, w, noise)).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def structure_errors(
    bundle: ProbeBundle,
    G_src: Generator,
    G_tgt: Generator,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
    src_predictions: Tensor | None = None,
    min_r2: float = 0.5,
) -> Tensor:
    """Per-latent structure error [n]: mean over the readable geometry fields
    (:meth:`ProbeBundle.readable_fields` with ``min_r2``) of |reading(src) − reading(tgt)|.

    Both images come from the *same* w (``G_src``'s mapping, truncated) and the same const noise
    (``G_src``'s), so any disagreement is what fine-tuning changed. ``src_predictions`` skips
    re-rendering the source when scoring many targets.
    """
    a = src_predictions if src_predictions is not None else geometry_predictions(bundle, G_src, G_src, n, seed, batch,
                                                                                 truncation)
    b = geometry_predictions(bundle, G_tgt, G_src, n, seed, batch, truncation)
    return (a - b).abs()[:, bundle.readable_fields(min_r2)].mean(1)


def structure_error(
    bundle: ProbeBundle,
    G_src: Generator,
    G_tgt: Generator,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
    min_r2: float = 0.5,
) -> float:
    """Mean absolute disagreement (L1, averaged over latents and the geometry fields the regressor
    reads with held-out R² ≥ ``min_r2``; ``-math.inf`` = all ``GEOMETRY_FIELDS``) of the structure
    regressor between ``G_src`` and ``G_tgt`` rendering the same w and noise.

    Units: fractions of each geometry parameter's sampling range (0.05 = the readings differ by
    5 % of the range on average). Exactly 0 for the same generator; lower = the source's face
    geometry kept better.
    """
    return float(structure_errors(bundle, G_src, G_tgt, n, seed, batch, truncation, min_r2=min_r2).mean())


@torch.no_grad()
def style_probabilities(
    bundle: ProbeBundle,
    G: Generator,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
    mapping: Generator | None = None,
) -> Tensor:
    """P(cartoon) [n] (CPU) for ``G``'s images of z(``seed``) mapped by ``mapping`` (default: ``G``'s own
    mapping network, i.e. the samples the generator really produces) with ``G``'s const noise."""
    mapping = mapping or G
    dev = G.w_avg.device
    bundle.to(dev).eval()
    noise = G.const_noise()
    z = fixed_latents(mapping.style_dim, n, seed)
    out = []
    for i in range(0, n, batch):
        w = mapping.mapping(z[i : i + batch].to(dev), truncation=truncation)
        out.append(torch.sigmoid(bundle.classifier(_render(G, w, noise)).float()).cpu())
    return torch.cat(out)


def style_score(
    bundle: ProbeBundle,
    G: Generator,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
    mapping: Generator | None = None,
) -> float:
    """Mean probability, in [0, 1], that the style classifier calls ``G``'s samples the target
    cartoon domain (higher = more cartoon)."""
    return float(style_probabilities(bundle, G, n, seed, batch, truncation, mapping).mean())


# --------------------------------------------------------------------------- CLI


@click.group(name="probes")
def main() -> None:
    """Train or inspect the structure/style probes used by finetune/compare.py."""


@main.command(name="train")
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_PROBES), show_default=True,
              help="Bundle to write.")
@click.option("--domains", default=",".join(DOMAINS), show_default=True,
              help="Domains the structure regressor learns from (comma-separated).")
@click.option("--target", default="webtoon", show_default=True, help="Cartoon domain the style classifier detects.")
@click.option("--n-per-domain", type=click.IntRange(1), default=3000, show_default=True)
@click.option("--size", type=click.IntRange(32, 512), default=PROBE_SIZE, show_default=True,
              help="Probe input resolution (images of other sizes are resized).")
@click.option("--steps", type=click.IntRange(1), default=1000, show_default=True, help="Regressor steps.")
@click.option("--classifier-steps", type=click.IntRange(1), default=None, help="Classifier steps [steps/4].")
@click.option("--batch", type=click.IntRange(2), default=64, show_default=True)
@click.option("--n-eval", type=click.IntRange(2), default=300, show_default=True,
              help="Held-out faces per domain.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def train_cmd(out: str, domains: str, target: str, n_per_domain: int, size: int, steps: int,
              classifier_steps: int | None, batch: int, n_eval: int, seed: int, device: str) -> None:
    """Render synthetic faces and train both probes (a few minutes on two CPU cores)."""
    from toonlab.runtime import pick_device

    with user_errors():
        dev = pick_device(device)
        names = [d.strip() for d in domains.split(",") if d.strip()]
        bundle = train_probes(names, target, n_per_domain, size, steps, batch, seed, dev,
                              classifier_steps=classifier_steps, n_eval=n_eval, log=click.echo)
        bundle.save(out)
    click.echo(f"wrote {out}")
    _echo_metrics(bundle)


@main.command(name="show")
@click.argument("path", type=click.Path(dir_okay=False), default=str(DEFAULT_PROBES))
def show_cmd(path: str) -> None:
    """Print how a probe bundle was trained and its held-out quality."""
    with user_errors():
        bundle = ProbeBundle.load(path)
    click.echo(f"{path}: {bundle.config}")
    _echo_metrics(bundle)


def _echo_metrics(bundle: ProbeBundle) -> None:
    m = bundle.metrics
    click.echo(bundle.summary())
    if "r2_per_field" in m:
        click.echo("R² per field: " + ", ".join(f"{k} {v:.2f}" for k, v in m["r2_per_field"].items()))
        click.echo("R² per domain: " + ", ".join(f"{k} {v:.3f}" for k, v in m["r2_per_domain"].items()))
        probs = m["cartoon_prob_per_domain"]
        click.echo("P(cartoon) per domain: " + ", ".join(f"{k} {v:.3f}" for k, v in probs.items()))


if __name__ == "__main__":
    main()
