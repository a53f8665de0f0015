"""NVIDIA stylegan2-ada-pytorch network pickles, read as data: nothing in the file is imported or run.

A ``network-snapshot-*.pkl`` from NVIDIA's training loop is a plain pickle of
``{G, D, G_ema, augment_pipe, training_set_kwargs}``. Its networks are "persistent" objects
(``torch_utils/persistence.py``): each record carries the *source text* of the module that
defined its class, and NVIDIA's loader ``exec``s that text to rebuild the class — loading such a
file normally runs whatever code it contains. Here the pickle is read by an unpickler whose
``find_class`` answers only for tensor/storage rebuilding, plain containers and small stand-ins
(``Record``, numpy scalar/dtype readers): a persistent record becomes a ``Record`` holding its
class name and state dict, its source text is dropped unread, and any other global
(``os.system``, ``builtins.eval``...) stops the load with one line before anything is called.

The records are then mapped to the community-layout ``Generator``/``Discriminator`` of
``stylegan2/networks.py``. The two parameterisations agree term by term (equalised-lr weights
stored raw and scaled at run time, affine biases initialised to 1, lr multiplier on the mapping
network, ToRGB weight gain), so the tensors move over unchanged apart from shapes:
``const [C,4,4] → input.input [1,C,4,4]``, ``weight [O,I,k,k] → conv.weight [1,O,I,k,k]``,
``noise_const [r,r] → noises.noise_i [1,1,r,r]``, ``noise_strength [] → noise.weight [1]``.
NVIDIA's ``conv_clamp`` (±256 after each activation, there for fp16) has no counterpart in the
community layout; it is recorded in the converted file and applied with forward hooks
(``apply_conv_clamp``) so renders match NVIDIA's own code. What our networks cannot represent
(StyleGAN3, conditional models, 'orig'/'resnet' generators, 'skip'/'orig' discriminators, other
mbstd channel counts, z_dim ≠ w_dim...) is refused with one line naming the setting.

TensorFlow-era pickles (StyleGAN2 / StyleGAN2-ADA TF: a ``(G, D, Gs)`` tuple of
``dnnlib.tflib.network.Network`` objects whose variables are numpy arrays) go through the same
unpickler — numpy arrays are rebuilt from their raw bytes without numpy's own unpickling — and
their variables are laid out as the records NVIDIA's ``legacy.py`` would build from them.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from stylegan2.networks import Discriminator, Generator, StyledConv, ToRGB
from toonlab.checkpoint import torch_load
from toonlab.errors import UserInputError

#: Marker of NVIDIA pickles converted by this module (``ckpt["toonlab"]["source"]["format"]``).
NVIDIA_FORMAT = "nvidia-stylegan2-ada-pytorch"
NVIDIA_TF_FORMAT = "nvidia-stylegan2-tensorflow"


class PickleRefused(UserInputError):
    """The pickle asked for something outside the allow-list (nothing was called)."""


class UnsupportedNetwork(UserInputError):
    """A well-formed NVIDIA pickle whose network our StyleGAN2 cannot represent."""


# --------------------------------------------------------------------------------------------
# Plain-data stand-ins for what the pickle names
# --------------------------------------------------------------------------------------------


@dataclass
class Record:
    """One pickled object as data: NVIDIA's persistent records and torch.nn modules alike.

    ``kind`` is ``"persistent"`` (a ``torch_utils.persistence`` record; its source text was
    discarded), ``"module"`` (a plain ``torch.nn`` module) or ``"tf"`` (a TensorFlow-era
    ``dnnlib.tflib.network.Network``). ``state`` is the object's ``__dict__``.
    """

    class_name: str
    kind: str
    state: dict = field(default_factory=dict)

    def sub(self, name: str) -> "Record | None":
        mods = self.state.get("_modules") or {}
        m = mods.get(name)
        return m if isinstance(m, Record) else None

    def children(self) -> dict[str, "Record"]:
        return {k: v for k, v in (self.state.get("_modules") or {}).items() if isinstance(v, Record)}

    def tensor(self, name: str) -> Tensor | None:
        for slot in ("_parameters", "_buffers"):
            t = (self.state.get(slot) or {}).get(name)
            if isinstance(t, Tensor):
                return t
        return None

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)

    def tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Every parameter and buffer below this record, by dotted name (like ``named_buffers``)."""
        out: dict[str, Tensor] = {}
        for slot in ("_parameters", "_buffers"):
            for k, v in (self.state.get(slot) or {}).items():
                if isinstance(v, Tensor):
                    out[prefix + k] = v
        for k, child in self.children().items():
            out.update(child.tensors(f"{prefix}{k}."))
        return out


class _EasyDict(dict):
    """Stand-in for ``dnnlib.EasyDict`` (a dict subclass): kept as a plain dict."""


class _ModuleStub:
    """Stand-in for a ``torch.nn`` class: ``cls.__new__`` + ``__setstate__`` collect its state."""

    _name = "Module"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}


class _TFNetworkStub(_ModuleStub):
    _name = "dnnlib.tflib.network.Network"


class _NumpyDtype:
    """Stand-in for ``numpy.dtype``: remembers the type code and byte order, nothing else."""

    def __init__(self, code: Any = "f8", align: Any = False, copy: Any = False) -> None:
        if not isinstance(code, str):
            raise PickleRefused(f"numpy dtype {code!r} is not a plain type code")
        self.code = code
        self.order = "<"

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.order = "<" if state[1] in ("|", "=") else state[1]

    def struct_format(self) -> tuple[str, torch.dtype]:
        fmt = {"f2": ("e", torch.float16), "f4": ("f", torch.float32), "f8": ("d", torch.float64),
               "i1": ("b", torch.int8), "i2": ("h", torch.int16), "i4": ("i", torch.int32), "i8": ("q", torch.int64),
               "u1": ("B", torch.uint8), "b1": ("?", torch.bool)}.get(self.code)
        if fmt is None:
            raise PickleRefused(f"numpy dtype {self.code!r} is not a number type")
        return fmt


