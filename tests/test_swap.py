"""Layer swapping: hard blends keep A's low-resolution and B's high-resolution outputs."""

from __future__ import annotations

import torch
from click.testing import CliRunner
from PIL import Image

from finetune.swap import main
from stylegan2.blend import blend_factor, blend_generators, feature_swap, swap_grid
from stylegan2.checkpoint import load_generator, snapshot
from stylegan2.networks import Generator
from toonlab.atomic import torch_save_atomic


def pair():
    torch.manual_seed(0)
    A = Generator(32, style_dim=16, n_mlp=2, channel_max=16, channel_base=256).eval()
    B = Generator(32, style_dim=16, n_mlp=2, channel_max=16, channel_base=256).eval()
    with torch.no_grad():
        for m in (A, B):
            for n, p in m.named_parameters():
                if n.endswith("noise.weight"):
                    p.normal_(0, 0.2)
    return A, B


@torch.no_grad()
def test_hard_blend_equals_feature_swap_and_keeps_low_res():
    A, B = pair()
    w = A.broadcast(A.mapping(torch.randn(3, 16)))
    noise = A.make_noise(3)
    for k in range(1, A.n_blocks):
        G = blend_generators(A, B, k)
        out = G.synthesis(w, noise=noise, return_rgbs=True, return_features=True)
        ref_a = A.synthesis(w, noise=noise, return_rgbs=True, return_features=True)
        for b in range(k):  # blocks 1..k are A's
            torch.testing.assert_close(out.features[b], ref_a.features[b])
            torch.testing.assert_close(out.rgbs[b], ref_a.rgbs[b])
        torch.testing.assert_close(out.image, feature_swap(A, B, w, k, noise), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(out.image, ref_a.image)
    # The mapping network is A's.
    z = torch.randn(2, 16)
    torch.testing.assert_close(blend_generators(A, B, 1).mapping(z), A.mapping(z))


def test_logistic_blend_factors():
    assert blend_factor(None, 2, 0.5) == 0.0
    assert blend_factor(2, 2) == 0.0 and blend_factor(3, 2) == 1.0
    ys = [blend_factor(b, 2, 0.5) for b in range(1, 6)]
    assert all(a < b for a, b in zip(ys, ys[1:])) and ys[0] < 0.1 and ys[-1] > 0.9
    assert abs(blend_factor(2, 2, 1.0) + blend_factor(3, 2, 1.0) - 1) < 1e-9  # symmetric around swap + ½


def test_cli_writes_loadable_checkpoint_and_grid(tmp_path):
    A, B = pair()
    pa = torch_save_atomic(snapshot(A), tmp_path / "a.pt")
    pb = torch_save_atomic(snapshot(B), tmp_path / "b.pt")
    r = CliRunner().invoke(main, ["--source", str(pa), "--cartoon", str(pb), "--swap", "2", "--blend-width", "0.5",
                                  "--out", str(tmp_path / "blend.pt"), "--grid", str(tmp_path / "grid.png"),
                                  "--seeds", "0-1"])
    assert r.exit_code == 0, r.output
    G = load_generator(tmp_path / "blend.pt")
    assert G.size == 32
    w, h = Image.open(tmp_path / "grid.png").size
    assert w > 32 * (2 + 2 * 3) and h > 32 * 2
    r = CliRunner().invoke(main, ["--source", str(pa), "--cartoon", str(pb), "--swap", "9", "--out", str(tmp_path / "x.pt")])
    assert r.exit_code == 2 and "blocks 1..4" in r.output


def _published_swap(A: Generator, B: Generator, w: torch.Tensor, noise: list, swap_layer_num: int) -> torch.Tensor:
    """Re-statement of Cartoon-StyleGAN's swap (model.py:577-613 as run.py:157-185 calls it): generator1
    saves ``out`` after conv2 at loop index i == 2·swap_layer_num − 1; generator2 replaces its own ``out``
    there by it and carries on — its ToRGB of that block and its skip image from before are its own."""
    def run(G, replace=None):
        out = G.conv1(G.input(w.shape[0]), w[:, 0], noise[0])
        skip = G.to_rgb1(out, w[:, 1])
        i = 1
        for conv1, conv2, n1, n2, to_rgb in zip(G.convs[::2], G.convs[1::2], noise[1::2], noise[2::2], G.to_rgbs):
            out = conv1(out, w[:, i], n1)
            out = conv2(out, w[:, i + 1], n2)
            if i == 2 * swap_layer_num - 1:
                saved = out
                if replace is not None:
                    out = replace
            skip = to_rgb(out, w[:, i + 2], skip)
            i += 2
        return skip, saved

    _, saved = run(A)
    return run(B, replace=saved)[0]


@torch.no_grad()
def test_target_skip_swap_is_cartoon_stylegans_swap_layer_num_plus_one():
    A, B = pair()
    w = A.broadcast(A.mapping(torch.randn(2, 16)))
    noise = A.make_noise(2)
    for k in range(1, A.n_blocks):  # their swap_layer_num 1..n_blocks-1 = our blocks 2..n_blocks
        ref = _published_swap(A, B, w, noise, k)
        torch.testing.assert_close(feature_swap(A, B, w, k + 1, noise, skip="target"), ref, rtol=1e-5, atol=1e-5)
        # The default keeps A's skip image for the swapped blocks: a different image.
        assert (feature_swap(A, B, w, k + 1, noise) - ref).abs().max() > 1e-3
    # Block 1 (not reachable with swap_layer_num ≥ 1): B's ToRGB of block 1 on A's 4-px feature.
    assert feature_swap(A, B, w, 1, noise, skip="target").shape == (2, 3, 32, 32)
    grid = swap_grid(A, B, [0], [1, 2], skip="target")
    assert grid.size[0] > 32 * 6
