"""CartoonGAN vs CycleGAN (vs AnimeGANv2): FID and time per epoch on the same data.

    python translation/compare.py                       # CPU-sized: 32 px, 40 iterations each, a few minutes
    python translation/compare.py --iters 20000 --size 256 --batch 8 --report docs/TRANSLATION_COMPARISON.md

A measurement that needs FID, so the command lives in ``metrics/translation_comparison.py`` (layer 4);
this script is where users type it.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from toonlab.cli import run_script

    run_script("translate-compare")
