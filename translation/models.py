"""Registry of the translation networks, and loading generators from any file users have.

``load_generator`` accepts our training checkpoints (``g`` / ``g_ema`` + a ``toonlab`` metadata
dict), bare generator state dicts in the animegan2-pytorch port's layout (the released
``face_paint_512_v2.pt``, ``paprika.pt``, ``celeba_distill.pt``; v2 vs lite told apart by the keys
and shapes) and bare state dicts of our other generators. Everything else is a one-line
``UserInputError`` naming the file. Files are read with ``weights_only=True``: a checkpoint never
runs code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from toonlab.atomic import torch_save_atomic
from toonlab.checkpoint import load_torch_file, read_checkpoint, sha256_file
from toonlab.errors import UserInputError
from translation.animegan import (
    AnimeGANDiscriminator,
    AnimeGANv1Generator,
    AnimeGANv2Generator,
)
from translation.cartoongan import CartoonGANDiscriminator, CartoonGANGenerator
from translation.cyclegan_networks import MODEL_NAME as CYCLEGAN
from translation.cyclegan_networks import CycleGANGenerator, PatchGANDiscriminator

__all__ = ["MODELS", "DISCRIMINATORS", "family", "build_generator", "build_discriminator", "load_generator",
           "infer_model", "load_cyclegan", "export_generator", "SLIM_FORMAT"]

MODELS: dict[str, Callable[[], nn.Module]] = {
    "animegan": AnimeGANv1Generator,
    "animegan2": AnimeGANv2Generator,
    "animegan2-lite": partial(AnimeGANv2Generator, lite=True),
    "cartoongan": CartoonGANGenerator,
    "cartoongan-improved": partial(CartoonGANGenerator, improved=True),
    "cyclegan": CycleGANGenerator,
}

DISCRIMINATORS: dict[str, Callable[[], nn.Module]] = {
    "animegan": AnimeGANDiscriminator,
    "animegan2": AnimeGANDiscriminator,
    "animegan2-lite": AnimeGANDiscriminator,
    "cartoongan": CartoonGANDiscriminator,
    "cartoongan-improved": partial(CartoonGANDiscriminator, improved=True),
    "cyclegan": PatchGANDiscriminator,
}

# The models whose bare state dicts are the animegan2-pytorch port's layout.
_PORT_MODELS = ("animegan2", "animegan2-lite")


def _check_name(model: str) -> str:
    if model not in MODELS:
        raise UserInputError(f"unknown model {model!r} (use one of {', '.join(MODELS)})")
    return model


def family(model: str) -> str:
    """'animegan' (v1), 'animegan2' (v2 and lite), 'cartoongan' (both variants) or 'cyclegan': which recipe trains it."""
    _check_name(model)
    if model.startswith("cartoongan"):
        return "cartoongan"
    if model == "cyclegan":
        return "cyclegan"
    return "animegan2" if model.startswith("animegan2") else "animegan"


#: Generator size fields a checkpoint's ``toonlab.arch`` may record, per model (the rest use the published sizes).
ARCH_FIELDS: dict[str, tuple[str, ...]] = {"cyclegan": ("ngf", "n_blocks")}


def _arch(model: str, arch: Mapping[str, Any] | None) -> tuple[tuple[str, int], ...]:
    """The recorded size fields that apply to ``model``'s generator, hashable (``_signature`` caches on it)."""
    return tuple((k, int(arch[k])) for k in ARCH_FIELDS.get(model, ()) if arch and k in arch)


def build_generator(model: str, arch: Mapping[str, Any] | None = None) -> nn.Module:
    """A freshly initialised generator of the named model, at the sizes ``arch`` records (a checkpoint's
    ``toonlab.arch``, e.g. CycleGAN's ``ngf``/``n_blocks``; other keys and models: the published sizes)."""
    return MODELS[_check_name(model)](**dict(_arch(model, arch)))


def build_discriminator(model: str) -> nn.Module:
    """The discriminator the named model is trained with."""
    return DISCRIMINATORS[_check_name(model)]()


