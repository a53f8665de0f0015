"""Writing frames to an mp4, atomically: H.264 through imageio-ffmpeg's bundled ffmpeg.

The one mp4 writer of the code base (projection videos, interpolation videos). Frames are
streamed to ffmpeg's stdin, so a long clip never sits in memory; the file appears under its
name only when complete. Without an ffmpeg binary (imageio-ffmpeg missing) it falls back to
OpenCV's ``mp4v`` writer, which most browsers will not play.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from toonlab.atomic import atomic_path
from toonlab.errors import UserInputError


class VideoWriteError(UserInputError):
    """The frames could not be encoded (one line naming the file)."""


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary that imageio-ffmpeg ships, else one on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing for this platform
        return shutil.which("ffmpeg")


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 24.0, crf: int = 18) -> Path:
    """Write RGB uint8 frames ``[H, W, 3]`` (all one size) to an mp4 at ``path``; return the path.

    H.264 (``libx264``, yuv420p, ``+faststart``) with ffmpeg; odd sizes are padded by one pixel
    (yuv420p needs even ones). ``crf`` is x264's quality (lower: better, larger).
    """
    path = Path(path)
    it = iter(frames)
    try:
        first = np.asarray(next(it))
    except StopIteration:
        raise VideoWriteError(f"{path}: no frames to write") from None
    if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise VideoWriteError(f"{path}: frames must be uint8 [H, W, 3], got {first.dtype} {list(first.shape)}")
    exe = ffmpeg_exe()
    with atomic_path(path) as tmp:
        if exe is not None:
            _encode_ffmpeg(exe, itertools.chain([first], it), tmp, fps, crf, path)
        else:
            _encode_opencv(itertools.chain([first], it), tmp, fps, path)
    return path


def _check(frame: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    frame = np.ascontiguousarray(frame)
    if frame.shape != shape or frame.dtype != np.uint8:
        raise VideoWriteError(f"{path}: frame of shape {list(frame.shape)} after frames of {list(shape)}")
    return frame


def _encode_ffmpeg(exe: str, frames: Iterable[np.ndarray], out: Path, fps: float, crf: int, path: Path) -> None:
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    cmd = [exe, "-y", "-hide_banner", "-nostdin", "-loglevel", "error",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}", "-i", "-", "-an",
           "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", str(crf),
           "-movflags", "+faststart", "-f", "mp4", str(out)]
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: ffmpeg's stderr can never block it
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
        try:
            for f in itertools.chain([first], frames):
                proc.stdin.write(_check(f, first.shape, path).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died; its message is read below
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        code = proc.wait()
        if code != 0:
            err.seek(0)
            msg = err.read().decode(errors="replace").strip().splitlines()
            raise VideoWriteError(f"{path}: ffmpeg failed ({msg[-1][:200] if msg else f'exit {code}'})")


def _encode_opencv(frames: Iterable[np.ndarray], out: Path, fps: float, path: Path) -> None:
    import cv2

    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    tmp_mp4 = Path(str(out) + ".mp4")  # VideoWriter picks the container from the suffix
    vw = cv2.VideoWriter(str(tmp_mp4), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not vw.isOpened():
        raise VideoWriteError(f"{path}: OpenCV cannot write an mp4v video there")
    try:
        for f in itertools.chain([first], frames):
            vw.write(np.ascontiguousarray(_check(f, first.shape, path)[..., ::-1]))
    finally:
        vw.release()
    os.replace(tmp_mp4, out)
