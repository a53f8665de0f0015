"""Write pickles shaped like NVIDIA's (persistent records) from plain data, for the loader's tests.

The fixture ``tests/data/nvidia_tiny32.pkl`` was written by NVIDIA's own code (see
docs/BENCHMARKS.md, "NVIDIA pickles"); these helpers re-emit its records — edited, to make
unsupported or hostile variants — with the same globals NVIDIA's pickles name
(``torch_utils.persistence._reconstruct_persistent_obj``, ``dnnlib.tflib.network.Network``),
without needing NVIDIA's code.
"""

from __future__ import annotations

import contextlib
import copy
import io
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Iterator

from stylegan2.nvidia import Record, read_pickle

FIXTURE = Path(__file__).resolve().parent / "data" / "nvidia_tiny32.pkl"
EXPECTED = Path(__file__).resolve().parent / "data" / "nvidia_tiny32_expected.pt"
TF_FIXTURE = Path(__file__).resolve().parent / "data" / "nvidia_tf_tiny16.pkl"
TF_EXPECTED = Path(__file__).resolve().parent / "data" / "nvidia_tf_tiny16_expected.pt"


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its pickled name matters
    raise RuntimeError("never called: the name is what gets pickled")


class Network:
    """Stand-in for ``dnnlib.tflib.network.Network``: pickled as NEWOBJ + BUILD(state), as TF pickles are."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def __getstate__(self) -> dict:
        return self.state

    def __setstate__(self, state: dict) -> None:
        self.state = state


@contextlib.contextmanager
def _fake_modules() -> Iterator[None]:
    """Make the NVIDIA global names resolvable while pickling (pickle checks they import)."""
    mods = {
        "torch_utils": types.ModuleType("torch_utils"),
        "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
        "dnnlib": types.ModuleType("dnnlib"),
        "dnnlib.tflib": types.ModuleType("dnnlib.tflib"),
        "dnnlib.tflib.network": types.ModuleType("dnnlib.tflib.network"),
    }
    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    Network.__module__ = "dnnlib.tflib.network"
    mods["dnnlib.tflib.network"].Network = Network
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Pickler(pickle.Pickler):
    def __init__(self, f, module_src: str) -> None:
        super().__init__(f, protocol=4)
        self.module_src = module_src

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Record) and obj.kind == "persistent":
            meta = dict(type="class", version=6, module_src=self.module_src, class_name=obj.class_name,
                        state=obj.state)
            return _reconstruct_persistent_obj, (meta,)
        return NotImplemented


def tf_networks(obj: Any) -> Any:
    """Replace TF-kind ``Record``s (as ``read_pickle`` returns them) by ``Network`` stand-ins, recursively."""
    if isinstance(obj, Record) and obj.kind == "tf":
        return Network({k: tf_networks(v) for k, v in obj.state.items()})
    if isinstance(obj, dict):
        return {k: tf_networks(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tf_networks(v) for v in obj)
    return obj


def dumps(data: Any, module_src: str = "") -> bytes:
    """Pickle plain data whose ``Record``s become NVIDIA persistent records (source ``module_src``)."""
    buf = io.BytesIO()
    with _fake_modules():
        _Pickler(buf, module_src).dump(data)
    return buf.getvalue()


def write(path: Path, data: Any, module_src: str = "") -> Path:
    path.write_bytes(dumps(data, module_src))
    return path


def fixture_records() -> dict[str, Any]:
    """The fixture's snapshot dict as plain data (a fresh copy each call, free to edit)."""
    return copy.deepcopy(read_pickle(FIXTURE))
