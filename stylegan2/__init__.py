"""StyleGAN2 networks in the community (rosinality) checkpoint layout, checkpoint I/O and CLIs.

Names are resolved lazily so that light tools (``prepare_data``) do not import the networks.
"""

from typing import Any

__all__ = ["Generator", "Discriminator", "SynthesisOutput"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from stylegan2 import networks

        return getattr(networks, name)
    raise AttributeError(f"module 'stylegan2' has no attribute {name!r}")
