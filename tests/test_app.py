"""The face pipeline (inversion/pipeline.py) and the app's HTTP server (toonlab/app.py), without a browser.

Tiny generators (tests/conftest.py) stand in for the real ones; the astronaut photo exercises dlib.
The browser itself is driven in tests/test_app_browser.py.
"""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inversion.pipeline import Edit, FacePipeline, Inversion, downscale, generator_name
from stylegan2.checkpoint import load_generator
from stylegan2.latents import load_latent
from stylegan2.sampling import render
from tests.conftest import tiny_checkpoint
from toonlab.errors import UserInputError
from toonlab.images import to_pil


@pytest.fixture(autouse=True)
def no_app_threads_outlive_the_test():
    """The app's work runs in daemon threads (jobs, the demo fine-tune, dlib's warm-up). One still
    computing after its test would slow every later test and could be mid-op when a later test forks
    DataLoader or multiprocessing workers (a child that inherits a held lock hangs): wait for them."""
    yield
    import time

    deadline = time.monotonic() + 300
    for t in threading.enumerate():
        if t is not threading.current_thread() and t.name.startswith(("job-", "demo-cartoon", "warm-up")):
            t.join(max(0.0, deadline - time.monotonic()))
            assert not t.is_alive(), f"app thread {t.name} still running 300 s after its test"


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path]:
    src = tiny_checkpoint(tmp_path / "G.pt", 16, seed=0, perturb="biases")
    toon = tiny_checkpoint(tmp_path / "toon.pt", 16, seed=1, perturb="biases")
    return src, toon


@pytest.fixture
def pipe(models) -> FacePipeline:
    return FacePipeline.load(models[0], [models[1]], device="cpu", use_encoder=False)


def _inversion(pipe: FacePipeline, seed: int = 0) -> Inversion:
    g = torch.Generator().manual_seed(seed)
    w = pipe.G.style(torch.randn(1, pipe.G.style_dim, generator=g))
    return Inversion(pipe.G.broadcast(w).clone(), None, "test", 0.0)


def _arr(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.float32)


def test_swap_ends_are_the_cartoon_and_the_source(pipe):
    inv = _inversion(pipe)
    T = pipe.cartoons[0][1]
    plain = pipe.render(inv, Edit(swap=0))
    assert set(plain) == {"source", "toon"} and all(im.size == (16, 16) for im in plain.values())
    # swap 0: the cartoon generator alone; swap = all blocks: the source's picture.
    assert np.abs(_arr(plain["toon"]) - _arr(to_pil(render(T, inv.latent)[0]))).max() <= 1
    full = pipe.render(inv, Edit(swap=pipe.n_blocks))
    assert np.abs(_arr(full["toon"]) - _arr(full["source"])).max() <= 1
    mid = pipe.render(inv, Edit(swap=1))
    assert np.abs(_arr(mid["toon"]) - _arr(plain["toon"])).mean() > 1  # the slider changes the cartoon
    with pytest.raises(UserInputError, match="blocks 1..3"):
        pipe.render(inv, Edit(swap=pipe.n_blocks + 1))


def test_truncation_and_sefa_apply_to_source_and_cartoon_alike(pipe):
    a, b = _inversion(pipe, 0), _inversion(pipe, 1)
    # ψ = 0: every face becomes the mean face, on both sides.
    ra, rb = pipe.render(a, Edit(truncation=0.0)), pipe.render(b, Edit(truncation=0.0))
    for k in ra:
        assert np.abs(_arr(ra[k]) - _arr(rb[k])).max() <= 1
    assert np.abs(_arr(pipe.render(a)["source"]) - _arr(pipe.render(b)["source"])).mean() > 1
    lat = pipe.edited_latent(a, Edit(sefa=(4.0, 0.0, 0.0)))
    moved = lat - a.latent
    assert torch.allclose(moved, 4.0 * pipe.directions[0].expand_as(moved), atol=1e-5)
    e = pipe.render(a, Edit(sefa=(4.0,)))
    for k in e:
        assert np.abs(_arr(e[k]) - _arr(pipe.render(a)[k])).mean() > 0.5
    with pytest.raises(UserInputError, match="directions"):
        pipe.edited_latent(a, Edit(sefa=(1.0,) * 9))


