"""Reading and writing StyleGAN2 checkpoints in the community (rosinality) format.

A training checkpoint is ``{g, d, g_ema, g_optim, d_optim, args, ada_aug_p}``; converted official
weights are ``{g_ema, latent_avg}``. toonlab adds a ``toonlab`` entry (plain dicts: network configs,
step, RNG state) that other tools ignore. Files are read with ``weights_only=True`` — a checkpoint
must never run code — through the project's one reader (``toonlab.checkpoint.load_torch_file``),
which allow-lists ``argparse.Namespace`` for the ``args`` entry.

``load_checkpoint`` tells formats apart by their first bytes, not their names: torch files (zip
or legacy), safetensors (weights + our JSON config in the metadata; ``save_safetensors``) and
NVIDIA stylegan2-ada-pytorch pickles, which ``stylegan2/nvidia.py`` reads as data and converts
to this layout. Every loader built on it (``load_generator``, ``load_discriminator``, the
trainers, every ``--ckpt``/``--source``/``--cartoon`` flag) therefore takes all three.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stylegan2.networks import Discriminator, Generator, SplitMappingGenerator
from toonlab.atomic import atomic_path
from toonlab.checkpoint import CheckpointError, load_torch_file
from toonlab.errors import UserInputError

#: safetensors metadata key and value marking a toonlab snapshot (tensors are ``g_ema.*``, ``d.*``...).
SAFETENSORS_FORMAT = "toonlab-stylegan2/1"
_TORCH_LEGACY_MAGIC = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_PREFIXES = ("g_ema", "g", "d")


def sniff_format(path: str | Path) -> str:
    """'torch' (zip or legacy torch.save), 'safetensors', 'pickle' (a raw pickle: NVIDIA's) or 'unknown'."""
    with open(path, "rb") as f:
        head = f.read(16)
        size = f.seek(0, 2)
    if head[:4] == b"PK\x03\x04":
        return "torch"
    if head[:1] == b"\x80" and head[2:4] == b"\x8a\x0a" and head[4:14] == _TORCH_LEGACY_MAGIC:
        return "torch"
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely; a bare generator state dict is wrapped as ``{"g_ema": sd}``.

    torch files, safetensors and NVIDIA pickles are told apart by content (see the module doc).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"checkpoint path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a checkpoint")
    fmt = sniff_format(path)
    if fmt == "safetensors":
        return load_safetensors(path, map_location)
    if fmt == "pickle":
        from stylegan2.nvidia import load_nvidia_pickle

        try:
            return load_nvidia_pickle(path)
        except UserInputError as e:
            raise CheckpointError(str(e)) from None
    obj = load_torch_file(path, "checkpoint")  # the project's one torch reader (weights only)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} is not a checkpoint (found a {type(obj).__name__}, expected a dict)")
    if _looks_like_generator(obj):
        obj = {"g_ema": obj}
    if map_location not in ("cpu", torch.device("cpu")):
        obj = _to_device(obj, torch.device(map_location))
    return obj


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A safetensors snapshot → checkpoint dict.

    Ours (``save_safetensors``) carry ``g_ema.*``/``g.*``/``d.*`` tensors, ``latent_avg`` and the
    toonlab config as JSON metadata; a bare generator state dict (community keys) is accepted too.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a loadable safetensors file: {reason[:200]}") from None
    if map_location != "cpu":
        tensors = {k: v.to(map_location) for k, v in tensors.items()}
    out: dict[str, Any] = {}
    if metadata.get("format") == SAFETENSORS_FORMAT or any(k.split(".", 1)[0] in _PREFIXES for k in tensors):
        early: dict[str, Any] = {}
        for k, v in tensors.items():
            head, _, rest = k.partition(".")
            if head in _PREFIXES and rest:
                out.setdefault(head, {})[rest] = v
            elif head == "early_mapping" and rest.startswith("state."):
                early.setdefault("state", {})[rest[len("state."):]] = v
            elif k == "early_mapping.w_avg":
                early["w_avg"] = v
            else:
                out[k] = v
    elif _looks_like_generator(tensors):
        out["g_ema"] = tensors
    else:
        raise CheckpointError(f"{path}: safetensors file without StyleGAN2 weights (keys like {next(iter(tensors), 'none')!r})")
    if "toonlab" in metadata:
        try:
            out["toonlab"] = json.loads(metadata["toonlab"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: safetensors metadata 'toonlab' is not JSON") from None
        if early and isinstance(out["toonlab"].get("early_mapping"), dict):
            early.setdefault("w_avg", None)
            out["toonlab"]["early_mapping"].update(early)
    return out


def save_safetensors(ckpt: dict[str, Any], path: str | Path) -> Path:
    """Write ``ckpt``'s networks (``g_ema``/``g``/``d`` state dicts, ``latent_avg``) as safetensors.

    Only tensors and the JSON ``toonlab`` entry are stored: the file cannot carry code.
    """
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    for key in _PREFIXES:
        sd = ckpt.get(key)
        if isinstance(sd, dict):
            for k, v in sd.items():
                tensors[f"{key}.{k}"] = v.detach().cpu().clone().contiguous()
    if isinstance(ckpt.get("latent_avg"), Tensor):
        tensors["latent_avg"] = ckpt["latent_avg"].detach().cpu().clone().contiguous()
    meta = dict(ckpt.get("toonlab") or {})
    early = meta.get("early_mapping")
    if isinstance(early, dict):
        # A FreezeSG model's second mapping network is weights, not config: it travels as tensors
        # (early_mapping.state.*, early_mapping.w_avg) and only its entry count stays in the JSON.
        for k, v in (early.get("state") or {}).items():
            tensors[f"early_mapping.state.{k}"] = v.detach().cpu().clone().contiguous()
        if isinstance(early.get("w_avg"), Tensor):
            tensors["early_mapping.w_avg"] = early["w_avg"].detach().cpu().clone().contiguous()
        meta["early_mapping"] = {"entries": early.get("entries")}
    metadata = {"format": SAFETENSORS_FORMAT, "toonlab": json.dumps(meta, default=str)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _looks_like_generator(sd: dict) -> bool:
    return "conv1.conv.weight" in sd and all(isinstance(v, Tensor) for v in sd.values())


#: First key components of the photo-to-cartoon translators' generators (translation/models.py:
#: AnimeGAN v1/v2, CartoonGAN, CycleGAN): a file made only of these is a translator, not a StyleGAN2.
_TRANSLATOR_PARTS = frozenset({"block_a", "block_b", "block_c", "block_d", "block_e", "out_layer", "enc1", "enc2",
                               "dec1", "dec2", "down1", "down2", "up1", "up2", "down", "res", "up", "model"})


def _looks_like_translator(ckpt: dict[str, Any], sd: dict | None) -> bool:
    sd = sd if isinstance(sd, dict) and sd else ckpt
    parts = {str(k).split(".", 1)[0] for k in sd}
    return bool(parts) and parts <= _TRANSLATOR_PARTS and "conv1" not in parts


def _not_a_translator(ckpt: dict[str, Any], sd: dict | None, path: str | Path) -> None:
    if _looks_like_translator(ckpt, sd):
        raise CheckpointError(f"{path}: this is a photo-to-cartoon translator (AnimeGAN/CartoonGAN/CycleGAN), not a "
                              "StyleGAN2 generator; use it with translate (python translation/infer.py)")


def generator_state(ckpt: dict[str, Any], which: str = "g_ema", path: str | Path = "checkpoint") -> dict[str, Tensor]:
    """Pick a generator's state dict (``g_ema`` preferred, then ``g``)."""
    order = [which] + [k for k in ("g_ema", "g") if k != which]
    for key in order:
        sd = ckpt.get(key)
        if isinstance(sd, dict) and sd:
            _not_a_translator(ckpt, sd, path)  # translator training checkpoints also use g / g_ema
            return sd
    _not_a_translator(ckpt, None, path)
    keys = list(map(str, ckpt))
    listed = ", ".join(keys[:8]) + (f", … ({len(keys)} keys)" if len(keys) > 8 else "")
    raise CheckpointError(f"no generator inside {path} (keys: {listed or 'none'})")


def infer_generator_config(sd: dict[str, Tensor], path: str | Path = "checkpoint") -> dict[str, Any]:
    """Read size, style_dim, n_mlp and per-resolution channels from the tensors themselves."""
    try:
        n_rgbs = len({int(m.group(1)) for k in sd if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
        size = 2 ** (n_rgbs + 2)
        style_dim = int(sd["conv1.conv.modulation.weight"].shape[1])
        n_mlp = len({int(m.group(1)) for k in sd if (m := re.match(r"style\.(\d+)\.weight$", k))})
        channels = {4: int(sd["input.input"].shape[1])}
        for j in range(n_rgbs):
            channels[8 * 2**j] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
    except KeyError as e:
        raise CheckpointError(f"{path}: generator state lacks key {e.args[0]!r}; not a StyleGAN2 generator") from None
    blur = [1, 3, 3, 1]
    k = sd.get("convs.0.conv.blur.kernel")
    if k is not None and tuple(k.shape) != (4, 4):
        raise CheckpointError(f"{path}: blur kernel of shape {tuple(k.shape)} not supported (expected 4×4)")
    cm = max(1, channels[64] // 256) if 64 in channels else 2
    return dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=cm, blur_kernel=blur,
                lr_mlp=0.01, channels=channels)


def _check_size(ckpt: dict[str, Any], size: int, path: str | Path) -> None:
    args = ckpt.get("args")
    declared = getattr(args, "size", None) if args is not None else None
    for value in (declared, size):
        if value is not None and (int(value) < 4 or int(value) & (int(value) - 1)):
            raise CheckpointError(f"{path}: resolution {value} is not a power of two")
    if declared is not None and int(declared) != size:
        raise CheckpointError(f"{path}: args.size is {declared} but the generator's tensors are {size} px")


def load_state_checked(module: torch.nn.Module, sd: dict[str, Tensor], path: str | Path, what: str) -> None:
    """``load_state_dict(strict=True)`` with one-line errors naming the first bad key."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing:
        raise CheckpointError(f"{path}: {what} is missing key {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        raise CheckpointError(f"{path}: {what} has unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{path}: shape mismatch at {what} key {k!r}: expected {list(v.shape)}, found {list(sd[k].shape)}"
            )
    module.load_state_dict(sd, strict=True)


def generator_config(ckpt: dict[str, Any], sd: dict[str, Tensor], path: str | Path) -> dict[str, Any]:
    """Our own saved config when present (it knows lr_mlp), else inferred from tensors."""
    inferred = infer_generator_config(sd, path)
    saved = (ckpt.get("toonlab") or {}).get("g_config")
    if saved:
        cfg = dict(saved)
        cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
        return cfg
    return inferred


def load_generator(
    path: str | Path,
    which: str = "g_ema",
    device: str | torch.device = "cpu",
    ckpt: dict[str, Any] | None = None,
) -> Generator:
    """Build a Generator whose shape matches the checkpoint and load it strictly.

    A ``latent_avg`` in the file becomes the generator's truncation centre. A model fine-tuned
    with FreezeSG (``toonlab.early_mapping`` present) comes back as a ``SplitMappingGenerator``,
    which renders its first W+ entries with the source's mapping, as it was trained.
    """
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    sd = generator_state(ckpt, which, path)
    cfg = generator_config(ckpt, sd, path)
    _check_size(ckpt, cfg["size"], path)
    meta = ckpt.get("toonlab")
    early = meta.get("early_mapping") if isinstance(meta, dict) else None
    G = SplitMappingGenerator(**cfg, n_early=int(early["entries"])) if early else Generator(**cfg)
    load_state_checked(G, sd, path, which if which in ckpt else "generator")
    if early:
        try:
            G.load_early_style(early["state"], early.get("w_avg"))
        except (KeyError, RuntimeError) as e:
            raise CheckpointError(f"{path}: toonlab.early_mapping does not fit this generator "
                                  f"({str(e).splitlines()[0][:120]})") from None
    avg = ckpt.get("latent_avg")
    if isinstance(avg, Tensor) and avg.numel() == G.style_dim:
        G.w_avg.copy_(avg.reshape(-1))
        G.w_avg_known = True
    apply_recorded_clamp(G, ckpt, "g")
    return G.to(device).eval().requires_grad_(False)


def apply_recorded_clamp(net: torch.nn.Module, ckpt: dict[str, Any], which: str) -> None:
    """Re-apply NVIDIA's conv_clamp recorded for a converted pickle (nothing for other files)."""
    clamp = ((ckpt.get("toonlab") or {}).get("conv_clamp") or {}).get(which)
    if clamp is not None:
        from stylegan2.nvidia import apply_conv_clamp

        apply_conv_clamp(net, float(clamp))


def infer_discriminator_config(sd: dict[str, Tensor], path: str | Path = "checkpoint") -> dict[str, Any]:
    """Discriminator size and channels from its tensors."""
    try:
        n_res = len({int(m.group(1)) for k in sd if (m := re.match(r"convs\.(\d+)\.conv1\.0\.weight$", k))})
        size = 2 ** (n_res + 2)
        channels = {size: int(sd["convs.0.0.weight"].shape[0]), 4: int(sd["final_conv.0.weight"].shape[0])}
        for i in range(1, n_res + 1):
            channels[size // 2**i] = int(sd[f"convs.{i}.conv2.1.weight"].shape[0])
    except KeyError as e:
        raise CheckpointError(f"{path}: discriminator state lacks key {e.args[0]!r}") from None
    return dict(size=size, channels=channels)


def load_discriminator(path: str | Path, device: str | torch.device = "cpu", ckpt: dict | None = None) -> Discriminator:
    """Build and strictly load the ``d`` entry of a training checkpoint."""
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    sd = ckpt.get("d")
    if not isinstance(sd, dict) or not sd:
        why = (ckpt.get("toonlab") or {}).get("d_unsupported")
        raise CheckpointError(why or f"no discriminator ('d') inside {path}")
    saved = (ckpt.get("toonlab") or {}).get("d_config")
    cfg = dict(saved) if saved else infer_discriminator_config(sd, path)
    cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
    D = Discriminator(**cfg)
    load_state_checked(D, sd, path, "d")
    apply_recorded_clamp(D, ckpt, "d")
    return D.to(device)


def snapshot(G: Generator, D: Discriminator | None = None, G_train: Generator | None = None, **extra: Any) -> dict:
    """A community-layout dict (``g_ema`` [+ ``g``, ``d``]) plus our ``toonlab`` config entry."""
    out: dict[str, Any] = {"g_ema": G.state_dict()}
    if G_train is not None:
        out["g"] = G_train.state_dict()
    if D is not None:
        out["d"] = D.state_dict()
    if G.w_avg_known:
        out["latent_avg"] = G.w_avg.detach().clone()
    meta: dict[str, Any] = {"g_config": G.config}
    if isinstance(G, SplitMappingGenerator):
        meta["early_mapping"] = G.early_mapping_meta()
    if D is not None:
        meta["d_config"] = D.config
    meta.update(clamp_meta(G, D))
    meta.update(extra.pop("toonlab", {}))
    out["toonlab"] = meta
    out.update(extra)
    return out


def clamp_meta(G: torch.nn.Module, D: torch.nn.Module | None = None) -> dict[str, Any]:
    """``{"conv_clamp": {"g": c, "d": c}}`` for networks converted from an NVIDIA pickle, else ``{}``.

    Saved with a snapshot so that the loaders re-apply NVIDIA's clamp (``stylegan2/nvidia.py``).
    """
    clamps = {k: getattr(n, "conv_clamp", None) for k, n in (("g", G), ("d", D)) if n is not None}
    return {"conv_clamp": clamps} if any(v is not None for v in clamps.values()) else {}
