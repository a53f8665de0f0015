"""Metrics: Fréchet distance and KID against direct computations, the statistics cache, the CLI,
LPIPS diversity / reconstruction, generator sampling, and metrics written during training."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from click.testing import CliRunner
from PIL import Image

import metrics.cli as metrics_cli
from losses.perceptual import build_lpips
from metrics import stats
from metrics.features import INCEPTION_FILE, build_feature_extractor
from metrics.fid import feature_statistics, frechet_distance, kid
from metrics.hook import parse_metrics
from metrics.lpips import lpips_diversity, reconstruction_metrics
from metrics.sources import DatasetSource, GeneratorSource, TranslatorSource
from metrics.stats import source_statistics
from tests.conftest import tiny_generator
from toonlab.errors import UserInputError
from toonlab.synthetic import render, sample_params
from toonlab.weights import WeightsNotFound


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("TOONLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # an empty hub cache: no weights anywhere


def gaussian(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    mix = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d) + np.eye(d)  # correlated dimensions
    return np.random.default_rng(seed).normal(size=(n, d)) @ mix * scale + shift


# ---------------------------------------------------------------------------- Fréchet distance


def test_feature_statistics_match_numpy():
    x = gaussian(300, 6, seed=0)
    mu, sigma = feature_statistics(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False), rtol=1e-10)


def test_frechet_matches_direct_scipy_computation():
    a, b = gaussian(500, 8, seed=1), gaussian(400, 8, seed=2, shift=0.3, scale=1.5)
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    direct = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(direct, rel=1e-8)
    assert got > 1.0
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_closed_form_in_one_dimension():
    # N(m1, v1) vs N(m2, v2): (m1 - m2)² + (√v1 − √v2)²
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_frechet_survives_singular_covariances():
    a, b = gaussian(10, 32, seed=3), gaussian(10, 32, seed=4)  # rank 9 covariances in 32 dimensions
    d = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert np.isfinite(d) and d > 0


# ---------------------------------------------------------------------------- KID


def biased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    k = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3  # noqa: E731
    return float(k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean())


def test_kid_is_unbiased_over_independent_draws():
    # 40 independent pairs of sets from one distribution: each KID (one subset = the whole set) is
    # an unbiased MMD² estimate, so their average is 0 within its standard error; the textbook
    # biased estimate (diagonal kept) is clearly positive on the same data.
    unbiased, biased = [], []
    for i in range(40):
        x, y = gaussian(60, 8, seed=100 + 2 * i), gaussian(60, 8, seed=101 + 2 * i)
        unbiased.append(kid(x, y, subsets=1, subset_size=60)[0])
        biased.append(biased_mmd2(x, y))
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 4 * se
    assert np.mean(biased) > 10 * se


def test_kid_is_exactly_symmetric_and_detects_a_shift():
    a, b = gaussian(600, 16, seed=5), gaussian(600, 16, seed=6)
    mean, std = kid(a, b, subsets=30, subset_size=300)
    assert abs(mean) < 2 * std
    assert kid(a, b, subsets=30, subset_size=300) == kid(b, a, subsets=30, subset_size=300)  # bit for bit
    shifted, _ = kid(a, gaussian(600, 16, seed=7, shift=0.5), subsets=30, subset_size=300)
    assert shifted > 10 * std and shifted > 0.5


def test_kid_subset_size_is_capped_by_the_sets():
    a, b = gaussian(40, 4, seed=8), gaussian(30, 4, seed=9, shift=1.0)
    mean, std = kid(a, b, subsets=5, subset_size=1000)
    assert mean > 0 and np.isfinite(std)


# ---------------------------------------------------------------------------- cache


def write_folder(root: Path, n: int, domain: str = "photo", start: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(render(sample_params(i), domain, 32)).save(root / f"{i:03d}.png")
    return root


def test_statistics_are_cached_and_invalidated_by_file_changes(tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "imgs", 6)
    ext = build_feature_extractor("random")
    first = source_statistics(DatasetSource(str(folder), 32), ext, show_progress=False)
    assert not first.cached and first.n == 6 and first.path.parent == tmp_path / "cache" / "metrics"

    calls = []
    real_compute = stats.compute_features
    monkeypatch.setattr(stats, "compute_features", lambda *a, **k: calls.append(1) or real_compute(*a, **k))
    again = source_statistics(DatasetSource(str(folder), 32), ext, show_progress=False)
    assert again.cached and not calls  # no feature extraction on the second run
    np.testing.assert_array_equal(again.sigma, first.sigma)

    st = (folder / "002.png").stat()
    os.utime(folder / "002.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touch
    touched = source_statistics(DatasetSource(str(folder), 32), ext, show_progress=False)
    assert not touched.cached and len(calls) == 1

    write_folder(folder, 1, start=6)  # add a file
    added = source_statistics(DatasetSource(str(folder), 32), ext, show_progress=False)
    assert not added.cached and added.n == 7 and len(calls) == 2
    # KID needs the features themselves: a statistics-only entry is recomputed once, then cached
    with_feats = source_statistics(DatasetSource(str(folder), 32), ext, need_features=True, show_progress=False)
    assert not with_feats.cached and with_feats.feats.shape == (7, ext.dim)
    assert source_statistics(DatasetSource(str(folder), 32), ext, need_features=True,
                               show_progress=False).cached


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    folder = write_folder(tmp_path / "imgs", 4)
    (folder / "bad.png").write_bytes(b"not an image at all")
    src = DatasetSource(str(folder), 32)
    feats = stats.compute_features(src, build_feature_extractor("random"), batch=2, show_progress=False)
    assert feats.shape[0] == 4 and len(src.skipped) == 1 and "bad.png" in src.skipped[0]


# ---------------------------------------------------------------------------- generator sampling


def test_generator_samples_are_fixed_batch_independent_and_leave_the_global_rng_alone():
    G = tiny_generator(32).eval()
    state = torch.get_rng_state()
    src = GeneratorSource(G, n=20, seed=3)
    with torch.inference_mode():
        a = torch.cat(list(src.batches(8, torch.device("cpu"))))
        b = torch.cat(list(src.batches(16, torch.device("cpu"))))
        c = torch.cat(list(GeneratorSource(G, n=20, seed=4).batches(8, torch.device("cpu"))))
    assert torch.equal(torch.get_rng_state(), state)
    assert a.dtype == torch.uint8 and a.shape == (20, 3, 32, 32)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert src.fingerprint() is None  # an in-memory network is never cached


def test_translator_source_applies_the_hook_to_the_dataset(tmp_path):
    data = DatasetSource(str(write_folder(tmp_path / "imgs", 5)), 32)
    cpu = torch.device("cpu")
    src = TranslatorSource(data, lambda x: -x)  # a "translator" that inverts colours
    with torch.inference_mode():
        plain = torch.cat(list(data.batches(2, cpu)))
        out = torch.cat(list(src.batches(2, cpu)))
    assert out.shape == (5, 3, 32, 32) and torch.equal(out.int(), 255 - plain.int())
    assert src.fingerprint() is None  # no translator id: never cached
    assert TranslatorSource(data, lambda x: x, translator_id="abc").fingerprint()["translator"] == "abc"


# ---------------------------------------------------------------------------- CLI


def test_missing_inception_weights_is_a_one_line_error():
    r = CliRunner().invoke(metrics_cli.main, ["fid", "synthetic:photo:8", "synthetic:webtoon:8", "--size", "32"])
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and INCEPTION_FILE in lines[0]
    assert "hub" in lines[0] and "--inception-weights" in lines[0]
    with pytest.raises(WeightsNotFound, match="nope.pth"):
        build_feature_extractor("inception", weights="nope.pth")


def test_cli_fid_with_random_features_end_to_end(tmp_path):
    args = ["fid", "synthetic:photo:24", "synthetic:webtoon:24", "--features", "random", "--size", "32",
            "--workers", "0", "--kid", "--json", str(tmp_path / "r.json")]
    r = CliRunner().invoke(metrics_cli.main, args)
    assert r.exit_code == 0, r.output
    fid = float(re.search(r"^FID: ([0-9.]+)$", r.output, re.M).group(1))
    assert np.isfinite(fid) and fid > 0
    assert re.search(r"^KID: -?[0-9.]+ ± [0-9.]+ \(100 subsets of 24\)$", r.output, re.M)
    assert "RANDOM" in r.output and "resize:" in r.output
    assert json.loads((tmp_path / "r.json").read_text())["fid"] == pytest.approx(fid, abs=1e-4)
    again = CliRunner().invoke(metrics_cli.main, args)
    assert again.output.count("cached (") == 2 and f"FID: {fid:.4f}" in again.output
    same = CliRunner().invoke(metrics_cli.main, ["fid", "synthetic:photo:24", "synthetic:photo:24", "--features", "random",
                                       "--size", "32", "--workers", "0"])
    assert float(re.search(r"^FID: (-?[0-9.]+)$", same.output, re.M).group(1)) == pytest.approx(0, abs=1e-3)


def test_cli_bad_inputs_exit_2_without_traceback(tmp_path):
    runner = CliRunner()
    for args in (["fid", str(tmp_path / "missing"), "synthetic:photo:8", "--features", "random"],
                 ["fid", "synthetic:photo:8", "synthetic:photo:8", "--features", "random", "--size", "16"],
                 ["fid", "synthetic:photo:8", "synthetic:photo:8", "--features", "random",
                  "--inception-weights", "x.pth"]):
        r = runner.invoke(metrics_cli.main, args)
        assert r.exit_code == 2 and "Traceback" not in r.output and r.output.startswith("Error:"), r.output


# ---------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_random():
    return build_lpips("alex", random=True)  # alex: the cheapest trunk to build


def test_lpips_diversity_zero_for_identical_outputs(lpips_random):
    img = torch.from_numpy(render(sample_params(0), "webtoon", 32)).permute(2, 0, 1).float() / 127.5 - 1
    same = img.expand(2, 4, 3, 32, 32).clone()
    assert lpips_diversity(same, lpips_random) == 0.0
    varied = same.clone()
    varied[:, 1:] += 0.3 * torch.randn(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    d = lpips_diversity(varied.clamp(-1, 1), lpips_random, batch=5)
    assert d > 0
    with pytest.raises(ValueError):
        lpips_diversity(same[:, :1], lpips_random)


def test_reconstruction_metrics_and_lpips_as_a_differentiable_loss(lpips_random):
    t = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    perfect = reconstruction_metrics(t, t.clone(), lpips_random)
    assert perfect["mse"] == 0 and perfect["lpips"] == 0
    r = (t + 0.2).clamp(-1, 1)
    m = reconstruction_metrics(t, r, lpips_random)
    expected_mse = float((((t + 1) / 2 - (r + 1) / 2) ** 2).mean())
    assert m["mse"] == pytest.approx(expected_mse, rel=1e-5) and m["lpips"] > 0 and 5 < m["psnr"] < 60
    x = r.clone().requires_grad_(True)
    lpips_random.train()  # stays in eval: dropout must not switch on inside a training module
    assert not lpips_random.training
    lpips_random(x, t).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in lpips_random.parameters())


def test_lpips_trunk_weights_load_from_a_file_and_missing_ones_are_one_line(tmp_path):
    import torchvision

    with pytest.raises(WeightsNotFound, match="vgg16-397923af.pth"):
        build_lpips("vgg")
    sd = torchvision.models.alexnet(weights=None).state_dict()
    torch.save(sd, tmp_path / "alexnet.pth")
    fn = build_lpips("alex", weights=tmp_path / "alexnet.pth")
    torch.testing.assert_close(getattr(fn.model.net.slice5, "10").weight, sd["features.10.weight"], rtol=0, atol=0)
    torch.testing.assert_close(fn.model.net.slice1[0].weight, sd["features.0.weight"], rtol=0, atol=0)
    assert "alexnet.pth" in fn.description


# ---------------------------------------------------------------------------- training


def test_parse_metrics():
    assert parse_metrics("fid10k, kid1k,fid500") == [("fid10k", "fid", 10000), ("kid1k", "kid", 1000),
                                                       ("fid500", "fid", 500)]
    with pytest.raises(UserInputError):
        parse_metrics("is50k")


def test_training_with_metrics_writes_them_to_the_stats_file(tmp_path):
    from toonlab.cli import load_command

    train_main = load_command("train")  # the trainer composed with the metrics options

    out = tmp_path / "run"
    r = CliRunner().invoke(train_main, [
        "synthetic:photo:32", "--out", str(out), "--size", "32", "--batch", "4", "--style-dim", "16",
        "--n-mlp", "2", "--channel-max", "16", "--channel-base", "128", "--workers", "0", "--device", "cpu",
        "--iters", "2", "--sample-every", "0", "--metrics", "fid16", "--metrics-every", "2",
        "--features", "random"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(ln) for ln in (out / "stats.jsonl").read_text().splitlines()]
    entries = [ln for ln in lines if "metrics/fid16" in ln]
    assert len(entries) == 1 and entries[0]["step"] == 2 and np.isfinite(entries[0]["metrics/fid16"])
    assert json.loads((out / "config.json").read_text())["metrics"] == "fid16"


def test_frechet_rejects_non_finite_statistics_in_one_line():
    from metrics.fid import MetricError

    mu, s = np.zeros(3), np.eye(3)
    bad = s.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MetricError, match="not finite"):
        frechet_distance(mu, bad, mu, s)


def test_frechet_matches_sqrtm_with_offset_on_rank_deficient_covariances():
    # The community route (pytorch-fid: sqrtm, retried with eps·I) on rank-9 covariances in 32
    # dimensions: the eigen route agrees to the offset's order without needing it.
    a, b = gaussian(10, 32, seed=3), gaussian(10, 32, seed=4)
    (mu1, s1), (mu2, s2) = feature_statistics(a), feature_statistics(b)
    off = np.eye(32) * 1e-6
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm((s1 + off) @ (s2 + off))).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-4)
