"""The bundled translator's plumbing: ``translate --export-pt`` turns a training checkpoint into the
slim fp16 file that ships as ``toonlab/assets/animegan2_webtoon.pt``; ``translate`` without
``--ckpt`` and ``toonlab app`` without ``--translator`` find it through ``toonlab.bundled``; a
missing file or a bad path is one line, exit 2; the registry labels it from its metadata.

The run checkpoint is a real one: the trainer, two steps at 32 px with random VGG features."""

from __future__ import annotations

import hashlib
import signal
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from losses.features import vgg19_features
from toonlab import app as app_mod
from toonlab import bundled
from translation import infer
from translation.data import open_translation_data
from translation.models import SLIM_FORMAT, load_generator
from translation.trainer import TranslateConfig, TranslationTrainer

PHOTOS, STYLE = "synthetic:photo", "synthetic:webtoon"
SIZE = 32
# fp16 keeps 11 significant bits: each weight moves by at most 2^-11 of itself. Through the
# network that stays well under one 8-bit level of the [-1, 1] output (2/255), which is what a
# saved image can show; the fp32 model of the same run is the reference.
FP16_ATOL = 2 / 255


@pytest.fixture(scope="module")
def run_ckpt(tmp_path_factory) -> Path:
    """The newest checkpoint of a tiny AnimeGANv2 run that keeps a g_ema (as the real run does)."""
    out = tmp_path_factory.mktemp("run")
    cfg = TranslateConfig(out=str(out), model="animegan2", preset="hayao", photos=PHOTOS, style=STYLE, size=SIZE,
                          batch=2, init_iters=1, iters=1, ema=0.5, workers=0, tensorboard=False, n_samples=2,
                          vgg="random", snapshot_every=0, sample_every=0, log_every=1)
    data = open_translation_data(PHOTOS, STYLE, size=SIZE, synthetic_length=8)
    t = TranslationTrainer(cfg, data, "cpu", features=vgg19_features(random=True))
    t.train()
    return t.run.latest()


@pytest.fixture(scope="module")
def exported(run_ckpt, tmp_path_factory) -> Path:
    """``translate --export-pt`` of the run, under the bundled file's name in a folder of its own."""
    folder = tmp_path_factory.mktemp("assets")
    out = folder / bundled.DEFAULT_TRANSLATOR
    r = CliRunner().invoke(infer.main, ["--ckpt", str(run_ckpt), "--export-pt", str(out), "--meta", "commit=abc123"])
    assert r.exit_code == 0, r.output
    assert f"wrote {out} (animegan2, g_ema, fp16 weights" in r.output
    return out


@pytest.fixture
def assets(exported, monkeypatch) -> Path:
    monkeypatch.setattr(bundled, "FOLDER", exported.parent)
    return exported.parent


def _one_error_line(r) -> str:
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    return lines[0]


# ------------------------------------------------------------------------------------ the export


def test_export_is_weights_only_fp16_with_the_runs_metadata(run_ckpt, exported):
    obj = torch.load(exported, map_location="cpu", weights_only=True)
    assert set(obj) == {"g", "toonlab"}  # no discriminator, no optimisers, no RNG state
    floats = {t.dtype for t in obj["g"].values() if t.is_floating_point()}
    assert floats == {torch.float16}
    meta = obj["toonlab"]
    run = torch.load(run_ckpt, map_location="cpu", weights_only=True)["toonlab"]
    assert meta["format"] == SLIM_FORMAT and meta["model"] == "animegan2" and meta["dtype"] == "float16"
    assert meta["size"] == SIZE and meta["domains"] == {"photos": PHOTOS, "style": STYLE}
    assert meta["step"] == run["step"] == 2 and meta["phase"] == run["phase"]
    assert meta["preset"] == "hayao" and meta["weights"] == run["weights"]
    assert meta["config"]["iters"] == 1 and meta["config"]["init_iters"] == 1 and "out" not in meta["config"]
    assert meta["exported_from"] == {"file": run_ckpt.name, "which": "g_ema",
                                     "sha256": hashlib.sha256(run_ckpt.read_bytes()).hexdigest()}
    assert meta["commit"] == "abc123"
    # What the loader hands on, for inference and the app.
    _, info = load_generator(exported)
    assert (info["model"], info["size"], info["step"], info["dtype"]) == ("animegan2", SIZE, 2, "float16")


