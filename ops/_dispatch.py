"""Choice between the CUDA kernels and the PyTorch reference implementations."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType

import torch

from . import _build

IMPLS = ("auto", "ref", "cuda")
ENV_VAR = "TOONLAB_OPS_IMPL"


def resolve_impl(impl: str) -> str:
    """Map ``impl`` to 'ref', 'cuda' or 'auto'; ``TOONLAB_OPS_IMPL`` overrides 'auto' only.

    An explicit impl='ref'/'cuda' argument always wins, so code that needs a particular
    implementation (tests, benchmarks) is not changed by the environment.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower() or "auto"
        if env not in IMPLS:
            raise ValueError(f"{ENV_VAR} must be one of {IMPLS}, got {env!r}")
        impl = env
    return impl


def use_cuda_impl(
    impl: str,
    x: torch.Tensor,
    op: str,
    plugin: Callable[[], ModuleType | None],
    unsupported: str | None = None,
) -> bool:
    """Decide whether ``op`` runs its CUDA kernel for input ``x``.

    'ref' -> False.  'cuda' -> True, or a RuntimeError saying why it cannot (tensor not on
    a GPU, arguments the kernel does not support, failed build).  'auto' -> True only when
    ``x`` is on a GPU, the arguments are supported and the extension builds; the build is
    attempted lazily here, on the first CUDA call, never for CPU tensors.
    """
    mode = resolve_impl(impl)
    if mode == "ref":
        return False
    if mode == "cuda":
        if not x.is_cuda:
            raise RuntimeError(
                f"{op}: impl='cuda' needs a CUDA tensor, got one on '{x.device}'; use impl='ref' or 'auto'"
            )
        if unsupported:
            raise RuntimeError(f"{op}: the CUDA kernel does not support {unsupported}; use impl='ref' or 'auto'")
        if plugin() is None:
            reason = _build.cuda_status().get(op, {}).get("reason", "unknown reason")
            raise RuntimeError(f"{op}: impl='cuda' but the CUDA extension could not be built:\n{reason}")
        return True
    return bool(x.is_cuda) and not unsupported and plugin() is not None
