"""The demo page shows the zoo (``toonlab/demo.py`` over ``toonlab/bundled.py``): tiny models in a tmp assets folder."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegan2.checkpoint import snapshot
from tests.conftest import tiny_checkpoint, tiny_generator
from toonlab import bundled
from toonlab.atomic import torch_save_atomic
from toonlab.images import make_grid
from toonlab.runtime import ASSETS, REPO_ROOT

pytest.importorskip("dlib")
pytest.importorskip("skimage")


def _cartoon(path: Path, seed: int, **meta) -> Path:
    """A tiny generator of the source's shape (a stand-in for one fine-tuned from it), with metadata."""
    return torch_save_atomic(snapshot(tiny_generator(32, seed, perturb="noise"), toonlab=meta), path)


def _run(out: Path) -> tuple[str, Path]:
    from toonlab.demo import run_demo

    page = run_demo(out, device="cpu", seeds=4, finetune_iters=2, project_steps=2)
    text = page.read_text()
    for src in re.findall(r"<img src='([^']+)'", text):  # every picture the page names is there and readable
        assert Image.open(out / src).size[0] > 0
    return text, out


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Two demo pages over a tmp assets folder with a tiny 32-px source (synthetic faces start at 32 px;
    with D, so the live fine-tune keeps one): first with nothing else bundled, then with two cartoon
    generators, one of another shape and a translator. The second page's live fine-tune resumes the
    first's finished run (instant), as re-running ``make demo`` does."""
    root = tmp_path_factory.mktemp("zoo")
    folder = root / "assets"
    folder.mkdir()
    tiny_checkpoint(folder / bundled.SOURCE_NAME, 32, with_d=True, perturb="noise")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bundled, "FOLDER", folder)
        fallback = _run(root / "fallback")
        _cartoon(folder / "cartoon_webtoon32.pt", 1,
                 config={"source": "x/source_synthetic64.pt", "data": "synthetic:webtoon", "freeze": 2,
                         "structure_loss": 3, "batch": 8}, step=500)
        _cartoon(folder / "cartoon_sketch32.pt", 2, label="a sketch cartoon, made for this test")
        # another shape: not fine-tuned from this source, so left out with a note
        torch_save_atomic(snapshot(tiny_generator(32, 3, style_dim=8)), folder / "cartoon_pastel32.pt")
        from translation.models import build_generator

        torch.manual_seed(0)
        torch.save(build_generator("animegan2-lite").state_dict(), folder / "animegan2_webtoon.pt")
        shutil.copytree(root / "fallback" / "finetune", root / "zoo" / "finetune")
        zoo = _run(root / "zoo")
    return {"fallback": fallback, "zoo": zoo}


def _sefa_height(rows: int) -> int:
    """Height of a SeFa grid of ``rows`` generators × 5 degrees of 32-px tiles, shown ×2 as the demo does."""
    blank = Image.new("RGB", (32, 32))
    return make_grid([blank] * 5 * rows, cols=5, col_labels=["+6"] * 5, row_labels=["x"] * rows).height * 2


def test_demo_shows_every_bundled_model(pages):
    text, out = pages["zoo"]
    for heading in ("(a) The source generator", "(b) Cartoon generator “sketch”", "(b) Cartoon generator “webtoon”",
                    "(c) Layer swapping: source × “sketch”", "(c) Layer swapping: source × “webtoon”",
                    "(d) Face to cartoon", "(d) Photo → cartoon translator “animegan2_webtoon”",
                    "(e) Editing with SeFa",
                    "(f) Live: a 2-step fine-tune run now on your machine, to show the loop runs — not a finished model"):
        assert f"<h2>{heading}" in text, heading
    # labels come from each file's metadata
    assert "a sketch cartoon, made for this test" in text
    assert "fine-tuned from source_synthetic64.pt to synthetic:webtoon: FreezeSG 2 + structure loss 3, 500 steps" in text
    assert "cartoon_pastel32.pt was left out" in text and "“pastel”" not in text
    assert "not bundled" not in text and "No cartoon generator is bundled" not in text
    assert "Sections (b)–(e) show the bundled cartoon generators instead" in text
    assert "resumed from the finished run of an earlier demo" in text  # the copied run folder was not re-trained
    # the two cartoons are different models, and neither is the live run
    a, b = (torch.tensor(list(Image.open(out / f"cartoon_{d}.png").getdata()), dtype=torch.float)
            for d in ("sketch", "webtoon"))
    assert (a - b).abs().mean() > 1
    assert not (out / "cartoon_webtoon_live.png").exists()
    assert Image.open(out / "translator_animegan2_webtoon.png").width > Image.open(out / "aligned.png").width
    # (e) has one row per cartoon below the source's
    assert Image.open(out / "sefa.png").height == _sefa_height(rows=3)


def test_demo_without_cartoons_or_translator_falls_back_and_says_so(pages):
    text, out = pages["fallback"]
    assert "No cartoon generator is bundled" in text
    assert "<h2>(b) Cartoon generator “webtoon (live)”" in text
    assert "<h2>(c) Layer swapping: source × “webtoon (live)”" in text
    assert "<h2>(d) Photo → cartoon translator: not bundled" in text
    assert "Sections (b)–(e) use it because no cartoon generator is bundled" in text
    assert "<h2>(f) Live: a 2-step fine-tune" in text and " s here, just now" in text
    assert (out / "cartoon_webtoon_live.png").is_file() and not list(out.glob("translator_*.png"))
    assert Image.open(out / "sefa.png").height == _sefa_height(rows=2)


