"""CycleGAN: published parameter counts, the 70×70 receptive field, image-pool semantics, one training
step, exact resume, checkpoint loading (own loader and the translation registry), the CLI, and the
CartoonGAN-vs-CycleGAN comparison end to end on tiny settings."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from click.testing import CliRunner

import translation.models as models
from metrics.translation_comparison import main as compare_main
from translation.cyclegan import main
from translation.cyclegan_networks import CycleGANGenerator, PatchGANDiscriminator
from translation.cyclegan_trainer import CycleGANConfig, CycleGANTrainer, ImagePool
from translation.data import open_translation_data
from translation.models import load_cyclegan

TINY = dict(size=32, batch=2, ngf=8, ndf=8, n_blocks=2, workers=0, tensorboard=False, log_every=1, sample_every=0,
            snapshot_every=0, n_samples=2, synthetic_length=8)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_published_parameter_counts():
    with torch.device("meta"):
        G, D = CycleGANGenerator(), PatchGANDiscriminator()
    print("CycleGAN G", n_params(G), "D", n_params(D))
    assert n_params(G) == 11_378_179  # "[Network G_A] Total number of parameters : 11.378 M"
    assert n_params(D) == 2_764_737  # "[Network D_A] Total number of parameters : 2.765 M"


def test_shapes_and_70px_receptive_field():
    G, D = CycleGANGenerator(ngf=8, n_blocks=2), PatchGANDiscriminator(ndf=8)
    assert G(torch.randn(2, 3, 36, 44)).shape == (2, 3, 36, 44)
    # InstanceNorm spreads every output over the whole image; the conv stack's footprint is what is 70×70.
    convs_only = torch.nn.Sequential(*[torch.nn.Identity() if isinstance(m, torch.nn.InstanceNorm2d) else m
                                       for m in D.model])
    x = torch.randn(1, 3, 128, 128, requires_grad=True)
    assert D(x).shape == (1, 1, 14, 14)
    out = convs_only(x)
    out[0, 0, 7, 7].backward()
    hit = x.grad.abs().sum((0, 1)) > 0
    rows, cols = hit.any(1).nonzero(), hit.any(0).nonzero()
    assert int(rows.max() - rows.min() + 1) == 70 and int(cols.max() - cols.min() + 1) == 70


def test_image_pool_semantics():
    imgs = [torch.full((1, 3, 2, 2), float(i)) for i in range(200)]
    assert ImagePool(0).query(imgs[5]) is imgs[5]  # size 0: pass-through
    pool = ImagePool(50, seed=0)
    for i in range(50):  # filling: every image comes back and is stored
        assert torch.equal(pool.query(imgs[i]), imgs[i])
    assert len(pool) == 50
    new = torch.cat(imgs[50:150])
    out = pool.query(new)
    assert out.shape == new.shape and len(pool) == 50
    same = (out[:, 0, 0, 0] == new[:, 0, 0, 0])
    assert 30 < int(same.sum()) < 70  # about half are the new image itself ...
    seen = set(out[~same][:, 0, 0, 0].tolist())
    assert seen and all(v < 150 for v in seen)  # ... the rest are older images from the history
    stored = {float(t[0, 0, 0, 0]) for t in pool.images}
    assert any(v >= 50 for v in stored)  # swapped-out slots now hold new images
    # state round trip: same choices afterwards
    clone = ImagePool(50)
    clone.load_state_dict(pool.state_dict())
    nxt = torch.cat(imgs[150:200])
    assert torch.equal(pool.query(nxt), clone.query(nxt))


@pytest.fixture(scope="module")
def data():
    return open_translation_data(None, None, size=32, synthetic_length=8)


def flat(m: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).clone() for p in m.parameters()])


def test_one_training_step(tmp_path, data):
    t = CycleGANTrainer(CycleGANConfig(out=str(tmp_path / "r"), iters=1, **TINY), data, "cpu")
    before = [flat(m) for m in (t.G_A, t.G_B, t.D_A, t.D_B)]
    t.train_step(next(data.batches(2)))
    for b, m in zip(before, (t.G_A, t.G_B, t.D_A, t.D_B)):
        assert not torch.equal(b, flat(m))
    s = t.stats.flush(1)
    assert all(math.isfinite(v) for v in s.values())
    assert s["loss/cyc_a"] > 0 and s["loss/idt_a"] > 0 and len(t.pool_A) == 2
    t.stats.close()


def test_lr_schedule(tmp_path):
    t = CycleGANTrainer(CycleGANConfig(out=str(tmp_path / "r"), iters=100, **TINY), None, "cpu")
    assert t.lr_at(0) == t.lr_at(49) == 2e-4
    assert t.lr_at(75) == pytest.approx(1e-4) and t.lr_at(100) == 0.0


def test_resume_is_exact_and_checkpoint_loads(tmp_path, data, monkeypatch):
    straight = CycleGANTrainer(CycleGANConfig(out=str(tmp_path / "a"), iters=2, **TINY), data, "cpu")
    straight.train()
    CycleGANTrainer(CycleGANConfig(out=str(tmp_path / "b"), iters=1, **TINY), data, "cpu").train()
    resumed = CycleGANTrainer(CycleGANConfig(out=str(tmp_path / "b"), iters=2, **TINY), data, "cpu")
    assert resumed.resume().startswith("resumed") and len(resumed.pool_B) == 2
    resumed.train()
    for a, b in ((straight.G_A, resumed.G_A), (straight.D_B, resumed.D_B)):
        assert torch.equal(flat(a), flat(b))
    ckpt = tmp_path / "a" / "checkpoints" / "000002.pt"
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    G, meta = load_cyclegan(ckpt)
    assert meta["step"] == 2
    straight.G_A.eval()
    assert torch.allclose(G(x), straight.G_A(x), atol=1e-6)
    G_b, _ = load_cyclegan(ckpt, "b2a")
    assert not torch.allclose(G_b(x), G(x))
    # the translation registry (what translate/infer and metrics load through), with cyclegan registered
    monkeypatch.setitem(models.MODELS, "cyclegan", partial(CycleGANGenerator, ngf=8, n_blocks=2))
    models._signature.cache_clear()
    try:
        G2, meta2 = models.load_generator(ckpt)
        assert meta2["model"] == "cyclegan" and meta2["step"] == 2
        assert torch.allclose(G2(x), G(x), atol=1e-6)
    finally:
        models._signature.cache_clear()


def test_cli_trains_and_rejects_bad_input(tmp_path):
    args = ["--size", "32", "--batch", "1", "--n-blocks", "1", "--workers", "0", "--device", "cpu", "--no-tensorboard",
            "--synthetic-length", "4"]
    res = CliRunner().invoke(main, ["--out", str(tmp_path / "r"), "--iters", "1", "--ngf", "4", "--ndf", "4", *args])
    assert res.exit_code == 0, res.output
    assert "built-in synthetic photo → webtoon" in res.output
    assert (tmp_path / "r" / "checkpoints" / "000001.pt").is_file()
    G, meta = load_cyclegan(tmp_path / "r" / "checkpoints" / "000001.pt")
    assert meta["arch"] == {"ngf": 4, "ndf": 4, "n_blocks": 1}
    assert sum(p.numel() for p in G.parameters()) == sum(p.numel() for p in CycleGANGenerator(4, 1).parameters())
    res = CliRunner().invoke(main, ["--out", str(tmp_path / "x"), "--photos", str(tmp_path / "nope"), *args])
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["--out", str(tmp_path / "y"), "--size", "34", "--iters", "1", "--device", "cpu",
                                    "--synthetic-length", "4", "--workers", "0"])
    assert res.exit_code == 2 and "multiple of" in res.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    with pytest.raises(Exception, match="not a loadable"):
        load_cyclegan(bad)


def test_compare_runs_end_to_end(tmp_path):
    out = tmp_path / "cmp.md"
    res = CliRunner().invoke(compare_main, ["--methods", "cartoongan,cyclegan", "--iters", "3", "--features", "random",
                                            "--n-test", "4", "--n-real", "4", "--synthetic-length",
                                            "4", "--device", "cpu", "--out", str(tmp_path / "runs"),
                                            "--report", str(out)])
    assert res.exit_code == 0, res.output
    md = out.read_text()
    assert "| cartoongan | 11.13 M | 3 |" in md and "| cyclegan | 11.38 M | 3 |" in md
    assert "RANDOM features" in md and "1.00×" in md
    assert (tmp_path / "runs" / "samples.png").is_file()
    again = CliRunner().invoke(compare_main, ["--methods", "cyclegan", "--iters", "2", "--features", "random",
                                              "--device", "cpu", "--out", str(tmp_path / "runs")])
    assert again.exit_code == 2 and "--overwrite" in again.output  # a resumed run would fake the timing