@cache
def _signature(model: str, arch: tuple[tuple[str, int], ...] = ()) -> dict[str, tuple[int, ...]]:
    """Key → shape of the model's state dict, built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        m = MODELS[model](**dict(arch))
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


def _mismatch(model: str, sd: dict[str, Tensor], arch: tuple[tuple[str, int], ...] = ()) -> str | None:
    for k, shape in _signature(model, arch).items():
        if tuple(sd[k].shape) != shape:
            return f"shape mismatch at key {k!r}: {model} expects {list(shape)}, the file has {list(sd[k].shape)}"
    return None


def infer_model(sd: dict[str, Any], path: str | Path = "state dict") -> str:
    """Name of the registered model whose state-dict keys and shapes ``sd`` has exactly."""
    if isinstance(sd, dict) and ("conv1.conv.modulation.weight" in sd or any(str(k).startswith("to_rgbs.") for k in sd)
                                 or isinstance(sd.get("g_ema"), dict)):
        raise UserInputError(f"{path}: this is a StyleGAN2 generator, not a translator; render it with generate, "
                             "project photos into it with project (translate takes AnimeGAN/CartoonGAN/CycleGAN "
                             "checkpoints)")
    if not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise UserInputError(f"{path}: unknown layout (not a generator state dict)")
    keys = set(sd)
    same_keys = [m for m in MODELS if set(_signature(m)) == keys]
    for m in same_keys:
        if _mismatch(m, sd) is None:
            return m
    if same_keys:
        raise UserInputError(f"{path}: {_mismatch(same_keys[0], sd)}")
    if any(k.startswith("block_a.") for k in keys):
        own = _signature("animegan2")
        missing = [k for k in own if k not in keys]
        extra = sorted(k for k in keys if k not in own)
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise UserInputError(f"{path}: looks like an animegan2-pytorch generator but the keys differ ({what}; "
                             f"{len(keys)} keys, the port has {len(own)})")
    first = ", ".join(sorted(keys)[:3])
    raise UserInputError(f"{path}: unknown layout (keys {first}, …); expected a toonlab translation checkpoint "
                         f"or an animegan2-pytorch state dict")


def _load_checked(G: nn.Module, model: str, sd: dict[str, Any], path: Path,
                  arch: tuple[tuple[str, int], ...] = ()) -> None:
    own = _signature(model, arch)
    missing = [k for k in own if k not in sd]
    extra = [k for k in sd if k not in own]
    if missing:
        raise UserInputError(f"{path}: {model} generator is missing key {missing[0]!r} ({len(missing)} missing)")
    if extra:
        raise UserInputError(f"{path}: unexpected key {extra[0]!r} for a {model} generator ({len(extra)} unexpected)")
    bad = _mismatch(model, sd, arch)
    if bad:
        raise UserInputError(f"{path}: {bad}")
    G.load_state_dict(sd, strict=True)


# Metadata load_generator passes on from a file's ``toonlab`` dict (training checkpoints and
# slim files alike): what the model is, how and on what it was trained, where it came from.
_META_KEYS = ("step", "preset", "weights", "phase", "size", "domains", "features", "dtype", "format", "label",
              "commit", "command", "exported_from", "arch")

# The training settings a slim file keeps (``config``): enough to say what the model is and to
# redo the run; paths of the run folder and resume file are the trainer's machine's, not the model's.
_CONFIG_KEYS = ("model", "preset", "photos", "style", "size", "load_size", "batch", "init_iters", "iters", "init_lr",
                "g_lr", "d_lr", "ema", "seed", "vgg", "features", "precision")

#: The ``format`` tag of a slim translator file (:func:`export_generator`).
SLIM_FORMAT = "toonlab-translator-v1"


def load_generator(
    path: str | Path, device: str | torch.device = "cpu", which: str = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """Load a translation generator from ``path``; returns ``(G in eval mode, metadata)``.

    which: "auto" (``g_ema`` when the checkpoint has one, else ``g``), "g" or "g_ema" — for our
    training checkpoints; bare state dicts have only one generator. Metadata: ``model``, ``source``
    ("toonlab" or "port"), ``path``, ``which`` and, for our checkpoints and slim exports
    (:func:`export_generator`), what they record of ``_META_KEYS`` (``step``, ``preset``, ``size``,
    ``domains``, ``dtype``, …). fp16 weights are loaded into the fp32 network (``load_state_dict``
    casts them), so every caller gets an fp32 model whatever the file stores.
    """
    if which not in ("auto", "g", "g_ema"):
        raise UserInputError(f"unknown generator choice {which!r} (use auto, g or g_ema)")
    path = Path(path)
    obj = load_torch_file(path, "checkpoint")
    if not isinstance(obj, dict):
        raise UserInputError(f"{path} is not a generator checkpoint (found a {type(obj).__name__}, expected a dict)")
    meta_in = obj.get("toonlab") if isinstance(obj.get("toonlab"), dict) else {}
    if isinstance(obj.get("g"), dict) or isinstance(obj.get("g_ema"), dict):
        order = ["g_ema", "g"] if which == "auto" else [which]
        key = next((k for k in order if isinstance(obj.get(k), dict) and obj[k]), None)
        if key is None:
            raise UserInputError(f"{path} has no {which!r} generator (keys: {', '.join(map(str, obj))})")
        sd, source = obj[key], "toonlab"
        model = meta_in.get("model") or infer_model(sd, path)
    else:
        key = "state_dict"
        sd = obj["state_dict"] if isinstance(obj.get("state_dict"), dict) else obj
        model = infer_model(sd, path)
        source = "port" if model in _PORT_MODELS else "toonlab"
    if model not in MODELS:
        raise UserInputError(f"{path}: unknown model {model!r} in its metadata (known: {', '.join(MODELS)})")
    arch = _arch(model, meta_in.get("arch") if isinstance(meta_in.get("arch"), dict) else None)
    G = build_generator(model, dict(arch))
    _load_checked(G, model, sd, path, arch)
    G = G.to(device).eval().requires_grad_(False)
    meta: dict[str, Any] = {"model": model, "source": source, "path": str(path), "which": key}
    for k in _META_KEYS:
        if k in meta_in:
            meta[k] = meta_in[k]
    if "step" not in meta and "step" in obj and isinstance(obj["step"], int):
        meta["step"] = obj["step"]
    return G, meta


def export_generator(ckpt: str | Path, out: str | Path, *, which: str = "auto", half: bool = True,
                     extra: dict[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """Write one generator of ``ckpt`` alone, as ``{"g": state dict, "toonlab": metadata}``.

    ``half`` stores the weights in fp16: a v2 generator is 2.1 M parameters, 8.6 MB in fp32 and
    4.3 MB in fp16 (``load_generator`` loads them into the fp32 network, which casts them). The
    metadata keeps what inference and ``toonlab.bundled.label_of`` read: the architecture
    (``model``), the training crop (``size``), the domains (``domains`` and ``config.photos`` /
    ``config.style``), the preset and loss weights, the step, the feature network, the training
    settings (``config``) and the source file's name and hash; ``extra`` adds strings such as
    ``commit``, ``command`` or a ``label`` (it may not replace a recorded key). The file is written
    atomically; returns ``(path, metadata)``.
    """
    ckpt, out = Path(ckpt), Path(out)
    if out.resolve() == ckpt.resolve():
        raise UserInputError(f"{out}: the export would overwrite the checkpoint it is made from; choose another path")
    G, meta = load_generator(ckpt, which=which)
    obj = load_torch_file(ckpt, "checkpoint")
    meta_in = obj.get("toonlab") if isinstance(obj, dict) and isinstance(obj.get("toonlab"), dict) else {}
    cfg = meta_in.get("config") if isinstance(meta_in.get("config"), dict) else {}
    dtype = torch.float16 if half else torch.float32
    sd = {k: v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu()
          for k, v in G.state_dict().items()}
    info: dict[str, Any] = {"format": SLIM_FORMAT, "model": meta["model"], "dtype": str(dtype).removeprefix("torch."),
                            "exported_from": {"file": ckpt.name, "sha256": sha256_file(ckpt), "which": meta["which"]}}
    for k in _META_KEYS:
        if k in meta and k not in info:
            info[k] = meta[k]
    if cfg:  # a toonlab training checkpoint (or a slim file being re-exported)
        info["config"] = {k: cfg[k] for k in _CONFIG_KEYS if k in cfg}
        if isinstance(cfg.get("size"), int):
            info["size"] = cfg["size"]
        if cfg.get("photos") or cfg.get("style"):
            info["domains"] = {"photos": cfg.get("photos"), "style": cfg.get("style")}
    clash = sorted(set(map(str, extra or {})) & (set(info) - {"label", "commit", "command"}))
    if clash:
        raise UserInputError(f"--meta {clash[0]}=… would replace what the checkpoint records; choose another key")
    for k, v in (extra or {}).items():
        info[str(k)] = str(v)
    torch_save_atomic({"g": sd, "toonlab": info}, out)
    return out, info


def load_cyclegan(path: str | Path, direction: str = "a2b", device: str | torch.device = "cpu"
                  ) -> tuple[CycleGANGenerator, dict[str, Any]]:
    """One generator of a CycleGAN checkpoint: ``a2b`` (photo → style, key ``g``) or ``b2a`` (``g_b``)."""
    if direction not in ("a2b", "b2a"):
        raise UserInputError(f"unknown direction {direction!r} (use a2b or b2a)")
    path = Path(path)
    ckpt = read_checkpoint(path, CYCLEGAN, "CycleGAN checkpoint")
    meta = ckpt["toonlab"]
    arch = meta.get("arch", {})
    G = build_generator(CYCLEGAN, arch)
    try:
        G.load_state_dict(ckpt["g" if direction == "a2b" else "g_b"])
    except (RuntimeError, KeyError) as e:
        raise UserInputError(f"{path}: {str(e).splitlines()[0][:200]}") from None
    return G.to(device).eval().requires_grad_(False), {"model": CYCLEGAN, "path": str(path), "step": meta.get("step"),
                                                        "direction": direction, "arch": arch}
