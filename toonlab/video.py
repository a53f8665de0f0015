"""Video in, video out: frames in batches through a function, audio carried over, written atomically;
and the one mp4 writer of the code base (projection, interpolation and StarGAN v2 videos).

``write_video`` streams frames to H.264 through imageio-ffmpeg's bundled ffmpeg (OpenCV's ``mp4v``
without one, which most browsers will not play); the file appears under its name only when complete.

Decoding (OpenCV ``VideoCapture``), the frame function (usually a GPU generator) and encoding
(OpenCV ``VideoWriter``, ``mp4v``) run in three threads joined by bounded queues, so a fast GPU
is not left waiting on the codec and memory stays bounded whatever the clip's length. OpenCV
drops audio; when the source has an audio stream it is copied into the result with the ffmpeg
binary that ``imageio-ffmpeg`` ships (no system ffmpeg needed). The result appears under its
final name only when complete.
"""

from __future__ import annotations

import errno
import itertools
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Union

import numpy as np

from toonlab.atomic import atomic_path, disk_full
from toonlab.errors import UserInputError
from toonlab.runtime import progress

#: File extensions (lower case, with dot) treated as videos when scanning inputs.
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
)

#: What a frame function may return: the frames, or a zero-argument callable that waits for them
#: (lets a GPU work on batch k+1 while batch k is copied back and encoded).
FramesOut = Union[np.ndarray, Callable[[], np.ndarray]]


class VideoError(UserInputError):
    """A video could not be opened, decoded or written (one line naming the file)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a clip (``frames`` is OpenCV's estimate, 0 when unknown)."""

    width: int
    height: int
    fps: float
    frames: int


