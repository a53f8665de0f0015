"""``toonlab app``: the face-to-cartoon lab in a browser, served on localhost.

    toonlab app                                   # bundled source generator, its bundled cartoons (a
                                                  # cached demo fine-tune when none is bundled) and the
                                                  # bundled photo→webtoon translator
    toonlab app --ckpt ffhq256.pt --cartoon toon.pt webtoon.pt --translator face_paint_512_v2.pt

Two tabs:

- **Face**: a photo (upload or webcam) → dlib alignment (largest face) → inversion (the encoder,
  optional refinement steps; projection by optimisation when there is no encoder) → the projected
  face and its cartoon through every cartoon generator side by side, with a layer-swap slider,
  a truncation slider and sliders for the first SeFa directions (``inversion/pipeline.py``);
  downloads for every image and for the latent (``latent.pt``, what ``generate.py --latent`` renders).
- **Photo / video**: any photo, or a short video with its audio kept, through the AnimeGAN-family
  translator (``translation/inference.py``; default the bundled photo→webtoon translator,
  ``toonlab.bundled.translator()``), optionally keeping the photo's colours.

Why no Gradio (docs/DESIGN.md, "The web app"): Gradio's page fetches fonts and scripts from CDNs
(the app must not reach the internet) and importing it alone takes seconds on two cores. This is a
standard-library ``http.server`` and one self-contained HTML page (``toonlab/assets/app.html``): no
new dependency, nothing fetched from elsewhere, bound to 127.0.0.1 by default.

Bad input is a message on the page, never a stack trace, and the server keeps serving: library
errors (``UserInputError``: not an image, no face, a video over the limit, …) become
``{"error": "one line"}`` answers; anything unexpected is one line too, logged on stderr.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click

from toonlab.errors import ToonlabError, UserInputError, one_line_warnings, user_errors
from toonlab.options import ToonCommand

PAGE = Path(__file__).resolve().parent / "assets" / "app.html"
#: Uploads larger than this (MB, ``--max-upload-mb``) are refused before they are read.
MAX_UPLOAD_MB = 200
#: The translator's input is downscaled to this longer side (CPU time and memory grow with pixels).
MAX_TRANSLATE_SIDE = 1536
DEMO_ITERS = 120
_KEEP_SESSIONS = 16
_KEEP_JOBS = 32


# ---- the state behind the page -----------------------------------------------------------------


@dataclass
class Job:
    """A long request (inversion, translation) run in a thread; the page polls it."""

    id: str
    kind: str
    state: str = "queued"  # queued | running | done | error
    progress: float = 0.0
    message: str = ""
    result: dict[str, Any] | None = None
    error: str | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "progress": round(self.progress, 4),
                "message": self.message, "result": self.result, "error": self.error}


@dataclass
class Session:
    """One inverted face: what the sliders re-render."""

    inversion: Any  # inversion.pipeline.Inversion
    aligned: Any  # PIL image
    name: str


@dataclass
class AppConfig:
    ckpt: str | None = None
    cartoons: Sequence[str] = ()
    translator: str | None = None
    encoder: str | None = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 7860
    refine_steps: int = 0
    projection_steps: int = 100
    max_video_seconds: float = 20.0
    max_upload_mb: float = MAX_UPLOAD_MB
    directions: int = 3
    demo_cartoon: bool = True
    demo_iters: int = DEMO_ITERS
    workdir: str | None = None


def png_data_url(img: Any) -> str:
    """A PIL image as a ``data:image/png;base64,…`` URL (the page needs no second request)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def safe_stem(name: str) -> str:
    """The upload's file stem, reduced to characters safe in a file name and a URL."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in Path(name).stem)[:60]
    return stem.strip("_") or "upload"


def human_size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.1f} KB"


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/toonlab`` (``~/.cache/toonlab``): where the demo cartoon is kept between runs."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "toonlab"


def browser_playable(path: Path) -> bool:
    """Re-encode ``path`` in place as H.264 + faststart (audio copied), what a ``<video>`` plays.

    ``transform_video`` writes OpenCV's ``mp4v`` (MPEG-4 part 2), which browsers do not decode.
    Without ffmpeg, or if it fails, the file stays as it is (still a download) and False is returned.
    """
    import subprocess

    from toonlab.atomic import atomic_path
    from toonlab.video import ffmpeg_exe

    exe = ffmpeg_exe()
    if exe is None:
        return False

    class Failed(Exception):
        pass

    try:
        with atomic_path(path) as tmp:  # a failure leaves the original under its name
            r = subprocess.run([exe, "-y", "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0",
                                "-map", "0:a?", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
                                "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:a", "copy",
                                "-movflags", "+faststart", "-f", "mp4", str(tmp)], capture_output=True)
            if r.returncode != 0 or tmp.stat().st_size == 0:
                raise Failed
    except Failed:
        return False
    return True


class App:
    """Models, sessions and jobs; every request handler goes through one of its methods."""

    def __init__(self, cfg: AppConfig) -> None:
        from inversion.pipeline import FacePipeline

        self.cfg = cfg
        self.pipeline = FacePipeline.load(cfg.ckpt, cfg.cartoons, cfg.encoder, cfg.device, cfg.directions)
        self.translator, self.translator_name = None, None
        if cfg.translator:
            from translation.inference import Translator
            from translation.models import load_generator as load_translator

            T, meta = load_translator(cfg.translator, device=self.pipeline.device)
            self.translator = Translator(T, self.pipeline.device, "auto")  # fp16 on GPUs, fp32 on CPUs
            self.translator_name = f"{Path(cfg.translator).stem} ({meta['model']})"
        self.workdir = Path(cfg.workdir or tempfile.mkdtemp(prefix="toonlab-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sessions: OrderedDict[str, Session] = OrderedDict()
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.compute = threading.Lock()  # one inversion or translation at a time (CPU-bound)
        self.lock = threading.Lock()  # the dicts above
        self.notes: list[str] = [self.pipeline.encoder_note]
        self.demo_status: str | None = None
        self.labels: dict[str, str] = {n: n for n, _ in self.pipeline.cartoons}
        self._label_bundled(cfg.cartoons)
        self.demo_thread: threading.Thread | None = None
        if cfg.demo_cartoon and not cfg.cartoons and cfg.ckpt is None:
            self._demo_cartoon()

    def _label_bundled(self, paths: list[str]) -> None:
        """A bundled cartoon is called by its domain ("webtoon (bundled)"), not by its file stem."""
        from toonlab import bundled

        found = {c.path.resolve(): c.name for c in bundled.cartoons()}
        for (name, _), path in zip(self.pipeline.cartoons, paths):
            domain = found.get(Path(path).resolve())
            if domain is not None:
                self.labels[name] = f"{domain} (bundled)"

    # ---- the demo cartoon (bundled source, no --cartoon): cached short fine-tune --------------------

    def demo_run_dir(self) -> Path:
        from toonlab.checkpoint import file_hash

        tag = file_hash(self.pipeline.source_path)[:12]
        return user_cache_dir() / "app" / f"webtoon_demo_{tag}_{self.cfg.demo_iters}"

    def _demo_cartoon(self) -> None:
        final = self.demo_run_dir() / "checkpoints" / f"{self.cfg.demo_iters:06d}.pt"
        if final.exists():
            self._add_demo(final)
            return
        self.demo_status = (f"fine-tuning a demo cartoon generator in the background ({self.cfg.demo_iters} steps "
                            f"of FreezeSG to the built-in webtoon faces; cached in {final.parent.parent} for next time)")
        self.demo_thread = threading.Thread(target=self._train_demo, name="demo-cartoon", daemon=True)
        self.demo_thread.start()

    def _train_demo(self) -> None:
        try:
            from finetune.train import finetune, resolve_config

            out = self.demo_run_dir()
            cfg, note = resolve_config(source=str(self.pipeline.source_path), target="webtoon", freeze=2,
                                       structure_loss=3, iters=self.cfg.demo_iters, out=str(out), batch=8, workers=0,
                                       device=str(self.pipeline.device), sample_every=0, snapshot_every=0,
                                       ema_kimg=0.1)
            self._add_demo(Path(finetune(cfg, note)))
        except Exception as e:  # noqa: BLE001 - the app keeps serving the source without it
            self.demo_status = f"the demo fine-tune failed ({one_line(e)}); start with --cartoon B.pt"
            click.echo(f"toonlab app: {self.demo_status}", err=True)

    def _add_demo(self, path: Path) -> None:
        from stylegan2.checkpoint import load_generator

        T = load_generator(path, device=self.pipeline.device).eval().requires_grad_(False)
        name = "webtoon-demo"
        # A new list, assigned at once: a render running in another thread sees the old or the new one.
        self.pipeline.cartoons = [*self.pipeline.cartoons, (name, T)]
        self.labels[name] = f"webtoon (demo: {self.cfg.demo_iters}-step fine-tune)"
        self.demo_status = None
        self.notes.append(f"webtoon-demo = a {self.cfg.demo_iters}-step demo fine-tune of the bundled source, "
                          f"cached at {path}; pass --cartoon for real cartoon generators")

    # ---- what the page asks -------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        p = self.pipeline
        return {
            "size": p.size, "blocks": p.n_blocks, "directions": len(p.directions),
            "source": p.source_path.name,
            "cartoons": [{"name": n, "label": self.labels.get(n, n)} for n, _ in p.cartoons],
            "encoder": p.encoder is not None, "refine_steps": self.cfg.refine_steps,
            "projection_steps": self.cfg.projection_steps,
            "translator": self.translator_name, "max_video_seconds": self.cfg.max_video_seconds,
            "max_upload_mb": self.cfg.max_upload_mb, "notes": [n for n in self.notes if n],
            "demo_status": self.demo_status,
        }

    def _new_job(self, kind: str, work: Callable[[Job], dict[str, Any]]) -> Job:
        job = Job(secrets.token_hex(8), kind)
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > _KEEP_JOBS:
                self.jobs.popitem(last=False)

        def run() -> None:
            job.message = "waiting for the previous job" if self.compute.locked() else "starting"
            with self.compute:
                job.state = "running"
                try:
                    job.result = work(job)
                    job.progress, job.state = 1.0, "done"
                except UserInputError as e:
                    job.error, job.state = one_line(e), "error"
                except Exception as e:  # noqa: BLE001 - one line on the page, the trace in the server's log
                    job.error, job.state = f"internal error ({type(e).__name__}: {one_line(e)})", "error"
                    traceback.print_exc()

        threading.Thread(target=run, name=f"job-{job.id}", daemon=True).start()
        return job

    def job(self, job_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise UserInputError("unknown or expired job; upload the photo again")
        return job

    def session(self, sid: str) -> Session:
        with self.lock:
            s = self.sessions.get(sid)
        if s is None:
            raise UserInputError("this face has expired (the app keeps the last 16); upload the photo again")
        return s

    def start_face(self, data: bytes, name: str, steps: int | None) -> Job:
        from toonlab.images import load_image

        photo = load_image(data, name)  # not an image: a one-line ImageError, before any job starts
        steps = self.cfg.refine_steps if steps is None else max(0, min(int(steps), 2000))

        def work(job: Job) -> dict[str, Any]:
            job.message = "finding the face"
            face = self.pipeline.align(photo)

            def report(frac: float, msg: str) -> None:
                job.progress, job.message = 0.05 + 0.9 * frac, msg

            inv = self.pipeline.invert(face.image, steps, report, projection_steps=self.cfg.projection_steps)
            sid = secrets.token_hex(8)
            with self.lock:
                self.sessions[sid] = Session(inv, face.image, safe_stem(name))
                while len(self.sessions) > _KEEP_SESSIONS:
                    self.sessions.popitem(last=False)
            return {"session": sid, "aligned": png_data_url(face.image), "faces": face.n_faces, "notes": face.notes,
                    "method": inv.method, "seconds": round(inv.seconds, 2), **self.render(sid, {})}

        return self._new_job("face", work)

    @staticmethod
    def edit_from(q: dict[str, str]) -> Any:
        from inversion.pipeline import Edit

        try:
            swap = int(q.get("swap", 0))
            psi = float(q.get("psi", 1.0))
            sefa = tuple(float(v) for v in q.get("sefa", "").split(",") if v.strip())
        except ValueError:
            raise UserInputError("swap, psi and sefa must be numbers") from None
        if not -1.0 <= psi <= 2.0:
            raise UserInputError(f"truncation {psi} out of range (-1..2)")
        if not all(-100.0 <= v <= 100.0 for v in sefa):  # also refuses nan and inf
            raise UserInputError("SeFa degrees must lie in -100..100")
        return Edit(swap=swap, truncation=psi, sefa=sefa)

    def render(self, sid: str, q: dict[str, str]) -> dict[str, Any]:
        s = self.session(sid)
        imgs = self.pipeline.render(s.inversion, self.edit_from(q))
        order = list(imgs)
        return {"order": order, "labels": {n: ("projected face (source)" if n == "source" else self.labels.get(n, n))
                                           for n in order},
                "images": {n: png_data_url(im) for n, im in imgs.items()}}

    def latent_bytes(self, sid: str, q: dict[str, str]) -> tuple[bytes, str]:
        s = self.session(sid)
        path = self.workdir / f"latent_{sid}.pt"
        self.pipeline.save_latent(path, s.inversion, self.edit_from(q), source=s.name)
        return path.read_bytes(), f"{s.name}_latent.pt"

    def start_translate(self, data: bytes, name: str, retain: bool) -> Job:
        if self.translator is None:
            raise UserInputError("no translator loaded: start the app with --translator T.pt "
                                 "(an AnimeGAN/CartoonGAN generator, e.g. face_paint_512_v2.pt)")
        from toonlab.video import VIDEO_EXTENSIONS

        suffix = Path(name).suffix.lower()
        if suffix in VIDEO_EXTENSIONS:
            return self._translate_video(data, name, suffix, retain)
        from toonlab.images import load_image

        photo = load_image(data, name)

        def work(job: Job) -> dict[str, Any]:
            from inversion.pipeline import downscale
            from translation.inference import translate_image

            img, note = downscale(photo, MAX_TRANSLATE_SIDE)
            job.message = f"translating {img.width}×{img.height}"
            from PIL import Image

            out = Image.fromarray(translate_image(self.translator, img, retain=retain))
            return {"image": png_data_url(out), "width": out.width, "height": out.height,
                    "notes": [note] if note else [], "name": f"{safe_stem(name)}_cartoon.png"}

        return self._new_job("translate", work)

    def _translate_video(self, data: bytes, name: str, suffix: str, retain: bool) -> Job:
        from toonlab.video import probe, transform_video

        src = self.workdir / f"in_{secrets.token_hex(6)}{suffix}"  # suffix: one of VIDEO_EXTENSIONS
        src.write_bytes(data)
        try:
            info = probe(src)
        except UserInputError as e:
            src.unlink(missing_ok=True)
            raise UserInputError(f"{name}: {one_line(e).split(': ', 1)[-1]}") from None
        seconds = info.frames / info.fps if info.frames else 0.0
        if seconds > self.cfg.max_video_seconds:
            src.unlink(missing_ok=True)
            raise UserInputError(f"{name} is {seconds:.1f} s long; this app takes videos up to "
                                 f"{self.cfg.max_video_seconds:g} s (trim it, or use `toonlab translate` for long ones)")

        def work(job: Job) -> dict[str, Any]:
            from translation.inference import translate_image

            done = [0]
            total = max(info.frames, 1)

            def frames_fn(frames):  # noqa: ANN001, ANN202 - uint8 [n,H,W,3] → same
                import numpy as np

                if max(frames.shape[1:3]) > MAX_TRANSLATE_SIDE:
                    out = np.stack([translate_image(self.translator, f, retain=retain) for f in frames])
                else:
                    out = self.translator.translate_uint8(frames, retain)()
                done[0] += len(frames)
                job.progress, job.message = min(done[0] / total, 0.99), f"frame {done[0]} of ~{total}"
                return out

            dst = self.workdir / f"{safe_stem(name)}_cartoon_{job.id}.mp4"
            res = transform_video(src, dst, frames_fn, batch=4, show_progress=False)
            src.unlink(missing_ok=True)
            job.message = "encoding for the browser"
            browser_playable(dst)
            return {"video": f"/api/file/{dst.name}", "frames": res.frames, "fps": res.fps, "audio": res.audio,
                    "width": res.width, "height": res.height, "name": f"{safe_stem(name)}_cartoon.mp4"}

        return self._new_job("translate", work)

    def file(self, fname: str) -> Path:
        p = self.workdir / Path(fname).name
        if not p.is_file() or not p.name.endswith(".mp4"):
            raise FileNotFoundError(fname)
        return p


# ---- HTTP -----------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Routes: ``GET /``, ``/api/info``, ``/api/job/<id>``, ``/api/render``, ``/api/latent``,
    ``/api/file/<name>``; ``POST /api/face``, ``/api/translate`` (the raw file as the body)."""

    app: App  # set on the subclass made by make_server
    server_version = "toonlab-app"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        if os.environ.get("TOONLAB_APP_LOG"):
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json({"error": message}, status)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._dispatch(method, url.path, q)
        except UserInputError as e:
            self._error(400, one_line(e))
        except FileNotFoundError:
            self._error(404, f"not found: {url.path}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as e:  # noqa: BLE001 - the app keeps serving; the page shows one line
            click.echo(f"toonlab app: {method} {url.path}: {type(e).__name__}: {one_line(e)}", err=True)
            self._error(500, f"internal error ({type(e).__name__}: {one_line(e)})")

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def _body(self) -> bytes:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise UserInputError("bad Content-Length") from None
        limit = int(self.app.cfg.max_upload_mb * 2**20)
        if n > limit:
            self.close_connection = True  # the body is not read: this connection cannot be reused
            raise UserInputError(f"the file is {human_size(n)}; the app takes files up to {human_size(limit)}")
        if n == 0:
            raise UserInputError("empty upload: choose a file first")
        return self.rfile.read(n)

    def _dispatch(self, method: str, path: str, q: dict[str, str]) -> None:
        app = self.app
        if method == "GET" and path in ("/", "/index.html"):
            self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif method == "GET" and path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        elif method == "GET" and path == "/api/info":
            self._json(app.info())
        elif method == "GET" and path.startswith("/api/job/"):
            self._json(app.job(path.rsplit("/", 1)[-1]).public())
        elif method == "GET" and path == "/api/render":
            self._json(app.render(q.get("session", ""), q))
        elif method == "GET" and path == "/api/latent":
            data, fname = app.latent_bytes(q.get("session", ""), q)
            self._send(200, data, "application/octet-stream", {"Content-Disposition": f'attachment; filename="{fname}"'})
        elif method == "GET" and path.startswith("/api/file/"):
            p = app.file(path.rsplit("/", 1)[-1])
            self._send(200, p.read_bytes(), "video/mp4", {"Content-Disposition": f'inline; filename="{p.name}"'})
        elif method == "POST" and path == "/api/face":
            steps = q.get("steps")
            try:
                steps_i = int(steps) if steps not in (None, "") else None
            except ValueError:
                raise UserInputError(f"refinement steps must be a whole number, got {steps!r}") from None
            body = self._body()
            self._json(app.start_face(body, q.get("name") or "photo", steps_i).public())
        elif method == "POST" and path == "/api/translate":
            body = self._body()
            self._json(app.start_translate(body, q.get("name") or "photo", q.get("retain") in ("1", "true")).public())
        else:
            raise FileNotFoundError(path)


def make_server(app: App, host: str = "127.0.0.1", port: int = 7860) -> ThreadingHTTPServer:
    """A threading HTTP server for ``app`` (``port`` 0 picks a free one: ``server.server_address``)."""
    handler = type("AppHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(cfg: AppConfig, ready: Callable[[str], None] | None = None) -> App:
    """Load the models, bind, print the address and serve until interrupted; returns the app."""
    t0 = time.perf_counter()
    app = App(cfg)
    try:
        server = make_server(app, cfg.host, cfg.port)
    except OSError as e:
        if cfg.workdir is None:
            shutil.rmtree(app.workdir, ignore_errors=True)
        raise UserInputError(f"--port {cfg.port}: cannot listen on {cfg.host}:{cfg.port} ({e.strerror or e})") from None
    # dlib's models load while the user picks a photo (after the start, which must stay short).
    warm = threading.Thread(target=app.pipeline.warm_up, name="warm-up", daemon=True)
    try:
        host, port = server.server_address[:2]
        url = f"http://{host}:{port}/"
        info = app.info()
        toons = ", ".join(c["name"] for c in info["cartoons"]) or "none"
        click.echo(f"toonlab app: source {info['source']} ({info['size']} px), cartoons: {toons}, "
                   f"translator: {info['translator'] or 'none'}; {app.pipeline.encoder_note}")
        if app.demo_status:
            click.echo(f"toonlab app: {app.demo_status}")
        click.echo(f"toonlab app: serving on {url} (ready in {time.perf_counter() - t0:.1f} s; Ctrl-C stops)")
        sys.stdout.flush()
        if ready is not None:
            ready(url)
        warm.start()
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        click.echo("toonlab app: stopped")
    finally:
        server.server_close()
        if cfg.workdir is None:  # our own temporary folder: uploads, videos, latent downloads
            shutil.rmtree(app.workdir, ignore_errors=True)
        # dlib's model loader is C++: the process aborts if the interpreter exits under it.
        if warm.is_alive():
            warm.join(60)
    return app


@click.command(name="app", cls=ToonCommand)
@click.argument("more_cartoons", nargs=-1, type=click.Path(dir_okay=False), metavar="[CARTOON.pt]...")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Source (face) generator. Default: the bundled 64-px synthetic-face generator.")
@click.option("--cartoon", "cartoons", multiple=True, type=click.Path(dir_okay=False),
              help="Cartoon generator(s) fine-tuned from --ckpt: --cartoon A.pt B.pt, repeat, or comma-separate. "
                   "Default without --ckpt: the bundled ones (toonlab/assets/cartoon_*.pt).")
@click.option("--translator", type=click.Path(dir_okay=False), default=None,
              show_default="the bundled translator: animegan2_webtoon.pt, else the first one bundled",
              help="AnimeGAN-family translator for the Photo/video tab (e.g. face_paint_512_v2.pt).")
@click.option("--encoder", type=click.Path(dir_okay=False), default=None,
              help="Image → W+ encoder. Default: the bundled one when present, else projection by optimisation.")
@click.option("--port", type=click.IntRange(0, 65535), default=7860, show_default=True, help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (localhost only by default).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--iters", "refine_steps", type=click.IntRange(0, 2000), default=0, show_default=True,
              help="Default refinement steps after the encoder (the page can change it).")
@click.option("--projection-iters", type=click.IntRange(1, 5000), default=100, show_default=True,
              help="Optimisation steps when there is no encoder.")
@click.option("--max-video-seconds", type=click.FloatRange(1), default=20.0, show_default=True,
              help="Longest video the Photo/video tab takes.")
@click.option("--max-upload-mb", type=click.FloatRange(0.001), default=MAX_UPLOAD_MB, show_default=True,
              help="Largest file the page takes (photos and videos).")
@click.option("--demo-cartoon/--no-demo-cartoon", default=True, show_default=True,
              help="With the bundled source, no --cartoon and no bundled cartoon generators: use (or fine-tune "
                   "once, in the background, and cache) a short demo fine-tune to the built-in webtoon faces.")
def main(more_cartoons: tuple[str, ...], ckpt: str | None, cartoons: tuple[str, ...], translator: str | None,
         encoder: str | None, port: int, host: str, device: str, refine_steps: int, projection_iters: int,
         max_video_seconds: float, max_upload_mb: float, demo_cartoon: bool) -> None:
    """Serve the face-to-cartoon lab on localhost (one page, nothing fetched from the internet)."""
    toons = [c for item in cartoons for c in item.split(",") if c]
    if more_cartoons and not cartoons:
        raise ToonlabError(f"unexpected argument {more_cartoons[0]!r} (cartoon generators follow --cartoon)")
    toons += list(more_cartoons)
    for p in [ckpt, translator, encoder, *toons]:
        if p is not None and not Path(p).is_file():
            raise ToonlabError(f"file not found: {p}")
    from toonlab import bundled

    if translator is None:
        # The default lives in the command, not in AppConfig: an App built in code without a
        # translator has none (and says so on the Photo/video tab).
        found = bundled.translator()
        translator = str(found.path) if found is not None else None
    if ckpt is None and not toons:
        # The bundled source comes with the cartoons fine-tuned from it; the background demo
        # fine-tune is for a checkout that lacks them. Like the translator, a command default.
        toons = [str(c.path) for c in bundled.cartoons()]
    cfg = AppConfig(ckpt=ckpt, cartoons=toons, translator=translator, encoder=encoder, device=device, host=host,
                    port=port, refine_steps=refine_steps, projection_steps=projection_iters,
                    max_video_seconds=max_video_seconds, max_upload_mb=max_upload_mb, demo_cartoon=demo_cartoon)
    one_line_warnings()

    def on_term(signum: int, frame: object) -> None:  # a service manager's stop: as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    with user_errors():
        app = serve(cfg)
    if app.demo_thread is not None and app.demo_thread.is_alive():
        # Interpreter shutdown under a training thread can crash in native code; nothing of the
        # unfinished run is needed (it has no snapshots): leave at once.
        click.echo("toonlab app: the demo fine-tune stopped unfinished; the next start runs it again")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    from toonlab.cli import run_script

    run_script("app")