def test_export_loads_back_close_to_the_fp32_model(run_ckpt, exported, tmp_path):
    G32, _ = load_generator(run_ckpt)  # g_ema, as the export chose
    G16, _ = load_generator(exported)
    assert {p.dtype for p in G16.parameters()} == {torch.float32}  # cast back on load
    x = torch.rand(2, 3, 48, 40, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        ref, got = G32(x), G16(x)
    diff = (ref - got).abs().max().item()
    assert 0 < diff <= FP16_ATOL, diff  # rounded (so really fp16), but invisible in an 8-bit image
    # The fp32 export is the very same network, and twice the size of the fp16 one.
    full = tmp_path / "full.pt"
    r = CliRunner().invoke(infer.main, ["--ckpt", str(run_ckpt), "--export-pt", str(full), "--export-dtype", "fp32"])
    assert r.exit_code == 0, r.output
    with torch.no_grad():
        torch.testing.assert_close(load_generator(full)[0](x), ref, rtol=0, atol=0)
    assert 0.45 < exported.stat().st_size / full.stat().st_size < 0.55
    assert not list(tmp_path.glob(".*.tmp")) and not list(exported.parent.glob(".*.tmp"))  # atomic writes


@pytest.mark.parametrize("case", ["missing-ckpt", "not-a-checkpoint", "parent-is-a-file", "over-its-source",
                                  "reserved-meta", "bad-meta"])
def test_bad_export_paths_are_one_line_exit_2(case, run_ckpt, tmp_path):
    ckpt, out, extra = run_ckpt, tmp_path / "G.pt", []
    if case == "missing-ckpt":
        ckpt = tmp_path / "nope.pt"
    elif case == "not-a-checkpoint":
        ckpt = tmp_path / "notes.pt"
        ckpt.write_text("not a torch file")
    elif case == "parent-is-a-file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "G.pt"
    elif case == "over-its-source":
        out = run_ckpt
    elif case == "reserved-meta":
        extra = ["--meta", "model=cartoongan"]
    else:
        extra = ["--meta", "no-equals-sign"]
    before = run_ckpt.stat().st_mtime_ns
    r = CliRunner().invoke(infer.main, ["--ckpt", str(ckpt), "--export-pt", str(out), *extra])
    if case == "bad-meta":  # click's own parameter error: usage, hint, then the one error line
        assert r.exit_code == 2 and "give KEY=VALUE" in r.output and "Traceback" not in r.output
    else:
        line = _one_error_line(r)
        named = {"missing-ckpt": str(ckpt), "not-a-checkpoint": str(ckpt), "parent-is-a-file": f"{out.parent} is a file",
                 "over-its-source": "would overwrite the checkpoint", "reserved-meta": "--meta model="}[case]
        assert named in line, line
    assert not (tmp_path / "G.pt").exists() and run_ckpt.stat().st_mtime_ns == before


# ------------------------------------------------------------------------------ using the bundled file


def test_translate_without_ckpt_uses_the_bundled_file(assets, exported, tmp_path):
    img = tmp_path / "in" / "face.png"
    img.parent.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)).save(img)
    r = CliRunner().invoke(infer.main, [str(img), "--out", str(tmp_path / "a"), "-q"])
    assert r.exit_code == 0, r.output
    assert f"note: no --ckpt: the bundled translator {bundled.DEFAULT_TRANSLATOR} (animegan2 translator" in r.output
    got = Image.open(tmp_path / "a" / "face.png")
    assert got.size == (61, 45) and got.mode == "RGB"
    # The very file it found: the same command with it as --ckpt gives the same pixels.
    r = CliRunner().invoke(infer.main, [str(img), "--ckpt", str(exported), "--out", str(tmp_path / "b"), "-q"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(got), np.asarray(Image.open(tmp_path / "b" / "face.png")))
    assert not np.array_equal(np.asarray(got), np.asarray(Image.open(img)))


def test_translate_without_ckpt_and_no_bundled_file_says_where_it_looked(tmp_path, monkeypatch):
    empty = tmp_path / "assets"
    empty.mkdir()
    monkeypatch.setattr(bundled, "FOLDER", empty)
    img = tmp_path / "face.png"
    Image.new("RGB", (40, 40), (200, 150, 120)).save(img)
    line = _one_error_line(CliRunner().invoke(infer.main, [str(img), "--out", str(tmp_path / "o"), "-q"]))
    assert bundled.DEFAULT_TRANSLATOR in line and str(empty) in line and "--ckpt" in line
    assert not (tmp_path / "o").exists()


def test_help_says_what_the_default_is():
    out = CliRunner().invoke(infer.main, ["--help"], terminal_width=200).output
    assert "toonlab/assets/animegan2_webtoon.pt" in out and "where it looked" in out and "--export-pt" in out


def test_registry_lists_the_export_labelled_from_its_metadata(assets, run_ckpt):
    other = assets / "animegan2_sketch.pt"
    r = CliRunner().invoke(infer.main, ["--ckpt", str(run_ckpt), "--export-pt", str(other),
                                        "--meta", "label=a second webtoon model"])
    try:
        assert r.exit_code == 0, r.output
        found = bundled.translators()
        assert [t.name for t in found] == ["animegan2_webtoon", "animegan2_sketch"]  # the default first
        assert found[0].label == f"animegan2 translator {PHOTOS} → {STYLE} (hayao preset, {SIZE} px crops), 2 steps"
        assert found[1].label == "a second webtoon model"
        assert bundled.translator().path == assets / bundled.DEFAULT_TRANSLATOR
    finally:
        other.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------ the app


@pytest.fixture
def app_cfg(monkeypatch):
    """Run the app command up to ``serve`` and hand back the config it would serve."""
    seen = []
    monkeypatch.setattr(app_mod, "serve", lambda cfg: seen.append(cfg) or types.SimpleNamespace(demo_thread=None))
    monkeypatch.setattr(signal, "signal", lambda *a: None)  # the command's SIGTERM handler: not in pytest
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # restored after one_line_warnings()

    def run(*args: str):
        seen.clear()
        r = CliRunner().invoke(app_mod.main, ["--no-demo-cartoon", *args])
        assert r.exit_code == 0, r.output
        return seen[0]

    return run


def test_app_defaults_to_the_bundled_translator_and_the_flag_overrides(assets, exported, app_cfg, tmp_path,
                                                                        monkeypatch):
    assert app_cfg().translator == str(exported)
    mine = tmp_path / "face_paint.pt"
    mine.write_bytes(b"checked by the app when it loads it")
    assert app_cfg("--translator", str(mine)).translator == str(mine)
    monkeypatch.setattr(bundled, "FOLDER", tmp_path / "missing")
    assert app_cfg().translator is None  # nothing bundled: the Photo/video tab says so


def test_app_defaults_to_the_bundled_cartoons_with_the_bundled_source(exported, app_cfg, tmp_path, monkeypatch):
    folder = tmp_path / "assets"
    folder.mkdir()
    toons = [folder / "cartoon_sketch64.pt", folder / "cartoon_webtoon64.pt"]
    for t in toons:
        t.write_bytes(b"loaded (and checked) by the app, not by the command")
    monkeypatch.setattr(bundled, "FOLDER", folder)
    assert app_cfg().cartoons == [str(t) for t in toons]
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"x")
    assert app_cfg("--cartoon", str(mine)).cartoons == [str(mine)]  # --cartoon replaces them
    # Another source: the bundled cartoons were not fine-tuned from it.
    assert app_cfg("--ckpt", str(mine)).cartoons == []
