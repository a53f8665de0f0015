"""Method comparison: probes (API, save/load, the structure error's zero), the study in quick mode
end to end (targets × seeds × methods + a translator, curves, resume, early stop), the paired
statistics on synthetic numbers, translator scoring, and the one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from PIL import Image

from finetune.compare import (
    METHODS,
    CompareSettings,
    MethodResult,
    main,
    run_comparison,
    score_translator,
    source_description,
    what_the_numbers_say,
    write_report,
)
from finetune.compare_stats import aggregate, level_noise_note, levelled, paired, verdict
from finetune.compare_translators import TranslatedGenerator
from metrics.probes import (
    ProbeBundle,
    StructureRegressor,
    StyleClassifier,
    structure_error,
    structure_errors,
    structure_references,
    style_probabilities,
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


@pytest.fixture(scope="module")
def sketch_probes() -> ProbeBundle:
    return train_probes(("photo", "sketch"), "sketch", n_per_domain=8, steps=2, batch=4, seed=1, n_eval=4, width=8)


def _json(path: Path):
    return json.loads(path.read_text())


def test_study_two_targets_two_seeds_translator_curves_and_resume(probes, sketch_probes, tmp_path):
    """The whole study in miniature: 2 targets × 2 seeds × 2 methods + a tiny CycleGAN trained here;
    table, curves JSON and PNG, grids; re-running skips every finished run."""
    settings = CompareSettings(
        source=str(source_ckpt(tmp_path)), targets=["webtoon", "sketch"], seeds=[0, 1],
        methods=["freezeG", "freezeSG"], iters=2, quick=True, out_root=str(tmp_path / "runs"), device="cpu", n=8,
        eval_n=4, eval_every=1, grid_seeds=[0, 1], train_translators=["cyclegan"], translator_iters=2,
        translator_overrides={"cyclegan": {"ngf": 4, "ndf": 4, "n_blocks": 1}},
        quality=False)  # the quality score (16 Fréchet distances per target and seed) is tested below
    bundles = {"webtoon": probes, "sketch": sketch_probes}
    study = run_comparison(settings, bundles, log=(first := []).append)
    names = ["source", "freezeG", "freezeG+swap2", "freezeSG", "freezeSG+swap2", "cyclegan (translation)"]
    for target in ("webtoon", "sketch"):
        for seed in (0, 1):
            got = [r.name for r in study.results if r.target == target and r.seed == seed]
            assert got == names, (target, seed, got)
            # every method × target × seed is its own run folder, fine-tuned to the end (2 steps)
            for m in ("freezeG", "freezeSG"):
                run = tmp_path / "runs" / target / f"seed{seed}" / m
                assert (run / "checkpoints/000002.pt").is_file()
                curve = _json(run / "curve.json")
                assert [p["step"] for p in curve["points"]] == [1, 2]  # scored after each 1-step segment
                assert all(0 <= p["style_score"] <= 1 and p["structure_error"] > 0 for p in curve["points"])
            assert (tmp_path / "runs" / target / f"seed{seed}" / "translate-cyclegan/checkpoints/000002.pt").is_file()
    # Each target is scored with its own style classifier: the same seed-0 source row differs between them.
    src = {r.target: r for r in study.results if r.name == "source" and r.seed == 0}
    assert src["webtoon"].style_score != src["sketch"].style_score
    # Rows: averaged over both seeds, paired against FreezeSG in the same swap state.
    rows = {r.name: r for r in study.rows["webtoon"]}
    assert rows["freezeG"].seeds == [0, 1] and rows["freezeG"].structure_se_seeds is not None
    assert rows["freezeG"].ref == "freezeSG" and rows["freezeG+swap2"].ref == "freezeSG+swap2"
    assert rows["cyclegan (translation)"].ref == "freezeSG" and rows["source"].vs_ref is None
    # One translator per seed: the row names the per-seed folder, not the first seed's checkpoint.
    assert rows["cyclegan (translation)"].flags.endswith(
        "webtoon/seed<k>/translate-cyclegan/checkpoints/000002.pt` (trained here, one per seed)")
    per_seed = [r.structure_error for r in study.results if r.name == "freezeG" and r.target == "webtoon"]
    assert rows["freezeG"].structure_error == pytest.approx(sum(per_seed) / 2)

    report, grids, curves_png = write_report(study, tmp_path / "docs/COMPARISON.md")
    text = report.read_text()
    assert "## Target: webtoon" in text and "## Target: sketch" in text
    for name in names:
        assert f"| {name} |" in text, name
    assert "**translation**" in text and "Δ structure vs freezeSG" in text and "## What the numbers say" in text
    assert "old FreezeSG definition" not in text and "held-out R², GAN look" in text
    assert "sha256" in text and "images/comparison_curves.png" in text
    assert "content-only initialisation" not in text  # only CycleGAN was trained: no AnimeGAN init phase
    # The report's command re-creates the translators at the size they were trained at.
    assert text.count("--translator-arch cyclegan.ngf=4,cyclegan.ndf=4,cyclegan.n_blocks=1") == 2  # command, setup
    from translation.models import load_cyclegan

    G, _ = load_cyclegan(tmp_path / "runs/webtoon/seed0/translate-cyclegan/checkpoints/000002.pt")
    assert (G.ngf, G.n_blocks) == (4, 1)  # not the published ngf 64, 9 blocks
    assert [g.name for g in grids] == ["comparison_webtoon.png", "comparison_sketch.png"]
    assert curves_png == tmp_path / "docs/images/comparison_curves.png" and curves_png.stat().st_size > 0
    with Image.open(curves_png) as im:
        assert im.size[0] > 300 and len(set(im.convert("L").getdata())) > 2  # something was drawn
    curves = _json(curves_png.with_suffix(".json"))
    assert set(curves) == {"webtoon", "sketch"} and set(curves["webtoon"]) == {"freezeG", "freezeSG"}
    c = curves["webtoon"]["freezeG"]
    assert c["kimg"] == [0.004, 0.008] and c["n_seeds"] == [2, 2]
    seed_curves = [_json(tmp_path / f"runs/webtoon/seed{k}/freezeG/curve.json")["points"][1]["style_score"]
                   for k in (0, 1)]
    assert c["style_score"][1] == pytest.approx(sum(seed_curves) / 2)

    # Re-running skips every finished run and scores nothing new: same numbers, no new checkpoint.
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.pt")}
    again = run_comparison(settings, bundles, log=(msgs := []).append)
    assert sum("already fine-tuned" in m for m in msgs) == 8 and not any("fine-tuning --" in m for m in msgs)
    assert sum("already trained" in m for m in msgs) == 4
    assert [r.structure_error for r in again.results] == [r.structure_error for r in study.results]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("*.pt")} == mtimes


def test_until_level_stops_a_run_and_records_where(probes, tmp_path):
    # A tolerance of 1 levels off as soon as two points exist: the run stops at step 2 of 3.
    settings = CompareSettings(source=str(source_ckpt(tmp_path)), methods=["freezeSG"], iters=3, quick=True,
                               out_root=str(tmp_path / "runs"), device="cpu", n=4, eval_n=4, eval_every=1,
                               until_level=True, level_k=2, level_tol=1.0, grid_seeds=[0])
    study = run_comparison(settings, probes, log=(said := []).append)
    assert not any("within the noise" in m for m in said)  # a tolerance of 1 is above any s.e. of probabilities
    run = tmp_path / "runs/webtoon/seed0/freezeSG"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.pt"))[-1] == "000002.pt"
    assert _json(run / "curve.json")["levelled_at_step"] == 2
    row = next(r for r in study.rows["webtoon"] if r.name == "freezeSG")
    assert row.images == [8] and row.stopped == ["levelled off at 0.008 kimg"]
    # Every row has a quality score, the source's against photo renders, the rest against the target's.
    assert all(r.quality is not None and math.isfinite(r.quality) for r in study.rows["webtoon"])
    assert study.results[0].quality_ref != study.results[1].quality_ref
    report, _, _ = write_report(study, tmp_path / "COMPARISON.md")
    assert "levelled off at 0.008 kimg" in report.read_text() and "--until-level" in report.read_text()
    # Without the early stop, the same command continues the run to its full length from step 2.
    settings.until_level = False
    run_comparison(settings, probes, log=(msgs := []).append)
    assert any("steps 2..3" in m for m in msgs)


def test_freezeG3_freezes_the_blocks_freezeSG_freezes_at_64px():
    # The depth-matched FreezeG row: same frozen synthesis blocks as FreezeSG 2 (blocks 1..2),
    # the difference being only the mapping (frozen whole in FreezeG; FreezeSG trains the
    # target's for the later entries). FreezeG 2 freezes one block more (block 3 = 16 px).
    from finetune.freeze import FreezeSpec
    from stylegan2.blocks import generator_block_of

    G = tiny_generator(64)
    assert G.n_blocks == 5

    def synthesis(frozen: set[str]) -> set[str]:
        return {n for n in frozen if generator_block_of(n) is not None}

    sg = FreezeSpec(freeze_sg=METHODS["freezeSG"]["freeze"]).generator_frozen(G)
    g3 = FreezeSpec(freeze_g=METHODS["freezeG3"]["freeze_g"]).generator_frozen(G)
    g2 = FreezeSpec(freeze_g=METHODS["freezeG"]["freeze_g"]).generator_frozen(G)
    assert synthesis(g3) == synthesis(sg) and {generator_block_of(n) for n in synthesis(sg)} == {1, 2}
    assert {generator_block_of(n) for n in synthesis(g2)} == {1, 2, 3}
    mapping = {n for n, _ in G.named_parameters() if generator_block_of(n) is None}
    assert mapping <= g3 and not mapping & sg


def test_level_noise_note_warns_when_the_tolerance_is_within_one_points_noise():
    # The numbers the 64-px comparison saw: s.e. 0.023 at eval-n 200 against the default 0.02.
    note = level_noise_note(0.023, 200, 0.02)
    assert note is not None and "--eval-n 1058" in note and "0.05" in note
    assert level_noise_note(0.009, 1058, 0.02) is None  # 2·se = 0.018 < 0.02: the rule can tell
    assert level_noise_note(0.0, 4, 1e-9) is None  # no spread measured: nothing to warn about


def test_paired_differences_and_standard_errors_on_synthetic_numbers():
    a = {0: torch.tensor([1.0, 2.0, 3.0, 4.0]), 1: torch.tensor([2.0, 2.0, 2.0, 6.0])}
    b = {0: torch.tensor([0.0, 1.0, 1.0, 2.0]), 1: torch.tensor([1.0, 1.0, 1.0, 1.0])}
    p = paired(a, b)
    d0, d1 = torch.tensor([1.0, 1.0, 2.0, 2.0]), torch.tensor([1.0, 1.0, 1.0, 5.0])  # a − b per latent
    assert p.diff == pytest.approx((1.5 + 2.0) / 2) and p.n_seeds == 2
    se0, se1 = float(d0.std() / 2), float(d1.std() / 2)  # std / √4
    assert p.se_latents == pytest.approx(math.sqrt(se0 ** 2 + se1 ** 2) / 2)
    assert p.se_seeds == pytest.approx(float(torch.tensor([1.5, 2.0]).std() / math.sqrt(2)))
    assert p.se == max(p.se_latents, p.se_seeds) and p.verdict() == "higher"
    assert paired(a, {5: b[0]}) is None  # no common seed
    assert verdict(-0.5, 0.2) == "lower" and verdict(0.3, 0.2) == "not clearly different"
    # Pairing removes what the latents share: a constant offset is measured exactly.
    base = {0: torch.rand(50), 1: torch.rand(50)}
    shifted = {k: v + 0.01 for k, v in base.items()}
    q = paired(base, shifted)
    assert q.diff == pytest.approx(-0.01) and q.se < 1e-6 and q.verdict() == "lower"
    # aggregate: the rows' means, both standard errors and the pairing against FreezeSG
    runs = [_row(n, "finetune", v.tolist(), 0.9, seed=k) for n, d in (("freezeG", a), ("freezeSG", b))
            for k, v in d.items()]
    rows = {r.name: r for r in aggregate(runs, "webtoon")}
    g = rows["freezeG"]
    assert g.structure_error == pytest.approx((2.5 + 3.0) / 2)
    assert g.structure_se_seeds == pytest.approx(float(torch.tensor([2.5, 3.0]).std() / math.sqrt(2)))
    assert g.vs_ref.diff == pytest.approx(p.diff) and g.verdict().startswith("structure higher")
    assert rows["freezeSG"].vs_ref is None
    assert rows["freezeG"].flags == ""  # the same "how" on both seeds is shown once
    runs[0].flags, runs[1].flags = "a.pt", "b.pt"  # seeds made differently: both are named
    assert {r.name: r for r in aggregate(runs, "webtoon")}["freezeG"].flags == "a.pt / b.pt"
    assert levelled([0.1, 0.5, 0.51, 0.5], 3, 0.02) and not levelled([0.5, 0.52, 0.56], 3, 0.02)
    assert not levelled([0.5, 0.5], 3, 1.0)  # fewer points than k


def test_translator_rows_identity_scores_the_source_blur_loses_structure(probes):
    G = tiny_generator()
    same = score_translator(probes, G, lambda x: x, "webtoon", n=16, quality=False)
    assert max(same["structure"]) < 1e-6  # the identity translator is the source, latent for latent
    src_style = style_probabilities(probes, G, n=16)
    assert torch.allclose(torch.tensor(same["style"]), src_style, atol=1e-6)

    def blur(x):  # a crude "translator" that smears the face: the geometry readings must move
        return F.avg_pool2d(F.pad(x, (3, 3, 3, 3), mode="replicate"), 7, stride=1)

    smeared = score_translator(probes, G, blur, "webtoon", n=16)
    # (these throw-away probes read little, so only the sign is asserted: > the identity's exact 0)
    assert min(smeared["structure"]) > 0 and math.isfinite(smeared["quality"])
    # The wrapper renders through the source's own mapping and noise: the grid row is the blurred source row.
    TG = TranslatedGenerator(G, blur)
    w = G.mapping(torch.randn(2, G.style_dim), truncation=0.7)
    noise = G.const_noise()
    expect = blur(G.synthesis(w, noise=noise, noise_mode="const").image).clamp(-1, 1)
    assert torch.allclose(TG.synthesis(w, noise=noise, noise_mode="const").image, expect)


def test_translators_given_as_files_need_a_known_target(tmp_path):
    from finetune.compare_translators import parse_translators
    from toonlab.errors import UserInputError
    from translation.models import build_generator

    path = torch_save_atomic(build_generator("animegan2").state_dict(), tmp_path / "port.pt")
    with pytest.raises(UserInputError, match="TARGET="):  # a bare port file does not say what it draws
        parse_translators(str(path), ["webtoon", "sketch"])
    spec, = parse_translators(f"sketch={path}", ["webtoon", "sketch"])
    assert spec.target == "sketch" and spec.model == "animegan2" and "translation" in spec.label
    with pytest.raises(UserInputError, match="not found"):
        parse_translators(str(tmp_path / "missing.pt"), ["webtoon"])


def test_a_target_without_probes_is_one_line(probes, tmp_path):
    r = CliRunner().invoke(main, ["--ckpt", str(source_ckpt(tmp_path)), "--targets", "webtoon,pastel",
                                  "--probes", str(probes.save(tmp_path / "p.pt")), "--out", str(tmp_path / "runs"),
                                  "--report", str(tmp_path / "r.md")])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert "pastel" in last and "metrics.probes train --target pastel" in last and "Traceback" not in r.output


def _row(name: str, kind: str, err: list[float], style: float, seed: int = 0, target: str = "webtoon") -> MethodResult:
    t = torch.tensor(err)
    return MethodResult(name, kind, "", float(t.mean()), 0.0, style, per_latent=t,
                        style_per_latent=torch.full_like(t, style) + torch.linspace(-1e-3, 1e-3, len(t)), seed=seed,
                        target=target)


def _says(runs: list[MethodResult]) -> str:
    return what_the_numbers_say(aggregate(runs, "webtoon"), None, 2)


def test_conclusion_follows_the_numbers():
    src = _row("source", "source", [0.0] * 4, 0.1)
    low, high = [0.01, 0.011, 0.012, 0.01], [0.05, 0.052, 0.049, 0.051]
    supported = [src, _row("freezeG", "finetune", high, 0.9), _row("freezeSG", "finetune", low, 0.9),
                 _row("structure", "finetune", low, 0.88)]
    assert "These numbers support" in _says(supported)
    refuted = [src, _row("freezeG", "finetune", low, 0.9), _row("freezeSG", "finetune", high, 0.9),
               _row("structure", "finetune", high, 0.9)]
    assert "do not support" in _says(refuted)
    assert "same frozen blocks" not in _says(refuted)  # no freezeG3 row: nothing to say about it
    # With the depth-matched FreezeG row, the conclusion says how FreezeSG compares at equal depth.
    matched = _says([*refuted, _row("freezeG3", "finetune", low, 0.9)])
    assert "At the same frozen blocks (FreezeG 3, `freezeG3`): freezeSG" in matched and ": higher;" in matched
    # Lower structure error but no longer cartoon: not counted as keeping structure "better".
    bland = [src, _row("freezeG", "finetune", high, 0.9), _row("freezeSG", "finetune", low, 0.2)]
    assert "do not support" in _says(bland)
    assert "cannot be checked" in _says([src, _row("none", "finetune", low, 0.5)])
    # FreezeG itself never became cartoon: the run is too short to test anything.
    short = [src, _row("freezeG", "finetune", high, 0.3), _row("freezeSG", "finetune", low, 0.3)]
    assert "cannot test" in _says(short)
    # Two targets that disagree are reported as such, each with its own paragraph.
    other = [_row(r.name, r.kind, r.per_latent.tolist(), r.style_score, target="sketch") for r in refuted]
    both = what_the_numbers_say({"webtoon": aggregate(supported, "webtoon"), "sketch": aggregate(other, "sketch")},
                                None, 2)
    assert "**webtoon.**" in both and "**sketch.**" in both and "the targets disagree" in both
    # A saturated style classifier (sketch: every method 1.000) is said, and the quality ranks them instead.
    sat = aggregate([src, _row("freezeG", "finetune", high, 0.999), _row("freezeSG", "finetune", low, 0.995)],
                    "webtoon")
    for r in sat:
        r.quality = {"freezeG": 87.4, "freezeSG": 100.6}.get(r.name)
    says = what_the_numbers_say(sat, None, 2)
    assert "saturated on this target" in says and "freezeG 87.4, freezeSG 100.6" in says
    assert "saturated" not in _says(supported)
    # A translator row: compared with the best fine-tuned generator, whichever way it falls.
    assert "The two roads" not in _says(supported)
    roads = _says([*supported, _row("cyclegan (translation)", "translation", high, 0.95)])
    assert "The two roads: the best translator (cyclegan (translation)" in roads
    assert "best fine-tuned generator (freezeSG" in roads and "structure higher" in roads, roads
    # Seeds that disagree widen the standard error: the same mean difference is no longer called.
    noisy = [src, _row("freezeG", "finetune", high, 0.9, seed=0), _row("freezeSG", "finetune", low, 0.9, seed=0),
             _row("freezeG", "finetune", low, 0.9, seed=1), _row("freezeSG", "finetune", high, 0.9, seed=1)]
    rows = {r.name: r for r in aggregate(noisy, "webtoon")}
    assert rows["freezeG"].vs_ref.verdict() == "not clearly different"


def test_translator_arch_parses_round_trips_and_rejects_bad_items(tmp_path):
    from finetune.compare_translators import format_translator_arch, parse_translator_arch
    from toonlab.errors import UserInputError

    arch = parse_translator_arch("cyclegan.ngf=32, cyclegan.ndf=32,cyclegan.n_blocks=6")
    assert arch == {"cyclegan": {"ngf": 32, "ndf": 32, "n_blocks": 6}}
    assert parse_translator_arch(format_translator_arch(arch)) == arch and parse_translator_arch(None) == {}
    for bad in ("cyclegan.lr=1", "animegan2.ngf=32", "cyclegan.ngf=0", "ngf=32", "cyclegan.ngf=x"):
        with pytest.raises(UserInputError, match="--translator-arch"):
            parse_translator_arch(bad)
    r = CliRunner().invoke(main, ["--ckpt", str(source_ckpt(tmp_path)), "--quick", "--out", str(tmp_path / "runs"),
                                  "--translator-arch", "cyclegan.pool=0"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and "cyclegan.ngf" in r.output, r.output


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


def test_source_description_counts_the_images_the_trainer_recorded(tmp_path):
    # A run warm-restarted at another batch: step × the last batch would overstate its kimg.
    meta = {"step": 17811, "nimg": 321136, "config": {"batch": 32}}
    torch.save({"toonlab": meta}, tmp_path / "a.pt")
    text = source_description(tmp_path / "a.pt")
    assert "17,811 steps, 321.1 kimg" in text and "569" not in text
    torch.save({"toonlab": {"step": 100, "config": {"batch": 8}}}, tmp_path / "b.pt")
    assert "100 steps × batch 8 = 0.8 kimg" in source_description(tmp_path / "b.pt")
