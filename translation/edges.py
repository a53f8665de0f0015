"""Edge-smoothed copies of a style folder (CartoonGAN / AnimeGAN data preparation).

    python translation/edges.py data/hayao/style --out data/hayao/smooth --workers 8

The discriminators learn that crisp cartoon edges are "real" by also seeing each cartoon with
its edges blurred as a fake (Canny → dilate → Gaussian at the edges; ``translation.data.edge_smooth``).
Every image under STYLE_DIR is written under the same relative path in SMOOTH_DIR (gif/tiff as
PNG), atomically, in parallel; unreadable files are skipped and listed.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from pathlib import Path
from typing import Iterator

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
from PIL import Image

from toonlab.atomic import save_image_atomic
from toonlab.errors import ENVIRONMENT_ERRNOS, ToonlabError, UserInputError, user_errors
from toonlab.images import IMAGE_EXTENSIONS, ImageError, load_image
from toonlab.options import ToonCommand
from toonlab.runtime import progress

__all__ = ["smooth_file", "smooth_folder", "main"]

_KEEP_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def _out_rel(rel: Path) -> Path:
    return rel if rel.suffix.lower() in _KEEP_EXT else rel.with_suffix(".png")


def _scan(root: Path, exclude: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d.resolve() == exclude:  # SMOOTH_DIR inside STYLE_DIR: never smooth our own outputs
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n != "__MACOSX")
        for fn in sorted(filenames):
            if not fn.startswith(".") and Path(fn).suffix.lower() in IMAGE_EXTENSIONS:
                yield d / fn


def smooth_file(src: str | os.PathLike, dst: str | os.PathLike, quality: int = 95) -> Path:
    """Write the edge-smoothed copy of ``src`` to ``dst`` (atomically); ImageError if ``src`` is unreadable."""
    from translation.data import edge_smooth  # lazy: keeps this CLI's import light

    arr = edge_smooth(np.asarray(load_image(src, name=str(src))))
    dst = Path(dst)
    kw = {"quality": quality} if dst.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    return save_image_atomic(Image.fromarray(arr), dst, **kw)


def _work(task: tuple[str, str, int]) -> tuple[str, str | None]:
    src, dst, quality = task
    try:
        smooth_file(src, dst, quality)
        return src, None
    except ImageError as e:
        return src, str(e).splitlines()[0]
    except OSError as e:
        if e.errno in ENVIRONMENT_ERRNOS:  # the output folder's fault (full, read-only): stop, naming it
            raise OSError(e.errno, e.strerror or str(e), str(e.filename or dst)) from None
        return src, f"{src}: cannot write {dst}: {e.strerror or e}"


def _init_worker() -> None:
    try:  # one OpenCV thread per process: the pool already uses every core
        import cv2

        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001
        pass


def smooth_folder(
    style_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    workers: int | None = None,
    quality: int = 95,
    skip_existing: bool = False,
    show_progress: bool = True,
) -> tuple[int, list[tuple[str, str]]]:
    """Edge-smooth every image under ``style_dir`` into ``out_dir``; returns (written, skipped (file, reason)).

    ``workers``: processes (default: all cores; 1 runs in this process).
    """
    root, out = Path(style_dir), Path(out_dir)
    if not root.is_dir():
        raise UserInputError(f"style folder not found: {root}")
    if root.resolve() == out.resolve():
        raise UserInputError(f"--out {out} is the style folder itself: choose another folder")
    srcs = list(_scan(root, out.resolve()))
    if not srcs:
        raise UserInputError(f"no images found in {root}")
    tasks = [(str(s), str(out / _out_rel(s.relative_to(root))), quality) for s in srcs]
    if skip_existing:
        tasks = [t for t in tasks if not Path(t[1]).exists()]
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
    skipped: list[tuple[str, str]] = []
    written = 0
    bar = progress(total=len(tasks), desc="edge-smooth", unit="img", disable=not show_progress)
    # Refer to the worker through the package, also when this file runs as a script, so that
    # child processes import it by name rather than re-running __main__.
    from translation.edges import _init_worker as init
    from translation.edges import _work as work

    if workers == 1:
        results = map(work, tasks)
        pool = None
    else:
        # forkserver: children fork from a clean single-threaded server (plain fork from a process
        # with live threads, as torch or a test runner leave behind, can deadlock); the preload
        # makes each child start with the imports done.
        if "forkserver" in mp.get_all_start_methods():
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(["translation.edges"])
        else:
            ctx = mp.get_context("spawn")
        pool = ctx.Pool(workers, initializer=init)
        results = pool.imap_unordered(work, tasks, chunksize=max(1, min(16, len(tasks) // (workers * 4))))
    try:
        for src, err in results:
            if err is None:
                written += 1
            else:
                skipped.append((src, err))
            bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    skipped.sort()
    return written, skipped


@click.command(name="edges", cls=ToonCommand)
@click.argument("style_dir", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the smoothed copies (same relative paths).")
@click.option("--workers", type=click.IntRange(1), default=None, help="Processes (default: all cores).")
@click.option("--quality", type=click.IntRange(1, 100), default=95, show_default=True, help="JPEG/WebP quality.")
@click.option("--skip-existing", is_flag=True, help="Keep copies that already exist (resume).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def main(style_dir: Path, out_dir: Path, workers: int | None, quality: int, skip_existing: bool, quiet: bool) -> None:
    """Write edge-smoothed copies of every image in STYLE_DIR (the discriminator's extra fakes)."""
    with user_errors():
        written, skipped = smooth_folder(style_dir, out_dir, workers, quality, skip_existing, not quiet)
        if written == 0 and skipped:
            first = skipped[0][1]
            raise ToonlabError(f"no image could be smoothed: {len(skipped)} unreadable ({first}"
                               f"{'; ...' if len(skipped) > 1 else ''})")
    click.echo(f"wrote {written} edge-smoothed image{'s' if written != 1 else ''} to {out_dir}")
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file{'s' if len(skipped) != 1 else ''}:", err=True)
        for _, reason in skipped:
            click.echo(f"  {reason}", err=True)


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("edges")