def _numpy_scalar(dtype: Any, data: Any = b"") -> int | float | bool:
    """``numpy.core.multiarray.scalar``: a numpy number (NVIDIA's ``weight_gain``) → Python number."""
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, (bytes, bytearray)):
        raise PickleRefused("a numpy scalar that is not a plain number")
    code, _ = dtype.struct_format()
    (value,) = struct.unpack(dtype.order + code, bytes(data))
    return value


class _NumpyArray:
    """Stand-in for ``numpy.ndarray`` rebuilt by ``_reconstruct`` + ``__setstate__`` (TF-era pickles)."""

    def __setstate__(self, state: Any) -> None:
        try:
            _, shape, dtype, fortran, raw = state
        except (TypeError, ValueError):
            raise PickleRefused("a numpy array whose state is not (version, shape, dtype, order, data)") from None
        self.value = _array_from_bytes(raw, dtype, shape, bool(fortran))


def _array_from_bytes(raw: Any, dtype: Any, shape: Any, fortran: bool = False) -> Tensor:
    if not isinstance(dtype, _NumpyDtype) or not isinstance(raw, (bytes, bytearray)):
        raise PickleRefused("a numpy array that is not plain numbers (object arrays are refused)")
    if not (isinstance(shape, tuple) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise PickleRefused("a numpy array with a malformed shape")
    code, tdtype = dtype.struct_format()
    itemsize = struct.calcsize(code)
    n = math.prod(shape)
    if len(raw) != n * itemsize:
        raise PickleRefused("a numpy array whose data does not match its shape")
    t = torch.frombuffer(bytearray(raw), dtype=tdtype) if n else torch.empty(0, dtype=tdtype)
    if dtype.order == ">" and itemsize > 1:
        t = torch.from_numpy(t.numpy().byteswap())
    if fortran:
        return t.reshape(tuple(reversed(shape))).permute(*reversed(range(len(shape)))).contiguous()
    return t.reshape(shape)


def _numpy_reconstruct(cls: Any, shape: Any = (0,), code: Any = b"b") -> _NumpyArray:
    if cls is not _NumpyArray:
        raise PickleRefused("numpy _reconstruct of something that is not an ndarray")
    return _NumpyArray.__new__(_NumpyArray)


def _numpy_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any = "C") -> Tensor:
    return _array_from_bytes(bytes(buf) if isinstance(buf, (bytes, bytearray, memoryview)) else buf,
                             dtype, tuple(shape) if isinstance(shape, (tuple, list)) else shape, order == "F")


def _load_storage(data: Any) -> Any:
    """``torch.storage._load_from_bytes``: the bytes are a legacy ``torch.save`` of one storage,
    read with ``weights_only=True`` (torch's own restricted unpickler)."""
    if not isinstance(data, (bytes, bytearray)):
        raise PickleRefused("a tensor storage that is not bytes")
    obj = torch_load(io.BytesIO(bytes(data)))
    if not isinstance(obj, (torch.TypedStorage, torch.UntypedStorage)):
        raise PickleRefused(f"a tensor storage that holds a {type(obj).__name__}")
    return obj


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> Tensor:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise PickleRefused("a tensor whose storage is not tensor data")
    if not (isinstance(offset, int) and isinstance(size, tuple) and isinstance(stride, tuple)):
        raise PickleRefused("a tensor with a malformed size or stride")
    # set_ checks the view against the storage's length (no reads past the end).
    return torch._utils._rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> Tensor:
    if not isinstance(data, Tensor):
        raise PickleRefused("a parameter that holds no tensor")
    return data  # parameters become plain tensors: we only copy their values


class _TensorType:
    """``torch.Tensor`` / ``torch.nn.Parameter`` named as the type argument of ``_rebuild_from_type_v2``."""


def _rebuild_from_type(func: Any, new_type: Any, args: Any, state: Any = None) -> Tensor:
    if func not in (_rebuild_tensor, _rebuild_parameter) or new_type is not _TensorType or not isinstance(args, tuple):
        raise PickleRefused("a tensor subclass or rebuild function outside the allow-list")
    return func(*args)


def _reconstruct_persistent(meta: Any) -> Record:
    """NVIDIA's ``_reconstruct_persistent_obj``: keep class name and state; drop the source unread."""
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("class_name"), str):
        raise PickleRefused("a torch_utils.persistence record without type 'class' and a class name")
    state = meta.get("state")
    return Record(meta["class_name"], "persistent", dict(state) if isinstance(state, dict) else {})


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise PickleRefused("_codecs.encode outside its use for bytes")
    return text.encode("latin1")


def _bytearray(data: Any = b"") -> bytearray:
    if not isinstance(data, (bytes, bytearray)):
        raise PickleRefused("bytearray() of something that is not bytes")
    return bytearray(data)


_TORCH_DTYPES = {n for n in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64",
                             "uint8", "bool", "half", "float", "double", "long", "int")}

_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): _bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    ("torch", "Tensor"): _TensorType,
    ("torch.nn.parameter", "Parameter"): _TensorType,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("dnnlib.tflib.network", "Network"): _TFNetworkStub,
}
for _np in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_np, "scalar")] = _numpy_scalar
    _ALLOWED[(_np, "_reconstruct")] = _numpy_reconstruct
for _np in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_np, "_frombuffer")] = _numpy_frombuffer
_ALLOWED[("numpy", "dtype")] = _NumpyDtype
_ALLOWED[("numpy", "ndarray")] = _NumpyArray


def _module_stub(module: str, name: str) -> type:
    return type(name, (_ModuleStub,), {"_name": f"{module}.{name}"})


