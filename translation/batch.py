"""Translating files: inputs (images, folders recursively, videos) become jobs with mirrored output
paths; every job is translated, written atomically, and unreadable inputs are skipped and listed
(never raised). Decoding and encoding run in their own threads; videos keep fps, frame count and
audio (``toonlab/video.py``).
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from toonlab.atomic import save_image_atomic
from toonlab.errors import ENVIRONMENT_ERRNOS, UserInputError
from toonlab.images import IMAGE_EXTENSIONS, MAX_PIXELS, ImageError, downscaled_from, load_image
from toonlab.runtime import progress
from toonlab.video import VIDEO_EXTENSIONS, VideoError, VideoResult, transform_video
from translation.inference import Translator, is_oom, translate_image

# --------------------------------------------------------------------------- inputs and outputs

# Formats we write back as themselves; anything else (gif, tiff) becomes a PNG.
_KEEP_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


@dataclass(frozen=True)
class Job:
    """One input file, what it is, and where its output goes."""

    src: Path
    dst: Path
    kind: str  # "image" | "video"


def _out_rel(rel: Path, kind: str) -> Path:
    if kind == "video":
        return rel.with_suffix(".mp4")
    return rel if rel.suffix.lower() in _KEEP_EXT else rel.with_suffix(".png")


def _walk(root: Path, exclude: Path) -> Iterator[Path]:
    wanted = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        d = Path(dirpath)
        if d.resolve() == exclude:  # the output folder inside an input folder: not an input
            dirnames[:] = []
            continue
        dirnames[:] = sorted(n for n in dirnames if not n.startswith(".") and n != "__MACOSX")
        for fn in sorted(filenames):
            if not fn.startswith(".") and Path(fn).suffix.lower() in wanted:
                yield d / fn


def collect_jobs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike) -> tuple[list[Job], list[tuple[str, str]]]:
    """Expand files and folders (recursively) into jobs; returns (jobs, skipped as (name, reason)).

    A folder's files land under ``out_dir`` at their path relative to that folder, a file given
    directly at ``out_dir/<name>``. Videos are written as .mp4, images in their own format (gif
    and tiff as .png). Outputs that would collide get a numeric suffix; nothing inside ``out_dir``
    is taken as input (so ``--out photos/anime`` can sit inside ``photos/``).
    """
    out_dir = Path(out_dir)
    out_abs = out_dir.resolve()
    jobs: list[Job] = []
    skipped: list[tuple[str, str]] = []
    taken: set[Path] = set()

    def add(src: Path, rel: Path) -> None:
        kind = "video" if src.suffix.lower() in VIDEO_EXTENSIONS else "image"
        dst = _out_rel(rel, kind)
        k = 2
        while dst in taken:
            dst = dst.with_name(f"{_out_rel(rel, kind).stem}_{k}{dst.suffix}")
            k += 1
        taken.add(dst)
        if (out_dir / dst).resolve() == src.resolve():
            skipped.append((str(src), "its output would overwrite it (it lies in --out)"))
            return
        jobs.append(Job(src, out_dir / dst, kind))

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            if p.resolve() == out_abs:
                raise UserInputError(f"--out {out_dir} is the input folder {p} itself: choose another output folder")
            found = False
            for f in _walk(p, out_abs):
                found = True
                add(f, f.relative_to(p))
            if not found:
                skipped.append((str(p), "folder holds no images or videos"))
        elif p.is_file():
            add(p, Path(p.name))
        else:
            skipped.append((str(p), "no such file or folder"))
    return jobs, skipped


@dataclass
class TranslateOptions:
    """How images and videos are processed (the CLI's flags)."""

    max_side: int = 1536
    tile: int | None = None
    overlap: int = 128
    retain_color: bool = False
    match_brightness: bool = False
    batch: int = 4
    jpeg_quality: int = 95
    skip_existing: bool = False
    show_progress: bool = True
    #: Images above this many pixels are downscaled on load (0/None: no limit); see Report.notes.
    max_pixels: int | None = MAX_PIXELS


@dataclass
class Report:
    """What :func:`translate_paths` did."""

    images: list[Path] = field(default_factory=list)
    videos: list[VideoResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Outputs that could not be written (a full disk, a read-only folder): ``(output, cause)``.
    #: Not the inputs' fault, so not in ``skipped``; the command exits 2 when there are any.
    unwritten: list[tuple[str, str]] = field(default_factory=list)
    #: One line per input that was changed on the way (downscaled for --max-pixels).
    notes: list[str] = field(default_factory=list)
    existing: int = 0

    @property
    def processed(self) -> int:
        return len(self.images) + len(self.videos)


def _save(arr: np.ndarray, dst: Path, quality: int) -> Path:
    kw = {"quality": quality} if dst.suffix.lower() in (".jpg", ".jpeg", ".webp") else {}
    return save_image_atomic(Image.fromarray(arr), dst, **kw)


def _prefetch(fn: Callable, items: Iterable, pool: ThreadPoolExecutor, depth: int) -> Iterator:
    """``map(fn, items)`` in order, with up to ``depth`` calls running ahead in ``pool``."""
    queue: list[Future] = []
    for it in items:
        queue.append(pool.submit(fn, it))
        if len(queue) > depth:
            yield queue.pop(0).result()
    for f in queue:
        yield f.result()


def _load(job: Job, max_pixels: int | None = None, notes: list[str] | None = None
          ) -> tuple[Job, np.ndarray | None, str | None]:
    try:
        img = load_image(job.src, name=str(job.src), max_pixels=max_pixels)
    except ImageError as e:
        return job, None, str(e).splitlines()[0]
    was = downscaled_from(img)
    if was is not None and notes is not None:
        notes.append(f"{job.src}: {was[0]}x{was[1]} ({was[0] * was[1] / 1e6:.0f} MP) is above --max-pixels "
                     f"{max_pixels / 1e6:g} MP; translated at {img.width}x{img.height} (--max-pixels 0: no limit)")
    return job, np.asarray(img), None


def translate_paths(tr: Translator, jobs: Sequence[Job], opts: TranslateOptions | None = None) -> Report:
    """Translate every job; unreadable inputs are skipped and listed in the report, never raised."""
    opts = opts or TranslateOptions()
    report = Report()
    todo = []
    for j in jobs:
        if opts.skip_existing and j.dst.exists():
            report.existing += 1
        else:
            todo.append(j)
    images = [j for j in todo if j.kind == "image"]
    videos = [j for j in todo if j.kind == "video"]
    tile = opts.tile or opts.max_side
    if images:
        bar = progress(total=len(images), desc="images", unit="img", disable=not opts.show_progress)
        with ThreadPoolExecutor(2, thread_name_prefix="decode") as loader, \
                ThreadPoolExecutor(2, thread_name_prefix="encode") as saver:
            saves: list[tuple[Job, Future]] = []
            group: list[tuple[Job, np.ndarray]] = []

            def flush() -> None:
                if not group:
                    return
                try:
                    outs = tr.translate_uint8(np.stack([a for _, a in group]), opts.retain_color,
                                              opts.match_brightness)()
                except RuntimeError as e:  # a batch too large for the GPU: one at a time, tiled if need be
                    if not is_oom(e):
                        raise
                    torch.cuda.empty_cache()
                    outs = [translate_image(tr, a, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                            retain=opts.retain_color, brightness=opts.match_brightness, batch=1)
                            for _, a in group]
                for (job, _), o in zip(group, outs):
                    saves.append((job, saver.submit(_save, o, job.dst, opts.jpeg_quality)))
                bar.update(len(group))
                group.clear()

            load = functools.partial(_load, max_pixels=opts.max_pixels or None, notes=report.notes)
            for job, arr, err in _prefetch(load, images, loader, depth=max(2, opts.batch)):
                if arr is None:
                    report.skipped.append((str(job.src), err))
                    bar.update(1)
                    continue
                if max(arr.shape[:2]) > opts.max_side:
                    flush()
                    out = translate_image(tr, arr, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                          retain=opts.retain_color, brightness=opts.match_brightness,
                                          batch=opts.batch, show_progress=opts.show_progress)
                    saves.append((job, saver.submit(_save, out, job.dst, opts.jpeg_quality)))
                    bar.update(1)
                    continue
                if group and (arr.shape != group[0][1].shape or len(group) >= opts.batch):
                    flush()
                group.append((job, arr))
            flush()
            for job, fut in saves:
                try:
                    report.images.append(fut.result())
                except OSError as e:
                    report.unwritten.append((str(e.filename or job.dst), e.strerror or str(e)))
        bar.close()
    for job in videos:
        try:
            report.videos.append(_translate_video(tr, job, opts, tile))
        except VideoError as e:
            report.skipped.append((str(job.src), str(e).splitlines()[0]))
        except OSError as e:  # the output side (full disk, read-only folder): not the video's fault
            if e.errno not in ENVIRONMENT_ERRNOS:
                raise
            report.unwritten.append((str(e.filename or job.dst), e.strerror or str(e)))
    return report


def _translate_video(tr: Translator, job: Job, opts: TranslateOptions, tile: int) -> VideoResult:
    def frames_fn(frames: np.ndarray):
        if max(frames.shape[1:3]) > opts.max_side:  # 4K and up: bounded memory beats speed
            return np.stack([translate_image(tr, f, max_side=opts.max_side, tile=tile, overlap=opts.overlap,
                                             retain=opts.retain_color, brightness=opts.match_brightness,
                                             batch=opts.batch) for f in frames])
        return tr.translate_uint8(frames, opts.retain_color, opts.match_brightness)

    return transform_video(job.src, job.dst, frames_fn, batch=opts.batch, show_progress=opts.show_progress,
                           desc=job.src.name)
