"""Built-in synthetic face domains (toonlab.synthetic): determinism, parameter
round trips, shared geometry across styles, distinct styles, the Dataset.

CPU only; renders a few hundred small images in a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` from anywhere: make the checkout importable
    sys.path.insert(0, str(ROOT))

from toonlab import synthetic as syn  # noqa: E402
from toonlab.synthetic import (  # noqa: E402
    DOMAINS,
    GEOMETRY_FIELDS,
    HAIR_STYLES,
    PARAM_DIM,
    VECTOR_FIELDS,
    FaceParams,
    SyntheticFaces,
    SyntheticPairs,
    make_grid_image,
    render,
    sample_params,
)


def _hsv(img: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 -> float HxWx3 HSV in [0, 1] (vectorised)."""
    rgb = img.astype(np.float32) / 255.0
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    d = mx - mn
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    safe = np.where(d > 0, d, 1.0)
    h = np.where(mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) / 6.0
    h = np.where(d > 0, h, 0.0)
    s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([h, s, mx], axis=2)


# Colours chosen so regions separate by hue in every coloured domain:
# orange skin, green background, blue clothes, dark purple hair.
_TEST_COLOURS = dict(
    skin_rgb=(0.92, 0.66, 0.50), hair_rgb=(0.22, 0.10, 0.32), clothes_rgb=(0.20, 0.30, 0.80),
    bg_top_rgb=(0.25, 0.75, 0.30), bg_bottom_rgb=(0.25, 0.75, 0.30),
)


def _test_params(index: int, **over: object) -> FaceParams:
    return dataclasses.replace(sample_params(index, seed=7), **{**_TEST_COLOURS, **over})


def _skin_mask(img: np.ndarray) -> np.ndarray:
    hsv = _hsv(img)
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (h > 0.02) & (h < 0.14) & (s > 0.12) & (v > 0.3)


def _extent(mask: np.ndarray) -> tuple[float, float, int, int, int, int]:
    ys, xs = np.nonzero(mask)
    assert len(ys) > 50, "no skin found"
    return float(ys.mean()), float(xs.mean()), int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("domain", DOMAINS)
def test_render_is_deterministic_per_domain_index_seed(domain: str) -> None:
    a = render(sample_params(5, seed=1), domain, 64)
    b = render(sample_params(5, seed=1), domain, 64)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, render(sample_params(6, seed=1), domain, 64))
    assert not np.array_equal(a, render(sample_params(5, seed=2), domain, 64))
    ds = SyntheticFaces(domain, 64, length=10, seed=1)
    assert torch.equal(ds[5], ds[5])
    assert torch.equal(ds[5], SyntheticFaces(domain, 64, length=10, seed=1)[5])


def test_sample_params_is_pure_and_varied() -> None:
    assert sample_params(3, 9) == sample_params(3, 9)
    assert sample_params(3, 9) != sample_params(4, 9)
    assert sample_params(3, 9) != sample_params(3, 10)
    ps = [sample_params(i) for i in range(200)]
    assert {p.hair_style for p in ps} == set(range(len(HAIR_STYLES)))
    geo = np.stack([p.geometry_vector() for p in ps])
    assert geo.shape == (200, len(GEOMETRY_FIELDS))
    assert geo.min() >= 0.0 and geo.max() <= 1.0
    assert (geo.std(axis=0) > 0.2).all(), "every geometry parameter should vary over its range"
    with pytest.raises(ValueError):
        sample_params(-1)


def test_noise_seed_changes_texture_not_structure() -> None:
    p = sample_params(2)
    a = render(p, "photo", 64, noise_seed=1)
    b = render(p, "photo", 64, noise_seed=2)
    assert not np.array_equal(a, b)
    other = render(sample_params(3), "photo", 64)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5 * np.abs(a.astype(int) - other.astype(int)).mean()
    assert np.array_equal(render(p, "photo", 64), render(p, "photo", 64, noise_seed=p.texture_seed))


# --------------------------------------------------------------------------- parameters


def test_vector_layout_and_round_trip() -> None:
    assert len(VECTOR_FIELDS) == PARAM_DIM == len(set(VECTOR_FIELDS))
    assert VECTOR_FIELDS[: len(GEOMETRY_FIELDS)] == GEOMETRY_FIELDS
    for i in range(20):
        p = sample_params(i)
        v = p.to_vector()
        assert v.dtype == np.float32 and v.shape == (PARAM_DIM,)
        q = FaceParams.from_vector(v, texture_seed=p.texture_seed)
        assert q.hair_style == p.hair_style
        np.testing.assert_allclose(q.to_vector(), v, atol=1e-6)
        for name in GEOMETRY_FIELDS:
            assert getattr(q, name) == pytest.approx(getattr(p, name), abs=1e-5)
        assert q.skin_rgb == pytest.approx(p.skin_rgb, abs=1e-6)
        # dict and JSON round trips are exact
        assert FaceParams(**p.asdict()) == p
        assert FaceParams.from_dict(json.loads(json.dumps(p.asdict()))) == p
    with pytest.raises(ValueError, match=str(PARAM_DIM)):
        FaceParams.from_vector(np.zeros(3))


def test_flipped_params() -> None:
    p = sample_params(4)
    f = p.flipped()
    assert f.center_x == pytest.approx(1.0 - p.center_x)
    assert f.roll == -p.roll and f.light_x == -p.light_x
    assert f.flipped() == p
    # The face model is symmetric: drawing the mirrored params mirrors the image.
    a = render(p, "webtoon", 64).astype(int)
    b = render(f, "webtoon", 64)[:, ::-1].astype(int)
    other = render(sample_params(5), "webtoon", 64).astype(int)
    assert np.abs(a - b).mean() < 0.25 * np.abs(a - other).mean()


# --------------------------------------------------------------------------- geometry shared across domains


@pytest.mark.parametrize("index, roll", [(0, 0.0), (1, 10.0), (2, -8.0), (3, 4.0)])
def test_same_params_same_face_geometry_across_domains(index: int, roll: float) -> None:
    p = _test_params(index, roll=roll)
    size = 128
    ref = _extent(_skin_mask(render(p, "photo", size)))
    for domain in ("webtoon", "pastel"):
        got = _extent(_skin_mask(render(p, domain, size)))
        assert abs(got[0] - ref[0]) <= 2.5 and abs(got[1] - ref[1]) <= 2.5, (domain, got, ref)  # centroid
        assert all(abs(g - r) <= 3 for g, r in zip(got[2:], ref[2:])), (domain, got, ref)  # bounding box
    # The skin really is the face: its centroid sits near the parametrised head centre.
    cy, cx = ref[0], ref[1]
    assert abs(cx - p.center_x * size) < 0.12 * size and abs(cy - p.center_y * size) < 0.25 * size


def test_top_of_head_agrees_in_every_domain() -> None:
    p = _test_params(3)
    tops = []
    for domain in DOMAINS:
        img = render(p, domain, 128).astype(int)
        bg = np.median(img[:4].reshape(-1, 3), axis=0)  # background colour from the top rows
        diff = np.abs(img - bg).sum(axis=2)
        rows = np.nonzero((diff > 60).sum(axis=1) >= 3)[0]
        tops.append(rows.min())
    assert max(tops) - min(tops) <= 3, dict(zip(DOMAINS, tops))


def test_geometry_moves_with_parameters() -> None:
    p = _test_params(0, roll=0.0)
    left = _extent(_skin_mask(render(dataclasses.replace(p, center_x=0.44), "webtoon", 128)))
    right = _extent(_skin_mask(render(dataclasses.replace(p, center_x=0.56), "webtoon", 128)))
    assert right[1] - left[1] == pytest.approx(0.12 * 128, abs=2.0)
    small = _extent(_skin_mask(render(dataclasses.replace(p, face_size=0.50), "photo", 128)))
    big = _extent(_skin_mask(render(dataclasses.replace(p, face_size=0.64), "photo", 128)))
    assert (big[5] - big[4]) > (small[5] - small[4]) + 5


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize("domain", DOMAINS)
@pytest.mark.parametrize("size", [32, 64, 100, 256])
def test_render_shape_and_dtype(domain: str, size: int) -> None:
    img = render(sample_params(1), domain, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 10  # not blank


def test_render_extreme_sizes() -> None:
    for size in (32, 512):
        assert render(sample_params(0), "photo", size).shape == (size, size, 3)


def _features(img: np.ndarray) -> np.ndarray:
    hsv = _hsv(img)
    g = img.astype(np.float32).mean(axis=2)
    edges = np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()
    return np.array([hsv[..., 1].mean(), edges / 10.0, hsv[..., 2].mean(), hsv[..., 2].std() * 3])


def test_domains_are_easy_to_tell_apart() -> None:
    n = 12
    feats = {d: np.stack([_features(render(sample_params(i, 3), d, 64)) for i in range(n)]) for d in DOMAINS}
    sat = {d: f[:, 0].mean() for d, f in feats.items()}
    edge = {d: f[:, 1].mean() for d, f in feats.items()}
    assert sat["webtoon"] > sat["photo"] + 0.1
    assert sat["sketch"] < 0.1
    assert sat["pastel"] < sat["webtoon"]
    assert edge["webtoon"] > 1.2 * edge["photo"]
    assert edge["sketch"] > 1.2 * edge["photo"]
    # Leave-one-out nearest centroid on four global statistics: near perfect.
    correct = 0
    for d, f in feats.items():
        for i in range(n):
            cents = {e: (np.delete(g, i, axis=0) if e == d else g).mean(axis=0) for e, g in feats.items()}
            guess = min(cents, key=lambda e: np.linalg.norm(f[i] - cents[e]))
            correct += guess == d
    assert correct >= 0.95 * n * len(DOMAINS)


def test_photo_is_smooth_and_webtoon_is_flat() -> None:
    p = sample_params(8)
    photo, toon = render(p, "photo", 128), render(p, "webtoon", 128)

    def distinct_colours(img: np.ndarray) -> int:
        return len(np.unique(img.reshape(-1, 3) // 8, axis=0))

    # shading + texture: many colours; flat fills: few
    assert distinct_colours(photo) > 2 * distinct_colours(toon)


# --------------------------------------------------------------------------- dataset


def test_dataset_items() -> None:
    ds = SyntheticFaces("photo", 64, length=7, seed=3)
    assert len(ds) == 7
    x = ds[2]
    assert x.dtype == torch.float32 and x.shape == (3, 64, 64)
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.5 and x.max() > 0.5
    assert torch.equal(ds[-1], ds[6])
    with pytest.raises(IndexError):
        ds[7]
    expected = torch.from_numpy(render(sample_params(2, 3), "photo", 64)).permute(2, 0, 1).float() / 127.5 - 1.0
    assert torch.allclose(x, expected, atol=1e-6)
    img, vec = SyntheticFaces("webtoon", 32, length=4, seed=3, return_params=True)[1]
    assert img.shape == (3, 32, 32) and vec.shape == (PARAM_DIM,) and vec.dtype == torch.float32
    assert torch.equal(vec, torch.from_numpy(sample_params(1, 3).to_vector()))
    assert ds.params(2) == sample_params(2, 3)
    assert "synthetic:photo" in ds.describe()


def test_dataset_flip_flips_params_consistently() -> None:
    ds = SyntheticFaces("webtoon", 64, length=4, seed=0, flip=True, return_params=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(16):
        img, vec = ds[1]
        p = ds.params(1)
        flipped = not torch.equal(vec, torch.from_numpy(p.to_vector()))
        seen.add(flipped)
        q = p.flipped() if flipped else p
        assert torch.equal(vec, torch.from_numpy(q.to_vector()))
        cx = vec[GEOMETRY_FIELDS.index("center_x")].item()
        lo, hi = syn.GEOMETRY_RANGES["center_x"]
        assert lo + cx * (hi - lo) == pytest.approx(1.0 - p.center_x if flipped else p.center_x, abs=1e-5)
        expected = torch.from_numpy(render(q, "webtoon", 64)).permute(2, 0, 1).float() / 127.5 - 1.0
        assert torch.equal(img, expected)
    assert seen == {True, False}


def test_dataloader_with_workers() -> None:
    ds = SyntheticFaces("sketch", 32, length=8, flip=True)
    batches = list(torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2))
    assert [tuple(b.shape) for b in batches] == [(4, 3, 32, 32)] * 2


def test_pairs_share_the_face() -> None:
    a, b, vec = SyntheticPairs("photo", "webtoon", 64, length=3, return_params=True)[2]
    assert torch.equal(a, SyntheticFaces("photo", 64, length=3)[2])
    assert torch.equal(b, SyntheticFaces("webtoon", 64, length=3)[2])
    assert torch.equal(vec, torch.from_numpy(sample_params(2).to_vector()))


def test_bad_domain_and_size() -> None:
    with pytest.raises(ValueError, match=r"unknown synthetic domain 'x'; choose from photo, webtoon, sketch, pastel"):
        SyntheticFaces("x", 64)
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        render(sample_params(0), "anime", 64)
    for size in (16, 31, 513, 1024):
        with pytest.raises(ValueError, match="32..512"):
            SyntheticFaces("photo", size)
        with pytest.raises(ValueError, match="32..512"):
            render(sample_params(0), "photo", size)
    assert syn.dataset_from_spec("synthetic:pastel", 48).domain == "pastel"
    assert syn.is_synthetic_spec("synthetic:photo") and not syn.is_synthetic_spec("/data/ffhq")
    with pytest.raises(ValueError, match="unknown synthetic domain"):
        syn.dataset_from_spec("synthetic:nope", 64)


# --------------------------------------------------------------------------- grid + CLI


def test_grid_and_cli(tmp_path: Path) -> None:
    g = make_grid_image(("photo", "webtoon"), n=3, size=32, seed=0, labels=False)
    assert g.size == (3 * 32 + 4 * 2, 2 * 32 + 3 * 2)
    # each row shows the same faces in its domain
    cell = np.asarray(g)[2:34, 2 + 34:2 + 34 + 32]
    assert np.array_equal(cell, render(sample_params(1, 0), "photo", 32))
    out = tmp_path / "grid.png"
    syn.main(["--grid", str(out), "--size", "32", "--n", "2", "--domains", "photo,sketch"])
    assert Image.open(out).size[1] == 2 * 32 + 3 * 2
    with pytest.raises(SystemExit):
        syn.main(["--grid", str(out), "--domains", "photo,oops"])
