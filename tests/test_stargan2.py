"""StarGAN v2: parameter counts from the architecture, shapes, per-domain styles, the diversity
weight schedule, one training step, exact resume, and the train/sample/eval commands on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from losses.stargan import cycle_loss, diversity_loss, diversity_weight, style_reconstruction_loss
from toonlab.cli import load_command
from translation.stargan2_data import open_multidomain
from translation.stargan2_inference import load_stargan2
from translation.stargan2_networks import build_networks, count_params
from translation.stargan2_trainer import StarGAN2Config, StarGAN2Trainer

main = load_command("stargan2")  # the composed group: train, sample and eval (metrics/stargan2.py)

TINY_ARCH = dict(img_size=32, num_domains=3, style_dim=16, latent_dim=8, max_conv_dim=32, dim_in=8, mapping_hidden=32)
TINY_CFG = dict(img_size=32, batch=2, iters=2, dim_in=8, max_conv_dim=32, mapping_hidden=32, style_dim=16, latent_dim=8,
                workers=0, tensorboard=False, log_every=1, sample_every=0, snapshot_every=0, synthetic_length=8,
                n_samples=1)
CLI_TINY = ["--size", "32", "--dim-in", "8", "--max-conv-dim", "32", "--mapping-hidden", "32", "--batch", "2",
            "--workers", "0", "--device", "cpu", "--no-tensorboard", "--log-every", "1", "--synthetic-length", "8"]


# ---- parameter counts: an independent closed form of the paper's architecture ---------------------


def conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def resblk(din: int, dout: int, norm: bool) -> int:
    n = conv(din, din, 3) + conv(din, dout, 3) + (din != dout) * conv(din, dout, 1, False)
    return n + (4 * din if norm else 0)  # two affine INs of width din


def adain_resblk(din: int, dout: int, sd: int) -> int:
    adain = lambda c: sd * 2 * c + 2 * c
    return conv(din, dout, 3) + conv(dout, dout, 3) + adain(din) + adain(dout) + (din != dout) * conv(din, dout, 1, False)


def expected_counts(size: int = 256, domains: int = 2, sd: int = 64, latent: int = 16, max_dim: int = 512,
                    hidden: int = 512, dim_in: int | None = None) -> dict[str, int]:
    d0 = dim_in or 2 ** 14 // size
    # G: encoder widths 64 → 128 → 256 → 512 → 512 at 256 px (log2(S) − 4 stages), 2 bottleneck blocks
    g, d = conv(3, d0, 3) + 2 * d0 + conv(d0, 3, 1), d0
    for _ in range(int(math.log2(size)) - 4):
        e = min(2 * d, max_dim)
        g += resblk(d, e, True) + adain_resblk(e, d, sd)
        d = e
    g += 2 * (resblk(d, d, True) + adain_resblk(d, d, sd))
    # E/D trunk: log2(S) − 2 downsampling blocks without norm, then a 4×4 conv
    t, d = conv(3, d0, 3), d0
    for _ in range(int(math.log2(size)) - 2):
        e = min(2 * d, max_dim)
        t += resblk(d, e, False)
        d = e
    t += conv(d, d, 4)
    f = (latent * hidden + hidden) + 3 * (hidden * hidden + hidden)
    f += domains * (3 * (hidden * hidden + hidden) + hidden * sd + sd)
    return {"G": g, "F": f, "E": t + domains * (d * sd + sd), "D": t + conv(d, domains, 1)}


def test_full_size_parameter_counts():
    with torch.device("meta"):
        nets = build_networks(dict(img_size=256, num_domains=2), init=False)
    got = {k: count_params(getattr(nets, k)) for k in "GFED"}
    print("StarGAN v2 @256 px, 2 domains:", got)
    assert got == expected_counts()
    # the numbers as the authors' model reports them for AFHQ-style (no high-pass filter) at 256 px
    assert got == {"G": 33_892_995, "F": 2_438_272, "E": 20_916_928, "D": 20_852_290}
    with torch.device("meta"):
        nets3 = build_networks(dict(img_size=256, num_domains=3), init=False)
    assert {k: count_params(getattr(nets3, k)) for k in "GFED"} == expected_counts(domains=3)


def test_tiny_counts_and_shapes():
    nets = build_networks(TINY_ARCH)
    exp = expected_counts(32, 3, 16, 8, 32, 32, dim_in=8)
    assert {k: count_params(getattr(nets, k)) for k in "GFED"} == exp
    x = torch.randn(4, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 1])
    s = nets.F(torch.randn(4, 8), y)
    assert s.shape == (4, 16)
    assert nets.E(x, y).shape == (4, 16)
    assert nets.D(x, y).shape == (4,)
    assert nets.G(x, s).shape == (4, 3, 32, 32)


def test_styles_differ_per_domain_and_heads_are_selected():
    torch.manual_seed(0)
    nets = build_networks(TINY_ARCH)
    z = torch.randn(1, 8).repeat(3, 1)
    s = nets.F(z, torch.arange(3))
    assert not torch.allclose(s[0], s[1]) and not torch.allclose(s[1], s[2])
    assert torch.allclose(s[1], nets.F(z[:1], torch.tensor([1]))[0], atol=1e-6)  # row = that domain's head
    x = torch.randn(1, 3, 32, 32).repeat(3, 1, 1, 1)
    e = nets.E(x, torch.arange(3))
    assert not torch.allclose(e[0], e[2])
    logits = nets.D(x, torch.arange(3))
    full = nets.D.head(nets.D.main(x[:1])).flatten()
    assert torch.allclose(logits, full, atol=1e-5)  # multi-task D: logit k from head k


# ---- losses ------------------------------------------------------------------------------------


def test_diversity_weight_decays_linearly_to_zero():
    assert diversity_weight(0, 2.0, 100) == 2.0
    assert diversity_weight(25, 2.0, 100) == pytest.approx(1.5)
    assert diversity_weight(50, 2.0, 100) == pytest.approx(1.0)
    assert diversity_weight(99, 2.0, 100) == pytest.approx(0.02)
    assert diversity_weight(100, 2.0, 100) == 0.0
    assert diversity_weight(150_000, 1.0, 100_000) == 0.0
    vals = [diversity_weight(s, 1.0, 100_000) for s in range(0, 100_001, 10_000)]
    assert np.allclose(np.diff(vals), -0.1)  # a straight line
    assert diversity_weight(10**9, 1.0, 0) == 1.0  # no decay


def test_stargan_losses():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    assert diversity_loss(a, b).item() == pytest.approx(-0.5)  # minimised → pushes the outputs apart
    assert cycle_loss(a, b).item() == pytest.approx(0.5)
    assert style_reconstruction_loss(torch.ones(2, 8), torch.zeros(2, 8).bfloat16()).dtype == torch.float32


# ---- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    return open_multidomain(None, 32, synthetic_length=8)


def flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in m.parameters()])


def test_one_training_step_moves_every_network(tmp_path, data):
    t = StarGAN2Trainer(StarGAN2Config(out=str(tmp_path / "r"), **TINY_CFG), data, "cpu")
    before = {k: flat(getattr(t, k)) for k in ("G", "F", "E", "D", "G_ema")}
    t.train_step(next(data.batches(2)))
    for k in ("G", "F", "E", "D"):
        assert not torch.equal(before[k], flat(getattr(t, k))), k
    dg = (flat(t.G) - before["G"]).abs().sum()
    de = (flat(t.G_ema) - before["G_ema"]).abs().sum()
    assert 0 < de < dg * 0.01  # EMA 0.999 moves 1/1000 of the way
    s = t.stats.flush(1)
    assert all(math.isfinite(v) for v in s.values())
    assert s["lambda_ds"] == 1.0 and s["g/ds_latent"] > 0
    t.stats.close()


def test_resume_is_exact(tmp_path, data):
    straight = StarGAN2Trainer(StarGAN2Config(out=str(tmp_path / "a"), **TINY_CFG), data, "cpu")
    straight.train()
    cfg = StarGAN2Config(out=str(tmp_path / "b"), **{**TINY_CFG, "iters": 1})
    StarGAN2Trainer(cfg, data, "cpu").train()
    resumed = StarGAN2Trainer(StarGAN2Config(out=str(tmp_path / "b"), **TINY_CFG), data, "cpu")
    assert "resumed" in resumed.resume() and resumed.step == 1
    resumed.train()
    for k in ("G", "F", "E", "D", "G_ema"):
        assert torch.equal(flat(getattr(straight, k)), flat(getattr(resumed, k))), k


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sg2") / "run"
    res = CliRunner().invoke(main, ["train", "--out", str(out), "--iters", "1", *CLI_TINY])
    assert res.exit_code == 0, res.output
    assert "built-in synthetic domains photo, webtoon, pastel" in res.output
    return out / "checkpoints" / "000001.pt"


def test_checkpoint_loads(tiny_ckpt):
    nets, meta = load_stargan2(tiny_ckpt)
    assert meta["domains"] == ["photo", "webtoon", "pastel"] and meta["step"] == 1
    assert nets.G.img_size == 32 and not nets.G.training


def test_sample_command(tiny_ckpt, tmp_path):
    res = CliRunner().invoke(main, ["sample", "--ckpt", str(tiny_ckpt), "--out", str(tmp_path), "--n", "2", "--frames", "2",
                                    "--device", "cpu"])
    assert res.exit_code == 0, res.output
    lat = Image.open(tmp_path / "latent.png")
    assert lat.size[0] > 2 * 32 and lat.size[1] > 7 * 32  # sources + 2 styles × 3 domains
    assert Image.open(tmp_path / "reference.png").size[0] > 3 * 32
    import cv2

    cap = cv2.VideoCapture(str(tmp_path / "interpolation_pastel.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 * 2  # 4 key styles × 2 frames, looping back
    cap.release()


def test_eval_command(tiny_ckpt, tmp_path):
    out = tmp_path / "eval.json"
    res = CliRunner().invoke(main, ["eval", "--ckpt", str(tiny_ckpt), "--features", "random",
                                    "--n-test", "2", "--n-outputs", "3", "--n-real", "8", "--device", "cpu",
                                    "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "latent-guided: FID" in res.output and "reference-guided: FID" in res.output
    r = json.loads(out.read_text())
    for mode in ("latent", "reference"):
        assert len(r[mode]["pairs"]) == 6  # 3 domains → 6 ordered pairs
        assert all(p["n"] == 2 * 3 for p in r[mode]["pairs"].values())
        assert math.isfinite(r[mode]["fid"]) and r[mode]["fid"] > 0
        assert r[mode]["lpips"] > 0  # different styles give different outputs


def test_class_subfolders_and_bad_input(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((40, 40, 3), 40 * (k + i), np.uint8)).save(root / name / f"{i}.png")
    (root / "dogs" / "broken.png").write_bytes(b"not a png")
    d = open_multidomain(str(root), 32)
    assert d.names == ["cats", "dogs"] and not d.synthetic
    res = CliRunner().invoke(main, ["train", "--data", str(root), "--out", str(tmp_path / "r"), "--iters", "1", *CLI_TINY])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "checkpoints" / "000001.pt").is_file()
    (tmp_path / "one" / "only").mkdir(parents=True)
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "x"), *CLI_TINY])
    assert res.exit_code == 2 and "at least 2" in res.output and "Traceback" not in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    res = CliRunner().invoke(main, ["eval", "--ckpt", str(bad), "--features", "random", "--device", "cpu"])
    assert res.exit_code == 2 and res.output.count("\n") == 1
