"""Inversion: dlib alignment, the projector, latent files and SeFa (CPU, tiny generators)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from inversion import align as al
from inversion import project as pj
from inversion import sefa
from losses.perceptual import TargetLPIPS
from losses.regularizers import noise_regularizer
from stylegan2.generate import main as generate_main
from stylegan2.latents import load_latent
from stylegan2.networks import Generator
from stylegan2.sampling import render
from tests import conftest
from tests.conftest import tiny_checkpoint


def tiny_generator(seed: int = 0, size: int = 16) -> Generator:
    return conftest.tiny_generator(size, seed).eval()


def tiny_ckpt(path, seed: int = 0):
    return tiny_checkpoint(path, seed=seed)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


# ---- alignment ------------------------------------------------------------------------------------


def test_landmark_model_is_found_without_importing_the_package():
    p = al.landmark_model_path()
    assert p.name == al.LANDMARK_MODEL and p.stat().st_size > 90_000_000


def test_astronaut_face_wins_over_the_mission_patch(astronaut):
    faces = al.detect_faces(astronaut)
    best = faces[0]
    # Her face is in the upper part of the photo; the patch sits low on the suit (y > 300).
    assert best.box[3] < 250 and best.box[1] < 120, best
    assert all(f.score <= best.score for f in faces)


def test_aligned_eyes_land_where_ffhq_alignment_puts_them(astronaut):
    size = 256
    out = al.align_face(astronaut, al.detect_faces(astronaut)[0], size)
    assert out.size == (size, size)
    again = al.detect_faces(out)[0]
    quad, qsize = al.face_quad(again)
    # FFHQ puts the crop centre (eye midpoint + 0.1 eye-to-mouth) in the middle and makes the
    # crop square exactly the output: re-detecting on the output must give that back.
    centre = quad.mean(0)
    assert np.abs(centre - size / 2).max() < 3, centre
    assert abs(qsize - size) < 6, qsize
    eye_l, eye_r = again.eyes
    assert abs(eye_l[1] - eye_r[1]) < 3  # level eyes


def test_align_cli_no_face_and_bad_files(tmp_path):
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (120, 130, 140)).save(blank)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    runner = CliRunner()
    r = runner.invoke(al.main, [str(blank)])
    assert r.exit_code == 2 and f"no face found in {blank}" in r.output and "Traceback" not in r.output
    for bad in (empty, corrupt, text):
        r = runner.invoke(al.main, [str(bad)])
        assert r.exit_code == 2, r.output
        assert len(r.output.strip().splitlines()) == 1 and str(bad) in r.output


def test_align_cli_writes_file_and_handles_modes(tmp_path, astronaut):
    src = tmp_path / "astro.png"
    # a 16-bit grayscale copy: still found and aligned (output is RGB)
    gray16 = Image.fromarray(np.asarray(astronaut.convert("L")).astype(np.int32) * 257).convert("I;16")
    gray16.save(src)
    out = tmp_path / "aligned.png"
    r = CliRunner().invoke(al.main, [str(src), "--size", "64", "--out", str(out)])
    assert r.exit_code == 0, r.output
    img = Image.open(out)
    assert img.size == (64, 64) and img.mode == "RGB"
    r = CliRunner().invoke(al.main, [str(src), "--size", "100"])
    assert r.exit_code == 2 and "power of two" in r.output


# ---- projector pieces -----------------------------------------------------------------------------


def test_learning_rate_schedule():
    assert pj.learning_rate(0.0, 0.1) == 0.0
    assert pj.learning_rate(0.05, 0.1) == pytest.approx(0.1)
    assert pj.learning_rate(0.5, 0.1) == pytest.approx(0.1)
    assert pj.learning_rate(0.875, 0.1) == pytest.approx(0.05)  # half-way down the cosine
    assert pj.learning_rate(1.0, 0.1) == pytest.approx(0.0)


def test_noise_regularizer_penalises_structure_not_noise():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(2, 1, 32, 32, generator=g)
    smooth = torch.nn.functional.interpolate(torch.randn(2, 1, 4, 4, generator=g), size=32, mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    r_white, r_smooth = noise_regularizer([white]), noise_regularizer([smooth])
    assert r_white.shape == (2,)
    assert (r_smooth > 20 * r_white).all()
    noises = [white.clone()]
    pj.normalize_noise_(noises)
    assert noises[0].mean(dim=(1, 2, 3)).abs().max() < 1e-6
    assert (noises[0].std(dim=(1, 2, 3)) - 1).abs().max() < 1e-5


def _rosinality_noise_regularize(noises):
    """Re-statement of rosinality projector.py:16-36: squared batch-mean autocorrelations, 2x pooled to 8 px."""
    loss = 0
    for noise in noises:
        size = noise.shape[2]
        while True:
            loss = loss + (noise * torch.roll(noise, 1, 3)).mean().pow(2) + (noise * torch.roll(noise, 1, 2)).mean().pow(2)
            if size <= 8:
                break
            noise = noise.reshape(-1, 1, size // 2, 2, size // 2, 2).mean([3, 5])
            size //= 2
    return loss


def test_noise_regulariser_and_normalisation_are_per_image():
    """Documented difference: per image, so a photo's loss does not depend on its batch; rosinality's
    are batch-wide, and the two agree for a single image."""
    g = torch.Generator().manual_seed(1)
    noises = [torch.randn(3, 1, r, r, generator=g) * s + m for r, s, m in ((8, 1.0, 0.0), (16, 2.0, 0.5), (32, 0.5, -1))]
    batch = pj.noise_regularizer(noises)
    for i in range(3):
        one = [n[i : i + 1] for n in noises]
        torch.testing.assert_close(batch[i], pj.noise_regularizer(one)[0])
        torch.testing.assert_close(pj.noise_regularizer(one)[0], _rosinality_noise_regularize(one))
    assert not torch.allclose(batch.mean(), _rosinality_noise_regularize(noises))
    normed = [n.clone() for n in noises]
    pj.normalize_noise_(normed)
    for i in range(3):
        one = [n[i : i + 1].clone() for n in noises]
        pj.normalize_noise_(one)
        for a, b in zip(normed, one):
            torch.testing.assert_close(a[i : i + 1], b)
    assert pj.ProjectConfig().space == "w+"  # rosinality's default is W; ours W+ (module docstring)


def test_target_lpips_equals_lpips_forward():
    lp = pj.build_perceptual("random", None, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    want = lp(a, b).reshape(2)
    got = TargetLPIPS(lp, b)(a)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_missing_vgg_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(pj.UserInputError) as e:
        pj.build_perceptual("lpips", None, torch.device("cpu"))
    msg = str(e.value)
    assert "vgg16-397923af.pth" in msg and str(tmp_path / "hub") in msg and "--features random" in msg
    assert "\n" not in msg


def test_projection_lowers_loss_and_recovers_own_sample():
    G = tiny_generator()
    with torch.no_grad():
        w = G.mapping(torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(3)))
        target = G.synthesis(G.broadcast(w), noise_mode="const").image
        start = G.synthesis(G.broadcast(pj.w_statistics(G, 2000)[0].expand(2, -1)), noise_mode="const").image
    cfg = pj.ProjectConfig(steps=150, n_mean_latent=2000, lr=0.05)
    res = pj.project(G, target, None, cfg, show_progress=False)
    mse0 = (start - target).square().mean().item()
    mse1 = (res.image - target).square().mean().item()
    assert mse1 < 0.1 * mse0, (mse0, mse1)
    assert res.latent.shape == (2, G.n_latent, G.style_dim)
    assert [t.shape[-1] for t in res.noise] == G.noise_shapes()
    # the stored result renders the stored image again
    torch.testing.assert_close(render(G, res.latent, res.noise), res.image)


def test_projection_with_perceptual_random_lowers_loss():
    G = tiny_generator()
    target = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    lp = pj.build_perceptual("random", None, torch.device("cpu"))
    res = pj.project(G, target, lp, pj.ProjectConfig(steps=40, n_mean_latent=500, space="w"), show_progress=False)
    first, last = res.history[0], res.history[-1]
    assert last["perceptual"] < first["perceptual"]


# ---- latent files, CLI end to end ---------------------------------------------------------------------


def test_project_cli_end_to_end_and_latent_roundtrip(tmp_path):
    src = tiny_ckpt(tmp_path / "src.pt", 0)
    toon = tiny_ckpt(tmp_path / "toon.pt", 1)
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "proj"
    r = CliRunner().invoke(pj.main, [str(photo), "--ckpt", str(src), "--cartoon", str(toon), "--swap", "2",
                                     "--no-align", "--iters", "5", "--features", "random", "--out", str(out),
                                     "--video"])
    assert r.exit_code == 0, r.output
    folder = out / "face"
    for name in ("aligned.png", "projected.png", "cartoon_toon.png", "swap2_toon.png", "grid.png", "latent.pt",
                 "projection.mp4"):
        assert (folder / name).is_file(), name
    lat = load_latent(folder / "latent.pt")
    assert lat["latent"].shape == (1, 6, 16) and lat["ckpt_hash"] and lat["settings"]["steps"] == 5
    # generate.py renders the latent through the cartoon model exactly like the projector did
    r = CliRunner().invoke(generate_main, ["--ckpt", str(toon), "--latent", str(folder / "latent.pt"),
                                           "--out", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.asarray(Image.open(tmp_path / "g/latent.png")), np.asarray(Image.open(folder / "cartoon_toon.png")))


def test_project_cli_errors(tmp_path, monkeypatch):
    src = tiny_ckpt(tmp_path / "src.pt")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    photo = tmp_path / "p.png"
    Image.new("RGB", (16, 16)).save(photo)
    r = CliRunner().invoke(pj.main, [str(photo), "--ckpt", str(src), "--no-align", "--iters", "2",
                                     "--perceptual", "lpips-vgg"])
    assert r.exit_code == 2 and "vgg16-397923af.pth" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(pj.main, [str(tmp_path / "missing.jpg"), "--ckpt", str(src), "--no-align",
                                     "--perceptual", "none", "--iters", "2"])
    assert r.exit_code == 2 and "missing.jpg" in r.output
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    r = CliRunner().invoke(generate_main, ["--ckpt", str(src), "--latent", str(bad)])
    assert r.exit_code == 2 and "not a latent file" in r.output


# ---- SeFa -------------------------------------------------------------------------------------------


def test_sefa_directions_are_orthonormal_singular_vectors():
    G = tiny_generator()
    dirs, vals = sefa.factorize(G)
    eye = torch.eye(dirs.shape[0])
    torch.testing.assert_close(dirs @ dirs.T, eye, atol=1e-4, rtol=0)
    assert (vals[:-1] >= vals[1:] - 1e-6).all()
    A = torch.cat(sefa.style_conv_modulations(G)).double()
    top = torch.linalg.svd(A, full_matrices=False).Vh[0].float()
    assert abs(float(top @ dirs[0])) > 0.999
    # ToRGB modulations are not part of the stack
    assert A.shape[0] == sum(m.conv.modulation.weight.shape[0] for m in [G.conv1, *G.convs])


def test_sefa_edit_only_moves_chosen_layers():
    G = tiny_generator()
    dirs, _ = sefa.factorize(G, layers=[0, 1])
    lat = torch.zeros(1, G.n_latent, G.style_dim)
    out = sefa.edit_latents(lat, dirs[0], [-2.0, 0.0, 3.0], layers=[0, 1])
    assert out.shape == (1, 3, G.n_latent, G.style_dim)
    torch.testing.assert_close(out[0, 2, 0], 3.0 * dirs[0])
    assert out[0, :, 2:].abs().max() == 0 and out[0, 1].abs().max() == 0


def test_sefa_cli(tmp_path):
    src = tiny_ckpt(tmp_path / "src.pt")
    toon = tiny_ckpt(tmp_path / "toon.pt", 1)
    r = CliRunner().invoke(sefa.main, ["factorize", "--ckpt", str(src), "--out", str(tmp_path / "f.pt")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(sefa.main, ["apply", "--factors", str(tmp_path / "f.pt"), "--index", "0-1",
                                       "--cartoon", str(toon), "--seeds", "0-1", "--out", str(tmp_path / "s")])
    assert r.exit_code == 0, r.output
    grid = Image.open(tmp_path / "s/sefa_01.png")
    assert grid.width > 5 * 16 and grid.height > 4 * 16  # 5 degrees x (2 seeds x 2 generators)
    r = CliRunner().invoke(sefa.main, ["apply", "--factors", str(src)])
    assert r.exit_code == 2 and "not a SeFa factors file" in r.output
