"""ONNX export of a translation generator, checked against onnxruntime.
"""

from __future__ import annotations

import copy
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from toonlab.atomic import atomic_path
from toonlab.errors import UserInputError
from translation.inference import MULTIPLE

# --------------------------------------------------------------------------- models and ONNX


def export_onnx(
    G: nn.Module,
    path: str | os.PathLike,
    opset: int = 18,
    check: bool = True,
    sample_hw: tuple[int, int] = (64, 96),
) -> float:
    """Write ``G`` as an ONNX model with dynamic batch, height and width; return onnxruntime's max |Δ|.

    Input ``input`` and output ``output``: ``[N,3,H,W]`` float32 RGB in [-1, 1], H and W multiples
    of 32. Opset 18 runs on onnxruntime ≥ 1.14 (1.3x included). The check runs the written file
    at two sizes and batch sizes and compares with PyTorch (NaN when onnxruntime is missing).
    """
    path = Path(path)
    G = _cpu_fp32_copy(G)
    x = torch.randn(2, 3, *sample_hw, generator=torch.Generator().manual_seed(0))
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # torch.export-based exporter; dims are declared dynamic, so any N, H, W run.
            B, H, W = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim("height"), torch.export.Dim("width")
            torch.onnx.export(G, (x,), str(tmp), input_names=["input"], output_names=["output"],
                              opset_version=opset, dynamo=True, external_data=False, verbose=False,
                              dynamic_shapes=({0: B, 2: H, 3: W},))
        except Exception as e:  # noqa: BLE001 - older torch or an op torch.export can't trace
            try:
                torch.onnx.export(G, (x,), str(tmp), input_names=["input"], output_names=["output"],
                                  opset_version=min(opset, 17), dynamo=False,
                                  dynamic_axes={n: {0: "batch", 2: "height", 3: "width"} for n in ("input", "output")})
            except Exception as e2:  # noqa: BLE001
                raise UserInputError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}; "
                                     f"fallback exporter: {type(e2).__name__}: {str(e2).splitlines()[0][:160]}") from None
    return onnx_max_diff(G, path, sample_hw) if check else float("nan")


def _cpu_fp32_copy(G: nn.Module) -> nn.Module:
    G = copy.deepcopy(G).cpu().float().eval().requires_grad_(False)
    return G.to(memory_format=torch.contiguous_format)


def onnx_max_diff(G: nn.Module, path: str | os.PathLike, sample_hw: tuple[int, int] = (64, 96)) -> float:
    """Max |onnxruntime − PyTorch| over two inputs of different batch and size (fp32, CPU)."""
    try:
        import onnxruntime as ort
    except ImportError:
        warnings.warn("onnxruntime is not installed: the exported model was not checked", stacklevel=2)
        return float("nan")
    G = _cpu_fp32_copy(G)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    g = torch.Generator().manual_seed(1)
    h, w = sample_hw
    worst = 0.0
    for shape in [(1, 3, h, w), (3, 3, h + MULTIPLE, w - MULTIPLE if w > MULTIPLE else w + MULTIPLE)]:
        x = torch.rand(shape, generator=g).mul(2).sub(1)
        with torch.no_grad():
            ref = G(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise UserInputError(f"ONNX model gives shape {got.shape} for input {tuple(shape)}, PyTorch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst
