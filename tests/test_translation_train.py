"""The translation trainer on tiny crops with random VGG features: both phases step, every family
trains, resume is exact, NaN stops the run, the CLI trains on the synthetic faces, data folders
work (unreadable files skipped, pre-made smoothed images paired), and bad input exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from losses.features import resnet_features, vgg19_features
from toonlab.data import UnreadableImageWarning
from toonlab.training import NonFiniteLoss
from translation.data import open_translation_data
from translation.models import load_generator
from translation.train import main
from translation.trainer import TranslateConfig, TranslationTrainer

REPO = Path(__file__).resolve().parents[1]
TINY = dict(size=32, batch=2, workers=0, log_every=1, tensorboard=False, n_samples=2, vgg="random",
            snapshot_every=0, sample_every=0)
CLI_TINY = ["--features", "random", "--size", "32", "--batch", "2", "--workers", "0", "--device", "cpu",
            "--no-tensorboard", "--n-samples", "2", "--log-every", "1"]


@pytest.fixture(scope="module")
def vgg():
    return vgg19_features(random=True)


@pytest.fixture(scope="module")
def data():
    return open_translation_data(None, None, size=32, synthetic_length=64)


def trainer(out: Path, data, features, **kw) -> TranslationTrainer:
    return TranslationTrainer(TranslateConfig(out=str(out), **{**TINY, **kw}), data, "cpu", features=features)


def flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def test_init_step_then_adversarial_step(tmp_path, data, vgg):
    t = trainer(tmp_path / "run", data, vgg, model="animegan2", preset="paprika", init_iters=1, iters=1,
                sample_every=1)
    g0, d0 = flat(t.G), flat(t.D)
    batches = data.batches(2)
    t.train_step(next(batches))  # init: G moves, D does not
    t.step += 1
    g1, d1 = flat(t.G), flat(t.D)
    assert not torch.equal(g0, g1) and torch.equal(d0, d1)
    assert t.phase == "adversarial"
    t.train_step(next(batches))  # adversarial: both move
    assert not torch.equal(g1, flat(t.G)) and not torch.equal(d1, flat(t.D))

    t2 = trainer(tmp_path / "run2", data, vgg, model="animegan2", preset="paprika", init_iters=1, iters=1,
                 sample_every=1)
    last = t2.train()
    lines = [json.loads(x) for x in (tmp_path / "run2/stats.jsonl").read_text().splitlines()]
    assert lines[0]["phase"] == 0 and "loss/init_con" in lines[0] and "loss/d" not in lines[0]
    assert lines[1]["phase"] == 1
    for k in ("loss/d", "loss/g", "loss/g_adv", "loss/con", "loss/sty", "loss/col", "loss/tv"):
        assert np.isfinite(lines[1][k]) and lines[1][k] > 0, k  # every term of the paprika preset is active
    # Paprika's weights reached the losses: the colour term is 50 × the unweighted colour loss > 0.
    assert lines[1]["loss/col"] > 0
    ckpt = torch.load(last, weights_only=True)
    assert {"g", "d", "g_optim", "d_optim", "step", "rng", "toonlab"} <= set(ckpt)
    assert ckpt["step"] == 2 and ckpt["toonlab"]["model"] == "animegan2" and ckpt["toonlab"]["preset"] == "paprika"
    assert ckpt["toonlab"]["weights"]["w_col"] == 50.0 and ckpt["toonlab"]["weights"]["d_weights"] == (1, 1, 1, 0.005)
    G, meta = load_generator(last)
    assert meta["model"] == "animegan2" and meta["source"] == "toonlab" and meta["step"] == 2
    assert (tmp_path / "run2/samples/000001.png").exists() and (tmp_path / "run2/samples/000002.png").exists()


@pytest.mark.parametrize("model", ["animegan", "cartoongan", "cartoongan-improved"])
def test_every_family_trains_one_adversarial_step(tmp_path, data, vgg, model):
    feats = resnet_features(random=True) if model == "cartoongan-improved" else vgg
    t = trainer(tmp_path / model, data, feats, model=model, init_iters=0, iters=1)
    assert t.cfg.features == ("resnet50" if model == "cartoongan-improved" else "vgg19")
    d0 = flat(t.D)
    t.train()
    line = json.loads((tmp_path / model / "stats.jsonl").read_text().splitlines()[0])
    assert np.isfinite(line["loss/d"]) and np.isfinite(line["loss/g"]) and line["loss/con"] > 0
    assert ("loss/sty" in line) == (model == "animegan")  # CartoonGAN: adversarial + content only
    assert not torch.equal(d0, flat(t.D))


def test_resumed_run_equals_straight_run(tmp_path, data, vgg):
    kw = dict(model="animegan2-lite", init_iters=1, ema=0.5)
    straight = trainer(tmp_path / "a", data, vgg, iters=3, **kw)
    straight.train()
    first = trainer(tmp_path / "b", data, vgg, iters=1, **kw)  # stops at step 2, mid-schedule
    first.train()
    second = trainer(tmp_path / "b", data, vgg, iters=3, **kw)  # "re-running the same command" longer
    assert second.resume() == f"resumed from {tmp_path / 'b/checkpoints/000002.pt'} at step 2"
    second.train()
    for name in ("G", "D", "G_ema"):
        for (k, a), b in zip(getattr(straight, name).state_dict().items(), getattr(second, name).state_dict().values()):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=f"{name}.{k}")
    # Resuming into a run folder of another model is refused.
    with pytest.raises(Exception, match="trained as 'animegan2-lite'"):
        trainer(tmp_path / "b", data, vgg, model="animegan2", iters=3).resume()


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, data, vgg):
    t = trainer(tmp_path / "run", data, vgg, model="animegan2-lite", init_iters=1, iters=4, snapshot_every=1)
    src = data.batches(2)

    def batches():
        for i in range(5):
            p, s, g, e = next(src)
            yield (p * float("nan") if i == 2 else p), s, g, e

    with pytest.raises(NonFiniteLoss, match="at step 2"):
        t.train(batches())
    assert [p.name for p in t.run.checkpoints()] == ["000001.pt", "000002.pt"]
    load_generator(t.run.latest())


def test_cli_trains_on_synthetic_faces_and_resumes(tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, [*CLI_TINY, "--out", str(out), "--init-iters", "1", "--iters", "1"])
    assert r.exit_code == 0, r.output
    assert "built-in synthetic photo → webtoon faces" in r.output and "starting a new run" in r.output
    assert (out / "checkpoints/000002.pt").exists() and (out / "samples/000002.png").exists()
    assert json.loads((out / "config.json").read_text())["model"] == "animegan2"
    r = CliRunner().invoke(main, [*CLI_TINY, "--out", str(out), "--init-iters", "1", "--iters", "2"])
    assert r.exit_code == 0, r.output
    assert f"resumed from {out / 'checkpoints/000002.pt'} at step 2" in r.output
    assert load_generator(out / "checkpoints/000003.pt")[1]["step"] == 3
    # Another model into the same folder: one line, exit 2.
    r = CliRunner().invoke(main, [*CLI_TINY, "--out", str(out), "--model", "animegan", "--iters", "3"])
    assert r.exit_code == 2 and "trained as 'animegan2'" in r.output


def _one_line_error(args: list[str]) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, r.output
    return errors[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    out = ["--out", str(tmp_path / "r")]
    assert "missing --style" in _one_line_error([*CLI_TINY, *out, "--photos", str(tmp_path)])
    assert "dataset not found" in _one_line_error([*CLI_TINY, *out, "--photos", str(tmp_path / "no"),
                                                   "--style", str(tmp_path)])
    assert "multiple of 8" in _one_line_error([*CLI_TINY, *out, "--size", "36"])
    assert "4 comma-separated" in _one_line_error([*CLI_TINY, *out, "--d-weights", "1,2"])
    assert "--iters or --epochs" in _one_line_error([*CLI_TINY, *out, "--iters", "2", "--epochs", "1"])
    assert "checkpoint not found" in _one_line_error([*CLI_TINY, *out, "--iters", "1", "--resume",
                                                      str(tmp_path / "none.pt")])


def test_script_without_feature_weights_says_where_it_looked(tmp_path):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(REPO / "translation/train.py"), "--size", "32", "--out",
                        str(tmp_path / "r"), "--iters", "1", "--workers", "0", "--device", "cpu"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.strip().splitlines() == [
        f"Error: VGG19 ImageNet weights not found: looked for vgg19-dcbb9e9d.pth in {tmp_path / 'torch/hub/checkpoints'} "
        "(pass --features-weights PATH; or --features random (random features, lower quality)); nothing is downloaded"]
    assert not (tmp_path / "r").exists()  # failed before creating a run folder


def _png(path: Path, rgb: tuple[int, int, int], size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), rgb).save(path)


def test_folders_with_corrupt_files_and_premade_smoothing(tmp_path):
    for i in range(3):
        _png(tmp_path / f"photos/p{i}.png", (10 * i, 100, 200))
        _png(tmp_path / f"style/sub/s{i}.jpg", (200, 10 * i, 50))
    (tmp_path / "photos/broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    _png(tmp_path / "smooth/sub/s0.png", (1, 2, 3))  # pre-made for s0 only (another extension is fine)
    _png(tmp_path / "smooth/sub/s1.png", (4, 5, 6))
    d = open_translation_data(str(tmp_path / "photos"), str(tmp_path / "style"), str(tmp_path / "smooth"), size=32)
    assert not d.synthetic and "1 missing" in d.describe()
    assert d.iters_per_epoch(2) == 2  # 4 photo files (one unreadable) over batch 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = [next(b) for b in [d.batches(2, seed=3)] for _ in range(4)]
    assert any(issubclass(w.category, UnreadableImageWarning) and "broken.jpg" in str(w.message) for w in caught)
    for p, s, g, e in seen:
        assert p.shape == s.shape == g.shape == e.shape == (2, 3, 32, 32)
        assert torch.isfinite(p).all()
    # The style item with a pre-made smoothed file gets exactly that file's pixels, cropped alike.
    style, gray, smooth = d.style[(0, 123)]
    torch.testing.assert_close(smooth[:, 0, 0], torch.tensor([1, 2, 3]) / 127.5 - 1)
    assert torch.equal(gray[0], gray[1])
    _, _, smooth2 = d.style[(2, 123)]  # s2 has none: smoothed on the fly from the (flat) style image
    torch.testing.assert_close(smooth2, d.style[(2, 123)][0], atol=1 / 127.5, rtol=0)
    # A SMOOTH_DIR inside STYLE_DIR is not read as style images.
    _png(tmp_path / "style/smooth/sub/s0.png", (7, 8, 9))
    inner = open_translation_data(str(tmp_path / "photos"), str(tmp_path / "style"), str(tmp_path / "style/smooth"),
                                  size=32)
    assert len(inner.style) == 3 and inner.style.smooth_missing == 2
    # Batches are a function of the step: a stream started at step 3 repeats the straight one.
    straight = d.batches(2, seed=3)
    for _ in range(3):
        next(straight)
    for a, b in zip(next(straight), next(d.batches(2, seed=3, start_step=3))):
        assert torch.equal(a, b)


def test_lmdb_photos_use_the_smallest_stored_size_that_fits(tmp_path):
    from toonlab.prepare import prepare_lmdb

    for i in range(3):
        _png(tmp_path / f"src/p{i}.png", (30 * i, 60, 90), size=80)
        _png(tmp_path / f"style/s{i}.png", (90, 30 * i, 60), size=80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare_lmdb(tmp_path / "src", tmp_path / "photos.lmdb", sizes=[16, 32, 64], workers=1, progress=False)
    d = open_translation_data(str(tmp_path / "photos.lmdb"), str(tmp_path / "style"), size=32)
    assert d.photos.reader.size == 32  # 36 (the load size) is not stored; 16 is too small to crop 32 from
    p, s, g, e = next(d.batches(2))
    assert p.shape == s.shape == (2, 3, 32, 32)
