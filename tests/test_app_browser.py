"""The web app in a real browser: headless Chromium driven by Selenium, against `toonlab app` started
as users start it (a subprocess on a free port).

Skips, saying why, when Chromium, its driver or selenium is missing (``.ci/run`` installs the Debian
``chromium`` and ``chromium-driver`` packages). Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and os.path.exists(p)), None)
DRIVER = next((p for p in ("/usr/bin/chromedriver", shutil.which("chromedriver") or "") if p and os.path.exists(p)), None)

try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                       reason="no Chromium/chromedriver (apt-get install chromium chromium-driver)"),
]


def start_app(args: list[str], env_extra: dict[str, str] | None = None, timeout: float = 120.0
              ) -> tuple[subprocess.Popen, str, float]:
    """``toonlab app ARGS --port 0``; returns the process, its URL and the seconds until it served."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "toonlab.cli", "app", "--port", "0", "--device", "cpu", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    while time.perf_counter() - t0 < timeout:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        m = re.search(r"serving on (http://\S+/)", line)
        if m:
            return proc, m.group(1), time.perf_counter() - t0
    proc.kill()
    raise AssertionError("the app did not start:\n" + "".join(lines))


def browser(width: int = 1280, height: int = 1000, tmp: Path | None = None):  # noqa: ANN201 - a WebDriver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--use-fake-ui-for-media-stream",
              "--use-fake-device-for-media-stream", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--metrics-recording-only"):
        opts.add_argument(a)
    if tmp is not None:
        opts.add_argument(f"--user-data-dir={tmp / 'chromium-profile'}")
    return webdriver.Chrome(service=Service(DRIVER), options=opts)


def decode(src: str) -> np.ndarray:
    assert src.startswith("data:image/png;base64,"), src[:40]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB"), dtype=np.float32)


def wait_for(driver, fn, timeout: float = 240.0, what: str = "condition"):  # noqa: ANN001, ANN201
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.25).until(lambda d: fn(d), message=f"waiting for {what}")


