"""Small scorers for comparing fine-tuning methods, trained on the built-in synthetic domains.

    python -m metrics.probes train [--out toonlab/assets/probes64.pt] [--target webtoon] [--iters N]
    python -m metrics.probes show [toonlab/assets/probes64.pt]
    python -m metrics.probes quality --ckpt G.pt [--domain photo] [--n 2000] [--json q.json]

(docs/PROBES.md: how the bundled probes were trained, their held-out R² per field, the quality score.)

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

The sample-quality score (:func:`quality_score`) is a Fréchet distance in the probes' own feature
space (both probes' penultimate features) between a generator's samples and fresh renders of its
synthetic domain, quoted with its floor (two sets of renders) and scale (photo vs cartoon renders).

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
from typing import Any, Callable, Iterator, Sequence

from toonlab.images import uint8_to_tensor

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stylegan2.networks import Generator
from toonlab import bundled
from toonlab.checkpoint import load_torch_file
from toonlab.errors import UserInputError, user_errors
from toonlab.options import ToonGroup
from toonlab.runtime import ASSETS, progress
from toonlab.synthetic import DOMAINS, GEOMETRY_FIELDS, background_mask, render, sample_params

__all__ = [
    "DEFAULT_PROBES",
    "bundled_probes",
    "probes_for",
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
    "evaluate_probes",
    "probe_features",
    "render_features",
    "generator_features",
    "generator_samples",
    "domain_references",
    "FieldShift",
    "readings_from_features",
    "field_shifts",
    "QualityScore",
    "quality_score",
]

DEFAULT_PROBES = ASSETS / "probes64.pt"
PROBE_SIZE = 64
FORMAT = "toonlab-probes-v2"
# Bundles of the first layout (v1 networks, fp32 weights) still load; see ProbeBundle.load.
OLD_FORMATS = ("toonlab-probes-v1",)
# Indices of the held-out faces: far beyond any n_per_domain anyone will train with, so the
# evaluation faces are fresh draws of the same parameter stream.
EVAL_OFFSET = 10_000_000
# FaceParams.flipped() mirrors center_x and roll; both ranges are symmetric, so in normalised
# units the mirrored value is 1 - v (used by the flip augmentation).
#: Structure errors are taken over the fields the regressor reads with held-out R² at least this
#: (on GAN-look images, :meth:`ProbeBundle.field_r2`): a field read worse only adds noise.
SCORE_MIN_R2 = 0.9
_FLIP_FIELDS = [GEOMETRY_FIELDS.index("center_x"), GEOMETRY_FIELDS.index("roll")]


def bundled_probes() -> list[Path]:
    """Every bundled probe bundle, ``probes64.pt`` first, then ``probes64_<target>.pt`` (one per
    cartoon domain a classifier detects); ``[DEFAULT_PROBES]`` when none is there, so a caller's
    one-line "not found" names the default file."""
    return [b.path for b in bundled.probe_sets()] or [DEFAULT_PROBES]


def probes_for(domain: str) -> Path:
    """The bundled probe bundle whose classifier detects ``domain``, else the default bundle
    (photo is every bundle's class 0)."""
    sets = bundled.probe_sets()
    for b in sets:
        if b.name.endswith(f"_{domain}"):
            return b.path
    return sets[0].path if sets else DEFAULT_PROBES


# --------------------------------------------------------------------------- networks


def to_probe_input(images: Tensor, size: int = PROBE_SIZE) -> Tensor:
    """[N,3,H,W] in [-1, 1] → [N,3,size,size] float32, resized with antialiasing when needed."""
    x = images.float().clamp(-1, 1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def _block(cin: int, cout: int, stride: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]


class _SmallCNN(nn.Module):
    """A small CNN and a 2-layer head; ``arch`` picks the layout.

    ``"v1"`` (the first bundled probes): six 3×3 convolutions, four of them stride 2 (64 → 4 px),
    128 hidden units. ``"v2"`` (default): a full-resolution stem, two convolutions at each of 32,
    16 and 8 px and a stride-2 one down to 4 px, 256 hidden units. The extra resolution is for
    the geometry fields that are a few pixels big at 64 px (brow thickness, nose width, mouth
    curvature): v1 reads them with R² < 0.5.

    The head is a *flattened* 4×4 map, not global pooling: the geometry targets include
    positions (centre, eye line), which pooling would throw away. BatchNorm speeds up the short
    CPU training; scoring always runs in eval mode, so an image scores the same in any batch.
    """

    def __init__(self, out_dim: int, width: int = 32, size: int = PROBE_SIZE, arch: str = "v2") -> None:
        super().__init__()
        self.size = size
        self.arch = arch
        w = width
        if arch == "v1":
            layers = [*_block(3, w, 2), *_block(w, w, 1),  # 32 px
                      *_block(w, 2 * w, 2), *_block(2 * w, 2 * w, 1),  # 16 px
                      *_block(2 * w, 4 * w, 2),  # 8 px
                      *_block(4 * w, 4 * w, 2)]  # 4 px
            flat, hidden = 4 * w * 16, 128
        elif arch == "v2":
            layers = [*_block(3, max(8, w // 2), 1),  # 64 px: a few-pixel brow or nostril survives the stride
                      *_block(max(8, w // 2), w, 2), *_block(w, w, 1),  # 32 px
                      *_block(w, 2 * w, 2), *_block(2 * w, 2 * w, 1),  # 16 px
                      *_block(2 * w, 4 * w, 2), *_block(4 * w, 4 * w, 1),  # 8 px
                      *_block(4 * w, 64, 2)]  # 4 px, 64 channels: keeps the flattened head small
            flat, hidden = 64 * 16, 256
        else:
            raise ValueError(f"unknown probe architecture {arch!r}")
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))  # a no-op at 64 px; other sizes work
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, out_dim))

    def embed(self, images: Tensor) -> Tensor:
        """The penultimate features [N, hidden] (what the quality score's Fréchet distance compares)."""
        return self.head[:3](self.features(to_probe_input(images, self.size)))

    def forward(self, images: Tensor) -> Tensor:
        return self.head[3](self.embed(images))


class StructureRegressor(_SmallCNN):
    """Images → the normalised geometry vector (``GEOMETRY_FIELDS``, each in [0, 1]).

    Trained on standardised targets; ``target_mean``/``target_std`` undo that so
    :meth:`forward` answers in the [0, 1] units of ``FaceParams.geometry_vector()``.
    """

    def __init__(self, width: int = 32, size: int = PROBE_SIZE, n_fields: int = len(GEOMETRY_FIELDS),
                 arch: str = "v2") -> None:
        super().__init__(n_fields, width, size, arch)
        self.register_buffer("target_mean", torch.full((n_fields,), 0.5))
        self.register_buffer("target_std", torch.full((n_fields,), math.sqrt(1 / 12)))  # uniform on [0, 1]

    def standardised(self, images: Tensor) -> Tensor:
        """The raw network output (what the MSE is taken on)."""
        return super().forward(images)

    def forward(self, images: Tensor) -> Tensor:
        return self.standardised(images) * self.target_std + self.target_mean


class StyleClassifier(_SmallCNN):
    """Images → one logit: > 0 means the target cartoon domain, < 0 photo."""

    def __init__(self, width: int = 16, size: int = PROBE_SIZE, arch: str = "v2") -> None:
        super().__init__(1, width, size, arch)

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
        """Write plain tensors, strings and numbers only, so :meth:`load` works with ``weights_only``.

        Float weights are stored as float16 (half the bytes; the readings move by < 1e-3 of a
        field's range, far below the probes' own error) and loaded back as float32."""
        from toonlab.atomic import torch_save_atomic

        def half(sd: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()) for k, v in sd.items()}

        obj = {
            "format": FORMAT,
            "regressor": half(self.regressor.state_dict()),
            "classifier": half(self.classifier.state_dict()),
            "config": self.config,
            "metrics": self.metrics,
        }
        return torch_save_atomic(obj, path)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "ProbeBundle":
        """Load a bundle written by :meth:`save` (this format or an older one: ``config["format"]``
        then says which); bad files raise a one-line ``UserInputError``."""
        path = Path(path)
        if not path.is_file():
            raise UserInputError(f"probe bundle not found: {path} (train it with: python -m metrics.probes train "
                                 f"--out {path})")
        obj = load_torch_file(path, "probe bundle")
        fmt = obj.get("format") if isinstance(obj, dict) else None
        if fmt not in (FORMAT, *OLD_FORMATS):
            raise UserInputError(f"{path} is not a toonlab probe bundle (expected format {FORMAT})")
        cfg = dict(obj["config"])
        cfg["format"] = fmt
        fields = list(cfg.get("geometry_fields", GEOMETRY_FIELDS))
        if fields != list(GEOMETRY_FIELDS):
            raise UserInputError(f"{path} was trained on other geometry fields than this toonlab's; retrain it")
        arch = str(cfg.get("arch", "v1"))  # v1 bundles predate the key
        reg = StructureRegressor(cfg["width"], cfg["size"], len(fields), arch)
        clf = StyleClassifier(cfg.get("classifier_width", cfg["width"]), cfg["size"], arch)
        try:
            reg.load_state_dict(obj["regressor"])  # copies float16 into the float32 parameters
            clf.load_state_dict(obj["classifier"])
        except RuntimeError as e:
            raise UserInputError(f"{path}: probe weights do not fit: {str(e).splitlines()[0][:200]}") from None
        return cls(reg, clf, cfg, dict(obj.get("metrics") or {})).to(device).eval()

    @property
    def is_old(self) -> bool:
        """True for a bundle of an older format (weaker probes; retrain with ``metrics.probes train``)."""
        return self.config.get("format") in OLD_FORMATS

    def field_r2(self) -> dict[str, float]:
        """Held-out R² per geometry field on generator-like images (the GAN look on every image)
        where the bundle stored it, else on crisp renders (older bundles); empty when unknown."""
        return dict(self.metrics.get("r2_per_field_gan") or self.metrics.get("r2_per_field") or {})

    def readable_fields(self, min_r2: float = SCORE_MIN_R2) -> list[int]:
        """Indices of the geometry fields the regressor reads with held-out R² ≥ ``min_r2``
        (:meth:`field_r2`).

        A field the regressor cannot read gives near-constant readings that would only dilute
        the structure error. All fields when no metrics are stored or none qualifies
        (``min_r2 <= -inf`` also gives all)."""
        r2 = self.field_r2()
        idx = [i for i, f in enumerate(GEOMETRY_FIELDS) if r2.get(f, -math.inf) >= min_r2]
        return idx or list(range(len(GEOMETRY_FIELDS)))

    def summary(self) -> str:
        """One line of probe quality, e.g. for reports and logs."""
        m = self.metrics
        if not m:
            return "probe quality unknown (no held-out metrics stored)"
        r2 = self.field_r2()
        n_read = sum(v >= SCORE_MIN_R2 for v in r2.values())
        worst = min(r2, key=r2.get) if r2 else None
        on = "GAN-look" if m.get("r2_per_field_gan") else "crisp"
        gan = f", {m['r2_mean_gan']:.3f} on GAN-look images" if "r2_mean_gan" in m else ""
        return (f"structure regressor held-out R² {m['r2_mean']:.3f} (mean over {len(GEOMETRY_FIELDS)} geometry "
                f"fields, all domains, crisp renders{gan}; {n_read} fields with {on} R² ≥ {SCORE_MIN_R2:g}"
                + (f", lowest {worst} {r2[worst]:.3f}" if worst else "")
                + f"); style classifier held-out accuracy {m['accuracy']:.3f} photo vs {self.target} "
                f"({m['accuracy_blurred']:.3f} on blurred images)" + self._grey_note())

    def _grey_note(self) -> str:
        grey = self.metrics.get("cartoon_prob_grey_background")
        if not grey:
            return ""
        bg = float(self.config.get("classifier_backgrounds", 0.0))
        return (f"; on grey backgrounds P({self.target}) photo {grey.get('photo', float('nan')):.3f}, "
                f"{self.target} {grey.get(self.target, float('nan')):.3f}"
                + (f" (trained with backgrounds randomised, p {bg:g})" if bg else ""))


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


def random_backgrounds(x: Tensor, mask: Tensor, g: torch.Generator, p: float = 0.5) -> Tensor:
    """Per image, with probability ``p``, its background (``mask`` [N,H,W], exact: ``background_mask``)
    replaced by a random vertical gradient between two uniform colours, with pixel noise of a random
    strength (σ up to 0.06). Drawn alike for every class, so a background says nothing about the domain:
    trained on this, the style classifier has to read the face (without it, the bundled webtoon
    classifier called webtoon renders on a grey background photo, docs/PROBES.md)."""
    n, _, h, _ = x.shape
    pick = (torch.rand(n, generator=g) < p).view(n, 1, 1, 1) & mask[:, None]
    top, bottom = (torch.rand(n, 3, 1, 1, generator=g) * 2 - 1 for _ in range(2))
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    sigma = torch.rand(n, 1, 1, 1, generator=g) * 0.06
    bg = (top + (bottom - top) * yy + sigma * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    return torch.where(pick, bg, x)


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
def _predict(model: Callable[[Tensor], Tensor], x: Tensor, batch: int, device: torch.device) -> Tensor:
    return torch.cat([model(x[i : i + batch].to(device)).cpu() for i in range(0, len(x), batch)])


def _render_batch(domains: Sequence[str], domain_idx: np.ndarray, face_idx: np.ndarray, size: int,
                  seed: int, masks: bool = False) -> tuple[np.ndarray, Tensor, Tensor | None]:
    """uint8 images [B,size,size,3] of faces ``face_idx`` drawn in ``domains[domain_idx]``, their geometry
    and, with ``masks``, their exact background masks [B,size,size] (``background_mask``: a second render)."""
    imgs = np.empty((len(face_idx), size, size, 3), dtype=np.uint8)
    geo = np.empty((len(face_idx), len(GEOMETRY_FIELDS)), dtype=np.float32)
    bg = np.zeros((len(face_idx), size, size), dtype=bool) if masks else None
    for j, (d, i) in enumerate(zip(domain_idx.tolist(), face_idx.tolist())):
        p = sample_params(int(i), seed)
        imgs[j] = render(p, domains[d], size)
        geo[j] = p.geometry_vector()
        if bg is not None:
            bg[j] = background_mask(p, domains[d], size, imgs[j])
    return imgs, torch.from_numpy(geo), None if bg is None else torch.from_numpy(bg)


def _batches(domains: Sequence[str], steps: int, batch: int, size: int, seed: int, n_per_domain: int | None,
             g: torch.Generator, start: int = 0, workers: int = 0,
             masks: bool = False) -> Iterator[tuple[np.ndarray, Tensor, Tensor, Tensor | None]]:
    """``steps`` training batches (images, geometry, domain index, background masks or None without
    ``masks``), rendered one step ahead in a
    thread so drawing the next batch (PIL and numpy release the GIL) overlaps the current step;
    with ``workers`` > 0, in that many processes, 2 batches each in flight (a GPU step is far shorter
    than drawing a batch on one core). The batches are the same either way: they are planned here,
    in order, and only drawn elsewhere.

    ``n_per_domain=None``: every batch is fresh faces (indices ``start``, ``start + 1``, … in order;
    an unlimited stream, so nothing can be memorised); otherwise faces are drawn from the first
    ``n_per_domain``.
    """
    import multiprocessing
    from collections import deque
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    def plan(step: int) -> tuple[np.ndarray, np.ndarray]:
        di = torch.randint(len(domains), (batch,), generator=g).numpy()
        if n_per_domain is None:
            fi = np.arange(start + step * batch, start + (step + 1) * batch)
        else:
            fi = torch.randint(n_per_domain, (batch,), generator=g).numpy()
        return di, fi

    # spawn, not fork: the parent may hold CUDA (or OpenMP) state a forked child must not inherit.
    pool = (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 0
            else ThreadPoolExecutor(1))
    ahead = 2 * workers if workers > 0 else 1
    with pool:
        queued: deque = deque()
        planned = 0
        for step in range(steps):
            while planned < steps and len(queued) < ahead:
                di, fi = plan(planned)
                queued.append((torch.from_numpy(di), pool.submit(_render_batch, domains, di, fi, size, seed, masks)))
                planned += 1
            cur, fut = queued.popleft()
            imgs, geo, bg = fut.result()
            yield imgs, geo, cur, bg


def train_probes(
    domains: Sequence[str] = DOMAINS,
    target: str = "webtoon",
    n_per_domain: int | None = None,
    size: int = PROBE_SIZE,
    steps: int = 1000,
    batch: int = 64,
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    classifier_steps: int | None = None,
    n_eval: int = 300,
    width: int = 32,
    classifier_width: int = 16,
    arch: str = "v2",
    lr: float = 2e-3,
    log: Callable[[str], None] | None = None,
    show_progress: bool = False,
    init: ProbeBundle | None = None,
    workers: int = 0,
    classifier_backgrounds: float = 0.0,
) -> ProbeBundle:
    """Train both probes on synthetic faces rendered on the fly; returns the bundle with held-out
    metrics on ``n_eval`` fresh faces per domain (indices ≥ ``EVAL_OFFSET``).

    ``steps`` are regressor steps of ``batch`` images drawn from all ``domains`` (each image in a
    random domain); ``classifier_steps`` (default ``steps // 4``: photo vs cartoon is an easy task)
    train the classifier on ``photo`` vs ``target``. ``n_per_domain=None`` renders fresh faces for
    every batch (unlimited data: what the bundled probes use); a number reuses that many faces.
    Every training image gets the GAN-look augmentation (:func:`degrade`) and a random mirror.

    Held-out R² is measured twice: on the crisp renders (``r2_per_field``) and on the same faces
    with the GAN look applied to every image (``r2_per_field_gan``: what generator samples
    resemble). Rendering costs ~1.5 ms a face at 64 px, a small part of a training step.

    ``init``: start both probes from this bundle's weights (same architecture and widths) and run
    a new cosine schedule — training longer without starting over. The face stream continues
    after the faces ``init`` was trained on, and the config adds up the steps of both runs.
    With ``steps=0`` the regressor is ``init``'s, unchanged, and only the classifier trains
    (``classifier_steps``, default 400): a bundle for another ``target`` whose structure error is
    exactly the one ``init`` measures, for the cost of the small classifier. A classifier for another
    target than ``init``'s starts fresh.

    ``workers``: processes that draw the training batches (0: one thread beside the step).
    """
    say = log or (lambda s: None)
    domains = list(dict.fromkeys(domains))
    for d in [*domains, target]:
        if d not in DOMAINS:
            raise UserInputError(f"unknown synthetic domain {d!r}; choose from {', '.join(DOMAINS)}")
    if target == "photo":
        raise UserInputError("the style classifier separates photo from a cartoon domain: --target cannot be photo")
    if (n_per_domain is not None and n_per_domain < 1) or steps < 0 or batch < 2:
        raise UserInputError("n_per_domain must be ≥ 1, steps ≥ 0 and batch ≥ 2")
    if steps == 0 and init is None:
        raise UserInputError("0 regressor steps keeps the --init bundle's regressor: give --init")
    if classifier_steps is None:
        classifier_steps = max(1, steps // 4) if steps else 400
    device = torch.device(device)
    t0 = time.time()
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    needed = list(dict.fromkeys([*domains, "photo", target]))

    # ---- structure regressor: MSE on standardised targets, batches mixed across domains
    reg = StructureRegressor(width, size, arch=arch).to(device)
    clf = StyleClassifier(classifier_width, size, arch=arch).to(device)
    with torch.no_grad():
        geo_sample = torch.from_numpy(np.stack([sample_params(i, seed).geometry_vector() for i in range(4096)]))
        reg.target_mean.copy_(geo_sample.mean(0))
        reg.target_std.copy_(geo_sample.std(0).clamp_min(1e-3))
    start = 0  # first face of the training stream
    if init is not None:
        ic = init.config
        if (ic.get("arch"), ic.get("width"), ic.get("classifier_width"), ic.get("size")) != (arch, width,
                                                                                            classifier_width, size):
            raise UserInputError(f"--init bundle is {ic.get('arch')} width {ic.get('width')}/"
                                 f"{ic.get('classifier_width')} at {ic.get('size')} px; train with the same "
                                 f"--width, --classifier-width and --size")
        reg.load_state_dict(init.regressor.state_dict())
        # A classifier trained on other backgrounds has learnt the cue this one is kept from: start afresh.
        if init.target == target and float(ic.get("classifier_backgrounds", 0.0)) == classifier_backgrounds:
            clf.load_state_dict(init.classifier.state_dict())
        start = int(ic.get("faces_seen", ic.get("steps", 0) * ic.get("batch", batch)))
        say(f"starting from the given bundle ({ic.get('steps_total', ic.get('steps'))} steps); "
            f"faces from {start:,} on")
    opt = torch.optim.Adam(reg.parameters(), lr=lr)
    reg.train()
    bar = progress(total=steps, desc="regressor", unit="step", disable=not show_progress or not steps)
    ema = None
    batches = _batches(domains, steps, batch, size, seed, n_per_domain, g, start, workers) if steps else ()
    for step, (u8, y, _, _) in enumerate(batches):
        x, y = _flip(_to_float(u8), y, g)
        x = degrade(x, g)
        _cosine_lr(opt, lr, step, steps)
        pred = reg.standardised(x.to(device))
        loss = F.mse_loss(pred, ((y.to(device) - reg.target_mean) / reg.target_std))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(mse=f"{ema:.3f}", refresh=False)
        if (step + 1) % max(1, steps // 10) == 0:
            say(f"regressor step {step + 1}/{steps}: mse {ema:.3f} (running mean; 1.0 = predicting the mean) "
                f"{time.time() - t0:.0f} s")
    bar.close()
    reg.eval().requires_grad_(False)

    # ---- style classifier: photo (0) vs target (1), backgrounds randomised with probability
    # classifier_backgrounds (random_backgrounds: each batch is rendered twice for the exact masks)
    backgrounds = float(classifier_backgrounds)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    clf.train()
    # Offset the face stream so the classifier sees other faces than the regressor did (cheap variety).
    pair = ["photo", target]
    bar = progress(total=classifier_steps, desc="classifier", unit="step", disable=not show_progress)
    for step, (u8, _, label, bg) in enumerate(_batches(pair, classifier_steps, batch, size, seed + 1, n_per_domain,
                                                             g, workers=workers, masks=backgrounds > 0)):
        x = _to_float(u8)
        if bg is not None:
            x = random_backgrounds(x, bg, g, backgrounds)
        x, _ = _flip(x, None, g)
        x = degrade(x, g)
        _cosine_lr(opt, lr, step, classifier_steps)
        loss = F.binary_cross_entropy_with_logits(clf(x.to(device)), label.float().to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
    bar.close()
    say(f"classifier: {classifier_steps} steps, last bce {loss.item():.3f}")
    clf.eval().requires_grad_(False)

    bundle = ProbeBundle(reg.cpu(), clf.cpu(), {}, {}).eval()
    # The file stores float16 weights (ProbeBundle.save): round now, so the metrics below are those
    # of the weights that get saved and a loaded bundle scores exactly like this one.
    with torch.no_grad():
        for t in [*reg.state_dict().values(), *clf.state_dict().values()]:
            if t.is_floating_point():
                t.copy_(t.half().float())
    metrics = evaluate_probes(bundle, domains, target, n_eval, seed, device)
    metrics["train_seconds"] = round(time.time() - t0, 1)
    bundle.config = dict(format=FORMAT, arch=arch, domains=list(domains), target=target,
                         n_per_domain=None if n_per_domain is None else int(n_per_domain), size=int(size),
                         steps=int(steps), classifier_steps=int(classifier_steps), batch=int(batch), seed=int(seed),
                         classifier_backgrounds=backgrounds,
                         width=int(width), classifier_width=int(classifier_width), lr=float(lr),
                         geometry_fields=list(GEOMETRY_FIELDS), faces_seen=start + int(steps) * int(batch),
                         steps_total=int(steps) + (int(init.config.get("steps_total", init.config.get("steps", 0)))
                                                   if init is not None else 0),
                         train_seconds_total=metrics["train_seconds"] + (
                             float(init.config.get("train_seconds_total", init.metrics.get("train_seconds", 0.0)))
                             if init is not None else 0.0))
    bundle.metrics = metrics
    say(bundle.summary())
    return bundle


@torch.no_grad()
def evaluate_probes(bundle: ProbeBundle, domains: Sequence[str] = DOMAINS, target: str | None = None,
                    n_eval: int = 300, seed: int = 0, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Held-out quality on ``n_eval`` fresh faces per domain (indices ≥ ``EVAL_OFFSET``): R² per
    field over all ``domains`` on crisp renders and with the GAN look on every image, per-domain
    R² and MAE, the classifier's accuracy (crisp and half-resolution blurred) and P(cartoon) per domain."""
    target = target or bundle.target
    device = torch.device(device)
    bundle.to(device).eval()
    reg, clf = bundle.regressor, bundle.classifier
    size = reg.size
    needed = list(dict.fromkeys([*domains, "photo", target]))
    eval_idx = range(EVAL_OFFSET, EVAL_OFFSET + n_eval)
    imgs: dict[str, Tensor] = {}
    u8s: dict[str, np.ndarray] = {}
    geo = None
    for d in needed:
        u8s[d], geo_np = render_domain(d, eval_idx, size, seed)
        imgs[d] = _to_float(u8s[d])
        geo = torch.from_numpy(geo_np)
    assert geo is not None
    metrics: dict[str, Any] = {"n_eval_per_domain": n_eval}
    preds = {d: _predict(reg, imgs[d], 256, device) for d in domains}
    all_true = geo.repeat(len(domains), 1)
    r2 = _r2(torch.cat([preds[d] for d in domains]), all_true)
    gd = torch.Generator().manual_seed(seed + 2)
    gan = torch.cat([_predict(reg, degrade(imgs[d], gd, p=1.0), 256, device) for d in domains])
    r2_gan = _r2(gan, all_true)
    metrics["r2_mean"] = float(r2.mean())
    metrics["r2_per_field"] = {f: float(v) for f, v in zip(GEOMETRY_FIELDS, r2)}
    metrics["r2_mean_gan"] = float(r2_gan.mean())
    metrics["r2_per_field_gan"] = {f: float(v) for f, v in zip(GEOMETRY_FIELDS, r2_gan)}
    metrics["r2_per_domain"] = {d: float(_r2(preds[d], geo).mean()) for d in domains}
    metrics["mae_per_domain"] = {d: float((preds[d] - geo).abs().mean()) for d in domains}
    probs = {d: torch.sigmoid(_predict(clf, imgs[d], 256, device)) for d in needed}
    metrics["accuracy"] = float(torch.cat([probs["photo"] < 0.5, probs[target] >= 0.5]).float().mean())
    gb = torch.Generator().manual_seed(seed + 1)
    pb = {d: torch.sigmoid(_predict(clf, _blur_all(imgs[d], gb), 256, device)) for d in ("photo", target)}
    metrics["accuracy_blurred"] = float(torch.cat([pb["photo"] < 0.5, pb[target] >= 0.5]).float().mean())
    metrics["cartoon_prob_per_domain"] = {d: float(probs[d].mean()) for d in needed}
    # Does it read the face? The same faces with their backgrounds painted mid grey (exact masks).
    grey = {}
    for d in ("photo", target):
        mask = torch.from_numpy(np.stack([background_mask(sample_params(i, seed), d, size, u8s[d][j])
                                          for j, i in enumerate(eval_idx)]))
        x = torch.where(mask[:, None], torch.zeros_like(imgs[d]), imgs[d])
        grey[d] = float(torch.sigmoid(_predict(clf, x, 256, device)).mean())
    metrics["cartoon_prob_grey_background"] = grey
    # typical size of each half of probe_features (RMS over held-out renders of every domain)
    allx = torch.cat([imgs[d] for d in needed])
    metrics["feature_scale"] = [float(_predict(m.embed, allx, 256, device).pow(2).mean().sqrt().clamp_min(1e-6))
                                for m in (reg, clf)]
    bundle.to("cpu")
    return metrics


def _blur_all(x: Tensor, g: torch.Generator) -> Tensor:
    """Every image blurred by a half-resolution round trip (how soft a 64-px GAN sample looks)."""
    h = x.shape[-1]
    small = F.interpolate(x, size=(h // 2, h // 2), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, h), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- scoring generators


@torch.no_grad()
def structure_references(bundle: ProbeBundle, domain: str | None = None, n: int = 200, seed: int = 0,
                         min_r2: float = SCORE_MIN_R2) -> tuple[float, float]:
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
    min_r2: float = SCORE_MIN_R2,
    shared_w: bool = False,
) -> Tensor:
    """Per-latent structure error [n]: mean over the readable geometry fields
    (:meth:`ProbeBundle.readable_fields` with ``min_r2``) of |reading(src) − reading(tgt)|.

    Both images come from the *same* z, each mapped by its own generator's mapping network
    (truncated toward that network's mean w) — the sample a user gets for that seed from each
    model — and the same const noise (fine-tuning never changes the noise buffers). A method
    that trains the mapping network (FreezeSG's later style entries, FreezeD, structure loss) is
    scored with what that mapping does. ``shared_w=True`` renders the target from the *source's*
    w instead (the shared-latent figures of Cartoon-StyleGAN's notebooks), which ignores the
    target's mapping. ``src_predictions`` skips re-rendering the source when scoring many targets.
    """
    a = src_predictions if src_predictions is not None else geometry_predictions(bundle, G_src, G_src, n, seed, batch,
                                                                                 truncation)
    b = geometry_predictions(bundle, G_tgt, G_src if shared_w else G_tgt, n, seed, batch, truncation)
    return (a - b).abs()[:, bundle.readable_fields(min_r2)].mean(1)


def structure_error(
    bundle: ProbeBundle,
    G_src: Generator,
    G_tgt: Generator,
    n: int = 1000,
    seed: int = 0,
    batch: int = 64,
    truncation: float = 0.7,
    min_r2: float = SCORE_MIN_R2,
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


# --------------------------------------------------------------------------- sample quality

#: Face indices of the quality score's two render sets: fresh faces, not the training stream, the
#: held-out set or the structure references.
QUALITY_OFFSETS = (3 * EVAL_OFFSET, 4 * EVAL_OFFSET)


@torch.no_grad()
def probe_features(bundle: ProbeBundle, images: Tensor, batch: int = 256) -> Tensor:
    """The probes' penultimate features of ``images`` [N,3,H,W] in [-1, 1]: the regressor's (face
    geometry) and the classifier's (drawing style) hidden units side by side, [N, 256 + 256] for v2
    probes, float32 on the CPU.

    Each half is divided by its typical size on held-out renders (``metrics["feature_scale"]``,
    stored by :func:`evaluate_probes`), so geometry and style weigh alike in a distance."""
    scale = bundle.metrics.get("feature_scale") or [1.0, 1.0]
    dev = bundle.device
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].to(dev)
        out.append(torch.cat([bundle.regressor.embed(x) / scale[0], bundle.classifier.embed(x) / scale[1]], 1)
                   .float().cpu())
    return torch.cat(out)


def render_features(bundle: ProbeBundle, domain: str, n: int, offset: int, seed: int = 0,
                    batch: int = 256) -> Tensor:
    """:func:`probe_features` of ``n`` fresh renders of ``domain`` (faces ``offset``, ``offset+1``, …)."""
    size = int(bundle.config["size"])
    out = []
    for i in range(0, n, batch):
        u8, _ = render_domain(domain, range(offset + i, offset + min(n, i + batch)), size, seed)
        out.append(probe_features(bundle, _to_float(u8), batch))
    return torch.cat(out)


@torch.no_grad()
def generator_samples(G: Generator, n: int = 2000, seed: int = 0, truncation: float = 1.0,
                      batch: int = 64) -> Iterator[Tensor]:
    """The samples the quality score reads, ``batch`` at a time: z(``seed``) (:func:`fixed_latents`),
    ``G``'s own mapping and truncation, per-pixel noise drawn from ``seed`` (the samples the generator
    really makes)."""
    dev = G.w_avg.device
    z = fixed_latents(G.style_dim, n, seed)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, n, batch):
            w = G.mapping(z[i : i + batch].to(dev), truncation=truncation)
            yield G.synthesis(w, noise_mode="random").image.float()


@torch.no_grad()
def generator_features(bundle: ProbeBundle, G: Generator, n: int = 2000, seed: int = 0, truncation: float = 1.0,
                       batch: int = 64) -> Tensor:
    """:func:`probe_features` of :func:`generator_samples`."""
    bundle.to(G.w_avg.device).eval()
    return torch.cat([probe_features(bundle, x, batch) for x in generator_samples(G, n, seed, truncation, batch)])


@dataclass
class QualityScore:
    """A generator's Fréchet distance to its domain in the probes' feature space, with references.

    ``floor``: two independent sets of renders of ``domain`` (what a perfect generator scores at
    this ``n``: the estimate's own finite-sample bias). ``scale``: photo renders vs the cartoon
    domain's (``scale_domains``): what drawing in the wrong domain altogether scores."""

    score: float
    floor: float
    scale: float
    domain: str
    scale_domains: tuple[str, str]
    n: int
    truncation: float
    seed: int
    #: the same distance on each half of the features alone: the regressor's (face geometry) and the
    #: classifier's (drawing style); says which of the two a generator misses
    score_geometry: float | None = None
    score_style: float | None = None
    #: which geometry fields the samples get wrong (:class:`FieldShift`, worst first): the geometry
    #: half's distance is over 256 hidden units, which name nothing a person can look for
    fields: list["FieldShift"] | None = None

    @property
    def relative(self) -> float:
        """(score − floor) / (scale − floor): 0 = as close as renders get, 1 = as far as the other domain."""
        return (self.score - self.floor) / max(self.scale - self.floor, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "scale_domains": list(self.scale_domains), "relative": self.relative,
                "fields": [f.to_dict() for f in self.fields] if self.fields is not None else None}

    def field_table(self) -> str:
        """The per-field breakdown as a Markdown table, worst field first."""
        rows = ["| field | held-out R² | mean shift (render sd) | sd ratio | distance |", "|---|---:|---:|---:|---:|"]
        for f in self.fields or []:
            r2 = "—" if f.r2 is None else f"{f.r2:.2f}"
            rows.append(f"| {f.field} | {r2} | {f.mean_shift:+.3f} | {f.sd_ratio:.3f} | {f.distance:.3f} |")
        return "\n".join(rows)

    def line(self) -> str:
        a, b = self.scale_domains
        return (f"quality score (probe-feature Fréchet distance to {self.domain} renders, n={self.n}, "
                f"truncation {self.truncation:g}): {self.score:.3f}; floor (renders vs renders) {self.floor:.3f}; "
                f"scale ({a} vs {b} renders) {self.scale:.3f}; relative {self.relative:.3f}"
                + (f" (geometry features alone {self.score_geometry:.3f}, style features alone {self.score_style:.3f})"
                   if self.score_geometry is not None and self.score_style is not None else ""))


@dataclass
class FieldShift:
    """How one geometry field's regressor readings of a generator's samples differ from the renders'.

    ``mean_shift``: (mean over samples − mean over renders) / sd over renders; ``sd_ratio``: sd over
    samples / sd over renders (< 1: the generator draws that feature with too little variety).
    ``r2``: the regressor's held-out R² for the field on generator-like images: where it is low the
    readings are noisy and a too-wide ``sd_ratio`` is partly the regressor's, not the generator's."""

    field: str
    mean_shift: float
    sd_ratio: float
    r2: float | None = None

    @property
    def distance(self) -> float:
        """The 1-D Fréchet distance of the two reading distributions, in units of the renders' variance."""
        return self.mean_shift ** 2 + (self.sd_ratio - 1) ** 2

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "distance": self.distance}


@torch.no_grad()
def readings_from_features(bundle: ProbeBundle, feats: Tensor) -> Tensor:
    """The regressor's readings [N, F] (units of ``geometry_vector()``) from :func:`probe_features`'
    geometry half: the head's last layer on the unscaled hidden units, so the quality score's one
    pass over the samples also says which fields are off."""
    reg = bundle.regressor
    h = reg.head[1].out_features
    scale = (bundle.metrics.get("feature_scale") or [1.0, 1.0])[0]
    last = reg.head[3]
    x = feats[:, :h].to(last.weight.device, last.weight.dtype) * scale
    return (last(x) * reg.target_std + reg.target_mean).float().cpu()


def field_shifts(bundle: ProbeBundle, feats: Tensor, ref: Tensor) -> list[FieldShift]:
    """:class:`FieldShift` per geometry field between features ``feats`` (a generator's samples) and
    ``ref`` (renders), both from :func:`probe_features`; worst (largest distance) first."""
    a, b = readings_from_features(bundle, feats), readings_from_features(bundle, ref)
    sd = b.std(0).clamp_min(1e-8)
    r2 = bundle.field_r2()
    out = [FieldShift(name, float((a[:, j].mean() - b[:, j].mean()) / sd[j]), float(a[:, j].std() / sd[j]),
                      r2.get(name)) for j, name in enumerate(GEOMETRY_FIELDS[: a.shape[1]])]
    return sorted(out, key=lambda f: f.distance, reverse=True)


def _fd(a: Tensor, b: Tensor) -> float:
    from metrics.fid import feature_statistics, frechet_distance

    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


def domain_references(bundle: ProbeBundle, domain: str = "photo", n: int = 2000, seed: int = 0,
                      log: Callable[[str], None] | None = None) -> tuple[Tensor, float, float, tuple[str, str]]:
    """(features of the reference renders of ``domain``, floor, scale, scale domains) for
    :func:`quality_score`; separate so one set of references scores many generators."""
    if domain not in DOMAINS:
        raise UserInputError(f"unknown synthetic domain {domain!r}; choose from {', '.join(DOMAINS)}")
    if n < 2:
        raise UserInputError("the quality score needs n ≥ 2 samples")
    say = log or (lambda s: None)
    other = bundle.target if domain == "photo" else domain
    ref = render_features(bundle, domain, n, QUALITY_OFFSETS[0], seed)
    second = render_features(bundle, domain, n, QUALITY_OFFSETS[1], seed)
    floor = _fd(second, ref)
    # photo renders of the second set vs the cartoon domain's first: different faces, as in the score
    photo_b = second if domain == "photo" else render_features(bundle, "photo", n, QUALITY_OFFSETS[1], seed)
    cartoon_a = ref if domain != "photo" else render_features(bundle, other, n, QUALITY_OFFSETS[0], seed)
    scale = _fd(photo_b, cartoon_a)
    say(f"references: {n} + {n} {domain} renders (floor {floor:.3f}), photo vs {other} (scale {scale:.3f})")
    return ref, floor, scale, ("photo", other)


def quality_score(bundle: ProbeBundle, G: Generator, domain: str = "photo", n: int = 2000, seed: int = 0,
                  truncation: float = 1.0, batch: int = 64, log: Callable[[str], None] | None = None,
                  references: tuple[Tensor, float, float, tuple[str, str]] | None = None) -> QualityScore:
    """Sample quality of ``G`` for a synthetic ``domain``: the Fréchet distance between the probes'
    features (:func:`probe_features`) of ``n`` samples of ``G`` and of ``n`` fresh renders of the
    domain, with its floor and scale (:class:`QualityScore`). Lower is better; the floor is the
    best a generator can score at this ``n``. ``references`` from :func:`domain_references`."""
    ref, floor, scale, pair = references if references is not None else domain_references(bundle, domain, n, seed,
                                                                                            log)
    feats = generator_features(bundle, G, n, seed, truncation, batch)
    bundle.to("cpu")
    h = bundle.regressor.head[1].out_features  # the regressor's half of probe_features
    return QualityScore(_fd(feats, ref), floor, scale, domain, pair, n, float(truncation), int(seed),
                        _fd(feats[:, :h], ref[:, :h]), _fd(feats[:, h:], ref[:, h:]), field_shifts(bundle, feats, ref))


# --------------------------------------------------------------------------- CLI


@click.group(name="probes", cls=ToonGroup)
def main() -> None:
    """Train or inspect the structure/style probes used by finetune/compare.py; score a generator's samples."""


@main.command(name="train", aliases={"--steps": "--iters"})
@click.option("--out", type=click.Path(dir_okay=False), default=str(DEFAULT_PROBES), help="Bundle to write.")
@click.option("--domains", default=",".join(DOMAINS),
              help="Domains the structure regressor learns from (comma-separated).")
@click.option("--target", default="webtoon", help="Cartoon domain the style classifier detects.")
@click.option("--n-per-domain", type=click.IntRange(1), default=None,
              help="Reuse this many faces [default: fresh faces every batch].")
@click.option("--size", type=click.IntRange(32, 512), default=PROBE_SIZE,
              help="Probe input resolution (images of other sizes are resized).")
@click.option("--iters", type=click.IntRange(0), default=1000,
              help="Regressor steps (0 with --init: keep its regressor, train only the classifier).")
@click.option("--classifier-steps", type=click.IntRange(1), default=None,
              help="Classifier steps [iters/4; 400 with --iters 0].")
@click.option("--batch", type=click.IntRange(2), default=64)
@click.option("--width", type=click.IntRange(4), default=32, help="Regressor width (channels of its 32-px stage).")
@click.option("--classifier-width", type=click.IntRange(4), default=16)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=2e-3)
@click.option("--n-eval", type=click.IntRange(2), default=300, help="Held-out faces per domain.")
@click.option("--seed", type=int, default=0)
@click.option("--device", default="auto")
@click.option("--init", "init_path", type=click.Path(dir_okay=False), default=None,
              help="Start from this bundle's weights (train longer without starting over).")
@click.option("--workers", type=click.IntRange(0), default=0, show_default=True,
              help="Processes drawing the training faces (0: one thread; on a GPU use most CPU cores).")
@click.option("--classifier-backgrounds", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of the classifier's training images whose background is replaced by a random one, so "
                   "it reads the face, not the backdrop (0.5 recommended; 0: as the bundled probes were trained).")
def train_cmd(out: str, domains: str, target: str, n_per_domain: int | None, size: int, iters: int,
              classifier_steps: int | None, batch: int, width: int, classifier_width: int, lr: float, n_eval: int,
              seed: int, device: str, init_path: str | None, workers: int, classifier_backgrounds: float) -> None:
    """Train both probes on synthetic faces rendered on the fly (minutes to an hour on two CPU cores)."""
    from toonlab.runtime import pick_device

    with user_errors():
        dev = pick_device(device)
        names = [d.strip() for d in domains.split(",") if d.strip()]
        init = ProbeBundle.load(init_path) if init_path else None
        bundle = train_probes(names, target, n_per_domain, size, iters, batch, seed, dev,
                              classifier_steps=classifier_steps, n_eval=n_eval, width=width,
                              classifier_width=classifier_width, lr=lr, log=click.echo, show_progress=True,
                              init=init, workers=workers, classifier_backgrounds=classifier_backgrounds)
        bundle.save(out)
    click.echo(f"wrote {out}")
    _echo_metrics(bundle)


@main.command(name="show")
@click.argument("path", type=click.Path(dir_okay=False), default=str(DEFAULT_PROBES))
def show_cmd(path: str) -> None:
    """Print how a probe bundle was trained and its held-out quality (R² per geometry field)."""
    with user_errors():
        bundle = ProbeBundle.load(path)
    click.echo(f"{path}: {bundle.config}")
    if bundle.is_old:
        click.echo(f"note: an old-format bundle ({bundle.config['format']}); retrain with python -m metrics.probes "
                   f"train for the current probes")
    _echo_metrics(bundle)


@main.command(name="quality")
@click.option("--ckpt", required=True, type=click.Path(dir_okay=False), help="Generator checkpoint to score.")
@click.option("--domain", default="photo", help="Synthetic domain the generator draws.")
@click.option("--n", type=click.IntRange(2), default=2000, help="Generator samples, and renders per reference set.")
@click.option("--truncation", type=click.FloatRange(0, 1), default=1.0)
@click.option("--probes", type=click.Path(dir_okay=False), default=None,
              help="Probe bundle [the bundled one whose classifier detects --domain, else probes64.pt].")
@click.option("--seed", type=int, default=0)
@click.option("--batch", type=click.IntRange(1), default=64)
@click.option("--device", default="auto")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the result to this JSON file.")
@click.option("--fields", "show_fields", is_flag=True,
              help="Also print which geometry fields the samples get wrong (a table, worst first).")
def quality_cmd(ckpt: str, domain: str, n: int, truncation: float, probes: str | None, seed: int, batch: int,
                device: str, json_path: str | None, show_fields: bool) -> None:
    """Sample quality: Fréchet distance in the probes' feature space between the generator's samples
    and fresh renders of DOMAIN, with its floor (renders vs renders) and scale (photo vs cartoon renders)."""
    from stylegan2.checkpoint import load_generator
    from toonlab.atomic import write_json_atomic
    from toonlab.runtime import pick_device

    with user_errors():
        if not Path(ckpt).is_file():
            raise UserInputError(f"generator checkpoint not found: {ckpt}")
        probes = probes or str(probes_for(domain))
        bundle = ProbeBundle.load(probes)
        G = load_generator(ckpt, "g_ema", pick_device(device))
        q = quality_score(bundle, G, domain, n, seed, truncation, batch, log=click.echo)
    click.echo(q.line())
    if show_fields:
        click.echo(q.field_table())
    if json_path:
        write_json_atomic(json_path, {"ckpt": ckpt, "probes": probes, **q.to_dict()})
        click.echo(f"wrote {json_path}")


def _echo_metrics(bundle: ProbeBundle) -> None:
    m = bundle.metrics
    click.echo(bundle.summary())
    if "r2_per_field" in m:
        gan = m.get("r2_per_field_gan") or {}
        click.echo("held-out R² per field" + ("   crisp  GAN-look" if gan else ""))
        for k, v in m["r2_per_field"].items():
            click.echo(f"  {k:16s} {v:6.3f}" + (f"  {gan[k]:6.3f}" if k in gan else ""))
    for key, label in (("r2_per_domain", "R² per domain"), ("cartoon_prob_per_domain", "P(cartoon) per domain")):
        if m.get(key):
            click.echo(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in m[key].items()))


if __name__ == "__main__":
    main()
