"""The comparison's other road: photo → cartoon translators applied to the source generator's renders.

A translator row is scored *exactly* as a fine-tuned generator: :class:`TranslatedGenerator` wraps
the source so that ``synthesis`` returns the translated render of the same w and noise, and the
unchanged scorers of ``metrics/probes.py`` (structure error against the source's own render of
the same z, style score, quality) read it like any other generator. The identity translator
therefore scores the source's numbers exactly (structure error 0).

Translators come from files (``translation/train.py``'s AnimeGAN/CartoonGAN checkpoints, CycleGAN
checkpoints, StarGAN v2 checkpoints, animegan2-pytorch port files) or are trained here on the
built-in ``synthetic:photo`` → ``synthetic:TARGET`` faces with the translation trainers' importable
``train`` functions (resumable run folders).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from stylegan2.networks import Generator, SynthesisOutput
from toonlab.errors import UserInputError

__all__ = ["TRAINABLE", "TranslatedGenerator", "TranslatorSpec", "load_translator", "train_translator",
           "translator_target", "parse_translators", "parse_translator_arch", "format_translator_arch"]

#: Translators ``--train-translators`` can train (the family's trainer decides the recipe).
TRAINABLE = ("animegan2", "cartoongan", "cyclegan")
#: Share of ``--translator-iters`` AnimeGANv2/CartoonGAN spend in the content-only initialisation
#: phase (as metrics/translation_comparison.py does, so the two studies train alike).
INIT_FRAC = 0.2
#: Synthetic images per domain the translators train on.
SYNTHETIC_LENGTH = 1000


class TranslatedGenerator:
    """``G`` whose ``synthesis`` images pass through ``translate`` ([N,3,H,W] in [-1, 1] → same).

    Everything else (``mapping``, ``w_avg``, ``const_noise``, ``config`` …) is ``G``'s, so the
    probes map and render it exactly as they map and render ``G``."""

    def __init__(self, G: Generator, translate: Callable[[Tensor], Tensor]) -> None:
        self._G = G
        self._translate = translate

    def __getattr__(self, name: str) -> Any:  # only called for names not set on the wrapper
        return getattr(self._G, name)

    @torch.no_grad()
    def synthesis(self, w: Tensor, *args: Any, **kw: Any) -> SynthesisOutput:
        out = self._G.synthesis(w, *args, **kw)
        if out.image is None:
            return out
        y = self._translate(out.image.float()).to(out.image.device, torch.float32).clamp(-1, 1)
        return dataclasses.replace(out, image=y)


@dataclass
class TranslatorSpec:
    """A translator to score: its file, the target it draws and its row label."""

    path: str
    target: str
    model: str
    label: str
    trained_here: bool = False


def _meta(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from toonlab.checkpoint import load_torch_file

    obj = load_torch_file(path, "translator checkpoint")
    if not isinstance(obj, dict):
        raise UserInputError(f"{path} is not a translator checkpoint")
    meta = obj.get("toonlab") if isinstance(obj.get("toonlab"), dict) else {}
    return obj, meta


def translator_target(path: str | Path, targets: list[str]) -> tuple[str | None, str]:
    """(the synthetic target among ``targets`` the checkpoint was trained to draw — None when it does
    not say —, its model name). Read from the run's recorded ``style`` data (``synthetic:NAME[:N]``)
    or, for StarGAN v2, its domains."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"--translators: translator checkpoint not found: {path}")
    obj, meta = _meta(path)
    model = str(meta.get("model") or "")
    if not model:
        from translation.models import infer_model

        sd = obj.get("g") if isinstance(obj.get("g"), dict) else obj.get("state_dict", obj)
        model = infer_model(sd, path)
    if model == "stargan2":
        hits = [t for t in targets if t in (meta.get("domains") or [])]
        return (hits[0] if hits else None), model
    style = str((meta.get("config") or {}).get("style") or "")
    m = re.match(r"^synthetic:([A-Za-z]+)", style)
    return (m.group(1) if m and m.group(1) in targets else None), model


def parse_translators(value: str | list[str] | None, targets: list[str]) -> list[TranslatorSpec]:
    """``PATH[,PATH…]`` or ``TARGET=PATH``: each translator with the target it is scored on (read from
    the checkpoint when not given). A translator whose target cannot be told is a one-line error."""
    items = value if isinstance(value, list) else [v for v in (value or "").split(",")]
    out = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        target, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        found, model = translator_target(path, targets)
        target = target or found or ""
        if target not in targets:
            raise UserInputError(f"--translators {item}: cannot tell which of the targets ({', '.join(targets)}) this "
                                 f"translator draws; write it as TARGET={path}")
        out.append(TranslatorSpec(path, target, model, f"{model} (translation)"))
    return out


