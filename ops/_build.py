"""Lazy, cached JIT builds of toonlab's CUDA extensions.

Nothing here runs at import time: an extension is compiled (or fetched from the
on-disk cache) the first time an op actually needs its CUDA kernel.  A build that
fails is reported once per process with `warnings.warn` and never retried in that
process, so a machine without a working toolchain pays the cost of one failed
attempt instead of one per call; the ops then fall back to their PyTorch
reference implementations.

Build directories live under ``${TOONLAB_CACHE:-~/.cache/toonlab}/torch_extensions``
and are named ``{name}-{hash}``, where the hash covers everything that changes the
binary: the source bytes, the target GPU architecture, the torch and CUDA versions,
the Python ABI and our compiler flags.  A changed source or a different GPU
therefore never picks up a stale binary.

Command line (compile check without a GPU, e.g. for sm_90)::

    python -m ops.compile_check --arch 9.0
"""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

__all__ = ["load_extension", "cuda_status", "compile_check", "EXTENSIONS"]

_OPS_DIR = Path(__file__).resolve().parent

#: The extensions this package knows about: name -> source files.
EXTENSIONS: dict[str, list[Path]] = {
    "upfirdn2d": [_OPS_DIR / "upfirdn2d.cpp", _OPS_DIR / "upfirdn2d.cu"],
    "bias_act": [_OPS_DIR / "bias_act.cpp", _OPS_DIR / "bias_act.cu"],
}

# Flags are part of the cache hash, so keep them in one place.
_EXTRA_CFLAGS: list[str] = ["-O3"]
_EXTRA_CUDA_CFLAGS: list[str] = ["-O3"]

#: A ``lock`` file older than this is considered abandoned by a dead builder.
STALE_LOCK_SECONDS = 600.0
#: How many trailing lines of a compiler error are kept as the failure reason.
_REASON_LINES = 25

_lock = threading.Lock()
_modules: dict[str, ModuleType | None] = {}
_status: dict[str, dict[str, Any]] = {}


def _cache_root() -> Path:
    root = os.environ.get("TOONLAB_CACHE") or os.path.join("~", ".cache", "toonlab")
    return Path(root).expanduser() / "torch_extensions"


def _device_arch() -> str:
    """Architecture to build for: ``TORCH_CUDA_ARCH_LIST`` if set, else the current GPU's.

    Building for the current device only keeps the first (cold) build short; the
    arch is part of the cache hash, so a different GPU gets its own build.
    """
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        return env
    if not torch.cuda.is_available():
        raise RuntimeError("CUDA is not available (torch.cuda.is_available() is False)")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def _build_hash(sources: list[Path], arch: str) -> str:
    h = hashlib.sha256()
    for src in sources:
        h.update(src.name.encode())
        h.update(b"\0")
        h.update(Path(src).read_bytes())
        h.update(b"\0")
    meta = [
        arch,
        torch.__version__,
        str(torch.version.cuda),
        # The .so is specific to the interpreter ABI; two venvs sharing one cache
        # must not load each other's binaries.
        f"{sys.implementation.cache_tag}",
        repr(_EXTRA_CFLAGS),
        repr(_EXTRA_CUDA_CFLAGS),
    ]
    h.update("\0".join(meta).encode())
    return h.hexdigest()[:16]


def _resolve_cuda_home() -> None:
    """Point cpp_extension at a CUDA toolkit that actually has headers.

    torch guesses CUDA_HOME from the location of ``nvcc`` on PATH; a wrapper script
    such as ``/usr/local/bin/nvcc`` makes it guess ``/usr/local``, which has no
    ``cuda_runtime.h``.  If the guess is unusable and no explicit CUDA_HOME is
    set, fall back to the conventional ``/usr/local/cuda``.
    """
    from torch.utils import cpp_extension

    def usable(p: str | None) -> bool:
        return bool(p) and os.path.isfile(os.path.join(p, "include", "cuda_runtime.h"))

    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    if usable(cpp_extension.CUDA_HOME):
        return
    for cand in ("/usr/local/cuda",):
        if usable(cand):
            cpp_extension.CUDA_HOME = cand
            return


def _torch_uses_os_lock() -> bool:
    """True when cpp_extension guards builds with an OS-level (flock) lock.

    With such a lock a left-over ``lock`` file is harmless (the kernel drops the lock
    when its holder dies).  Older torch versions used a lock whose mere *existence*
    blocks, so a builder killed mid-build made every later process wait forever.
    """
    from torch.utils import cpp_extension

    return "FileLock" in vars(cpp_extension)


