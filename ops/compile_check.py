"""Compile toonlab's CUDA extensions for a given architecture; no GPU needed.

    python -m ops.compile_check --arch 9.0          # H100
    python -m ops.compile_check --arch 8.6 bias_act

Builds into the normal cache (``${TOONLAB_CACHE:-~/.cache/toonlab}/torch_extensions``).
"""

from __future__ import annotations

import argparse
import sys

from . import _build


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="9.0", help="TORCH_CUDA_ARCH_LIST value (default 9.0, H100)")
    ap.add_argument("--verbose", action="store_true", help="show the compiler commands")
    ap.add_argument("names", nargs="*", help=f"extensions to build (default: {' '.join(_build.EXTENSIONS)})")
    args = ap.parse_args(argv)
    results = _build.compile_check(args.arch, args.names or None, verbose=args.verbose)
    for name, res in results.items():
        print(f"{name}: {res}")
    return 0 if all(r.startswith("ok") for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
