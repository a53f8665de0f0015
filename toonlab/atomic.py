"""Atomic file writes — the one helper family for every user-visible file: a temporary file in the
target folder, fsync, then rename.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never
half of one — also when the writer is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from PIL import Image

# mkstemp creates 0600 files; finished outputs get the permissions a plain open() would give.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path: str | Path, obj: Any, **dump_kw: Any) -> Path:
    """``json.dumps(obj)`` written atomically (indent 2 and ``default=str`` unless given)."""
    dump_kw.setdefault("indent", 2)
    dump_kw.setdefault("default", str)
    return write_text_atomic(path, json.dumps(obj, **dump_kw))


def save_image_atomic(img: "Image.Image", path: str | Path, **save_kw: Any) -> Path:
    """Save a PIL image atomically; the format follows the suffix (PNG for unknown ones)."""
    path = Path(path)
    ext = path.suffix.lower().lstrip(".")
    fmt = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP"}.get(ext, "PNG")
    with atomic_path(path) as tmp:
        img.save(tmp, format=fmt, **save_kw)
    return path


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically: readers (and resumed runs) never see half a checkpoint."""
    import torch

    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


#: Names of the temporaries ``atomic_path`` creates: ``.<final name>.<random>.tmp``.
TEMP_RE = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete what killed atomic writes left in ``folder`` (not recursive); returns what was removed.

    Only safe while nobody else writes into ``folder``: callers hold its lock (``toonlab.lock``).
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if p.is_file() and TEMP_RE.match(p.name):
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed
