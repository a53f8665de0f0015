"""The probes as a measuring instrument: held-out R² per field stored and shown, old bundles still
load, and the quality score (probe-feature Fréchet distance) with its floor and scale."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from metrics.probes import (
    DEFAULT_PROBES,
    FORMAT,
    QUALITY_OFFSETS,
    SCORE_MIN_R2,
    ProbeBundle,
    StructureRegressor,
    StyleClassifier,
    _fd,
    domain_references,
    field_shifts,
    main,
    probe_features,
    quality_score,
    readings_from_features,
    render_features,
    train_probes,
)
from tests import conftest
from toonlab.atomic import torch_save_atomic
from toonlab.images import uint8_to_tensor
from toonlab.synthetic import GEOMETRY_FIELDS, GEOMETRY_RANGES, render, sample_params


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models on a busy machine: one thread is faster
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def probes() -> ProbeBundle:
    # Fresh faces every batch (the default stream), a few steps: enough for features that tell
    # domains apart, not for good R².
    return train_probes(("photo", "webtoon", "sketch"), "webtoon", steps=6, batch=8, seed=0, n_eval=16, width=8,
                        classifier_width=8)


def test_metrics_hold_per_field_r2_crisp_and_gan_look(probes, tmp_path):
    m = probes.metrics
    for key in ("r2_per_field", "r2_per_field_gan"):
        assert list(m[key]) == list(GEOMETRY_FIELDS) and all(math.isfinite(v) for v in m[key].values())
    # the GAN look changes the images, so it changes the readings
    assert m["r2_per_field"] != m["r2_per_field_gan"]
    assert probes.field_r2() == m["r2_per_field_gan"]  # scoring goes by the generator-like images
    assert len(m["feature_scale"]) == 2 and all(v > 0 for v in m["feature_scale"])
    assert probes.config["format"] == FORMAT and probes.config["n_per_domain"] is None
    # readable_fields follows the stored R²: force two fields above the threshold
    probes2 = ProbeBundle(probes.regressor, probes.classifier, dict(probes.config),
                          {**m, "r2_per_field_gan": {f: (0.95 if f in ("roll", "eye_y") else 0.1)
                                                     for f in GEOMETRY_FIELDS}})
    assert [GEOMETRY_FIELDS[i] for i in probes2.readable_fields()] == ["roll", "eye_y"]
    assert "2 fields with GAN-look R² ≥ 0.9" in probes2.summary() and SCORE_MIN_R2 == 0.9

    path = probes.save(tmp_path / "p.pt")
    res = CliRunner().invoke(main, ["show", str(path)])
    assert res.exit_code == 0, res.output
    for f in GEOMETRY_FIELDS:  # one table row per field, with both R² columns
        row = next(line for line in res.output.splitlines() if line.strip().startswith(f + " "))
        assert f"{m['r2_per_field'][f]:.3f}" in row and f"{m['r2_per_field_gan'][f]:.3f}" in row
    assert path.stat().st_size < 3e6


def test_old_format_bundle_still_loads_and_says_so(tmp_path):
    torch.manual_seed(0)
    reg, clf = StructureRegressor(8, arch="v1"), StyleClassifier(8, arch="v1")
    cfg = dict(format="toonlab-probes-v1", domains=["photo", "webtoon"], target="webtoon", n_per_domain=8, size=64,
               steps=1, classifier_steps=1, batch=4, seed=0, width=8, lr=2e-3, geometry_fields=list(GEOMETRY_FIELDS))
    metrics = {"r2_mean": 0.5, "r2_per_field": {f: 0.6 for f in GEOMETRY_FIELDS}, "accuracy": 0.9,
               "accuracy_blurred": 0.8}
    obj = {"format": "toonlab-probes-v1", "regressor": reg.state_dict(), "classifier": clf.state_dict(),
           "config": cfg, "metrics": metrics}
    path = torch_save_atomic(obj, tmp_path / "old.pt")
    back = ProbeBundle.load(path)
    assert back.is_old and back.regressor.arch == "v1"
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.equal(back.regressor(x), reg.eval()(x))
    assert back.field_r2() == metrics["r2_per_field"]  # no GAN-look numbers in old bundles: the crisp ones
    assert back.readable_fields() == list(range(len(GEOMETRY_FIELDS)))  # none ≥ 0.9: all fields
    res = CliRunner().invoke(main, ["show", str(path)])
    assert res.exit_code == 0 and "old-format bundle" in res.output


def test_quality_renders_vs_renders_is_the_floor_and_another_domain_is_far(probes):
    n = 256
    ref, floor, scale, pair = domain_references(probes, "photo", n=n)
    assert pair == ("photo", "webtoon") and floor > 0 and scale > floor
    # a third independent set of photo renders scores about the floor ...
    third = render_features(probes, "photo", n, QUALITY_OFFSETS[1] + 10 * n)
    again = _fd(third, ref)
    assert abs(again - floor) < 0.5 * floor
    # ... and renders of another domain score far above it
    sketch = render_features(probes, "sketch", n, QUALITY_OFFSETS[1] + 10 * n)
    assert _fd(sketch, ref) > 3 * floor
    # features: both probes' hidden units, scaled by the stored sizes
    feats = probe_features(probes, torch.rand(3, 3, 64, 64) * 2 - 1)
    assert feats.shape == (3, 512)


def test_quality_score_of_a_generator_and_the_cli(probes, tmp_path):
    G = conftest.tiny_generator(16, perturb="noise").eval().requires_grad_(False)
    refs = domain_references(probes, "photo", n=64)
    q = quality_score(probes, G, "photo", n=64, references=refs)
    assert math.isfinite(q.score) and q.score > q.floor  # random tiny weights draw no faces
    assert q.floor == refs[1] and q.scale == refs[2]
    assert q.score_geometry is not None and q.score_style is not None
    assert 0 < q.score_geometry < q.score and 0 < q.score_style < q.score  # each half is part of the whole
    assert quality_score(probes, G, "photo", n=64, references=refs).score == q.score  # deterministic
    ckpt = conftest.tiny_checkpoint(tmp_path / "G.pt", perturb="noise")
    bundle = probes.save(tmp_path / "p.pt")
    out = tmp_path / "q.json"
    res = CliRunner().invoke(main, ["quality", "--ckpt", str(ckpt), "--probes", str(bundle), "--n", "64",
                                    "--device", "cpu", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert rec["n"] == 64 and rec["floor"] > 0 and rec["scale"] > rec["floor"]
    assert "floor (renders vs renders)" in res.output
    bad = CliRunner().invoke(main, ["quality", "--ckpt", str(tmp_path / "missing.pt"), "--probes", str(bundle)])
    assert bad.exit_code == 2 and "not found" in bad.output
    bad = CliRunner().invoke(main, ["quality", "--ckpt", str(ckpt), "--probes", str(bundle), "--domain", "oil"])
    assert bad.exit_code == 2 and "unknown synthetic domain" in bad.output


def test_quality_fields_say_which_geometry_a_generator_gets_wrong(probes, tmp_path):
    # the readings rebuilt from the quality score's features are the regressor's own
    x = torch.rand(8, 3, 64, 64) * 2 - 1
    assert torch.allclose(readings_from_features(probes, probe_features(probes, x)), probes.regressor(x).float(),
                          atol=1e-4)
    # with the bundled regressor (face_size read at R² 0.98): renders vs other renders, every field
    # close; vs the same faces drawn with the largest face_size, that field first, shifted up
    real = ProbeBundle.load(DEFAULT_PROBES)
    n = 128
    ref = render_features(real, "photo", n, QUALITY_OFFSETS[0])
    same = field_shifts(real, render_features(real, "photo", n, QUALITY_OFFSETS[1]), ref)
    assert max(f.distance for f in same) < 0.3
    top = GEOMETRY_RANGES["face_size"][1]
    big = np.stack([render(dataclasses.replace(sample_params(QUALITY_OFFSETS[1] + i, 0), face_size=top), "photo", 64)
                    for i in range(n)])
    worst = field_shifts(real, probe_features(real, uint8_to_tensor(big)), ref)
    assert worst[0].field == "face_size" and worst[0].mean_shift > 1 and worst[0].sd_ratio < 0.7
    assert worst[0].distance > 5 * max(f.distance for f in same)
    assert [f.distance for f in worst] == sorted((f.distance for f in worst), reverse=True)
    # the CLI prints the table and writes it to the JSON
    ckpt = conftest.tiny_checkpoint(tmp_path / "G.pt", perturb="noise")
    bundle = probes.save(tmp_path / "p.pt")
    out = tmp_path / "q.json"
    res = CliRunner().invoke(main, ["quality", "--ckpt", str(ckpt), "--probes", str(bundle), "--n", "32",
                                    "--device", "cpu", "--fields", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "| field | held-out R² | mean shift" in res.output
    rec = json.loads(out.read_text())
    assert len(rec["fields"]) == len(GEOMETRY_FIELDS)
    assert {"mean_shift", "sd_ratio", "distance", "r2"} <= set(rec["fields"][0])


def test_init_continues_training_from_a_bundle(probes):
    from toonlab.errors import UserInputError

    more = train_probes(("photo", "webtoon", "sketch"), "webtoon", steps=1, batch=8, seed=0, n_eval=4, width=8,
                        classifier_width=8, classifier_steps=1, lr=1e-12, init=probes)
    w0 = probes.regressor.features[0].weight
    assert torch.allclose(more.regressor.features[0].weight, w0, atol=1e-3)  # started from its weights
    assert not torch.allclose(StructureRegressor(8).features[0].weight, w0, atol=1e-3)  # a fresh one does not
    c = more.config
    assert c["steps_total"] == probes.config["steps_total"] + 1
    assert c["faces_seen"] == probes.config["faces_seen"] + 8  # the face stream went on
    with pytest.raises(UserInputError, match="same --width"):
        train_probes(("photo", "webtoon"), "webtoon", steps=1, batch=4, n_eval=4, width=16, classifier_width=8,
                     init=probes)


def test_zero_regressor_steps_keeps_the_regressor_and_trains_a_classifier_for_another_target(probes):
    """A sketch bundle from the webtoon one: the same structure readings, a classifier of its own."""
    from toonlab.errors import UserInputError

    sk = train_probes(("photo", "webtoon", "sketch"), "sketch", steps=0, batch=8, seed=0, n_eval=4, width=8,
                      classifier_width=8, classifier_steps=3, init=probes)
    for k, v in probes.regressor.state_dict().items():
        assert torch.equal(sk.regressor.state_dict()[k], v), k  # not one step taken
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    assert torch.equal(sk.regressor(x), probes.regressor(x))
    # another target: the classifier starts fresh rather than from the webtoon one, and trains
    assert not torch.equal(sk.classifier(x), probes.classifier(x))
    assert sk.target == "sketch" and sk.config["steps"] == 0 and sk.config["classifier_steps"] == 3
    assert sk.config["steps_total"] == probes.config["steps_total"]
    assert sk.config["faces_seen"] == probes.config["faces_seen"]
    with pytest.raises(UserInputError, match="give --init"):
        train_probes(("photo", "sketch"), "sketch", steps=0, batch=4, n_eval=4, width=8, classifier_width=8)


def test_classifier_backgrounds_is_recorded_measured_and_starts_a_fresh_classifier(probes):
    """--classifier-backgrounds: recorded in the config, the grey-background check in the metrics (for
    every bundle trained), and an --init classifier trained without it is not carried over."""
    bg = train_probes(("photo", "webtoon"), "webtoon", steps=0, batch=8, seed=0, n_eval=4, width=8,
                      classifier_width=8, classifier_steps=2, lr=1e-12, init=probes, classifier_backgrounds=0.5)
    assert bg.config["classifier_backgrounds"] == 0.5 and probes.config["classifier_backgrounds"] == 0.0
    grey = bg.metrics["cartoon_prob_grey_background"]
    assert set(grey) == {"photo", "webtoon"} and all(0 <= v <= 1 for v in grey.values())
    assert "on grey backgrounds P(webtoon)" in bg.summary() and "randomised, p 0.5" in bg.summary()
    x = torch.rand(4, 3, 64, 64) * 2 - 1
    assert not torch.equal(bg.classifier(x), probes.classifier(x))  # lr ~0: only a fresh start differs
    same = train_probes(("photo", "webtoon"), "webtoon", steps=0, batch=8, seed=0, n_eval=4, width=8,
                        classifier_width=8, classifier_steps=1, lr=1e-12, init=probes)
    assert torch.allclose(same.classifier(x), probes.classifier(x), atol=1e-2)  # carried over


def test_bundled_probe_sets_one_per_target(probes, tmp_path, monkeypatch):
    """probes64.pt first, then probes64_<target>.pt; quality and the comparison pick them up."""
    from finetune.compare import CompareSettings
    from metrics.probes import bundled_probes, probes_for
    from toonlab import bundled

    monkeypatch.setattr(bundled, "FOLDER", tmp_path)
    assert bundled.probe_sets() == [] and probes_for("sketch").name == "probes64.pt"
    probes.save(tmp_path / "probes64.pt")
    sk = ProbeBundle(probes.regressor, probes.classifier, {**probes.config, "target": "sketch"}, probes.metrics)
    sk.save(tmp_path / "probes64_sketch.pt")
    (tmp_path / "probes_notes.pt").write_bytes(b"not a bundle name")  # not of the naming scheme: ignored
    sets = bundled.probe_sets()
    assert [b.name for b in sets] == ["probes64", "probes64_sketch"]
    assert "photo-vs-sketch classifier" in sets[1].label and "photo-vs-webtoon" in sets[0].label
    assert bundled_probes() == [tmp_path / "probes64.pt", tmp_path / "probes64_sketch.pt"]
    assert probes_for("sketch") == tmp_path / "probes64_sketch.pt"
    assert probes_for("webtoon") == probes_for("photo") == tmp_path / "probes64.pt"
    assert CompareSettings().probes.split(",") == [str(p) for p in bundled_probes()]
    assert [b.kind for b in bundled.models()] == ["probes", "probes"]


def test_bundled_probes_are_current_and_read_their_scored_fields():
    from metrics.probes import DEFAULT_PROBES, evaluate_probes

    b = ProbeBundle.load(DEFAULT_PROBES)
    assert not b.is_old and b.config["format"] == FORMAT and DEFAULT_PROBES.stat().st_size < 3e6
    r2 = b.field_r2()
    scored = [GEOMETRY_FIELDS[i] for i in b.readable_fields()]
    assert set(r2) == set(GEOMETRY_FIELDS) and len(scored) >= 6
    assert all(r2[f] >= SCORE_MIN_R2 for f in scored)
    # the stored numbers belong to these weights: a fresh small held-out set reads the position fields as well
    again = evaluate_probes(b, n_eval=40, seed=0)
    for f in ("center_x", "center_y", "roll"):
        assert again["r2_per_field"][f] > 0.9, (f, again["r2_per_field"][f])
    assert again["accuracy"] > 0.95


def test_worker_processes_draw_the_same_batches_as_the_thread():
    """--workers only moves the drawing elsewhere: the planned faces, domains and images are identical."""
    from metrics.probes import _batches

    def draw(workers: int) -> list:
        g = torch.Generator().manual_seed(3)
        return list(_batches(["photo", "sketch"], 5, 3, 32, 0, None, g, start=7, workers=workers))

    thread, procs = draw(0), draw(2)
    assert len(thread) == len(procs) == 5
    for (a_img, a_geo, a_dom, a_bg), (b_img, b_geo, b_dom, b_bg) in zip(thread, procs):
        assert (a_img == b_img).all() and torch.equal(a_geo, b_geo) and torch.equal(a_dom, b_dom)
        assert a_bg is None and b_bg is None  # masks only when asked for
    assert not (thread[0][0] == thread[1][0]).all()  # fresh faces each step


def test_background_masks_are_exact_and_random_backgrounds_touch_only_them():
    """The classifier's background randomisation: the masks cover the background and nothing of the face
    (a render on other background colours differs exactly there), and the replacement stays inside them."""
    from metrics.probes import _batches, _to_float, random_backgrounds
    from toonlab.synthetic import background_mask, render, sample_params

    p = sample_params(5, 0)
    for domain in ("photo", "webtoon", "pastel"):
        img = render(p, domain, 32)
        m = background_mask(p, domain, 32, img)
        assert 0.3 < m.mean() < 0.9, domain
        other = render(dataclasses.replace(p, bg_top_rgb=(0.1, 0.9, 0.2), bg_bottom_rgb=(0.9, 0.1, 0.5)), domain, 32)
        # outside the mask nothing depends on the background (but the faintest rim pixels: a few levels)
        diff = np.abs(img.astype(int) - other.astype(int)).max(-1)
        assert diff[~m].max() <= 6 and diff[m].mean() > 40, domain
    assert not background_mask(p, "sketch", 32).any()  # sketch draws paper, no background colour
    g = torch.Generator().manual_seed(0)
    (u8, _, _, bg), = list(_batches(["photo", "webtoon"], 1, 6, 32, 0, None, g, masks=True))
    x = _to_float(u8)
    y = random_backgrounds(x, bg, torch.Generator().manual_seed(1), p=1.0)
    changed = (y != x).any(1)
    assert not changed[~bg].any() and changed[bg].float().mean() > 0.9
    assert torch.equal(random_backgrounds(x, bg, torch.Generator().manual_seed(1), p=0.0), x)
