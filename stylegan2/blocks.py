"""Block numbering of the StyleGAN2 generator (1-based), shared by FreezeSG/FreezeG, the structure
loss and layer swapping.

Block 1 = 4 px (``input``, ``conv1``, ``to_rgb1``); block k ≥ 2 = ``convs[2k-4]``, ``convs[2k-3]``,
``to_rgbs[k-2]``. The mapping network is ``style.*`` (no block).
"""

from __future__ import annotations

import re

__all__ = ["generator_block_of"]


def generator_block_of(name: str) -> int | None:
    """Block number (1-based) of a generator parameter/buffer name; None for the mapping network."""
    if name.startswith("style."):
        return None
    if name.startswith(("input.", "conv1.", "to_rgb1.")):
        return 1
    if m := re.match(r"convs\.(\d+)\.", name):
        return int(m.group(1)) // 2 + 2
    if m := re.match(r"to_rgbs\.(\d+)\.", name):
        return int(m.group(1)) + 2
    if m := re.match(r"noises\.noise_(\d+)$", name):
        return (int(m.group(1)) + 1) // 2 + 1
    raise KeyError(f"not a StyleGAN2 generator entry: {name}")