def test_saved_latent_renders_the_edited_face(pipe, tmp_path):
    inv = _inversion(pipe)
    edit = Edit(truncation=0.5, sefa=(2.0, -1.0, 0.0))
    path = pipe.save_latent(tmp_path / "latent.pt", inv, edit, source="face")
    obj = load_latent(path)
    G = load_generator(pipe.source_path)
    img = render(G, obj["latent"], obj["noise"])[0]
    want = render(pipe.G, pipe.edited_latent(inv, edit))[0]
    assert torch.allclose(img, want, atol=1e-5)
    assert obj["settings"]["truncation"] == 0.5 and obj["source"] == "face"


def test_projection_fallback_reports_progress_and_lowers_the_error(pipe):
    target = render(pipe.G, _inversion(pipe, 3).latent)[0]
    photo = Image.fromarray(((target.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy())
    seen: list[float] = []
    inv = pipe.invert(photo, 0, lambda f, m: seen.append(f), projection_steps=30)
    assert "projection (30 steps)" in inv.method
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    x = pipe.target(photo)
    start = render(pipe.G, pipe.w_avg[:, None].expand(1, pipe.G.n_latent, -1))
    after = render(pipe.G, inv.latent, inv.noise)
    assert (after - x).square().mean() < 0.7 * (start - x).square().mean()


def test_mismatched_cartoon_and_names(tmp_path, models):
    big = tiny_checkpoint(tmp_path / "big.pt", 32, channel_base=256)
    with pytest.raises(UserInputError, match="does not fit"):
        FacePipeline.load(models[0], [big], use_encoder=False)
    (tmp_path / "b").mkdir()
    again = tiny_checkpoint(tmp_path / "b" / "toon.pt", 16, seed=3)
    both = FacePipeline.load(models[0], [models[1], again], use_encoder=False)
    assert [n for n, _ in both.cartoons] == ["toon", "toon-2"]
    assert generator_name("runs/toon/checkpoints/000800.pt") == "toon-000800"
    assert generator_name("a/webtoon.pt") == "webtoon"


def test_downscale_keeps_small_photos_and_says_when_it_shrinks():
    small = Image.new("RGB", (300, 200))
    assert downscale(small)[0] is small and downscale(small)[1] is None
    img, note = downscale(Image.new("RGB", (5000, 2500)), 2048)
    assert img.size == (2048, 1024) and "5000×2500" in note


def test_align_picks_the_largest_face_and_says_so(pipe):
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    two = Image.new("RGB", (1024, 512), "white")  # the astronaut, and a half-size copy beside her
    two.paste(photo, (0, 0))
    two.paste(photo.resize((256, 256)), (600, 100))
    face = pipe.align(two)
    assert face.n_faces >= 2 and any("using the largest" in n for n in face.notes)
    assert face.box[2] <= 512  # the full-size astronaut on the left
    assert face.image.size == (256, 256)


# ---- the HTTP server, in this process -------------------------------------------------------------


@pytest.fixture
def server(models, tmp_path):
    from toonlab.app import App, AppConfig, make_server

    app = App(AppConfig(ckpt=str(models[0]), cartoons=[str(models[1])], device="cpu", demo_cartoon=False,
                        projection_steps=5, workdir=str(tmp_path / "work")))
    srv = make_server(app, "127.0.0.1", 0)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield app, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _call(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _wait(base: str, job: dict) -> dict:
    import time

    for _ in range(600):
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.1)
        job = _call(f"{base}/api/job/{job['id']}")[1]
    raise AssertionError("job did not finish")


def test_bad_inputs_are_one_line_messages_and_the_server_keeps_serving(server, tmp_path):
    app, base = server
    status, info = _call(f"{base}/api/info")
    assert status == 200 and info["size"] == 16 and info["blocks"] == 3 and info["cartoons"][0]["name"] == "toon"
    status, body = _call(f"{base}/api/face?name=notes.txt", b"hello, not a picture")
    assert status == 400 and body["error"] == "notes.txt: not an image (unrecognised format)"
    status, body = _call(f"{base}/api/face?name=x.png", b"")
    assert status == 400 and "empty upload" in body["error"]
    status, body = _call(f"{base}/api/render?session=nope")
    assert status == 400 and "expired" in body["error"]
    status, body = _call(f"{base}/api/translate?name=a.png", b"\x89PNG")
    assert status == 400 and "--translator" in body["error"]
    status, body = _call(f"{base}/api/nothing")
    assert status == 404
    # A flat grey photo: no face, said on the page.
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (128, 128, 128)).save(buf, "PNG")
    status, job = _call(f"{base}/api/face?name=grey.png", buf.getvalue())
    assert status == 200
    job = _wait(base, job)
    assert job["state"] == "error" and job["error"].startswith("no face found")
    # An unexpected failure is one line too, and the next request is served.
    app.pipeline.render = None  # type: ignore[assignment] - a broken pipeline
    app.sessions["s"] = app.sessions.get("s") or type("S", (), {"inversion": None, "aligned": None, "name": "s"})()
    status, body = _call(f"{base}/api/render?session=s")
    assert status == 500 and body["error"].startswith("internal error (TypeError") and "\n" not in body["error"]
    assert _call(f"{base}/api/info")[0] == 200


def test_upload_over_the_limit_is_refused_before_reading(server):
    app, base = server
    app.cfg.max_upload_mb = 1000 / 2**20
    status, body = _call(f"{base}/api/face?name=big.png", b"x" * 5000)
    assert status == 400 and body["error"] == "the file is 4.9 KB; the app takes files up to 1.0 KB"


def test_face_job_renders_and_latent_downloads(server, tmp_path):
    from skimage import data

    _, base = server
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG")
    status, job = _call(f"{base}/api/face?name=astronaut.jpg&steps=3", buf.getvalue())
    job = _wait(base, job)
    assert job["state"] == "done", job
    res = job["result"]
    assert res["order"] == ["source", "toon"] and "projection (3 steps)" in res["method"]
    sid = res["session"]
    s0 = _call(f"{base}/api/render?session={sid}&swap=0")[1]["images"]["toon"]
    s2 = _call(f"{base}/api/render?session={sid}&swap=2")[1]["images"]["toon"]
    assert s0 != s2
    assert _call(f"{base}/api/render?session={sid}&psi=abc")[0] == 400
    assert _call(f"{base}/api/render?session={sid}&psi=nan")[0] == 400
    assert _call(f"{base}/api/render?session={sid}&sefa=inf,0")[1]["error"] == "SeFa degrees must lie in -100..100"
    assert "blocks 1..3" in _call(f"{base}/api/render?session={sid}&swap=9")[1]["error"]
    with urllib.request.urlopen(f"{base}/api/latent?session={sid}&psi=0.7&sefa=1,0,0") as r:
        assert "attachment" in r.headers["Content-Disposition"]
        (tmp_path / "l.pt").write_bytes(r.read())
    assert load_latent(tmp_path / "l.pt")["latent"].shape == (1, 6, 16)  # 16 px: 6 style entries


def test_translate_image_and_video_limits(models, tmp_path):
    from toonlab.app import App, AppConfig
    from translation.models import build_generator

    torch.manual_seed(0)
    tpath = tmp_path / "anime.pt"
    torch.save(build_generator("animegan2").state_dict(), tpath)
    app = App(AppConfig(ckpt=str(models[0]), translator=str(tpath), demo_cartoon=False, device="cpu",
                        max_video_seconds=1.0, workdir=str(tmp_path / "w")))
    buf = io.BytesIO()
    Image.fromarray((np.random.RandomState(0).rand(40, 56, 3) * 255).astype(np.uint8)).save(buf, "PNG")
    job = app.start_translate(buf.getvalue(), "p.png", retain=True)
    for _ in range(600):
        if job.state in ("done", "error"):
            break
        threading.Event().wait(0.1)
    assert job.state == "done", job.error
    assert (job.result["width"], job.result["height"]) == (56, 40)
    # A photo longer than the translator's limit: downscaled, and said so.
    import toonlab.app as appmod

    buf = io.BytesIO()
    Image.new("RGB", (appmod.MAX_TRANSLATE_SIDE + 264, 30), (200, 60, 60)).save(buf, "PNG")
    job = app.start_translate(buf.getvalue(), "wide.png", retain=False)
    for _ in range(600):
        if job.state in ("done", "error"):
            break
        threading.Event().wait(0.1)
    assert job.state == "done", job.error
    assert job.result["width"] == appmod.MAX_TRANSLATE_SIDE and "downscaled" in job.result["notes"][0]
    # A 2-second clip against a 1-second limit: refused, naming the limit.
    from toonlab.video import write_video

    clip = write_video([np.full((32, 32, 3), i * 5, np.uint8) for i in range(20)], tmp_path / "clip.mp4", fps=10)
    with pytest.raises(UserInputError, match="up to 1 s"):
        app.start_translate(clip.read_bytes(), "clip.mp4", retain=False)
    with pytest.raises(UserInputError, match="cannot open|no video"):
        app.start_translate(b"not a video at all", "broken.mp4", retain=False)


# ---- the encoder path, through a stand-in module with the encoder branch's interface ------------


@pytest.fixture
def fake_encoder(monkeypatch, tmp_path):
    """``inversion.encoder`` as the web app sees it: load_encoder, encode, bundled_encoder_path.
    The stand-in "encodes" every image to one fixed W+ so the test can tell where a latent came from."""
    import sys
    import types

    mod = types.ModuleType("inversion.encoder")
    calls: list[tuple] = []
    bundled = tmp_path / "encoder_synthetic64.pt"
    bundled.write_bytes(b"stand-in")

    class Enc:
        def __init__(self, w):
            self.w = w

    def load_encoder(path=None, device="cpu"):
        calls.append(("load", path))
        return Enc(None)

    def encode(enc, G, images):
        calls.append(("encode", tuple(images.shape)))
        g = torch.Generator().manual_seed(7)
        return G.broadcast(G.style(torch.randn(images.shape[0], G.style_dim, generator=g)))

    mod.load_encoder, mod.encode, mod.bundled_encoder_path = load_encoder, encode, lambda: bundled
    monkeypatch.setitem(sys.modules, "inversion.encoder", mod)
    return calls


def test_encoder_is_used_when_present_and_its_absence_falls_back(models, fake_encoder, monkeypatch):
    import inversion.pipeline as pl

    # The bundled encoder belongs to the bundled source: another --ckpt without --encoder projects.
    other = FacePipeline.load(models[0], [models[1]], device="cpu")
    assert other.encoder is None and "bundled one is for the bundled source" in other.encoder_note
    monkeypatch.setattr(pl, "bundled_generator", lambda: Path(models[0]))  # pretend the tiny G is bundled
    pipe = FacePipeline.load(models[0], [models[1]], device="cpu")
    assert pipe.encoder is not None and fake_encoder[0] == ("load", None)
    assert pipe.encoder_note == "encoder encoder_synthetic64.pt"
    photo = Image.new("RGB", (64, 64), (90, 120, 150))
    inv = pipe.invert(photo, 0)
    assert inv.method == "encoder" and inv.noise is None
    assert fake_encoder[-1] == ("encode", (1, 3, 16, 16))  # the crop at the generator's size
    assert fake_encoder[1] == ("encode", (1, 3, 16, 16))  # the trial encode at load time
    g = torch.Generator().manual_seed(7)
    assert torch.allclose(inv.latent, pipe.G.broadcast(pipe.G.style(torch.randn(1, pipe.G.style_dim, generator=g))))
    assert set(pipe.render(inv)) == {"source", "toon"}
    none = FacePipeline.load(models[0], [models[1]], device="cpu", use_encoder=False)
    assert none.encoder is None and "optimisation" in none.encoder_note


def test_refinement_starts_from_the_encoder(models, fake_encoder):
    import inspect

    from inversion.project import project

    if "init" not in inspect.signature(project).parameters:
        pytest.skip("project(init=...) comes with the encoder branch (inversion/encoder.py)")
    pipe = FacePipeline.load(models[0], [models[1]], device="cpu", encoder="enc.pt")
    target = render(pipe.G, _inversion(pipe, 3).latent)[0]
    photo = to_pil(target)
    start = pipe.invert(photo, 0)
    refined = pipe.invert(photo, 20)
    assert refined.method.startswith("encoder + 20 refinement steps")
    x = pipe.target(photo)
    err = lambda inv: (render(pipe.G, inv.latent, inv.noise) - x).square().mean()  # noqa: E731
    assert err(refined) < err(start)


# ---- the demo cartoon: fine-tuned once in the background, then loaded from the cache ---------------


def test_demo_cartoon_trains_in_the_background_then_comes_from_the_cache(tmp_path, monkeypatch):
    import time

    from toonlab.app import App, AppConfig

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    app = App(AppConfig(device="cpu", demo_iters=2, workdir=str(tmp_path / "w")))
    assert app.info()["cartoons"] == [] and "background" in app.info()["demo_status"]
    for _ in range(1200):
        if app.demo_status is None:
            break
        time.sleep(0.1)
    info = app.info()
    assert info["demo_status"] is None, info
    assert info["cartoons"] == [{"name": "webtoon-demo", "label": "webtoon (demo: 2-step fine-tune)"}]
    assert (tmp_path / "cache" / "toonlab" / "app").is_dir()
    again = App(AppConfig(device="cpu", demo_iters=2, workdir=str(tmp_path / "w2")))
    assert again.demo_status is None and [c["name"] for c in again.info()["cartoons"]] == ["webtoon-demo"]
    # --no-demo-cartoon: no demo cartoon, and no background fine-tune
    assert App(AppConfig(device="cpu", demo_cartoon=False, workdir=str(tmp_path / "w3"))).info()["cartoons"] == []


def test_bundled_cartoons_are_called_by_their_domain(models, tmp_path, monkeypatch):
    import shutil

    from toonlab import bundled
    from toonlab.app import App, AppConfig

    folder = tmp_path / "assets"
    folder.mkdir()
    shutil.copy(models[1], folder / "cartoon_webtoon64.pt")
    monkeypatch.setattr(bundled, "FOLDER", folder)
    app = App(AppConfig(ckpt=str(models[0]), cartoons=[str(folder / "cartoon_webtoon64.pt"), str(models[1])],
                        device="cpu", demo_cartoon=False, workdir=str(tmp_path / "w")))
    assert app.info()["cartoons"] == [{"name": "cartoon_webtoon64", "label": "webtoon (bundled)"},
                                      {"name": "toon", "label": "toon"}]


def test_translate_video_keeps_audio(models, tmp_path):
    import subprocess

    from toonlab.app import App, AppConfig
    from toonlab.video import ffmpeg_exe
    from translation.models import build_generator

    exe = ffmpeg_exe()
    if exe is None:
        pytest.skip("no ffmpeg (imageio-ffmpeg) to make a clip with sound")
    clip = tmp_path / "clip.mp4"
    subprocess.run([exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "color=c=red:s=32x32:d=0.5:r=10",
                    "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", "-shortest", "-pix_fmt", "yuv420p",
                    str(clip)], check=True)
    torch.manual_seed(0)
    tpath = tmp_path / "anime.pt"
    torch.save(build_generator("animegan2").state_dict(), tpath)
    app = App(AppConfig(ckpt=str(models[0]), translator=str(tpath), demo_cartoon=False, device="cpu",
                        workdir=str(tmp_path / "w")))
    job = app.start_translate(clip.read_bytes(), "clip.mp4", retain=False)
    for _ in range(1200):
        if job.state in ("done", "error"):
            break
        threading.Event().wait(0.1)
    assert job.state == "done", job.error
    r = job.result
    assert r["audio"] is True and r["frames"] == 5 and (r["width"], r["height"]) == (32, 32)
    out = app.file(r["video"].rsplit("/", 1)[-1])
    import cv2

    cap = cv2.VideoCapture(str(out))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    assert fourcc.lower() in ("avc1", "h264") and n == 5  # H.264: what a <video> element plays


# ---- the command ------------------------------------------------------------------------------------


def test_app_command_flags_and_one_line_errors(models, tmp_path, monkeypatch):
    import socket

    from click.testing import CliRunner

    import toonlab.app as appmod
    from toonlab.cli import load_command

    cmd = load_command("app")
    seen = {}
    import types

    monkeypatch.setattr(appmod, "serve", lambda cfg: (seen.setdefault("cfg", cfg), types.SimpleNamespace(demo_thread=None))[1])
    other = tiny_checkpoint(tmp_path / "other.pt", 16, seed=2)
    r = CliRunner().invoke(cmd, ["--ckpt", str(models[0]), "--cartoon", str(models[1]), str(other), "--port", "0"])
    assert r.exit_code == 0, r.output
    assert list(seen["cfg"].cartoons) == [str(models[1]), str(other)]  # --cartoon A.pt B.pt
    r = CliRunner().invoke(cmd, [str(other)])
    assert r.exit_code == 2 and "follow --cartoon" in r.output
    r = CliRunner().invoke(cmd, ["--cartoon", str(tmp_path / "missing.pt")])
    assert r.exit_code == 2 and "file not found" in r.output and "Traceback" not in r.output
    monkeypatch.undo()
    big = tiny_checkpoint(tmp_path / "big.pt", 32, channel_base=256)
    r = CliRunner().invoke(cmd, ["--ckpt", str(models[0]), "--cartoon", str(big)])
    assert r.exit_code == 2 and "does not fit" in r.output
    with socket.socket() as s:  # a port in use: one line, exit 2
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = CliRunner().invoke(cmd, ["--ckpt", str(models[0]), "--port", str(port), "--no-demo-cartoon"])
    assert r.exit_code == 2 and f"--port {port}: cannot listen" in r.output


def test_upload_names_become_safe_file_names():
    from toonlab.app import safe_stem

    assert safe_stem('../x y"<b>.png') == "x_y__b"
    assert safe_stem("фото.jpg") == "upload" and safe_stem("face-01_a.JPG") == "face-01_a"


def test_the_page_is_self_contained_and_ships_with_the_package():
    import re

    from toonlab.app import PAGE

    page = PAGE.read_text(encoding="utf-8")
    # Nothing from elsewhere: no absolute or protocol-relative URLs in src/href/url()/@import/fetch.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"""url\(\s*["']?(https?:)?//|@import|fetch\(\s*["'`]https?:""", page, re.I)
    assert "<script src" not in page and "<link" not in page
    setup = (Path(__file__).resolve().parents[1] / "setup.py").read_text()
    assert '"assets/*.html"' in setup and '"selenium"' in setup


def test_warm_up_loads_dlib_before_the_first_photo(pipe):
    import time

    import inversion.align as al

    pipe.warm_up()
    t = time.perf_counter()
    pipe.warm_up()  # cached: the second call does no loading
    assert time.perf_counter() - t < 1.0
    assert al.detect_faces(Image.new("RGB", (32, 32))) == []


@pytest.mark.parametrize("term", [False, True], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_the_server_in_one_line(models, term, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo), "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "toonlab.cli", "app", "--ckpt", str(models[0]), "--port", "0",
                             "--device", "cpu", "--no-demo-cartoon"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=repo,
                            # A run started in the background (`nohup make test &`) inherits SIGINT
                            # ignored, and Python then installs no KeyboardInterrupt: give Ctrl-C back.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        out = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 120:
            line = proc.stdout.readline()
            out.append(line)
            m = re.search(r"serving on (http://\S+/)", line)
            if m or not line:
                break
        assert m, "".join(out)
        with urllib.request.urlopen(m.group(1), timeout=30) as r:
            assert b"<title>toonlab</title>" in r.read()
        proc.send_signal(signal.SIGINT if not term else signal.SIGTERM)
        rest, _ = proc.communicate(timeout=90)  # it may wait up to 60 s for dlib's loader (app.serve)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "toonlab app: stopped" in rest and "Traceback" not in rest
    assert not list(tmp_path.glob("toonlab-app-*"))  # its temporary folder is gone
