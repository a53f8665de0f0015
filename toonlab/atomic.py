"""Atomic file writes — the one helper family for every user-visible file: a temporary file in the
target folder, fsync, then rename.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never
half of one — also when the writer is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import errno
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


#: Faults of the machine that a write can meet; reported against the final path, never the temporary.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EIO,
                           errno.EFBIG})


def disk_full(folder: str | os.PathLike) -> bool:
    """Whether ``folder``'s file system has (almost) no room left (< 1 MiB): tells a full disk apart
    from other failures of tools that do not say (ffmpeg, OpenCV's writer, torch.save)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 1 << 20


def write_failure(e: BaseException, path: str | os.PathLike) -> OSError | None:
    """The ``OSError`` naming ``path`` that a failed write of ``path`` really was, or None if it was a bug.

    Writers report the machine's faults in inconvenient ways: PIL raises ENOSPC without a file name,
    an ``open`` of the temporary names ``.x.png.abc123.tmp``, and ``torch.save`` turns a full disk
    into ``RuntimeError: [enforce fail at inline_container.cc:672] unexpected pos``. Commands show
    the user the file they asked for and the cause (``toonlab.errors.user_errors``).
    """
    path = Path(path)
    if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
        return OSError(e.errno, e.strerror or os.strerror(e.errno), str(path))
    if isinstance(e, RuntimeError):
        first = (str(e).strip().splitlines() or [""])[0]
        if "unexpected pos" in first or "PytorchStreamWriter" in first or "file write failed" in first:
            if disk_full(path.parent):
                return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
            return OSError(errno.EIO, f"the file could not be written (is the disk full?): {first[:120]}", str(path))
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    A write that fails because of the machine (full disk, read-only or forbidden folder) raises an
    ``OSError`` naming ``path`` (not the temporary) and leaves no temporary behind.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        yield Path(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # mkdir names the folder it could not create: keep that; anything else (the temporary,
        # or no name at all) is reported as ``path``, the file the user asked for.
        named = getattr(e, "filename", None)
        ancestor = named is not None and Path(named) in path.parents
        fault = write_failure(e, named if ancestor else path)
        if fault is None:
            raise
        raise fault from e
    finally:
        if tmp is not None and os.path.exists(tmp):
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