@dataclass(frozen=True)
class VideoResult:
    """What was written: frame count actually encoded, fps, size, whether audio was carried over."""

    path: Path
    frames: int
    fps: float
    width: int
    height: int
    audio: bool
    #: Frames the source's header announced (0: unknown) and the source itself.
    expected: int = 0
    source: Path | None = None

    @property
    def incomplete(self) -> bool:
        """Fewer frames decoded than the header announced (beyond OpenCV's estimate's slack): a
        truncated or damaged source, whose output is shorter than the clip."""
        return self.expected > 0 and self.expected - self.frames > max(1, self.expected // 100)


# FFmpeg inside OpenCV prints a damaged file's decoder complaints ("[h264 @ 0x…] Invalid NAL unit
# size", dozens of lines) straight to stderr; commands report what matters themselves (a video
# that decodes fewer frames than its header announces is an error naming both counts). Set before
# the first capture; a user's own OPENCV_FFMPEG_LOGLEVEL wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def _cv2():
    import cv2

    return cv2


def probe(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` with OpenCV and read its size, fps and frame count; VideoError if unreadable."""
    cap, info = _open(path)
    cap.release()
    return info


def _open(path: str | os.PathLike):
    cv2 = _cv2()
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: zero-byte file")
    cap = cv2.VideoCapture(str(p))
    if not cap.isOpened():
        raise VideoError(f"{p}: cannot open as a video")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    n = max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
    if w <= 0 or h <= 0:
        cap.release()
        raise VideoError(f"{p}: no video stream")
    if not (0.0 < fps < 1000.0):  # some containers report 0 or nonsense; a player would assume ~25
        fps = 25.0
    return cap, VideoInfo(w, h, fps, n)


def iter_batches(path: str | os.PathLike, batch: int = 8) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames ``[n, H, W, 3]`` (n ≤ batch) from a video, in order."""
    cv2 = _cv2()
    cap, info = _open(path)
    try:
        buf: list[np.ndarray] = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if frame.shape[:2] != (info.height, info.width):  # a stream that changes size mid-way
                frame = cv2.resize(frame, (info.width, info.height), interpolation=cv2.INTER_AREA)
            buf.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(buf) == batch:
                yield np.stack(buf)
                buf = []
        if buf:
            yield np.stack(buf)
    finally:
        cap.release()


# --------------------------------------------------------------------------- ffmpeg / audio

def find_ffmpeg() -> str | None:
    """The ffmpeg binary that imageio-ffmpeg ships, else one on PATH, else None."""
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # not installed, or its binary missing for this platform
        return shutil.which("ffmpeg")


_warned_no_ffmpeg = False


def ffmpeg_exe() -> str | None:
    """The ffmpeg binary of imageio-ffmpeg (or one on PATH); None, with one warning, when there is none."""
    global _warned_no_ffmpeg
    exe = find_ffmpeg()
    if exe is None and not _warned_no_ffmpeg:
        _warned_no_ffmpeg = True
        warnings.warn("no ffmpeg found (pip install imageio-ffmpeg): videos are written without audio",
                      stacklevel=2)
    return exe


def has_audio(path: str | os.PathLike, exe: str | None = None) -> bool:
    """True when ffmpeg lists an audio stream in ``path`` (False without ffmpeg)."""
    exe = exe or ffmpeg_exe()
    if exe is None:
        return False
    r = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(path)], capture_output=True, text=True,
                       errors="replace")
    # ffmpeg exits 1 here ("no output file"), but has printed the stream list on stderr.
    return any(line.lstrip().startswith("Stream #") and "Audio:" in line for line in r.stderr.splitlines())


def _mux_audio(video: Path, audio_src: Path, out: Path, exe: str) -> bool:
    """Write ``out`` = video stream of ``video`` + audio streams of ``audio_src``; False if ffmpeg fails."""
    base = [exe, "-y", "-hide_banner", "-nostdin", "-v", "error", "-i", str(video), "-i", str(audio_src),
            "-map", "0:v:0", "-map", "1:a", "-c:v", "copy"]
    # Copy the audio bit for bit when mp4 can hold it; re-encode (pcm in .avi/.mov, vorbis...) otherwise.
    for audio_codec in (["-c:a", "copy"], ["-c:a", "aac", "-b:a", "192k"]):
        r = subprocess.run(base + audio_codec + ["-f", "mp4", str(out)], capture_output=True, text=True,
                           errors="replace")
        if r.returncode == 0 and out.stat().st_size > 0:
            return True
    return False


# --------------------------------------------------------------------------- the pipeline

_DONE = object()


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    """Blocking put that gives up when the pipeline is being torn down."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def transform_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fn: Callable[[np.ndarray], FramesOut],
    *,
    batch: int = 8,
    queue_size: int = 4,
    audio: bool = True,
    show_progress: bool = True,
    desc: str | None = None,
) -> VideoResult:
    """Run ``fn`` over ``src``'s frames in batches and write the result to ``dst`` (an .mp4).

    ``fn`` takes RGB uint8 ``[n, H, W, 3]`` and returns frames of one common size (any size: the
    writer takes it from the first batch), or a zero-argument callable returning them. fps and
    frame count are those of the source; audio is copied when present and ffmpeg is available.
    Raises VideoError for unreadable sources; ``dst`` is only replaced once the video is complete.
    """
    cv2 = _cv2()
    src, dst = Path(src), Path(dst)
    cap, info = _open(src)  # fail here, with the file's name, before any thread starts
    cap.release()
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{dst.stem}.", dir=dst.parent))
    raw = tmpdir / "video.mp4"  # VideoWriter picks the container from the extension
    stop = threading.Event()
    q_in: queue.Queue = queue.Queue(maxsize=queue_size)
    q_out: queue.Queue = queue.Queue(maxsize=queue_size)
    errors: list[BaseException] = []
    written = [0, 0, 0]  # frames, width, height
    bar = progress(total=info.frames or None, desc=desc or src.name, unit="frame", disable=not show_progress,
                   leave=False)

    def reader() -> None:
        try:
            for frames in iter_batches(src, batch):
                if not _put(q_in, frames, stop):
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised by the main thread
            errors.append(e)
            stop.set()
        finally:
            _put(q_in, _DONE, stop)

    def writer() -> None:
        vw = None
        try:
            while True:
                frames = _get(q_out, stop)
                if frames is _DONE:
                    break
                if vw is None:
                    h, w = frames.shape[1:3]
                    vw = cv2.VideoWriter(str(raw), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, (w, h))
                    if not vw.isOpened():
                        if disk_full(dst.parent):
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
                        raise VideoError(f"{dst}: OpenCV cannot write an mp4v video there")
                    written[1:] = [w, h]
                for f in frames:
                    vw.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                written[0] += len(frames)
                bar.update(len(frames))
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()
        finally:
            if vw is not None:
                vw.release()

    threads = [threading.Thread(target=reader, daemon=True, name="video-reader"),
               threading.Thread(target=writer, daemon=True, name="video-writer")]
    try:
        for t in threads:
            t.start()
        try:
            pending: Callable[[], np.ndarray] | None = None
            while True:
                frames = _get(q_in, stop)
                if frames is _DONE or stop.is_set():
                    break
                out = fn(frames)
                if pending is not None:
                    _put(q_out, pending(), stop)
                pending = out if callable(out) else (lambda a=out: a)
            if pending is not None and not stop.is_set():
                _put(q_out, pending(), stop)
            _put(q_out, _DONE, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            for t in threads:
                t.join()
            bar.close()
        if errors:
            raise errors[0]
        if written[0] and (not raw.is_file() or raw.stat().st_size == 0) and disk_full(dst.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))  # OpenCV's writer fails silently
        if written[0] == 0:
            raise VideoError(f"{src}: no frames could be decoded")
        carried = False
        exe = ffmpeg_exe() if audio else None
        with atomic_path(dst) as tmp:
            if exe is not None and has_audio(src, exe):
                carried = _mux_audio(raw, src, tmp, exe)
                if not carried:
                    warnings.warn(f"{src.name}: could not copy its audio; the video is written without it",
                                  stacklevel=2)
            if not carried:
                os.replace(raw, tmp)  # same folder, so a rename: no copy of a large file
        return VideoResult(dst, written[0], info.fps, written[1], written[2], carried, info.frames, src)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _get(q: queue.Queue, stop: threading.Event):
    """Blocking get that returns _DONE when the pipeline is being torn down."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


def count_frames(path: str | os.PathLike) -> int:
    """Decode every frame and count them (the container's frame count can be an estimate)."""
    return sum(len(b) for b in iter_batches(path, 64))


class VideoWriteError(UserInputError):
    """The frames could not be encoded (one line naming the file)."""


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
    exe = find_ffmpeg()
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
        if code != 0 and disk_full(out.parent):  # ffmpeg only says "Nothing was written into output file"
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
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
