"""Style mixing, truncation sweep, interpolation video, and the mp4 writer — tiny generators, CPU."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegan2.checkpoint import load_generator, snapshot
from stylegan2.figures import (
    Key,
    Panel,
    interpolation_path,
    interpolation_video,
    latent_keys,
    mix_latents,
    seed_keys,
    seed_latents,
    slerp,
    style_layers,
    style_mixing_figure,
    truncation_sweep_figure,
)
from stylegan2.networks import Generator
from toonlab.atomic import torch_save_atomic
from toonlab.errors import UserInputError
from toonlab.images import to_pil
from toonlab.video import VideoWriteError, write_video

REPO = Path(__file__).resolve().parents[1]


def tiny(seed=0, size=16):
    torch.manual_seed(seed)
    G = Generator(size, style_dim=16, n_mlp=2, channel_max=16, channel_base=128).eval().requires_grad_(False)
    G.mean_latent(256)
    return G


@pytest.fixture()
def ckpts(tmp_path):
    src = torch_save_atomic(snapshot(tiny(0)), tmp_path / "face.pt")
    toon = torch_save_atomic(snapshot(tiny(1)), tmp_path / "toon.pt")
    return src, toon


def count_frames(path):
    from toonlab.video import count_frames as n

    return n(path)


# ---- layers, latents ---------------------------------------------------------------------------


def test_style_presets_follow_the_papers_split():
    assert style_layers(18, "coarse") == [0, 1, 2, 3]  # 1024 px: NVIDIA's StyleGAN figure ranges
    assert style_layers(18, "middle") == [4, 5, 6, 7]
    assert style_layers(18, "fine") == list(range(8, 18))
    assert style_layers(10, "fine") == [8, 9]  # 64 px
    assert style_layers(10, "0,2,6-7") == [0, 2, 6, 7]
    for bad, msg in (("fine", "no fine layers"), ("0-12", "out of range"), ("3-1", "backwards"), ("x", "coarse")):
        with pytest.raises(UserInputError, match=msg):
            style_layers(8, bad)


def test_mix_latents_takes_the_chosen_layers_from_the_columns():
    rows, cols = torch.randn(2, 6, 4), torch.randn(3, 6, 4)
    out = mix_latents(rows, cols, [1, 4]).reshape(2, 3, 6, 4)
    for r in range(2):
        for c in range(3):
            for i in range(6):
                expect = cols[c, i] if i in (1, 4) else rows[r, i]
                assert torch.equal(out[r, c, i], expect)


def test_seed_latents_match_generate_py():
    from stylegan2.sampling import generate

    G = tiny()
    _, w, _ = seed_latents(G, [3], 0.7)
    img = G.synthesis(w, noise_mode="const").image[0]
    (seed, ref), = list(generate(G, [3], truncation=0.7, show_progress=False))
    assert torch.equal(img, ref)


def tile(fig: Image.Image, r: int, c: int, size: int, left: int, top: int, pad: int = 2) -> Image.Image:
    """The (r, c) tile of a make_grid figure (its padding and label margins)."""
    x, y = left + pad + c * (size + pad), top + pad + r * (size + pad)
    return fig.crop((x, y, x + size, y + size))


def same(a: Image.Image, b: Image.Image) -> bool:
    """Equal up to one grey level (a batch of 8 and a batch of 1 may round one pixel differently)."""
    return np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max() <= 1


def test_mixing_figure_cells_are_the_mixed_renders():
    G, T = tiny(0), tiny(1)
    rows, cols = [0, 1], [5, 6, 7]
    fig = style_mixing_figure([Panel("src", G)], rows, cols, "0-1", show_progress=False)
    left, top = 6 * len("seed 0") + 6, 14
    _, wr, _ = seed_latents(G, rows)
    _, wc, _ = seed_latents(G, cols)
    mixed = mix_latents(wr, wc, [0, 1])
    imgs = G.synthesis(mixed, noise_mode="const").image
    for r in range(2):
        for c in range(3):
            assert tile(fig, 1 + r, 1 + c, 16, left, top).tobytes() == to_pil(imgs[r * 3 + c]).tobytes()
    top_row = G.synthesis(wc, noise_mode="const").image
    assert tile(fig, 0, 2, 16, left, top).tobytes() == to_pil(top_row[1]).tobytes()
    # Through a second generator: the same latents, rendered by it, in a second panel.
    both = style_mixing_figure([Panel("src", G), Panel("toon", T)], rows, cols, "0-1", show_progress=False)
    assert both.width > 2 * fig.width
    panel2 = both.crop((8 + fig.width + 8, 14 + 8, 8 + 2 * fig.width + 8, 14 + 8 + fig.height))
    timgs = T.synthesis(mixed, noise_mode="const").image
    assert tile(panel2, 2, 3, 16, left, top).tobytes() == to_pil(timgs[1 * 3 + 2]).tobytes()


def test_truncation_sweep_zero_is_the_mean_face():
    G = tiny()
    psis = [0.0, 0.5, 1.0]
    fig = truncation_sweep_figure([Panel("src", G)], [1, 2, 3], psis, show_progress=False)
    left, top = 6 * len("seed 1") + 6, 14
    zeros = [tile(fig, r, 0, 16, left, top) for r in range(3)]
    mean_face = to_pil(G.synthesis(G.mean_w(), noise_mode="const").image[0])
    assert all(same(z, mean_face) for z in zeros)  # ψ = 0: every seed renders w̄
    _, w, _ = seed_latents(G, [2], 0.5)
    assert same(tile(fig, 1, 1, 16, left, top), to_pil(G.synthesis(w, noise_mode="const").image[0]))
    assert not same(tile(fig, 1, 2, 16, left, top), tile(fig, 2, 2, 16, left, top))  # ψ = 1: seeds differ


# ---- interpolation -------------------------------------------------------------------------------


def test_slerp_keeps_the_norm_and_hits_the_ends():
    a, b = torch.randn(64), torch.randn(64)
    b = b / b.norm() * a.norm()
    for t in (0.0, 0.3, 0.5, 1.0):
        assert math.isclose(slerp(a, b, t).norm().item(), a.norm().item(), rel_tol=1e-5)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    assert slerp(a, a, 0.5).allclose(a)  # parallel: no NaN


def test_interpolation_path_frames_and_ends():
    G = tiny()
    keys = seed_keys(G, [0, 1, 2], truncation=0.7)
    path = list(interpolation_path(G, keys, frames=4, space="w", loop=True))
    assert len(path) == 12
    assert torch.equal(path[0][0], keys[0].w) and torch.equal(path[4][0], keys[1].w)
    torch.testing.assert_close(path[2][0], (keys[0].w + keys[1].w) / 2)
    path = list(interpolation_path(G, keys, frames=4, space="z", loop=False, truncation=0.7))
    assert len(path) == 9
    torch.testing.assert_close(path[-1][0], keys[-1].w)
    torch.testing.assert_close(path[0][0], keys[0].w)
    with pytest.raises(UserInputError, match="at least two"):
        list(interpolation_path(G, keys[:1], 4))
    lat = [Key("a", keys[0].w), Key("b", keys[1].w)]
    with pytest.raises(UserInputError, match="--space z"):
        list(interpolation_path(G, lat, 4, space="z"))


def test_projected_noise_blend_keeps_unit_variance():
    G = tiny()
    g = torch.Generator().manual_seed(0)
    keys = [Key(str(i), torch.zeros(G.n_latent, 16), None,
                [torch.randn(1, 1, 256, 256, generator=g) for _ in G.noise_shapes()]) for i in range(2)]
    mid = list(interpolation_path(G, keys, frames=2, loop=False, blend_noise=True))[1][1]
    assert abs(mid[0].std().item() - 1.0) < 0.02  # a plain lerp would give ~0.71


def test_interpolation_video_with_latent_files_and_two_generators(tmp_path, ckpts):
    from stylegan2.latents import save_latent

    src, toon = ckpts
    G = load_generator(src)
    lats = []
    for i, s in enumerate([3, 4]):
        _, w, noise = seed_latents(G, [s])
        lats.append(save_latent(tmp_path / f"p{i}" / "latent.pt", w[0], [t[0] for t in noise[0]], src, {}))
    keys = latent_keys(G, lats)
    assert keys[0].label == "p0" and keys[0].noise is not None
    panels = [Panel("face", G), Panel("toon", load_generator(toon))]
    info = interpolation_video(panels, keys, tmp_path / "v.mp4", frames=3, noise_mode="projected",
                               preview=tmp_path / "v.png", show_progress=False)
    assert info["frames"] == 6 and count_frames(tmp_path / "v.mp4") == 6
    assert info["size"][0] > 2 * 16
    sheet = Image.open(tmp_path / "v.png")  # 6 frames: rows of 4
    assert sheet.width >= 4 * info["size"][0] and sheet.height >= 2 * info["size"][1]
    bad = torch_save_atomic(snapshot(tiny(0, size=32)), tmp_path / "big.pt")
    with pytest.raises(UserInputError, match="latent of shape"):
        latent_keys(load_generator(bad), lats)


# ---- the mp4 writer ------------------------------------------------------------------------------


def test_write_video_h264_odd_sizes_and_errors(tmp_path):
    frames = [np.full((17, 33, 3), i * 20, np.uint8) for i in range(5)]
    path = write_video(iter(frames), tmp_path / "odd.mp4", fps=12)
    assert count_frames(path) == 5
    from toonlab.video import ffmpeg_exe

    r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True)
    assert "h264" in r.stderr and "34x18" in r.stderr  # padded to even for yuv420p
    with pytest.raises(VideoWriteError, match="no frames"):
        write_video([], tmp_path / "none.mp4")
    with pytest.raises(VideoWriteError, match="after frames of"):
        write_video([frames[0], np.zeros((8, 8, 3), np.uint8)], tmp_path / "mixed.mp4")
    assert not (tmp_path / "mixed.mp4").exists() and not list(tmp_path.glob(".mixed*"))


# ---- the commands --------------------------------------------------------------------------------


def test_commands_write_what_they_say(tmp_path, ckpts):
    from stylegan2.interpolate import main as interpolate_main
    from stylegan2.mix import main as mix_main
    from stylegan2.truncation import main as truncation_main
    from tests.nvidia_pickles import FIXTURE

    src, toon = ckpts
    r = CliRunner().invoke(mix_main, ["--ckpt", str(src), "--cartoon", str(toon), "--rows", "0-1", "--cols", "2-4",
                                      "--styles", "0-3", "--out", str(tmp_path / "mix.png"), "--size", "24"])
    assert r.exit_code == 0, r.output
    assert "2×3 mixes, 2 generator(s)" in r.output and Image.open(tmp_path / "mix.png").width > 2 * 4 * 24
    r = CliRunner().invoke(truncation_main, ["--ckpt", str(FIXTURE), "--seeds", "0-1", "--truncation", "0,0.7,1",
                                             "--out", str(tmp_path / "t.png")])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "t.png").size[1] > 2 * 32
    r = CliRunner().invoke(interpolate_main, ["--ckpt", str(src), "--cartoon", f"{toon},{src}", "--seeds", "0,1",
                                              "--frames", "2", "--out", str(tmp_path / "i.mp4"), "--preview"])
    assert r.exit_code == 0, r.output
    assert count_frames(tmp_path / "i.mp4") == 4 and (tmp_path / "i.png").exists()
    assert "3 generator(s)" in r.output


def test_commands_bad_input_is_one_line(tmp_path, ckpts):
    from stylegan2.interpolate import main as interpolate_main
    from stylegan2.mix import main as mix_main
    from stylegan2.truncation import main as truncation_main

    src, _ = ckpts
    big = torch_save_atomic(snapshot(tiny(0, size=32)), tmp_path / "big.pt")
    cases = [
        (mix_main, ["--ckpt", str(src), "--styles", "fine"], "no fine layers"),
        (mix_main, ["--ckpt", str(src), "--cartoon", str(big)], "share the source's shape"),
        (mix_main, ["--ckpt", str(tmp_path / "nope.pt")], "checkpoint not found"),
        (truncation_main, ["--ckpt", str(src), "--truncation", "a,b"], "comma-separated numbers"),
        (interpolate_main, ["--ckpt", str(src), "--seeds", "1"], "at least two"),
        (interpolate_main, ["--ckpt", str(src), "--latent", str(src), "--space", "z"], "not a latent file"),
        (interpolate_main, ["--ckpt", str(src), "--out", str(tmp_path / "x.gif")], "is an .mp4"),
    ]
    for cmd, args, msg in cases:
        out = ["--out", str(tmp_path / "o.png")] if cmd is not interpolate_main and "--out" not in args else []
        r = CliRunner().invoke(cmd, args + out)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.startswith("Error:") and r.output.strip().count("\n") == 0, r.output
        assert msg in r.output, (msg, r.output)


def test_scripts_run_from_checkout_and_group_lists_them(tmp_path, ckpts):
    from toonlab.cli import main as toonlab_main

    src, _ = ckpts
    p = subprocess.run([sys.executable, str(REPO / "stylegan2/truncation.py"), "--ckpt", str(src), "--seeds", "0",
                        "--truncation", "0,1", "--out", str(tmp_path / "t.png")], capture_output=True, text=True,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "t.png").exists()
    r = CliRunner().invoke(toonlab_main, ["--help"])
    assert all(name in r.output for name in ("mix", "interpolate", "truncation"))
    r = CliRunner().invoke(toonlab_main, ["mix", "--ckpt", str(src), "--rows", "0", "--cols", "1",
                                          "--out", str(tmp_path / "m.png")])
    assert r.exit_code == 0, r.output
