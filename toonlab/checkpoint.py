"""The one checkpoint reader: every ``.pt`` file toonlab opens goes through :func:`load_torch_file`.

Files are read with ``torch.load(weights_only=True)`` — a checkpoint can never run code — with
``argparse.Namespace`` allow-listed (the community StyleGAN2 checkpoints store their ``args`` as
one). Every failure is one line naming the file and what is wrong with it. torch's own message
for a refused file starts with the advice to re-run with ``weights_only=False``, the one thing a
user must not do with a file of unknown origin, so that advice is never passed on.

Also here: reading toonlab's own training checkpoints (``read_checkpoint``), small tagged files
(latents, SeFa factors: ``read_tagged``) and the file hashes recorded beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path
from typing import Any, BinaryIO

import torch

from toonlab.errors import UserInputError

__all__ = ["CheckpointError", "torch_load", "load_torch_file", "read_checkpoint", "read_tagged", "sha256_file", "file_hash"]


class CheckpointError(UserInputError):
    """A checkpoint that cannot be used; the message is one line naming the file and the problem."""


_GLOBAL_RE = re.compile(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL)\s+([\w.]+)")


def _reason(e: BaseException) -> str:
    """One line saying why torch could not read a file, without torch's ``weights_only=False`` advice."""
    text = str(e).strip()
    if "Weights only load failed" in text:
        m = _GLOBAL_RE.search(text)
        if m:
            return (f"it holds a Python object ({m.group(1)}) that a weights-only load refuses; toonlab never runs "
                    "code from a checkpoint (re-save it as a plain state dict)")
        return "not a loadable torch file (corrupt or truncated)"
    line = (text.splitlines() or [type(e).__name__])[0]
    return f"not a loadable torch file ({line[:200]})"


def torch_load(src: str | Path | BinaryIO) -> Any:
    """The project's one ``torch.load``: weights only, onto the CPU, ``argparse.Namespace`` allowed.

    Raises what torch raises; :func:`load_torch_file` turns that into one line. (The NVIDIA pickle
    reader uses this for the tensor storages inside a pickle, ``stylegan2/nvidia.py``.)
    """
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(src, map_location="cpu", weights_only=True)


def load_torch_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU with one-line :class:`CheckpointError`\\ s."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{what} not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"{what} path is a folder, not a file: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a {what}")
    try:
        return torch_load(path)
    except Exception as e:  # pickle/zip errors come in many types; all mean "not a file we can read"
        raise CheckpointError(f"{path} is not a loadable {what}: {_reason(e)}") from None


def read_checkpoint(path: str | Path, model: str | None = None, what: str = "checkpoint") -> dict[str, Any]:
    """A toonlab training checkpoint: a dict with a ``toonlab`` metadata dict.

    With ``model``, the metadata must name that model (``what`` names it in the error).
    """
    ckpt = load_torch_file(path, what)
    meta = ckpt.get("toonlab") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a toonlab {what}")
    if model is not None and meta.get("model") != model:
        held = meta.get("model")
        raise CheckpointError(f"{path} is not a {what}" + (f" (it holds a {held} model)" if held else ""))
    return ckpt


def read_tagged(path: str | Path, fmt: str, what: str, hint: str) -> dict[str, Any]:
    """A small toonlab file whose ``format`` field is ``fmt`` (latents, SeFa factors)."""
    p = Path(path)
    if not p.is_file():
        raise UserInputError(f"{what} {p} does not exist")
    try:
        obj = load_torch_file(p, what)
    except CheckpointError as e:
        raise UserInputError(f"{p}: not a {what} ({str(e).split(': ', 1)[-1]})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise UserInputError(f"{p}: not a {what} ({hint})")
    return obj


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_key(path: str | Path) -> tuple[str, int, int]:
    """A key for memoising what a file holds: resolved path, size and mtime (a rewrite changes it)."""
    p = Path(path)
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def sha256_file(path: str | Path) -> str:
    """Full sha256 hex of a file (memoised per :func:`file_key` within the process)."""
    p = Path(path)
    key = file_key(p)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def file_hash(path: str | Path, n: int = 16) -> str:
    """Short sha256 of a file (recorded with latents so they are matched to their generator)."""
    return sha256_file(path)[:n]
