"""The bundled models (``toonlab/assets/``): which ship with the repository, found by file name.

- ``source_synthetic64.pt``: the source (face) StyleGAN2;
- ``cartoon_<domain>64.pt``: cartoon StyleGAN2s fine-tuned from it, one per domain
  (``cartoon_webtoon64.pt``, ``cartoon_sketch64.pt``, …);
- ``<model>_<domain>.pt`` with model ``animegan2``, ``animegan``, ``cartoongan`` or ``cyclegan``:
  photo → cartoon translators (``animegan2_webtoon.pt``);
- ``encoder_synthetic64.pt`` (image → W+ for the source);
- ``probes64.pt`` (the metric probes: geometry regressor + photo-vs-webtoon classifier) and
  ``probes64_<target>.pt`` (the same regressor with a classifier for another cartoon domain).

Each comes with a one-line label read from the file's own metadata (what the trainer recorded:
data, method, steps), else its file name, so a page or a menu can say what each model is without
anyone keeping a second list in sync.

Layer 1: files are read with the core checkpoint reader only and no network is built, so any
layer (the demo, the app, a test) may ask what is bundled; loading a model is its family's job
(``stylegan2.checkpoint.load_generator``, ``translation.models.load_generator``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toonlab.checkpoint import CheckpointError, file_key, load_torch_file
from toonlab.runtime import ASSETS

__all__ = ["FOLDER", "MAX_TOTAL_BYTES", "SOURCE_NAME", "TRANSLATOR_MODELS", "Bundled", "folder", "source",
           "cartoons", "translators", "translator", "encoder", "probes", "probe_sets", "models", "asset_files",
           "total_bytes", "label_of", "describe", "trained_kimg", "DEFAULT_TRANSLATOR"]

#: Where the bundled files live. Module-level so tests (and a packager) can point it elsewhere.
FOLDER: Path = ASSETS
#: The issue's cap on everything under ``toonlab/assets/`` (decimal megabytes: 40 MB = 40·10⁶ bytes),
#: so that a clone and a wheel stay small.
MAX_TOTAL_BYTES = 40_000_000

SOURCE_NAME = "source_synthetic64.pt"
ENCODER_NAME = "encoder_synthetic64.pt"
PROBES_NAME = "probes64.pt"
#: The translator architectures whose files are recognised by their name prefix.
TRANSLATOR_MODELS = ("animegan2", "animegan", "cartoongan", "cyclegan")
#: The translator ``translate`` (no ``--ckpt``) and the app (no ``--translator``) use, through
#: :func:`translator` (the webtoon AnimeGANv2 of issue 14; ``translate --export-pt`` writes it).
DEFAULT_TRANSLATOR = "animegan2_webtoon.pt"

_CARTOON_RE = re.compile(r"cartoon_(?P<domain>[a-z0-9-]+?)(?P<size>\d+)?\.pt")
_PROBES_RE = re.compile(r"probes(?P<size>\d+)(?:_(?P<target>[a-z0-9-]+))?\.pt")
_TRANSLATOR_RE = re.compile(rf"(?P<model>{'|'.join(TRANSLATOR_MODELS)})_(?P<domain>[a-z0-9-]+)\.pt")


@dataclass(frozen=True)
class Bundled:
    """One bundled model: its kind, short name (``source``, the domain, ``animegan2_webtoon``), file and label."""

    kind: str  # "source" | "cartoon" | "translator" | "encoder" | "probes"
    name: str
    path: Path
    label: str

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


def folder() -> Path:
    return Path(FOLDER)


def _entry(kind: str, name: str, path: Path) -> Bundled | None:
    return Bundled(kind, name, path, label_of(path)) if path.is_file() else None


def source() -> Bundled | None:
    """The source (face) generator, or None when it is not there."""
    return _entry("source", "source", folder() / SOURCE_NAME)


def cartoons() -> list[Bundled]:
    """The cartoon generators ``cartoon_<domain>[size].pt``, sorted by domain."""
    out = []
    for p in sorted(folder().glob("cartoon_*.pt")):
        m = _CARTOON_RE.fullmatch(p.name)
        if m and p.is_file():
            out.append(Bundled("cartoon", m["domain"], p, label_of(p)))
    return out


def translators() -> list[Bundled]:
    """The photo → cartoon translators ``<model>_<domain>.pt``, the default one first."""
    out = []
    for p in sorted(folder().glob("*.pt"), key=lambda p: (p.name != DEFAULT_TRANSLATOR, p.name)):
        m = _TRANSLATOR_RE.fullmatch(p.name)
        if m and p.is_file():
            out.append(Bundled("translator", p.stem, p, label_of(p)))
    return out


def translator() -> Bundled | None:
    """The default translator (``animegan2_webtoon.pt``), else the first one bundled, else None."""
    found = translators()
    return found[0] if found else None


def encoder() -> Bundled | None:
    return _entry("encoder", "encoder", folder() / ENCODER_NAME)


def probes() -> Bundled | None:
    """The default probe bundle (``probes64.pt``: its classifier detects webtoon), or None."""
    return _entry("probes", "probes", folder() / PROBES_NAME)


def probe_sets() -> list[Bundled]:
    """Every bundled probe bundle, the default first: ``probes64.pt``, then ``probes64_<target>.pt``
    (one per cartoon domain its style classifier detects; the file's config says which)."""
    out = []
    for p in sorted(folder().glob("probes*.pt"), key=lambda p: (p.name != PROBES_NAME, p.name)):
        if _PROBES_RE.fullmatch(p.name) and p.is_file():
            out.append(Bundled("probes", p.stem, p, label_of(p)))
    return out


def models() -> list[Bundled]:
    """Every bundled model: the source, the cartoons, the translators, the encoder, the probes."""
    src, enc = source(), encoder()
    return ([src] if src else []) + cartoons() + translators() + ([enc] if enc else []) + probe_sets()


def asset_files() -> list[Path]:
    """Every file under the assets folder (models and the app's page alike: all of it ships)."""
    return sorted(p for p in folder().rglob("*") if p.is_file())


def total_bytes() -> int:
    return sum(p.stat().st_size for p in asset_files())


# ---------------------------------------------------------------------------------------- labels

_LABELS: dict[tuple[str, int, int], str] = {}


def label_of(path: str | Path) -> str:
    """A one-line label from the file's metadata (memoised per path, size and mtime), else its name."""
    p = Path(path)
    key = file_key(p)
    if key not in _LABELS:
        try:
            obj = load_torch_file(p, "bundled model")
        except CheckpointError:
            # An unreadable file is reported by whoever loads it; a label only names it.
            _LABELS[key] = p.name
        else:
            _LABELS[key] = describe(obj, p.name)
    return _LABELS[key]


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def trained_kimg(step: Any, batch: Any, nimg: Any = None) -> float | None:
    """Thousands of images a run has seen: the count the trainer recorded (``nimg``) when there is one,
    else step × batch — which overstates a run warm-restarted at a larger batch (the bundled source:
    batch 16, then 32). None when neither is known."""
    if isinstance(nimg, int):
        return nimg / 1000
    if isinstance(step, int) and isinstance(batch, int) and batch > 0:
        return step * batch / 1000
    return None


def _kimg(step: Any, batch: Any, nimg: Any = None) -> str:
    kimg = trained_kimg(step, batch, nimg) if isinstance(step, int) else None
    if kimg is not None:
        return f", {step:,} steps ({kimg:.1f} kimg)" if kimg < 10 else f", {step:,} steps ({kimg:.0f} kimg)"
    return f", {step:,} steps" if isinstance(step, int) else ""


def _methods(cfg: dict[str, Any]) -> str:
    parts = [f"{name} {cfg[key]}" for key, name in (("freeze", "FreezeSG"), ("freeze_g", "FreezeG"),
                                                    ("freeze_d", "FreezeD"), ("structure_loss", "structure loss"))
             if cfg.get(key)]
    return " + ".join(parts) or "no freezing, no structure loss"


def describe(obj: Any, name: str) -> str:
    """The label of a loaded file: its recorded ``label``/``description``, else one made from what its
    trainer recorded (StyleGAN2 pretraining or fine-tuning, translator, encoder, probes), else ``name``."""
    if not isinstance(obj, dict):
        return name
    meta = obj.get("toonlab") if isinstance(obj.get("toonlab"), dict) else {}
    for holder in (meta, obj):
        for key in ("label", "description"):
            if isinstance(holder.get(key), str) and _first_line(holder[key]):
                return _first_line(holder[key])
    cfg = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    step = meta.get("step", obj.get("step"))
    if isinstance(meta.get("g_config"), dict) or ("g_ema" in obj and meta.get("model") in (None, "stylegan2")):
        size = (meta.get("g_config") or {}).get("size") or cfg.get("size")
        what = f"StyleGAN2 {size} px" if size else "StyleGAN2"
        data = cfg.get("data")
        if cfg.get("source") or "freeze" in cfg:  # a fine-tuning config names its source
            src = f" from {Path(str(cfg['source'])).name}" if cfg.get("source") else ""
            to = f" to {data}" if data else ""
            return f"{what} fine-tuned{src}{to}: {_methods(cfg)}{_kimg(step, cfg.get('batch'))}"
        kimg = _kimg(step, cfg.get("batch"), meta.get("nimg"))
        return f"{what} trained on {data}{kimg}" if data else f"{what}{_kimg(step, None, meta.get('nimg'))}"
    if meta.get("model") in TRANSLATOR_MODELS or meta.get("model") == "animegan2-lite":
        out = f"{meta['model']} translator"
        if cfg.get("photos") or cfg.get("style"):
            out += f" {cfg.get('photos') or 'photos'} → {cfg.get('style') or 'style'}"
        # A slim export (translation.models.export_generator) records its training crop at the top.
        size = meta.get("size") or cfg.get("size")
        how = [f"{meta['preset']} preset"] if meta.get("preset") else []
        how += [f"{size} px crops"] if isinstance(size, int) else []
        if how:
            out += f" ({', '.join(how)})"
        return out + _kimg(step, None)
    fmt = obj.get("format")
    if isinstance(fmt, str) and fmt.startswith("toonlab-encoder"):
        info = obj.get("info") if isinstance(obj.get("info"), dict) else {}
        gen = f" for {Path(str(obj['generator'])).name}" if obj.get("generator") else ""
        return f"image → W+ encoder{gen}{_kimg(info.get('step'), (info.get('config') or {}).get('batch'))}"
    if isinstance(fmt, str) and fmt.startswith("toonlab-probes"):
        pc = obj.get("config") if isinstance(obj.get("config"), dict) else {}
        domains = ", ".join(pc.get("domains") or [])
        clf = f"photo-vs-{pc['target']} classifier" if pc.get("target") else "style classifier"
        return f"metric probes (geometry regressor + {clf}){' on ' + domains if domains else ''}" + \
            (f", {pc['size']} px" if pc.get("size") else "")
    return name