def _lock_is_held(path: Path) -> bool:
    """Whether some live process holds an flock on ``path``."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _remove_stale_lock(build_dir: Path) -> None:
    lock = build_dir / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return
    if age < STALE_LOCK_SECONDS or _lock_is_held(lock):
        return
    if _torch_uses_os_lock():
        return  # an unheld left-over cannot block anyone
    warnings.warn(
        f"toonlab.ops: removing stale build lock {lock} ({age / 60:.0f} min old); "
        "a previous build was probably killed",
        RuntimeWarning,
        stacklevel=3,
    )
    try:
        lock.unlink()
    except FileNotFoundError:
        pass


def _compile(name: str, sources: list[Path], build_dir: Path, arch: str, verbose: bool = False) -> ModuleType:
    """Compile (or load from ``build_dir``) one extension.  Raises on failure.

    Kept separate from `load_extension` so that tests can replace it.
    """
    from torch.utils import cpp_extension

    _resolve_cuda_home()
    old_arch = os.environ.get("TORCH_CUDA_ARCH_LIST")
    os.environ["TORCH_CUDA_ARCH_LIST"] = arch
    try:
        return cpp_extension.load(
            name=f"toonlab_{name}",  # prefixed: must not clash with other 'upfirdn2d' modules
            sources=[str(s) for s in sources],
            extra_cflags=list(_EXTRA_CFLAGS),
            extra_cuda_cflags=list(_EXTRA_CUDA_CFLAGS),
            build_directory=str(build_dir),
            verbose=verbose,
        )
    finally:
        if old_arch is None:
            os.environ.pop("TORCH_CUDA_ARCH_LIST", None)
        else:
            os.environ["TORCH_CUDA_ARCH_LIST"] = old_arch


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(lines[-_REASON_LINES:])


def load_extension(name: str, sources: list[Path]) -> ModuleType | None:
    """Return the compiled extension ``name``, building it on first use.

    Returns None (and warns once per process) when the build fails or CUDA is not
    available; later calls return the cached result without retrying.
    """
    with _lock:
        if name in _modules:
            return _modules[name]
        try:
            arch = _device_arch()
            build_dir = _cache_root() / f"{name}-{_build_hash(list(sources), arch)}"
            build_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_lock(build_dir)
            module = _compile(name, list(sources), build_dir, arch)
        except Exception as exc:  # any failure means "use the reference path"
            reason = _reason(exc)
            _modules[name] = None
            _status[name] = {"state": "failed", "reason": reason}
            warnings.warn(
                f"toonlab.ops: could not build the CUDA extension '{name}'; using the "
                f"PyTorch reference implementation instead (not retried in this process).\n{reason}",
                RuntimeWarning,
                stacklevel=3,
            )
            return None
        _modules[name] = module
        _status[name] = {"state": "built", "path": str(build_dir)}
        return module


def cuda_status() -> dict[str, dict[str, Any]]:
    """Per-op CUDA build state: ``{'state': 'not tried'|'built'|'failed', ...}``.

    'built' entries carry ``path`` (the build directory), 'failed' ones ``reason``
    (the last lines of the compiler's / loader's error).
    """
    with _lock:
        out = {name: {"state": "not tried"} for name in EXTENSIONS}
        out.update({k: dict(v) for k, v in _status.items()})
        return out


def _reset(name: str | None = None) -> None:
    """Forget cached build results (tests only)."""
    with _lock:
        for key in [name] if name is not None else list(_modules) + list(_status):
            _modules.pop(key, None)
            _status.pop(key, None)


def compile_check(arch: str = "9.0", names: list[str] | None = None, verbose: bool = False) -> dict[str, str]:
    """Compile the extensions for ``arch`` without needing a GPU; returns name -> result.

    Used to check that the CUDA sources build on a machine that has nvcc but no
    device.  The results are written to the normal cache (keyed by ``arch``).
    """
    results: dict[str, str] = {}
    for name in names or list(EXTENSIONS):
        sources = EXTENSIONS[name]
        build_dir = _cache_root() / f"{name}-{_build_hash(sources, arch)}"
        build_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        try:
            _compile(name, sources, build_dir, arch, verbose=verbose)
        except Exception as exc:
            results[name] = f"FAILED\n{_reason(exc)}"
        else:
            results[name] = f"ok ({time.time() - t0:.0f} s, {build_dir})"
    return results
