"""Method comparison: probes (API, save/load, the structure error's zero), the comparison run in
quick mode end to end, and the one-line error for a missing source."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from finetune.compare import CompareSettings, MethodResult, main, run_comparison, what_the_numbers_say, write_report
from metrics.probes import (
    ProbeBundle,
    StructureRegressor,
    StyleClassifier,
    structure_error,
    structure_errors,
    structure_references,
    style_score,
    train_probes,
)
from stylegan2.checkpoint import snapshot
from stylegan2.networks import Generator
from tests import conftest
from tests.conftest import tiny_discriminator
from toonlab.atomic import torch_save_atomic
from toonlab.synthetic import GEOMETRY_FIELDS

TINY = dict(style_dim=16, n_mlp=2, channel_max=16, channel_base=256)


def tiny_generator(size: int = 32, seed: int = 0) -> Generator:
    """A trained-looking tiny generator (non-zero noise strengths and biases), frozen."""
    return conftest.tiny_generator(size, seed, perturb="noise", **TINY).eval().requires_grad_(False)


def source_ckpt(tmp_path: Path, size: int = 32) -> Path:
    """A tiny community-layout training checkpoint (g, g_ema, d), as tests/test_finetune.py builds."""
    G = tiny_generator(size)
    D = tiny_discriminator(size, **TINY)
    return torch_save_atomic(snapshot(G, D, G_train=G), tmp_path / "source.pt")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models on a busy 2-core machine: two intra-op threads fighting another process for the
    # cores ran these tests ~25x slower than one thread (75 s vs 3 s for the comparison run).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def probes() -> ProbeBundle:
    # A few steps only: these tests check the plumbing, not the probes' quality.
    return train_probes(("photo", "webtoon"), "webtoon", n_per_domain=8, steps=2, batch=4, seed=0, n_eval=4, width=8)


def test_probe_networks_shapes_and_resizing():
    reg, clf = StructureRegressor(width=8), StyleClassifier(width=8)
    for size in (32, 64, 128):  # other sizes are resized to the probe's 64 px
        x = torch.rand(3, 3, size, size) * 2 - 1
        assert reg(x).shape == (3, len(GEOMETRY_FIELDS))
        assert clf(x).shape == (3,)


def test_train_save_load_roundtrip(probes, tmp_path):
    m = probes.metrics
    assert {"r2_mean", "r2_per_field", "accuracy", "accuracy_blurred"} <= set(m)
    assert 0.0 <= m["accuracy"] <= 1.0 and set(m["r2_per_field"]) == set(GEOMETRY_FIELDS)
    path = probes.save(tmp_path / "p.pt")
    back = ProbeBundle.load(path)
    assert back.config == probes.config and back.metrics == probes.metrics
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(back.regressor(x), probes.regressor(x))
    assert torch.equal(back.classifier(x), probes.classifier(x))
    from toonlab.errors import UserInputError

    with pytest.raises(UserInputError, match="not found"):
        ProbeBundle.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a bundle")
    with pytest.raises(UserInputError, match="not a loadable probe bundle"):
        ProbeBundle.load(tmp_path / "junk.pt")


def test_structure_error_zero_for_same_generator_positive_when_perturbed(probes):
    G = tiny_generator()
    assert structure_error(probes, G, G, n=16, batch=8) == 0.0
    H = tiny_generator()
    H.load_state_dict(G.state_dict())
    with torch.no_grad():  # change the coarse layers, where structure lives
        H.conv1.conv.weight.add_(torch.randn_like(H.conv1.conv.weight))
    assert structure_error(probes, G, H, n=16, batch=8) > 0
    # The style score reads the images: the same generator scores the same, a changed one otherwise.
    s = style_score(probes, G, n=16, batch=8)
    assert s == style_score(probes, G, n=16, batch=8) and s != style_score(probes, H, n=16, batch=8)
    floor, ceiling = structure_references(probes, "webtoon", n=4)
    assert math.isfinite(floor) and ceiling > 0  # different faces read differently
    assert structure_references(probes, "webtoon", n=4) == (floor, ceiling)


def test_run_comparison_quick_writes_table_and_grid(probes, tmp_path):
    settings = CompareSettings(source=str(source_ckpt(tmp_path)), methods=["freezeG", "freezeSG"], iters=1, quick=True,
                               out_root=str(tmp_path / "runs"), device="cpu", n=8, grid_seeds=[0, 1])
    results = run_comparison(settings, probes)
    assert [r.name for r in results] == ["source", "freezeG", "freezeG+swap2", "freezeSG", "freezeSG+swap2"]
    assert results[0].structure_error == 0.0
    # One step of fine-tuning (and each blend) changes the images, so every row reads differently from
    # the source; the style scorer tells the rows apart.
    assert all(r.structure_error > 0 for r in results[1:])
    assert len({r.style_score for r in results}) > 1
    assert all(r.images == 4 for r in results[1:])  # 1 step × quick batch 4
    # Every row has a quality score (samples vs renders of its domain) with that domain's floor and scale.
    assert all(r.quality is not None and math.isfinite(r.quality) and r.quality_ref is not None for r in results)
    assert results[0].quality_ref != results[1].quality_ref  # the source is scored against photo, the rest webtoon
    assert (tmp_path / "runs/freezeG/checkpoints/000001.pt").exists()
    report, grid = write_report(results, tmp_path / "docs/COMPARISON.md", settings=settings, probes=probes)
    text = report.read_text()
    for name in ("source", "freezeG", "freezeG+swap2", "freezeSG", "freezeSG+swap2"):
        assert f"| {name} |" in text, name
    assert "## What the numbers say" in text and "images/comparison.png" in text
    assert "quality ↓ |" in text and "floor (renders vs renders)" in text
    assert grid == tmp_path / "docs/images/comparison.png" and grid.stat().st_size > 0
    # Re-running skips the finished methods (same checkpoint, no new step).
    again = run_comparison(settings, probes, log=(msgs := []).append)
    assert any("already fine-tuned" in m for m in msgs)
    assert [r.structure_error for r in again] == [r.structure_error for r in results]


def _row(name: str, kind: str, err: list[float], style: float) -> MethodResult:
    t = torch.tensor(err)
    return MethodResult(name, kind, "", float(t.mean()), 0.0, style, per_latent=t)


def test_conclusion_follows_the_numbers():
    src = _row("source", "source", [0.0] * 4, 0.1)
    low, high = [0.01, 0.011, 0.012, 0.01], [0.05, 0.052, 0.049, 0.051]
    supported = [src, _row("freezeG", "finetune", high, 0.9), _row("freezeSG", "finetune", low, 0.9),
                 _row("structure", "finetune", low, 0.88)]
    assert "These numbers support" in what_the_numbers_say(supported, None, 2)
    refuted = [src, _row("freezeG", "finetune", low, 0.9), _row("freezeSG", "finetune", high, 0.9),
               _row("structure", "finetune", high, 0.9)]
    assert "do not support" in what_the_numbers_say(refuted, None, 2)
    # Lower structure error but no longer cartoon: not counted as keeping structure "better".
    bland = [src, _row("freezeG", "finetune", high, 0.9), _row("freezeSG", "finetune", low, 0.2)]
    assert "do not support" in what_the_numbers_say(bland, None, 2)
    assert "cannot be checked" in what_the_numbers_say([src, _row("none", "finetune", low, 0.5)], None, 2)
    # FreezeG itself never became cartoon: the run is too short to test anything.
    short = [src, _row("freezeG", "finetune", high, 0.3), _row("freezeSG", "finetune", low, 0.3)]
    assert "cannot test" in what_the_numbers_say(short, None, 2)


def test_missing_bundled_source_is_one_line_exit_2(tmp_path, monkeypatch):
    import finetune.compare as compare

    missing = tmp_path / "assets/source_synthetic64.pt"
    monkeypatch.setattr(compare, "bundled_generator", lambda: missing)
    r = CliRunner().invoke(main, ["--quick", "--out", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output
    assert str(missing) in r.output and "--ckpt" in r.output
    r = CliRunner().invoke(main, ["--ckpt", str(tmp_path / "none.pt"), "--quick"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "none.pt" in r.output, r.output


def test_structure_error_scores_each_generator_through_its_own_mapping(probes):
    """A target whose synthesis equals the source's but whose mapping network trained (FreezeSG's
    later entries, FreezeD) draws other faces for the same seeds: the score must see that; with
    ``shared_w`` (the source's w for both) it cannot. A FreezeSG model whose every W+ entry comes from
    the source's frozen mapping draws the source's faces again, whatever its own mapping did."""
    from stylegan2.networks import SplitMappingGenerator

    G = tiny_generator()
    H = tiny_generator()
    H.load_state_dict(G.state_dict())
    with torch.no_grad():
        for name, p in H.named_parameters():
            if name.startswith("style."):
                p.add_(torch.randn_like(p))
    assert structure_error(probes, G, H, n=16, batch=8) > 0
    assert structure_errors(probes, G, H, n=16, batch=8, shared_w=True).abs().max() == 0
    S = SplitMappingGenerator(**G.config, n_early=G.n_latent)
    S.load_state_dict(H.state_dict())
    S.load_early_style({k[len("style."):]: v for k, v in G.state_dict().items() if k.startswith("style.")})
    assert structure_errors(probes, G, S, n=16, batch=8).abs().max() < 1e-5