@pytest.fixture
def app_url(tmp_path):
    src = tiny_checkpoint(tmp_path / "source.pt", 16, seed=0, perturb="biases")
    toon = tiny_checkpoint(tmp_path / "toon.pt", 16, seed=1, perturb="biases")
    from translation.models import build_generator

    torch.manual_seed(0)
    tr = tmp_path / "anime.pt"
    torch.save(build_generator("animegan2").state_dict(), tr)
    proc, url, seconds = start_app(["--ckpt", str(src), "--cartoon", str(toon), "--translator", str(tr),
                                    "--projection-iters", "10", "--no-demo-cartoon", "--max-upload-mb", "1"])
    try:
        yield url, seconds
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_face_tab_in_a_real_browser(app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from skimage import data

    url, seconds = app_url
    assert seconds < 60  # the real budget (15 s on two idle cores) is measured in docs/BENCHMARKS.md
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    flat = tmp_path / "flat.png"
    Image.new("RGB", (400, 300), (120, 140, 160)).save(flat)
    d = browser(tmp=tmp_path)
    try:
        d.get(url)
        wait_for(d, lambda d: "source.pt" in d.find_element(By.ID, "models").text, 30, "the model line")
        assert d.find_element(By.ID, "swap").get_attribute("max") == "3"  # a 16-px generator has 3 blocks
        size = d.execute_script("return INFO.size")
        assert size == 16

        # The astronaut: aligned, inverted, rendered through the source and the cartoon.
        d.find_element(By.ID, "face-file").send_keys(str(photo))
        wait_for(d, lambda d: d.execute_script("return document.body.dataset.renders") == "1"
                 or d.find_element(By.ID, "face-message").text, what="the cartoon")
        assert d.find_element(By.ID, "face-message").text == ""
        d.save_screenshot(str(tmp_path / "face.png"))
        imgs = {n: d.find_element(By.ID, f"out-{n}") for n in ("source", "toon")}
        arrays = {}
        for n, el in imgs.items():
            assert d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", el) == size
            assert el.get_property("naturalHeight") == size
            arrays[n] = decode(el.get_attribute("src"))
            assert arrays[n].shape == (size, size, 3) and arrays[n].std() > 5, n  # not blank
        aligned = decode(d.find_element(By.ID, "aligned").get_attribute("src"))
        assert aligned.shape == (256, 256, 3) and aligned.std() > 10
        assert "projection (10 steps)" in d.find_element(By.ID, "face-notes").text

        # The swap slider, moved with the keyboard as a user would: the cartoon changes, the source not.
        slider = d.find_element(By.ID, "swap")
        slider.send_keys(Keys.ARROW_RIGHT)
        wait_for(d, lambda d: d.execute_script("return document.body.dataset.renders") == "2", 60, "a re-render")
        assert d.find_element(By.ID, "swap-v").text == "1"
        toon2 = decode(d.find_element(By.ID, "out-toon").get_attribute("src"))
        src2 = decode(d.find_element(By.ID, "out-source").get_attribute("src"))
        assert np.abs(toon2 - arrays["toon"]).mean() > 1
        assert np.abs(src2 - arrays["source"]).max() == 0
        # The download links: the images and a latent file for this edit.
        latent_href = d.find_element(By.ID, "dl-latent").get_attribute("href")
        assert "/api/latent?session=" in latent_href and "swap=1" in latent_href
        d.save_screenshot(str(tmp_path / "face_swapped.png"))

        # A photo without a face: a message on the page, and the app still answers.
        done = d.execute_script("return document.body.dataset.faces")
        d.find_element(By.ID, "face-file").send_keys(str(flat))
        wait_for(d, lambda d: d.execute_script("return document.body.dataset.faces") != done, 120,
                 "the no-face message")
        assert d.find_element(By.ID, "face-message").text.startswith("no face found in the photo")
        d.save_screenshot(str(tmp_path / "no_face.png"))

        # The (fake) webcam: Chromium's test pattern has no face either.
        d.find_element(By.ID, "webcam-btn").click()
        wait_for(d, lambda d: d.execute_script("return document.getElementById('webcam').videoWidth") > 0, 30,
                 "the webcam")
        done = d.execute_script("return document.body.dataset.faces")
        d.find_element(By.ID, "snap-btn").click()
        # Wait for this attempt's answer: the no-face message of the flat photo is still on the page until
        # the snapshot (encoded asynchronously) starts its own attempt.
        wait_for(d, lambda d: d.execute_script("return document.body.dataset.faces") != done, 120,
                 "the webcam result")
        assert "no face found" in d.find_element(By.ID, "face-message").text

        # Nothing but this server was contacted.
        origins = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(o.startswith(url) or o.startswith("data:") or o.startswith("blob:") for o in origins), origins
        logs = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert not [e for e in logs if "Uncaught" in e["message"]], logs
    finally:
        d.quit()


def test_photo_tab_and_bad_files_in_a_real_browser(app_url, tmp_path):
    from selenium.webdriver.common.by import By
    from skimage import data

    url, _ = app_url
    photo = tmp_path / "coffee.jpg"
    Image.fromarray(data.coffee()).resize((120, 80)).save(photo)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    d = browser(tmp=tmp_path)
    try:
        d.get(url)
        wait_for(d, lambda d: d.execute_script("return INFO !== null"), 30, "the page")
        # Not an image, in the face tab: one line, no trace.
        d.find_element(By.ID, "face-file").send_keys(str(text))
        wait_for(d, lambda d: d.find_element(By.ID, "face-message").text, 60, "the message")
        msg = d.find_element(By.ID, "face-message").text
        assert msg == "notes.png: not an image (unrecognised format)"
        # Over --max-upload-mb 1: refused with the sizes, before uploading.
        big = tmp_path / "big.png"
        Image.fromarray((np.random.RandomState(0).rand(800, 800, 3) * 255).astype(np.uint8)).save(big)
        d.find_element(By.ID, "face-file").send_keys(str(big))
        wait_for(d, lambda d: "MB" in d.find_element(By.ID, "face-message").text, 30, "the size message")
        assert d.find_element(By.ID, "face-message").text.endswith("the app takes files up to 1.0 MB")
        d.find_element(By.ID, "tab-photo-btn").click()
        d.find_element(By.ID, "photo-file").send_keys(str(photo))
        d.find_element(By.ID, "retain").click()
        d.find_element(By.ID, "photo-go").click()
        wait_for(d, lambda d: d.find_elements(By.ID, "photo-out") or d.find_element(By.ID, "photo-message").text,
                 120, "the translation")
        out = d.find_element(By.ID, "photo-out")
        assert (out.get_property("naturalWidth"), out.get_property("naturalHeight")) == (120, 80)
        assert decode(out.get_attribute("src")).std() > 1
        d.save_screenshot(str(tmp_path / "photo.png"))
        d.find_element(By.ID, "photo-file").send_keys(str(text))
        d.find_element(By.ID, "photo-go").click()
        wait_for(d, lambda d: d.find_element(By.ID, "photo-message").text, 60, "the message")
        assert "not an image" in d.find_element(By.ID, "photo-message").text

        # A short clip with sound: translated, and the page's <video> can play it (H.264).
        from toonlab.video import ffmpeg_exe

        exe = ffmpeg_exe()
        if exe is None:
            return
        clip = tmp_path / "clip.mp4"
        subprocess.run([exe, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=s=48x32:d=1:r=8",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-shortest", "-pix_fmt", "yuv420p",
                        str(clip)], check=True)
        d.find_element(By.ID, "photo-file").send_keys(str(clip))
        d.find_element(By.ID, "photo-go").click()
        wait_for(d, lambda d: d.find_elements(By.CSS_SELECTOR, "video#photo-out")
                 or d.find_element(By.ID, "photo-message").text, 120, "the video")
        assert d.find_element(By.ID, "photo-message").text == ""
        assert "audio kept" in d.find_element(By.ID, "photo-notes").text
        wait_for(d, lambda d: d.execute_script("const v = document.getElementById('photo-out');"
                                               "return v.readyState >= 1 || (v.error && v.error.code)"), 30,
                 "the video's metadata")
        v = d.execute_script("const v = document.getElementById('photo-out');"
                             "return [v.error ? v.error.code : 0, v.videoWidth, v.videoHeight, v.duration]")
        assert v[0] == 0 and v[1:3] == [48, 32] and v[3] > 0.5, v
        d.save_screenshot(str(tmp_path / "video.png"))
    finally:
        d.quit()
