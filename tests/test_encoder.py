"""The image → W+ encoder (inversion/encoder.py): training, exact resume, encoding, the project/apply
commands, the bundled encoder, and its one-line errors and warnings."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inversion.encoder import (
    ENCODER_FORMAT,
    EncoderConfig,
    EncoderTrainer,
    GeneratorMismatchWarning,
    bundled_encoder_path,
    encode,
    load_encoder,
    save_encoder,
)
from inversion.encoder_net import EncoderArch, EncoderNet, layer_groups
from stylegan2.checkpoint import load_generator
from stylegan2.sampling import render
from tests.conftest import tiny_checkpoint
from toonlab.cli import load_command
from toonlab.training import TrainingInterrupted, TrainingStopped

TINY_ENC = dict(channels=(8, 16, 16), head_channels=16)


@pytest.fixture
def gpath(tmp_path: Path) -> Path:
    return tiny_checkpoint(tmp_path / "G.pt", size=16, perturb="biases")


def trainer(out: Path, gpath: Path, iters: int, **kw) -> EncoderTrainer:
    G = load_generator(gpath)
    base = dict(batch=4, lpips=0.0, snapshot_every=1, sample_every=0, tensorboard=False, precision="fp32",
                device="cpu", **TINY_ENC)
    cfg = EncoderConfig(out=str(out), iters=iters, **{**base, **kw})
    return EncoderTrainer(cfg, G, "cpu", gpath)


def held_out_loss(t: EncoderTrainer) -> float:
    """The training objective (W+ MSE in units of W's spread + pixel MSE) on a draw no step uses."""
    img, wplus = t.draw_targets(10**6)
    with torch.no_grad():
        w = t.E(img)
        rec = t.G.synthesis(w, noise_mode="const").image
    return float((w - wplus).div(t.E.w_scale).square().mean() + (rec - img).square().mean())


def test_network_shapes_and_layer_groups():
    assert [list(g) for g in layer_groups(10)] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    assert [len(g) for g in layer_groups(6)] == [3, 3, 0]
    for size, n_latent in ((16, 6), (64, 10)):
        net = EncoderNet(EncoderArch(size=size, n_latent=n_latent, style_dim=16, **TINY_ENC))
        assert net(torch.zeros(2, 3, size, size)).shape == (2, n_latent, 16)
    with pytest.raises(ValueError, match="power of two"):
        EncoderNet(EncoderArch(size=48))


def test_training_lowers_the_held_out_loss(tmp_path, gpath):
    t = trainer(tmp_path / "run", gpath, iters=40, lr=3e-3, snapshot_every=0)
    before = held_out_loss(t)
    t.train()
    after = held_out_loss(t)
    assert after < 0.8 * before, (before, after)
    assert (tmp_path / "run/encoder.pt").is_file()  # the slim file is written with every checkpoint


def assert_same_encoder(pa: Path, pb: Path) -> tuple[dict, dict]:
    """Two checkpoints' encoder weights are bit-identical; returns both checkpoints."""
    a, b = torch.load(pa, weights_only=True), torch.load(pb, weights_only=True)
    for k, v in a["encoder"].items():
        torch.testing.assert_close(v, b["encoder"][k], rtol=0, atol=0, msg=k)
    return a, b


class _KillAfter:
    """The skeleton's batches, with a Ctrl-C once ``k`` steps have run (a kill in the middle of a run)."""

    def __init__(self, t: EncoderTrainer, k: int) -> None:
        self.src, self.t, self.k = t.batches(), t, k

    def __iter__(self):
        return self

    def __next__(self):
        if self.t.step >= self.k:
            raise KeyboardInterrupt
        return next(self.src)


def test_killed_and_resumed_run_equals_straight_run(tmp_path, gpath):
    kw = dict(real="synthetic:photo:16", real_batch=2)
    from toonlab.data import open_dataset

    def make(out: Path) -> EncoderTrainer:
        t = trainer(out, gpath, iters=5, **kw)
        t.real = open_dataset("synthetic:photo:16", 32)  # resized to the generator's 16 px each step
        return t

    straight = make(tmp_path / "a")
    straight.train()
    killed = make(tmp_path / "b")
    with pytest.raises(TrainingInterrupted, match="interrupted at step 3"):
        killed.train(_KillAfter(killed, 3))
    again = make(tmp_path / "b")
    assert again.resume() == f"resumed from {tmp_path / 'b/checkpoints/000003.pt'} at step 3"
    again.train()
    a, b = assert_same_encoder(tmp_path / "a/checkpoints/000005.pt", tmp_path / "b/checkpoints/000005.pt")
    assert a["encoder_optim"]["state"][0]["exp_avg"].equal(b["encoder_optim"]["state"][0]["exp_avg"])
    # Another generator into the same run folder is refused.
    other = tiny_checkpoint(tmp_path / "G2.pt", size=16, seed=3, perturb="biases")
    with pytest.raises(Exception, match="another generator"):
        trainer(tmp_path / "b", other, iters=6).resume()


def test_encode_shape_range_and_untrained_start_at_w_avg(tmp_path, gpath):
    G = load_generator(gpath)
    t = trainer(tmp_path / "run", gpath, iters=1)
    path = save_encoder(tmp_path / "enc.pt", t.E, gpath, {"step": 0})
    enc = load_encoder(path)
    assert enc.generator_hash and enc.arch.size == 16
    for side in (16, 40):  # any square size: resized to the encoder's
        w = encode(enc, G, torch.rand(3, 3, side, side) * 2 - 1)
        assert w.shape == (3, G.n_latent, G.style_dim) and torch.isfinite(w).all()
    # Small initial heads: an untrained encoder answers (nearly) the mean w, the optimiser's usual start.
    spread = float(t.E.w_scale.mean())
    assert float((w - G.mean_w()).abs().max()) < 0.5 * spread
    from toonlab.errors import UserInputError

    with pytest.raises(UserInputError, match="square RGB"):
        encode(enc, G, torch.zeros(1, 3, 16, 20))
    big = load_generator(tiny_checkpoint(tmp_path / "G32.pt", size=32, channel_base=256))
    with pytest.raises(UserInputError, match="this generator takes"):
        encode(enc, big, torch.zeros(1, 3, 16, 16))


@pytest.fixture
def trained(tmp_path, gpath) -> Path:
    t = trainer(tmp_path / "run", gpath, iters=2)
    t.train()
    return tmp_path / "run/encoder.pt"


def _photo(path: Path, size: int = 16) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def test_project_iters_0_writes_the_encoders_latent_which_generate_renders(tmp_path, gpath, trained):
    from inversion.project import main as project_main
    from stylegan2.generate import run_latent
    from stylegan2.latents import load_latent
    from toonlab.images import load_image, to_tensor

    photo = _photo(tmp_path / "face.png")
    r = CliRunner().invoke(project_main, [str(photo), "--ckpt", str(gpath), "--encoder", str(trained), "--steps", "0",
                                          "--no-align", "--out", str(tmp_path / "p"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    lat = load_latent(tmp_path / "p/face/latent.pt")
    G = load_generator(gpath)
    enc = load_encoder(trained)
    expected = encode(enc, G, to_tensor(load_image(str(photo)))[None])
    torch.testing.assert_close(lat["latent"], expected)
    assert lat["noise"] is None and lat["settings"]["encoder"] == str(trained)
    png = run_latent(gpath, tmp_path / "p/face/latent.pt", tmp_path / "g", device="cpu")
    shown = to_tensor(Image.open(png))
    torch.testing.assert_close(shown, render(G, expected)[0].clamp(-1, 1), atol=2 / 255, rtol=0)

    # A few steps from the encoder start: step 0 renders the encoder's result; optimisation moves it.
    r = CliRunner().invoke(project_main, [str(photo), "--ckpt", str(gpath), "--encoder", str(trained), "--iters", "3",
                                          "--no-align", "--perceptual", "none", "--out", str(tmp_path / "q"),
                                          "--device", "cpu"])
    assert r.exit_code == 0, r.output
    moved = load_latent(tmp_path / "q/face/latent.pt")
    assert moved["noise"] is not None and not torch.equal(moved["latent"], lat["latent"])


def test_project_start_is_the_encoder_reconstruction(gpath, trained):
    from inversion.project import ProjectConfig, project

    G = load_generator(gpath)
    target = torch.rand(2, 3, 16, 16) * 2 - 1
    init = encode(load_encoder(trained), G, target)
    seen = []
    res = project(G, target, None, ProjectConfig(steps=1, lr=1e-9, n_mean_latent=64), show_progress=False,
                  on_step=lambda s, rec: seen.append(rec["mse"]), init=init)
    first = float((render(G, init) - target).square().mean())
    assert seen[0] == pytest.approx(first, rel=1e-4)  # no latent noise, const noise maps at step 0
    assert res.latent.shape == init.shape


def test_encoder_apply_and_wrong_generator_warns_in_one_line(tmp_path, gpath, trained):
    main = load_command("encoder")  # `apply` is composed into the group by the entry point
    other = tiny_checkpoint(tmp_path / "other.pt", size=16, seed=5, perturb="biases")
    with pytest.warns(GeneratorMismatchWarning, match="was trained for G.pt"):
        load_encoder(trained, generator=other)
    photo = _photo(tmp_path / "a.png")
    r = CliRunner().invoke(main, ["apply", str(photo), "--encoder", str(trained), "--ckpt", str(other), "--no-align",
                                  "--out", str(tmp_path / "e"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    warn = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(warn) == 1 and "was trained for G.pt" in warn[0], r.output
    assert (tmp_path / "e/a/latent.pt").is_file() and (tmp_path / "e/a/projected.png").is_file()
    r = CliRunner().invoke(main, ["apply", str(photo), "--encoder", str(trained), "--ckpt", str(gpath), "--no-align",
                                  "--out", str(tmp_path / "f"), "--device", "cpu"])
    assert r.exit_code == 0 and "warning" not in r.output, r.output


def _one_line_error(cmd, args: list[str]) -> str:
    r = CliRunner().invoke(cmd, args)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, r.output
    return errors[0]


def test_bad_encoder_files_and_iters_0_without_encoder_exit_2(tmp_path, gpath, trained):
    from inversion.project import main as project_main

    main = load_command("encoder")
    photo = _photo(tmp_path / "a.png")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(trained.read_bytes()[:1000])
    common = ["--ckpt", str(gpath), "--no-align", "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert "corrupt.pt" in _one_line_error(main, ["apply", str(photo), "--encoder", str(corrupt), *common])
    assert "corrupt.pt" in _one_line_error(project_main, [str(photo), "--encoder", str(corrupt), "--iters", "0", *common])
    latent_like = tmp_path / "latent.pt"
    torch.save({"format": "toonlab-latent/1", "latent": torch.zeros(6, 16)}, latent_like)
    assert "not a toonlab encoder file" in _one_line_error(main, ["apply", str(photo), "--encoder", str(latent_like),
                                                                  *common])
    wrong = tmp_path / "wrong.pt"
    obj = torch.load(trained, weights_only=True)
    obj["arch"]["channels"] = [8, 8, 8]
    torch.save(obj, wrong)
    assert "not a usable encoder file" in _one_line_error(main, ["apply", str(photo), "--encoder", str(wrong), *common])
    assert "needs --encoder" in _one_line_error(project_main, [str(photo), "--iters", "0", *common])
    assert "does not exist" in _one_line_error(main, ["apply", str(photo), "--encoder", str(tmp_path / "no.pt"), *common])
    assert obj["format"] == ENCODER_FORMAT


def test_cli_trains_and_resumes(tmp_path, gpath):
    from inversion.encoder import main

    args = ["train", "--ckpt", str(gpath), "--out", str(tmp_path / "r"), "--batch", "2", "--lambda-lpips", "0",
            "--snapshot-every", "1", "--no-tensorboard", "--device", "cpu", "--size", "16"]
    r = CliRunner().invoke(main, [*args, "--iters", "1"])
    assert r.exit_code == 0, r.output
    assert "starting a new run" in r.output and "encoder file:" in r.output
    r = CliRunner().invoke(main, [*args, "--iters", "2"])
    assert r.exit_code == 0 and "at step 1" in r.output, r.output
    assert load_encoder(tmp_path / "r/encoder.pt").info["step"] == 2
    assert load_encoder(tmp_path / "r/checkpoints/000002.pt").arch.size == 16  # a training checkpoint loads too
    assert "--lr 0.001 → 0.5" in _one_line_error(main, [*args, "--iters", "3", "--lr", "0.5"])


def test_bundled_encoder_beats_w_avg_on_synthetic_photos():
    """The shipped encoder on the shipped generator, on photo renders it never saw (seed 7)."""
    from toonlab.runtime import bundled_generator
    from toonlab.synthetic import SyntheticFaces

    G = load_generator(bundled_generator())
    enc = load_encoder(None, generator=bundled_generator())
    assert enc.path == bundled_encoder_path() and bundled_encoder_path().stat().st_size < 5 * 2**20
    faces = SyntheticFaces("photo", G.size, length=8, seed=7)
    x = torch.stack([faces[i] for i in range(8)])
    rec = render(G, encode(enc, G, x))
    mean = render(G, G.mean_w()[:, None].expand(len(x), G.n_latent, -1))
    mse_enc = (rec - x).square().mean(dim=(1, 2, 3))
    mse_avg = (mean - x).square().mean(dim=(1, 2, 3))
    assert float(mse_enc.mean()) < 0.6 * float(mse_avg.mean()), (mse_enc, mse_avg)
    assert int((mse_enc < mse_avg).sum()) >= 7


class _TermAfter(_KillAfter):
    """The skeleton's batches, with a SIGTERM to this process once ``k`` steps have run (``timeout``, a
    scheduler's pre-emption): the handler only flags it, so the step in progress finishes."""

    def __next__(self):
        if self.t.step == self.k:
            os.kill(os.getpid(), signal.SIGTERM)
        return next(self.src)


def test_sigterm_saves_at_the_step_boundary_and_the_resumed_run_equals_a_straight_run(tmp_path, gpath):
    straight = trainer(tmp_path / "a", gpath, iters=6, snapshot_every=0)
    straight.train()
    before = signal.getsignal(signal.SIGTERM)
    stopped = trainer(tmp_path / "b", gpath, iters=6, snapshot_every=0)
    # The signal lands while the batch for step 3 is fetched; step 3 still runs, then the loop saves
    # (snapshot_every=0 would otherwise save only at the end) and stops.
    with pytest.raises(TrainingStopped, match=r"stopped by SIGTERM at step 3 \(saved .*000003.pt\); re-run"):
        stopped.train(_TermAfter(stopped, 2))
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back
    again = trainer(tmp_path / "b", gpath, iters=6, snapshot_every=0)
    assert again.resume() == f"resumed from {tmp_path / 'b/checkpoints/000003.pt'} at step 3"
    again.train()
    assert_same_encoder(tmp_path / "a/checkpoints/000006.pt", tmp_path / "b/checkpoints/000006.pt")
