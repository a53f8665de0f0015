"""toonlab: a lab for cartoon faces — and, as a package, its core (layer 1).

What every model family stands on lives here and names none of them: errors, atomic writes,
device/precision, images (decoding, the one image↔tensor conversion, YUV, grids), datasets
(folder, zip, LMDB, built-in synthetic faces) and their seeded samplers, video I/O, the one
checkpoint reader, run folders with their lock and stats, the one trainer skeleton
(``training.py``), hooks and the command-line vocabulary. ``cli.py``, ``demo.py`` and ``app.py``
are entry points above every layer (docs/DESIGN.md).
"""

__version__ = "0.1.0"
