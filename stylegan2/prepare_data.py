"""Pack a folder or zip of images into a community-format StyleGAN2 LMDB.

    python stylegan2/prepare_data.py faces/ --out faces.lmdb --size 256,128 --workers 8

The LMDB holds every requested size (keys ``"{size}-{index:05d}"`` -> JPEG,
``"length"`` -> count), exactly like rosinality's ``prepare_data.py``, so it
trains with toonlab and with the community scripts. Unreadable images are
skipped and listed; the output appears only once complete.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from toonlab.errors import ToonlabError, environment_message, one_line_warnings, user_errors
from toonlab.options import ToonCommand

MIN_SIZE = 8


def parse_sizes(ctx: click.Context | None, param: click.Parameter | None, value: str) -> list[int]:
    """``"256,128"`` -> ``[256, 128]``; every size a power of two >= 8 (StyleGAN2 resolutions)."""
    sizes: list[int] = []
    for part in str(value).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            size = int(part)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not an integer (expected e.g. 256 or 256,128)") from None
        if size < MIN_SIZE or size & (size - 1):
            raise click.BadParameter(f"{size} is not a power of two >= {MIN_SIZE}")
        if size not in sizes:
            sizes.append(size)
    if not sizes:
        raise click.BadParameter("give at least one size, e.g. 256 or 256,128")
    return sizes


@click.command(name="prepare", cls=ToonCommand)
@click.argument("src", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="LMDB directory to create (e.g. faces.lmdb).")
@click.option("--size", "sizes", default="256", show_default=True, callback=parse_sizes,
              help="Resolution(s), comma-separated powers of two, e.g. 256,128.")
@click.option("--workers", type=click.IntRange(0), default=2, show_default=True,
              help="Decode/encode processes (0 or 1: in this process).")
@click.option("--quality", type=click.IntRange(1, 100), default=100, show_default=True,
              help="JPEG quality (100 = the community format).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists (once the new LMDB is complete).")
def main(src: Path, out: Path, sizes: list[int], workers: int, quality: int, overwrite: bool) -> None:
    """Resize + centre-crop every image under SRC (folder or .zip) into a StyleGAN2 LMDB."""
    from toonlab.data import UnreadableImageWarning
    from toonlab.prepare import prepare_lmdb  # after parsing: --help stays fast

    with user_errors(), warnings.catch_warnings():
        # Every skipped file is reported, even if a previous run in this process warned.
        warnings.simplefilter("always", UnreadableImageWarning)
        one_line_warnings()
        try:
            report = prepare_lmdb(src, out, sizes, workers=workers, quality=quality, overwrite=overwrite)
        except OSError as e:  # disk full, permission denied, ...: still one line, exit 2
            raise ToonlabError(environment_message(e)) from None
    click.echo(report.summary())


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("prepare")