def test_demo_without_a_source_says_what_is_left_out(tmp_path, monkeypatch):
    from toonlab.demo import run_demo

    monkeypatch.setattr(bundled, "FOLDER", tmp_path / "empty")
    text = run_demo(tmp_path / "demo", device="cpu", seeds=2).read_text()
    assert "UNTRAINED" in text and "No bundled source generator" in text and "(f)" not in text


def test_demo_cli_rejects_bad_input_in_one_line():
    from toonlab.demo import main

    r = CliRunner().invoke(main, ["--finetune-iters", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output


# ------------------------------------------------------------------------------------- the registry


def test_registry_finds_models_by_name_and_labels_them(tmp_path, monkeypatch):
    monkeypatch.setattr(bundled, "FOLDER", tmp_path)
    tiny_checkpoint(tmp_path / bundled.SOURCE_NAME, 16)
    _cartoon(tmp_path / "cartoon_webtoon64.pt", 1)
    _cartoon(tmp_path / "cartoon_sketch64.pt", 2)
    (tmp_path / "cartoongan_sketch.pt").write_bytes(b"not a torch file")
    (tmp_path / "animegan2_webtoon.pt").write_bytes(b"")  # unreadable files are listed; loading them is what fails
    (tmp_path / "notes.txt").write_text("x")
    assert bundled.source().path.name == bundled.SOURCE_NAME
    assert [c.name for c in bundled.cartoons()] == ["sketch", "webtoon"]
    assert [t.name for t in bundled.translators()] == ["animegan2_webtoon", "cartoongan_sketch"]  # the default first
    assert bundled.translator().name == "animegan2_webtoon" and bundled.translator().label == "animegan2_webtoon.pt"
    assert bundled.encoder() is None and bundled.probes() is None
    assert [m.kind for m in bundled.models()] == ["source", "cartoon", "cartoon", "translator", "translator"]
    assert bundled.total_bytes() == sum(p.stat().st_size for p in tmp_path.iterdir())
    monkeypatch.setattr(bundled, "FOLDER", tmp_path / "missing")
    assert bundled.source() is None and bundled.cartoons() == [] and bundled.translator() is None


def test_labels_come_from_the_recorded_metadata():
    d = bundled.describe
    ft = {"source": "a/b/face.pt", "data": "synthetic:sketch", "freeze_g": 3, "freeze_d": 2, "batch": 4}
    assert d({"g_ema": {}, "toonlab": {"g_config": {"size": 64}, "config": ft, "step": 1000}}, "f.pt") == \
        "StyleGAN2 64 px fine-tuned from face.pt to synthetic:sketch: FreezeG 3 + FreezeD 2, 1,000 steps (4.0 kimg)"
    pre = {"data": "faces.lmdb", "batch": 32, "size": 256}
    assert d({"g_ema": {}, "toonlab": {"config": pre, "step": 10000}}, "f.pt") == \
        "StyleGAN2 256 px trained on faces.lmdb, 10,000 steps (320 kimg)"
    # a run warm-restarted at another batch: the images the trainer counted, not step × the last batch
    assert d({"g_ema": {}, "toonlab": {"config": pre, "step": 10000, "nimg": 200_000}}, "f.pt") == \
        "StyleGAN2 256 px trained on faces.lmdb, 10,000 steps (200 kimg)"
    tr = {"model": "animegan2", "preset": "hayao", "step": 300,
          "config": {"photos": "synthetic:photo", "style": "synthetic:webtoon"}}
    assert d({"g": {}, "g_ema": {}, "toonlab": tr}, "t.pt") == \
        "animegan2 translator synthetic:photo → synthetic:webtoon (hayao preset), 300 steps"
    assert d({"g_ema": {}, "toonlab": {"label": "  mine\nsecond line", "config": pre}}, "f.pt") == "mine"
    assert d({"weight": torch.zeros(1)}, "plain.pt") == "plain.pt" and d([1], "x.pt") == "x.pt"


# ------------------------------------------------------------------------------------- the real assets


def test_bundled_assets_total_at_most_40_mb():
    total = sum(p.stat().st_size for p in ASSETS.rglob("*") if p.is_file())
    assert total <= bundled.MAX_TOTAL_BYTES == 40_000_000, f"toonlab/assets/ holds {total / 1e6:.1f} MB"


def test_every_bundled_model_is_documented_in_source_model_md():
    doc = (REPO_ROOT / "docs" / "SOURCE_MODEL.md").read_text()
    missing = [p.name for p in ASSETS.glob("*.pt") if p.name not in doc]
    assert not missing, f"docs/SOURCE_MODEL.md does not say how {', '.join(missing)} was made"


def test_the_real_source_is_labelled_from_its_training_config():
    src = bundled.source()
    if src is None:
        pytest.skip("no bundled source generator in this checkout")
    assert src.label.startswith("StyleGAN2 64 px trained on synthetic:photo, ") and "kimg" in src.label
