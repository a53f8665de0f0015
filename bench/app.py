"""The web app's numbers: start time, one face end to end, slider re-renders; optionally the README
screenshot (docs/images/app.png) taken by headless Chromium.

    python bench/app.py                                  # `toonlab app` with no flags (bundled models)
    python bench/app.py --screenshot docs/images/app.png -- --cartoon toon.pt   # args after -- go to the app

Start time is wall-clock from spawning the process to the first answer of ``/api/info`` (Python,
torch and the models included), i.e. what a user waits for after typing the command.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _get(url: str, data: bytes | None = None) -> dict:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8799)
    ap.add_argument("--steps", type=int, default=None, help="refinement/projection steps for the face (default: the app's)")
    ap.add_argument("--renders", type=int, default=10)
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("app_args", nargs="*")
    a = ap.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "toonlab.cli", "app", "--port", str(a.port), *a.app_args],
                            env=env, cwd=REPO)
    base = f"http://127.0.0.1:{a.port}"
    try:
        while True:
            try:
                info = _get(f"{base}/api/info")
                break
            except OSError:
                if proc.poll() is not None:
                    raise SystemExit("the app exited")
                time.sleep(0.05)
        start = time.perf_counter() - t0
        while info.get("demo_status"):  # the demo cartoon is being fine-tuned: not part of the start time
            time.sleep(2)
            info = _get(f"{base}/api/info")
        from PIL import Image
        from skimage import data

        buf = io.BytesIO()
        Image.fromarray(data.astronaut()).save(buf, "PNG")
        q = f"&steps={a.steps}" if a.steps is not None else ""
        t1 = time.perf_counter()
        job = _get(f"{base}/api/face?name=astronaut.png{q}", buf.getvalue())
        while job["state"] not in ("done", "error"):
            time.sleep(0.1)
            job = _get(f"{base}/api/job/{job['id']}")
        face = time.perf_counter() - t1
        if job["state"] != "done":
            raise SystemExit(job["error"])
        sid = job["result"]["session"]
        times = []
        for i in range(a.renders):
            t2 = time.perf_counter()
            _get(f"{base}/api/render?session={sid}&swap={i % (info['blocks'] + 1)}&psi=0.8&sefa=1,0,0")
            times.append(time.perf_counter() - t2)
        print(f"| start (spawn → first answer) | {start:.1f} s |")
        print(f"| astronaut: align + {job['result']['method']} + first render | {face:.1f} s |")
        print(f"| slider re-render (source + {len(info['cartoons'])} cartoon(s), PNG data URLs), median of "
              f"{a.renders} | {statistics.median(times) * 1000:.0f} ms |")
        if a.screenshot:
            shoot(base, a.screenshot, info)
    finally:
        proc.terminate()
        proc.wait(10)


def shoot(base: str, out: Path, info: dict) -> None:
    """The Face tab with the astronaut, a layer swap and a SeFa edit, at 1280 px wide."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from skimage import data
    from PIL import Image
    sys.path.insert(0, str(REPO))
    from tests.test_app_browser import browser

    photo = Path("/tmp/toonlab_app_astronaut.png")
    Image.fromarray(data.astronaut()).save(photo)
    d = browser(1280, 1010)  # tall enough for the whole Face tab (headless ignores later resizes)
    try:
        d.get(base + "/")
        WebDriverWait(d, 30).until(lambda d: d.execute_script("return INFO !== null"))
        d.find_element(By.ID, "face-file").send_keys(str(photo))
        WebDriverWait(d, 600).until(lambda d: d.execute_script("return document.body.dataset.renders") == "1")
        d.execute_script("""
            const set = (id, v) => { const r = document.getElementById(id); r.value = v;
                                     r.dispatchEvent(new Event('input')); };
            set('swap', 2); set('psi', 0.9); set('sefa0', 2);""")
        WebDriverWait(d, 60).until(lambda d: int(d.execute_script("return document.body.dataset.renders")) >= 2)
        time.sleep(0.5)
        out.parent.mkdir(parents=True, exist_ok=True)
        d.save_screenshot(str(out))
        print(f"screenshot: {out}")
    finally:
        d.quit()


if __name__ == "__main__":
    main()
