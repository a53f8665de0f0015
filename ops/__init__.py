"""toonlab fused ops: upfirdn2d (+ up/down/blur helpers) and fused bias + activation.

Each op has a plain-PyTorch reference implementation (any device, autograd gives any order
of gradient) and a CUDA kernel that is compiled lazily on the first CUDA call (never at
import) and cached on disk.  Choose with ``impl='auto'|'ref'|'cuda'`` or the
``TOONLAB_OPS_IMPL`` environment variable (overrides 'auto'); `cuda_status` reports what was
built.
"""

from ._build import cuda_status
from .bias_act import bias_act, fused_leaky_relu
from .upfirdn2d import blur2d, downsample2d, setup_filter, upfirdn2d, upsample2d

__all__ = [
    "upfirdn2d",
    "upsample2d",
    "downsample2d",
    "blur2d",
    "setup_filter",
    "bias_act",
    "fused_leaky_relu",
    "cuda_status",
]