def load_translator(spec: TranslatorSpec, device: torch.device, seed: int = 0) -> Callable[[Tensor], Tensor]:
    """The photo → cartoon function of a translator checkpoint, on ``device``, fp32.

    StarGAN v2 is latent-guided with one fixed style code for the target domain (drawn from
    ``seed``), so every image gets the same style as a single-style translator would give it."""
    path = Path(spec.path)
    if spec.model == "stargan2":
        from translation.stargan2_inference import domain_index, load_stargan2, translate

        nets, meta = load_stargan2(path, device)
        d = domain_index(meta["domains"], spec.target)
        z = torch.randn(1, nets.arch["latent_dim"], generator=torch.Generator().manual_seed(seed))
        return lambda x: translate(nets, x, d, z=z.repeat(len(x), 1))
    from translation.inference import Translator

    if spec.model == "cyclegan":
        from translation.models import load_cyclegan

        G, _ = load_cyclegan(path, "a2b", device)
    else:
        from translation.models import load_generator

        G, _ = load_generator(path, device)
    return Translator(G, device, precision="fp32", fuse=False)


#: Config fields ``--translator-arch`` may set (the networks' sizes; the recipe stays the trainer's).
ARCH_FIELDS = {"cyclegan": ("ngf", "ndf", "n_blocks")}


def parse_translator_arch(value: str | None) -> dict[str, dict[str, int]]:
    """``MODEL.FIELD=N[,…]`` (e.g. ``cyclegan.ngf=32,cyclegan.n_blocks=6``) → ``{model: {field: N}}``,
    the per-model config overrides of the trained translators; a bad item is a one-line error."""
    out: dict[str, dict[str, int]] = {}
    for item in (i.strip() for i in (value or "").split(",")):
        if not item:
            continue
        m = re.fullmatch(r"([a-z0-9]+)\.([a-z_]+)=([0-9]+)", item)
        if m is None or m.group(2) not in ARCH_FIELDS.get(m.group(1), ()):
            known = ", ".join(f"{k}.{f}" for k, fs in ARCH_FIELDS.items() for f in fs)
            raise UserInputError(f"--translator-arch {item!r}: write MODEL.FIELD=N with one of {known}")
        if int(m.group(3)) < 1:
            raise UserInputError(f"--translator-arch {item!r}: sizes are at least 1")
        out.setdefault(m.group(1), {})[m.group(2)] = int(m.group(3))
    return out


def format_translator_arch(arch: dict[str, dict[str, Any]]) -> str:
    """The ``--translator-arch`` text of ``arch`` (the inverse of :func:`parse_translator_arch`)."""
    return ",".join(f"{m}.{k}={v}" for m, fs in arch.items() for k, v in fs.items())


def _vgg_mode(mode: str, weights: str | None, log: Callable[[str], None]) -> str:
    if mode != "auto":
        return mode
    from losses.features import vgg19_features
    from toonlab.weights import WeightsNotFound

    try:
        vgg19_features(weights)
        return "imagenet"
    except WeightsNotFound:
        log("!! no ImageNet VGG19 weights found: AnimeGANv2/CartoonGAN train with RANDOM VGG19 content features "
            "(pass --translator-features-weights vgg19-dcbb9e9d.pth for the real ones)")
        return "random"


def train_translator(model: str, target: str, seed: int, out: Path, iters: int, size: int, batch: int,
                     device: str, log: Callable[[str], None], features: str = "auto",
                     features_weights: str | None = None, overrides: dict[str, Any] | None = None) -> Path:
    """Train (resume, or skip when done) one translator on ``synthetic:photo`` → ``synthetic:target``
    into ``out``; returns its last checkpoint."""
    from toonlab.run import CKPT_RE, RunDir

    if model not in TRAINABLE:
        raise UserInputError(f"--train-translators {model!r}: choose from {', '.join(TRAINABLE)}")
    latest = RunDir(out).latest()
    done = int(CKPT_RE.match(latest.name).group(1)) if latest is not None else 0
    if latest is not None and done >= iters:
        log(f"[{model} → {target}, seed {seed}] already trained ({latest}), skipping")
        return latest
    photos, style = f"synthetic:photo:{SYNTHETIC_LENGTH}", f"synthetic:{target}:{SYNTHETIC_LENGTH}"
    common = dict(photos=photos, style=style, out=str(out), size=size, batch=batch, seed=seed, device=device,
                  workers=0, tensorboard=False, sample_every=0, snapshot_every=max(1, iters // 4), keep=2,
                  synthetic_length=SYNTHETIC_LENGTH, **(overrides or {}))
    log(f"[{model} → {target}, seed {seed}] training {iters} iterations, batch {batch}, {size} px"
        + (f" (resuming at step {done})" if done else ""))
    echo = lambda msg: log(f"[{model}] {msg}")  # noqa: E731 - the trainers' one-line reports, tagged
    if model == "cyclegan":
        from translation.cyclegan_trainer import CycleGANConfig, train

        last = train(CycleGANConfig(iters=iters, **common), echo=echo)
    else:
        from translation.train import train
        from translation.trainer import TranslateConfig

        init = int(round(iters * INIT_FRAC))
        cfg = TranslateConfig(model=model, iters=iters - init, init_iters=init,
                              vgg=_vgg_mode(features, features_weights, log), vgg_weights=features_weights, **common)
        last = train(cfg, echo=echo)
    if last is None:
        raise UserInputError(f"{out}: the translator run wrote no checkpoint")
    return last
