"""Reading and writing StyleGAN2 checkpoints in the community (rosinality) format.

A training checkpoint is ``{g, d, g_ema, g_optim, d_optim, args, ada_aug_p}``; converted official
weights are ``{g_ema, latent_avg}``. toonlab adds a ``toonlab`` entry (plain dicts: network configs,
step, RNG state) that other tools ignore. Files are read with ``weights_only=True`` — a checkpoint
must never run code — through the project's one reader (``toonlab.checkpoint.load_torch_file``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stylegan2.networks import Discriminator, Generator
from toonlab.checkpoint import CheckpointError, load_torch_file


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict safely; a bare generator state dict is wrapped as ``{"g_ema": sd}``."""
    obj = load_torch_file(path, "checkpoint")
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


def _looks_like_generator(sd: dict) -> bool:
    return "conv1.conv.weight" in sd and all(isinstance(v, Tensor) for v in sd.values())


def generator_state(ckpt: dict[str, Any], which: str = "g_ema", path: str | Path = "checkpoint") -> dict[str, Tensor]:
    """Pick a generator's state dict (``g_ema`` preferred, then ``g``)."""
    order = [which] + [k for k in ("g_ema", "g") if k != which]
    for key in order:
        sd = ckpt.get(key)
        if isinstance(sd, dict) and sd:
            return sd
    raise CheckpointError(f"no generator inside {path} (keys: {', '.join(map(str, ckpt)) or 'none'})")


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

    A ``latent_avg`` in the file becomes the generator's truncation centre.
    """
    ckpt = ckpt if ckpt is not None else load_checkpoint(path)
    sd = generator_state(ckpt, which, path)
    cfg = generator_config(ckpt, sd, path)
    _check_size(ckpt, cfg["size"], path)
    G = Generator(**cfg)
    load_state_checked(G, sd, path, which if which in ckpt else "generator")
    avg = ckpt.get("latent_avg")
    if isinstance(avg, Tensor) and avg.numel() == G.style_dim:
        G.w_avg.copy_(avg.reshape(-1))
        G.w_avg_known = True
    return G.to(device).eval().requires_grad_(False)


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
        raise CheckpointError(f"no discriminator ('d') inside {path}")
    saved = (ckpt.get("toonlab") or {}).get("d_config")
    cfg = dict(saved) if saved else infer_discriminator_config(sd, path)
    cfg["channels"] = {int(k): int(v) for k, v in cfg["channels"].items()}
    D = Discriminator(**cfg)
    load_state_checked(D, sd, path, "d")
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
    meta = {"g_config": G.config}
    if D is not None:
        meta["d_config"] = D.config
    meta.update(extra.pop("toonlab", {}))
    out["toonlab"] = meta
    out.update(extra)
    return out
