"""toonlab: a lab for cartoon faces.

What every model family shares lives here: image I/O and grids, datasets (folder, zip, LMDB,
built-in synthetic faces), run folders and checkpoint writing, and the ``toonlab`` command.
"""

__version__ = "0.1.0"