class _DataUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` is an allow-list of data rebuilders; see the module doc."""

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "torch" and name in _TORCH_DTYPES:
            return getattr(torch, name)
        # torch.nn containers inside a network (ModuleList, Sequential...): their state is data.
        if module.startswith("torch.nn.modules.") and re.fullmatch(r"[A-Z]\w*", name):
            return _module_stub(module, name)
        raise PickleRefused(f"it would call {module}.{name}, which is neither tensor data nor a plain container")

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefused("it uses persistent ids (a torch.save file read as a raw pickle?)")


def _plain(obj: Any, memo: dict[int, Any] | None = None, depth: int = 0) -> Any:
    """Turn stand-ins into plain data: module stubs → Record, numpy arrays → tensors.

    ``memo`` keeps shared sub-objects shared (and a crafted pickle of many shared references from
    taking exponential time).
    """
    memo = {} if memo is None else memo
    if id(obj) in memo:
        return memo[id(obj)]
    if depth > 200:
        raise PickleRefused("nesting deeper than any network pickle")
    if isinstance(obj, Record):
        memo[id(obj)] = obj
        obj.state = {k: _plain(v, memo, depth + 1) for k, v in obj.state.items()}
        return obj
    if isinstance(obj, _ModuleStub):
        kind = "tf" if isinstance(obj, _TFNetworkStub) else "module"
        rec = memo[id(obj)] = Record(type(obj)._name, kind)
        rec.state = {k: _plain(v, memo, depth + 1) for k, v in getattr(obj, "state", {}).items()}
        return rec
    if isinstance(obj, Tensor):
        # A fresh tensor object: drops anything a BUILD opcode attached to the rebuilt one
        # (Tensor.__setstate__ accepts backward hooks).
        out = obj.detach()
    elif isinstance(obj, _NumpyArray):
        out = getattr(obj, "value", None)
    elif isinstance(obj, dict):
        out = {k: _plain(v, memo, depth + 1) for k, v in obj.items()}
    elif isinstance(obj, (list, tuple)):
        out = type(obj)(_plain(v, memo, depth + 1) for v in obj)
    else:
        return obj
    memo[id(obj)] = out
    return out


def read_pickle(path: str | Path) -> Any:
    """Unpickle ``path`` with the data-only allow-list; return plain data (``Record`` for objects).

    Raises ``PickleRefused`` (one line, naming the global it would have called) for anything else;
    a truncated or corrupt file raises ``UserInputError``.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _DataUnpickler(f).load()
    except PickleRefused as e:
        raise PickleRefused(f"{path} is not a loadable checkpoint: {e} (refused; nothing in it was run)") from None
    except FileNotFoundError:
        raise UserInputError(f"checkpoint not found: {path}") from None
    except Exception as e:  # unpickling garbage fails in many ways; all mean "not loadable"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, EOFError):
            reason = "the file ends early (truncated download?)"
        raise UserInputError(f"{path} is not a loadable checkpoint: {reason[:200]}") from None
    try:
        return _plain(obj)
    except PickleRefused as e:
        raise PickleRefused(f"{path} is not a loadable checkpoint: {e} (refused; nothing in it was run)") from None


# --------------------------------------------------------------------------------------------
# Mapping NVIDIA's networks to the community layout
# --------------------------------------------------------------------------------------------


def _unsupported(path: Path, what: str) -> UnsupportedNetwork:
    return UnsupportedNetwork(f"{path}: {what}; toonlab's StyleGAN2 cannot represent it")


def _need(rec: Record | None, name: str, path: Path, where: str) -> Tensor:
    t = rec.tensor(name) if rec is not None else None
    if t is None:
        raise UserInputError(f"{path}: {where} has no tensor {name!r}; not a stylegan2-ada-pytorch network")
    return t


def _taps(f: Tensor | None, path: Path, where: str) -> list[float]:
    """NVIDIA's prepared ``resample_filter`` (normalised outer product) → 1-D taps for our Blur."""
    if f is None:
        raise UserInputError(f"{path}: {where} has no resample_filter")
    f = f.double()
    if f.ndim == 1:
        taps = f
    else:
        taps = f.sum(dim=1)  # rows of a·aᵀ/(Σa)² sum to a/Σa
        if f.ndim != 2 or not torch.allclose(torch.outer(taps, taps), f, atol=1e-6):
            raise _unsupported(path, f"{where}: a non-separable resample filter")
    taps = taps / taps.sum()
    if torch.allclose(taps, torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64) / 8, atol=1e-7):
        return [1, 3, 3, 1]
    if len(taps) != 4:
        # Our padding arithmetic matches NVIDIA's for 4 taps only (both assume it for the 2× resampling).
        raise _unsupported(path, f"{where}: a {len(taps)}-tap resample filter")
    return [float(t) for t in taps]


def _check_act(rec: Record, path: Path, where: str) -> None:
    act = rec.attr("activation", "lrelu")
    if act != "lrelu":
        raise _unsupported(path, f"{where} uses activation {act!r} (StyleGAN2 uses lrelu)")


def _clamp_of(records: list[Record]) -> float | None:
    values = {r.attr("conv_clamp") for r in records}
    values = {None if v is None else float(v) for v in values}
    if len(values) > 1:
        return max(v for v in values if v is not None)  # mixed: the pickle's layers disagree; keep the loosest
    return values.pop() if values else None


def _template(cls: type, cfg: dict[str, Any], narrow: dict[str, Any]) -> dict[str, Tensor]:
    """The state-dict keys of ``cls(**cfg)``, holding only the resampling kernels — the entries not
    taken from the pickle. They depend on the taps alone, so a width-1 twin provides them cheaply;
    the strict load into the full-width network checks every other shape."""
    twin = cls(**{**cfg, **narrow, "channels": {r: 1 for r in cfg["channels"]}}).state_dict()
    return {k: (v.clone() if k.endswith(".kernel") else None) for k, v in twin.items()}


def convert_generator(rec: Record, path: str | Path = "network.pkl") -> dict[str, Any]:
    """An NVIDIA ``Generator`` record → ``{"state": sd, "config": cfg, "w_avg": t|None, "conv_clamp": c}``.

    ``sd`` loads strictly into ``Generator(**cfg)``. A TF-era network record is first rebuilt as
    the record stylegan2-ada-pytorch's legacy.py would make (``tf_generator_record``).
    """
    path = Path(path)
    if rec.kind == "tf":
        rec = tf_generator_record(rec, path)
    mapping, synthesis = rec.sub("mapping"), rec.sub("synthesis")
    if mapping is None or synthesis is None:
        raise UserInputError(f"{path}: the generator record has no mapping/synthesis network")
    if synthesis.sub("input") is not None or any(re.match(r"L\d+_", k) for k in synthesis.children()):
        raise _unsupported(path, "a StyleGAN3 (alias-free) generator")
    c_dim = int(mapping.attr("c_dim", rec.attr("c_dim", 0)) or 0)
    if c_dim > 0 or mapping.sub("embed") is not None:
        raise _unsupported(path, f"a conditional generator (c_dim={c_dim}, class embedding)")
    img_channels = int(synthesis.attr("img_channels", rec.attr("img_channels", 3)) or 3)
    if img_channels != 3:
        raise _unsupported(path, f"a generator with {img_channels} image channels")

    # ---- mapping network
    fcs = []
    while (fc := mapping.sub(f"fc{len(fcs)}")) is not None:
        fcs.append(fc)
    if not fcs:
        raise UserInputError(f"{path}: the mapping network has no fc layers")
    w0 = _need(fcs[0], "weight", path, "mapping.fc0")
    z_dim, w_dim = int(w0.shape[1]), int(_need(fcs[-1], "weight", path, f"mapping.fc{len(fcs) - 1}").shape[0])
    if z_dim != w_dim:
        raise _unsupported(path, f"z_dim {z_dim} differs from w_dim {w_dim}")
    lr_mul = None
    for i, fc in enumerate(fcs):
        w = _need(fc, "weight", path, f"mapping.fc{i}")
        if tuple(w.shape) != (w_dim, w_dim):
            raise _unsupported(path, f"mapping layer fc{i} of shape {list(w.shape)} (layer_features ≠ w_dim)")
        if fc.tensor("bias") is None:
            raise _unsupported(path, f"mapping layer fc{i} without a bias")
        _check_act(fc, path, f"mapping.fc{i}")
        gain = fc.attr("bias_gain")
        gain = float(gain) if isinstance(gain, (int, float)) else float(fc.attr("weight_gain", 1.0)) * math.sqrt(w_dim)
        if lr_mul is not None and not math.isclose(gain, lr_mul, rel_tol=1e-6):
            raise _unsupported(path, "mapping layers with different learning-rate multipliers")
        lr_mul = gain

    # ---- synthesis blocks
    blocks: list[tuple[int, Record]] = []
    res = 4
    while (b := synthesis.sub(f"b{res}")) is not None:
        blocks.append((res, b))
        res *= 2
    if not blocks:
        raise UserInputError(f"{path}: the synthesis network has no b4 block")
    size = blocks[-1][0]
    declared = synthesis.attr("img_resolution", size)
    if int(declared) != size:
        raise UserInputError(f"{path}: img_resolution {declared} but blocks up to {size} px")
    all_layers: list[Record] = []
    channels: dict[int, int] = {}
    taps = None
    for r, b in blocks:
        arch = b.attr("architecture", "skip")
        if arch != "skip":
            raise _unsupported(path, f"a generator with architecture {arch!r} (only 'skip', the StyleGAN2 default)")
        t = _taps(b.tensor("resample_filter"), path, f"synthesis.b{r}")
        if taps is not None and t != taps:
            raise _unsupported(path, "blocks with different resample filters")
        taps = t
        names = ["conv1", "torgb"] if r == 4 else ["conv0", "conv1", "torgb"]
        for n in names:
            layer = b.sub(n)
            if layer is None:
                raise UserInputError(f"{path}: synthesis.b{r} has no {n}")
            all_layers.append(layer)
            if n != "torgb":
                _check_act(layer, path, f"synthesis.b{r}.{n}")
                k = _need(layer, "weight", path, f"synthesis.b{r}.{n}").shape[-1]
                if k != 3:
                    raise _unsupported(path, f"synthesis.b{r}.{n} with a {k}×{k} kernel")
                if n != "torgb" and layer.tensor("resample_filter") is not None:
                    if _taps(layer.tensor("resample_filter"), path, f"synthesis.b{r}.{n}") != taps:
                        raise _unsupported(path, "layers with different resample filters")
        channels[r] = int(_need(b.sub("conv1"), "weight", path, f"synthesis.b{r}.conv1").shape[0])
        if r == 4:
            const = _need(b, "const", path, "synthesis.b4")
            if tuple(const.shape) != (channels[4], 4, 4):
                raise _unsupported(path, f"a constant input of shape {list(const.shape)}")

    cfg = dict(size=size, style_dim=w_dim, n_mlp=len(fcs), channel_multiplier=max(1, channels.get(64, 256) // 256),
               blur_kernel=taps, lr_mlp=lr_mul, channels=channels)
    sd = _template(Generator, cfg, dict(style_dim=1))
    filled: set[str] = set()

    def put(key: str, value: Tensor) -> None:
        if key not in sd:
            raise AssertionError(key)
        v = value.detach().float()
        # NVIDIA's shapes → the community layout's (the values are the same numbers).
        if key.endswith("conv.weight") or key == "input.input":
            v = v.unsqueeze(0)  # [O,I,k,k] → [1,O,I,k,k]; const [C,4,4] → [1,C,4,4]
        elif key.endswith("noise.weight"):
            v = v.reshape(1)
        elif key.startswith("noises."):
            v = v.reshape(1, 1, *v.shape[-2:])
        elif re.fullmatch(r"to_rgb(1|s\.\d+)\.bias", key):
            v = v.reshape(1, -1, 1, 1)
        sd[key] = v
        filled.add(key)

    for i, fc in enumerate(fcs):
        put(f"style.{i + 1}.weight", fc.tensor("weight"))
        put(f"style.{i + 1}.bias", fc.tensor("bias"))

    def put_layer(prefix: str, layer: Record, noise_index: int, where: str) -> None:
        aff = layer.sub("affine")
        put(f"{prefix}.conv.weight", _need(layer, "weight", path, where))
        put(f"{prefix}.conv.modulation.weight", _need(aff, "weight", path, f"{where}.affine"))
        put(f"{prefix}.conv.modulation.bias", _need(aff, "bias", path, f"{where}.affine"))
        put(f"{prefix}.activate.bias", _need(layer, "bias", path, where))
        if layer.attr("use_noise", True) and layer.tensor("noise_const") is not None:
            put(f"{prefix}.noise.weight", _need(layer, "noise_strength", path, where))
            put(f"noises.noise_{noise_index}", layer.tensor("noise_const"))
        else:  # use_noise=False: a zero strength gives the same output for every noise mode
            put(f"{prefix}.noise.weight", torch.zeros(1))
            r = 2 ** ((noise_index + 5) // 2)  # the noise resolution of that layer (Generator.noise_shapes)
            put(f"noises.noise_{noise_index}", torch.zeros(r, r))

    def put_rgb(prefix: str, layer: Record, where: str) -> None:
        aff = layer.sub("affine")
        w = _need(layer, "weight", path, where)
        if w.shape[-1] != 1:
            raise _unsupported(path, f"{where} with a {w.shape[-1]}×{w.shape[-1]} kernel")
        put(f"{prefix}.conv.weight", w)
        put(f"{prefix}.conv.modulation.weight", _need(aff, "weight", path, f"{where}.affine"))
        put(f"{prefix}.conv.modulation.bias", _need(aff, "bias", path, f"{where}.affine"))
        put(f"{prefix}.bias", _need(layer, "bias", path, where))

    b4 = blocks[0][1]
    put("input.input", b4.tensor("const"))
    put_layer("conv1", b4.sub("conv1"), 0, "synthesis.b4.conv1")
    put_rgb("to_rgb1", b4.sub("torgb"), "synthesis.b4.torgb")
    for j, (r, b) in enumerate(blocks[1:]):
        put_layer(f"convs.{2 * j}", b.sub("conv0"), 2 * j + 1, f"synthesis.b{r}.conv0")
        put_layer(f"convs.{2 * j + 1}", b.sub("conv1"), 2 * j + 2, f"synthesis.b{r}.conv1")
        put_rgb(f"to_rgbs.{j}", b.sub("torgb"), f"synthesis.b{r}.torgb")
    unfilled = [k for k in sd if k not in filled and not k.endswith(".kernel")]
    if unfilled:
        raise UserInputError(f"{path}: nothing in the pickle for {unfilled[0]!r}")
    w_avg = mapping.tensor("w_avg")
    if w_avg is not None and w_avg.numel() != w_dim:
        w_avg = None
    return dict(state=sd, config=cfg, w_avg=None if w_avg is None else w_avg.detach().float().clone(),
                conv_clamp=_clamp_of(all_layers))


def convert_discriminator(rec: Record, path: str | Path = "network.pkl") -> dict[str, Any]:
    """An NVIDIA ``Discriminator`` record (resnet, unconditional) → ``{"state", "config", "conv_clamp"}``."""
    path = Path(path)
    if rec.kind == "tf":
        rec = tf_discriminator_record(rec, path)
    c_dim = int(rec.attr("c_dim", 0) or 0)
    if c_dim > 0 or rec.sub("mapping") is not None:
        raise _unsupported(path, f"a conditional discriminator (c_dim={c_dim})")
    resolutions = sorted((int(m.group(1)) for k in rec.children() if (m := re.fullmatch(r"b(\d+)", k))), reverse=True)
    if not resolutions or resolutions[-1] != 4:
        raise UserInputError(f"{path}: the discriminator record has no b4 epilogue")
    size = resolutions[0]
    if resolutions != [size >> i for i in range(len(resolutions))] or size < 8:
        raise UserInputError(f"{path}: discriminator blocks {resolutions} are not a 2× pyramid")
    epi = rec.sub("b4")
    channels: dict[int, int] = {}
    taps = None
    convs: list[Record] = []
    for r in resolutions[:-1]:
        b = rec.sub(f"b{r}")
        arch = b.attr("architecture", "resnet")
        if arch != "resnet":
            raise _unsupported(path, f"a discriminator with architecture {arch!r} (only 'resnet', the StyleGAN2 default)")
        t = _taps(b.tensor("resample_filter"), path, f"b{r}")
        if taps is not None and t != taps:
            raise _unsupported(path, "discriminator blocks with different resample filters")
        taps = t
        for n in (["fromrgb"] if r == size else []) + ["conv0", "conv1", "skip"]:
            layer = b.sub(n)
            if layer is None:
                raise UserInputError(f"{path}: discriminator b{r} has no {n}")
            if n != "skip":
                _check_act(layer, path, f"b{r}.{n}")
                convs.append(layer)
        channels[r] = int(_need(b.sub("conv0"), "weight", path, f"b{r}.conv0").shape[0])
    if epi.attr("architecture", "resnet") != "resnet" or epi.sub("fromrgb") is not None:
        raise _unsupported(path, "a discriminator epilogue with architecture 'skip'")
    if int(epi.attr("cmap_dim", 0) or 0) > 0:
        raise _unsupported(path, "a conditional discriminator (cmap_dim > 0)")
    mbstd = epi.sub("mbstd")
    if mbstd is None:
        raise _unsupported(path, "a discriminator without minibatch-stddev (mbstd_num_channels=0)")
    n_feat = int(mbstd.attr("num_channels", 1))
    if n_feat != 1:
        raise _unsupported(path, f"minibatch-stddev with {n_feat} channels (ours has 1)")
    group = mbstd.attr("group_size", 4)
    # None means "the whole minibatch": a group larger than any batch reproduces that.
    group = 1 << 30 if group is None else int(group)
    for n in ("conv", "fc"):
        _check_act(epi.sub(n), path, f"b4.{n}")
    convs.append(epi.sub("conv"))
    channels[4] = int(_need(epi.sub("conv"), "weight", path, "b4.conv").shape[0])

    cfg = dict(size=size, channel_multiplier=max(1, channels.get(64, 256) // 256), blur_kernel=taps,
               channels=channels, stddev_group=group)
    sd = _template(Discriminator, cfg, {})
    filled: set[str] = set()

    def put(key: str, value: Tensor | None, where: str) -> None:
        if value is None:
            raise UserInputError(f"{path}: {where} is missing; not a stylegan2-ada-pytorch discriminator")
        sd[key] = value.detach().float()  # same shapes in both layouts
        filled.add(key)

    first = rec.sub(f"b{size}")
    put("convs.0.0.weight", first.sub("fromrgb").tensor("weight"), f"b{size}.fromrgb.weight")
    put("convs.0.1.bias", first.sub("fromrgb").tensor("bias"), f"b{size}.fromrgb.bias")
    for k, r in enumerate(resolutions[:-1], start=1):
        b = rec.sub(f"b{r}")
        put(f"convs.{k}.conv1.0.weight", b.sub("conv0").tensor("weight"), f"b{r}.conv0.weight")
        put(f"convs.{k}.conv1.1.bias", b.sub("conv0").tensor("bias"), f"b{r}.conv0.bias")
        put(f"convs.{k}.conv2.1.weight", b.sub("conv1").tensor("weight"), f"b{r}.conv1.weight")
        put(f"convs.{k}.conv2.2.bias", b.sub("conv1").tensor("bias"), f"b{r}.conv1.bias")
        if b.sub("skip").tensor("bias") is not None:
            raise _unsupported(path, f"b{r}.skip with a bias")
        put(f"convs.{k}.skip.1.weight", b.sub("skip").tensor("weight"), f"b{r}.skip.weight")
    put("final_conv.0.weight", epi.sub("conv").tensor("weight"), "b4.conv.weight")
    put("final_conv.1.bias", epi.sub("conv").tensor("bias"), "b4.conv.bias")
    for i, n in enumerate(("fc", "out")):
        fc = epi.sub(n)
        if fc is None or abs(float(fc.attr("bias_gain", 1.0)) - 1.0) > 1e-6:
            raise _unsupported(path, f"b4.{n} with a learning-rate multiplier")
        put(f"final_linear.{i}.weight", fc.tensor("weight"), f"b4.{n}.weight")
        put(f"final_linear.{i}.bias", fc.tensor("bias"), f"b4.{n}.bias")
    unfilled = [k for k in sd if k not in filled and not k.endswith(".kernel")]
    if unfilled:
        raise UserInputError(f"{path}: nothing in the pickle for discriminator key {unfilled[0]!r}")
    return dict(state=sd, config=cfg, conv_clamp=_clamp_of(convs))


# --------------------------------------------------------------------------------------------
# TensorFlow-era pickles (StyleGAN2 / StyleGAN2-ADA TF): rebuilt as stylegan2-ada-pytorch records
# --------------------------------------------------------------------------------------------

# The settings NVIDIA's legacy.py knows (convert_tf_generator / convert_tf_discriminator); anything
# else could change what the network computes, so it is refused rather than ignored.
_TF_G_KWARGS = {"latent_size", "label_size", "dlatent_size", "resolution", "num_channels", "mapping_layers",
                "label_fmaps", "mapping_fmaps", "mapping_nonlinearity", "mapping_lrmul", "w_avg_beta", "fmap_base",
                "fmap_max", "num_fp16_res", "conv_clamp", "architecture", "resample_kernel", "use_noise",
                "nonlinearity", "truncation_psi", "truncation_cutoff", "style_mixing_prob", "structure"}
_TF_D_KWARGS = {"label_size", "resolution", "num_channels", "architecture", "fmap_base", "fmap_max",
                "num_fp16_res", "conv_clamp", "mapping_fmaps", "nonlinearity", "resample_kernel", "freeze_layers",
                "mapping_layers", "mapping_lrmul", "mbstd_group_size", "mbstd_num_features", "structure"}


def _tf_params(rec: Record, prefix: str = "") -> dict[str, Tensor]:
    """A TF network's variables by slash path, components included (legacy.py _collect_tf_params)."""
    out: dict[str, Tensor] = {}
    for item in rec.state.get("variables") or []:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            value = item[1]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                value = torch.tensor(float(value))  # a 0-d variable comes back from tf.run as a numpy scalar
            if isinstance(value, Tensor):
                out[prefix + str(item[0])] = value
    for name, comp in (rec.state.get("components") or {}).items():
        if isinstance(comp, Record):
            out.update(_tf_params(comp, f"{prefix}{name}/"))
    return out


def _tf_kwargs(rec: Record, known: set[str], path: Path) -> dict[str, Any]:
    kw = rec.state.get("static_kwargs") or {}
    if int(rec.state.get("version", 0) or 0) < 4:
        raise _unsupported(path, "a TensorFlow pickle older than version 4 (StyleGAN1?)")
    unknown = sorted(set(kw) - known)
    if unknown:
        raise _unsupported(path, f"a TensorFlow network with setting {unknown[0]!r}")
    return kw


def _conv(t: Tensor, flip: bool = False) -> Tensor:
    # TF conv weights are [kh, kw, in, out]; TF's transposed conv is a true convolution, so its
    # kernel is flipped to become the correlation torch computes (legacy.py: [::-1, ::-1]).
    w = t.permute(3, 2, 0, 1)
    return w.flip(2, 3) if flip else w


def _rec(name: str, params: dict[str, Tensor] | None = None, mods: dict[str, Record] | None = None,
         **attrs: Any) -> Record:
    return Record(name, "persistent", {"_parameters": dict(params or {}), "_buffers": {},
                                       "_modules": dict(mods or {}), **attrs})


def _tf_get(params: dict[str, Tensor], name: str, path: Path) -> Tensor:
    if name not in params:
        raise UserInputError(f"{path}: TensorFlow network has no variable {name!r}")
    return params[name].float()


def tf_generator_record(rec: Record, path: str | Path = "network.pkl") -> Record:
    """A TF ``G``/``Gs`` network → a ``Generator`` record shaped like stylegan2-ada-pytorch's (legacy.py's mapping)."""
    path = Path(path)
    kw = _tf_kwargs(rec, _TF_G_KWARGS, path)
    p = _tf_params(rec)
    res = int(kw.get("resolution", 1024))
    arch = kw.get("architecture", "skip")
    if any(re.fullmatch(r"(synthesis/)?ToRGB_lod\d+/.*", k) for k in p):
        arch = "orig"
    act = kw.get("nonlinearity", "lrelu")
    lrmul = float(kw.get("mapping_lrmul", 0.01))
    clamp = kw.get("conv_clamp")
    taps = kw.get("resample_kernel", [1, 3, 3, 1])
    from ops import setup_filter

    filt = setup_filter(taps)
    fcs = {}
    while f"mapping/Dense{len(fcs)}/weight" in p:
        i = len(fcs)
        fcs[f"fc{i}"] = _rec("FullyConnectedLayer", {"weight": p[f"mapping/Dense{i}/weight"].float().t(),
                                                       "bias": _tf_get(p, f"mapping/Dense{i}/bias", path)},
                             activation=kw.get("mapping_nonlinearity", "lrelu"), bias_gain=lrmul)
    mods = dict(fcs)
    if "mapping/LabelEmbed/weight" in p:
        mods["embed"] = _rec("FullyConnectedLayer")
    mbufs = {"w_avg": p["dlatent_avg"].float()} if "dlatent_avg" in p else {}
    mapping = _rec("MappingNetwork", mods=mods, c_dim=int(kw.get("label_size", 0) or 0))
    mapping.state["_buffers"] = mbufs

    def layer(prefix: str, noise: int | None, flip: bool = False) -> Record:
        params = {"weight": _conv(_tf_get(p, f"{prefix}/weight", path), flip), "bias": _tf_get(p, f"{prefix}/bias", path)}
        bufs = {"resample_filter": filt}
        use_noise = f"{prefix}/noise_strength" in p
        if use_noise and noise is not None:
            params["noise_strength"] = _tf_get(p, f"{prefix}/noise_strength", path).reshape(())
            bufs["noise_const"] = _tf_get(p, f"synthesis/noise{noise}", path)[0, 0]
        aff = _rec("FullyConnectedLayer", {"weight": _tf_get(p, f"{prefix}/mod_weight", path).t(),
                                           "bias": _tf_get(p, f"{prefix}/mod_bias", path) + 1})
        r = _rec("SynthesisLayer", params, {"affine": aff}, activation=act, use_noise=use_noise, conv_clamp=clamp)
        r.state["_buffers"] = bufs
        return r

    blocks = {}
    r = 4
    while r <= res:
        s = f"synthesis/{r}x{r}"
        mods = {}
        params = {}
        if r == 4:
            params["const"] = _tf_get(p, f"{s}/Const/const", path)[0]
            mods["conv1"] = layer(f"{s}/Conv", 0)
        else:
            lg = int(math.log2(r))
            mods["conv0"] = layer(f"{s}/Conv0_up", lg * 2 - 5, flip=True)
            mods["conv1"] = layer(f"{s}/Conv1", lg * 2 - 4)
        if f"{s}/ToRGB/weight" in p:
            mods["torgb"] = _rec("ToRGBLayer", {"weight": _conv(_tf_get(p, f"{s}/ToRGB/weight", path)),
                                                "bias": _tf_get(p, f"{s}/ToRGB/bias", path)},
                                 {"affine": _rec("FullyConnectedLayer",
                                                 {"weight": _tf_get(p, f"{s}/ToRGB/mod_weight", path).t(),
                                                  "bias": _tf_get(p, f"{s}/ToRGB/mod_bias", path) + 1})},
                                 conv_clamp=clamp)
        b = _rec("SynthesisBlock", params, mods, architecture=arch)
        b.state["_buffers"] = {"resample_filter": filt}
        blocks[f"b{r}"] = b
        r *= 2
    synthesis = _rec("SynthesisNetwork", mods=blocks, img_resolution=res,
                     img_channels=int(kw.get("num_channels", 3)))
    return _rec("Generator", mods={"mapping": mapping, "synthesis": synthesis},
                c_dim=int(kw.get("label_size", 0) or 0))


def tf_discriminator_record(rec: Record, path: str | Path = "network.pkl") -> Record:
    """A TF ``D`` network → a ``Discriminator`` record shaped like stylegan2-ada-pytorch's.

    One deliberate difference from legacy.py (line 242, ``mbstd_group_size`` default None =
    the whole minibatch): a pickle that does not list it gets 4, the default of TF StyleGAN2's
    ``D_stylegan2`` (training/networks_stylegan2.py), which built it.
    """
    path = Path(path)
    kw = _tf_kwargs(rec, _TF_D_KWARGS, path)
    p = _tf_params(rec)
    res = int(kw.get("resolution", 1024))
    arch = kw.get("architecture", "resnet")
    if any(re.fullmatch(r"FromRGB_lod\d+/.*", k) for k in p):
        arch = "orig"
    act = kw.get("nonlinearity", "lrelu")
    clamp = kw.get("conv_clamp")
    from ops import setup_filter

    filt = setup_filter(kw.get("resample_kernel", [1, 3, 3, 1]))

    def conv(name: str, bias: bool = True) -> Record:
        params = {"weight": _conv(_tf_get(p, f"{name}/weight", path))}
        if bias:
            params["bias"] = _tf_get(p, f"{name}/bias", path)
        r = _rec("Conv2dLayer", params, activation=act if bias else "linear", conv_clamp=clamp if bias else None)
        r.state["_buffers"] = {"resample_filter": filt}
        return r

    mods = {}
    r = res
    while r >= 8:
        s = f"{r}x{r}"
        bm = {}
        if f"{s}/FromRGB/weight" in p:
            bm["fromrgb"] = conv(f"{s}/FromRGB")
        bm["conv0"] = conv(f"{s}/Conv0")
        bm["conv1"] = conv(f"{s}/Conv1_down")
        if f"{s}/Skip/weight" in p:
            bm["skip"] = conv(f"{s}/Skip", bias=False)
        b = _rec("DiscriminatorBlock", mods=bm, architecture=arch)
        b.state["_buffers"] = {"resample_filter": filt}
        mods[f"b{r}"] = b
        r //= 2
    fc = _rec("FullyConnectedLayer", {"weight": _tf_get(p, "4x4/Dense0/weight", path).t(),
                                      "bias": _tf_get(p, "4x4/Dense0/bias", path)}, activation=act, bias_gain=1.0)
    out = _rec("FullyConnectedLayer", {"weight": _tf_get(p, "Output/weight", path).t(),
                                       "bias": _tf_get(p, "Output/bias", path)}, activation="linear", bias_gain=1.0)
    n_feat = int(kw.get("mbstd_num_features", 1))
    group = kw.get("mbstd_group_size", 4)
    epi_mods = {"conv": conv("4x4/Conv"), "fc": fc, "out": out}
    if n_feat > 0 and group and int(group) > 1:  # TF skips the layer for a group of 1 ("if mbstd_group_size > 1")
        epi_mods["mbstd"] = _rec("MinibatchStdLayer", group_size=int(group), num_channels=n_feat)
    mods["b4"] = _rec("DiscriminatorEpilogue", mods=epi_mods, architecture=arch,
                      cmap_dim=int(kw.get("mapping_fmaps") or 0) if kw.get("label_size") else 0)
    return _rec("Discriminator", mods=mods, c_dim=int(kw.get("label_size", 0) or 0))


def load_nvidia_pickle(path: str | Path) -> dict[str, Any]:
    """Read a stylegan2-ada-pytorch pickle as data and return a community-layout checkpoint dict.

    ``{"g_ema", "g", "d", "latent_avg", "toonlab": {g_config, d_config, conv_clamp, source}}`` —
    entries present in the pickle only. The toonlab entry records NVIDIA's ``conv_clamp`` so our
    loaders re-apply it (``apply_conv_clamp``).
    """
    path = Path(path)
    data = read_pickle(path)
    fmt = NVIDIA_FORMAT
    if isinstance(data, tuple) and data and all(isinstance(x, Record) and x.kind == "tf" for x in data):
        if len(data) != 3:
            raise _unsupported(path, f"a TensorFlow pickle of {len(data)} networks (expected G, D, Gs)")
        # (G, D, Gs): the TF variables rebuilt as the records stylegan2-ada-pytorch's legacy.py makes.
        data = {"G": tf_generator_record(data[0], path), "D": tf_discriminator_record(data[1], path),
                "G_ema": tf_generator_record(data[2], path)}
        fmt = NVIDIA_TF_FORMAT
    if isinstance(data, Record):  # a bare pickled network (pickle.dump(G_ema, f))
        data = {"G_ema" if data.class_name == "Generator" else data.class_name: data}
    if not isinstance(data, dict):
        raise UserInputError(f"{path} is not a network pickle (it holds a {type(data).__name__})")
    nets = {k: v for k, v in data.items() if isinstance(v, Record)}
    if not any(k in nets for k in ("G_ema", "G", "D")):
        keys = ", ".join(map(str, data)) or "none"
        raise UserInputError(f"{path} is not a stylegan2-ada-pytorch network pickle (keys: {keys[:120]})")
    out: dict[str, Any] = {}
    meta: dict[str, Any] = {"conv_clamp": {}}
    for key, ours in (("G_ema", "g_ema"), ("G", "g")):
        if key in nets:
            conv = convert_generator(nets[key], path)
            if "g_config" in meta and meta["g_config"] != conv["config"]:
                raise UserInputError(f"{path}: G and G_ema have different shapes")
            out[ours] = conv["state"]
            meta["g_config"] = conv["config"]
            meta["conv_clamp"].setdefault("g", conv["conv_clamp"])
            if conv["w_avg"] is not None and "latent_avg" not in out:
                out["latent_avg"] = conv["w_avg"]
    if "D" in nets:
        # A discriminator we cannot represent must not stop rendering with G: it is left out, and
        # load_discriminator (FreezeD, fine-tuning) reports why.
        try:
            conv = convert_discriminator(nets["D"], path)
        except UnsupportedNetwork as e:
            meta["d_unsupported"] = str(e)
        else:
            out["d"] = conv["state"]
            meta["d_config"] = conv["config"]
            meta["conv_clamp"]["d"] = conv["conv_clamp"]
    if "g_ema" not in out and "g" not in out:
        raise UserInputError(f"{path}: the pickle holds no generator (G_ema or G)")
    tsk = data.get("training_set_kwargs")
    meta["source"] = {"format": fmt, "file": path.name,
                      "training_set": {k: v for k, v in tsk.items() if isinstance(v, (str, int, float, bool))}
                      if isinstance(tsk, dict) else None}
    out["toonlab"] = meta
    return out


# --------------------------------------------------------------------------------------------
# conv_clamp
# --------------------------------------------------------------------------------------------


def _clamp_output(c: float) -> Callable:
    def hook(module, inputs, output):
        return output.clamp(-c, c)

    return hook


def _clamp_rgb(c: float) -> Callable:
    # NVIDIA clamps ToRGB's conv + bias *before* the skip image is added; our ToRGB returns the
    # sum, so the hook recomputes the (cheap, 1×1) conv + bias, clamps it and adds the skip. It
    # reads everything from `module`, so copies (deepcopy, .to(device)) stay correct.
    def hook(module, args, kwargs, output):
        x, style = args[0], args[1] if len(args) > 1 else kwargs["style"]
        skip = args[2] if len(args) > 2 else kwargs.get("skip")
        y = (module.conv(x, style) + module.bias.to(x.dtype)).clamp(-c, c)
        return y if skip is None else y + module.upsample(skip).to(y.dtype)

    return hook


def apply_conv_clamp(net: torch.nn.Module, clamp: float | None) -> torch.nn.Module:
    """Clamp activations to ±``clamp`` where NVIDIA's networks do (``conv_clamp``); None: no-op.

    Generator: after every styled conv's bias + leaky ReLU, and ToRGB's conv + bias (before the
    skip sum). Discriminator: after each FromRGB/conv layer's activation (NVIDIA's ``gain=√½`` on
    the residual conv scales its clamp too — our √2-larger pre-sum value clamped at ±c is the
    same thing), not the skip path. Idempotent: a second call replaces the hooks.
    """
    for h in getattr(net, "_conv_clamp_hooks", []):
        h.remove()
    hooks = []
    if clamp is not None:
        c = float(clamp)
        for m in net.modules():
            if isinstance(m, StyledConv):
                hooks.append(m.activate.register_forward_hook(_clamp_output(c)))
            elif isinstance(m, ToRGB):
                hooks.append(m.register_forward_hook(_clamp_rgb(c), with_kwargs=True))
        if isinstance(net, Discriminator):
            from stylegan2.networks import ConvLayer, FusedLeakyReLU

            for name, m in net.named_modules():
                if isinstance(m, ConvLayer) and isinstance(m[-1], FusedLeakyReLU):
                    hooks.append(m[-1].register_forward_hook(_clamp_output(c)))
    net._conv_clamp_hooks = hooks
    net.conv_clamp = None if clamp is None else float(clamp)
    return net
