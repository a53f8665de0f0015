"""StyleGAN2 networks: community key layout, parity with an independent oracle, latent handling."""

from __future__ import annotations

import pytest
import torch

from stylegan2.networks import Discriminator, Generator, channel_dict
from tests import community_oracle as oracle
from tests.conftest import tiny_generator


def tiny_g(size: int = 16, **kw) -> Generator:
    # Non-zero noise strengths and biases so every term of the forward pass is exercised.
    return tiny_generator(size, perturb="biases", std=0.3, **kw)


def expected_generator_keys(size: int, n_mlp: int = 8) -> set[str]:
    """The community (rosinality) layout, spelled out from REFERENCE.md §1."""
    log = size.bit_length() - 1
    keys = {"input.input"}
    for i in range(1, n_mlp + 1):
        keys |= {f"style.{i}.weight", f"style.{i}.bias"}
    styled = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias", "noise.weight", "activate.bias"]
    keys |= {f"conv1.{s}" for s in styled}
    rgb = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias", "bias"]
    keys |= {f"to_rgb1.{s}" for s in rgb}
    for i in range((log - 2) * 2):
        keys |= {f"convs.{i}.{s}" for s in styled}
        if i % 2 == 0:
            keys.add(f"convs.{i}.conv.blur.kernel")
    for k in range(log - 2):
        keys |= {f"to_rgbs.{k}.{s}" for s in rgb} | {f"to_rgbs.{k}.upsample.kernel"}
    keys |= {f"noises.noise_{i}" for i in range((log - 2) * 2 + 1)}
    return keys


def test_config_f_256_layout_and_shapes():
    G = Generator(256)
    sd = G.state_dict()
    assert set(sd) == expected_generator_keys(256)
    assert sd["input.input"].shape == (1, 512, 4, 4)
    assert sd["conv1.conv.weight"].shape == (1, 512, 512, 3, 3)
    assert sd["convs.6.conv.weight"].shape == (1, 256 * 2, 512, 3, 3)  # 64 px: 256·cm with cm = 2
    assert sd["convs.8.conv.weight"].shape == (1, 128 * 2, 512, 3, 3)  # 128 px: 128·cm
    assert sd["convs.10.conv.weight"].shape == (1, 64 * 2, 256, 3, 3)  # 256 px: 64·cm
    assert sd["to_rgbs.5.upsample.kernel"].shape == (4, 4)
    assert sd["conv1.conv.modulation.bias"].eq(1).all()  # modulation bias_init = 1
    for i in range(13):
        assert sd[f"noises.noise_{i}"].shape[-1] == 2 ** ((i + 5) // 2)
    assert G.n_latent == 14 and G.num_layers == 13
    assert Generator(1024, n_mlp=8).n_latent == 18


def test_discriminator_keys():
    D = Discriminator(64, channel_max=32, channel_base=256)
    sd = D.state_dict()
    for k in ["convs.0.0.weight", "convs.0.1.bias", "convs.1.conv1.0.weight", "convs.1.conv1.1.bias",
              "convs.1.conv2.0.kernel", "convs.1.conv2.1.weight", "convs.1.conv2.2.bias",
              "convs.1.skip.0.kernel", "convs.1.skip.1.weight", "final_conv.0.weight", "final_conv.1.bias",
              "final_linear.0.weight", "final_linear.0.bias", "final_linear.1.weight", "final_linear.1.bias"]:
        assert k in sd, k
    assert "convs.1.skip.1.bias" not in sd
    assert len([k for k in sd if k.endswith("conv1.0.weight")]) == 4  # 64→32→16→8→4


def test_channel_table_matches_community():
    ch = channel_dict(2)
    assert [ch[r] for r in (4, 8, 16, 32, 64, 128, 256, 512, 1024)] == [512] * 4 + [512, 256, 128, 64, 32]
    ch1 = channel_dict(1)
    assert ch1[64] == 256 and ch1[256] == 64


def test_generator_matches_independent_oracle():
    G = tiny_g(32)
    sd = G.state_dict()
    torch.manual_seed(1)
    z = torch.randn(3, G.style_dim)
    noise = G.make_noise(3)
    with torch.no_grad():
        w = G.mapping(z)
        ours, _ = G([w], input_is_latent=True, noise=noise)
        ref_w = oracle.mapping(sd, z)
        ref = oracle.synthesis(sd, G.broadcast(ref_w), noise)
    torch.testing.assert_close(w, ref_w, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    assert ours.shape == (3, 3, 32, 32)


def test_discriminator_matches_independent_oracle():
    torch.manual_seed(0)
    D = Discriminator(32, channel_max=16, channel_base=128)
    with torch.no_grad():
        for name, p in D.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.3)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(D(x), oracle.discriminator(D.state_dict(), x), rtol=1e-4, atol=1e-4)


def test_deterministic_for_fixed_latent_and_noise():
    G = tiny_g()
    z = torch.randn(2, G.style_dim, generator=torch.Generator().manual_seed(3))
    a, _ = G([z], noise_mode="const")
    b, _ = G([z], noise_mode="const")
    assert torch.equal(a, b)
    c, _ = G([z], noise_mode="random")
    d, _ = G([z], noise_mode="random")
    assert not torch.allclose(c, d)
    e, _ = G([z], noise_mode="none")
    f, _ = G([z], noise=[torch.zeros(2, 1, r, r) for r in G.noise_shapes()])
    torch.testing.assert_close(e, f)


def test_w_plus_and_mixing_indexing():
    G = tiny_g(16)
    z1, z2 = torch.randn(2, G.style_dim), torch.randn(2, G.style_dim)
    w1, w2 = G.mapping(z1), G.mapping(z2)
    mixed = G.mix(w1, w2, inject_index=3)
    assert mixed.shape == (2, G.n_latent, G.style_dim)
    assert torch.equal(mixed[:, :3], w1.unsqueeze(1).expand(-1, 3, -1))
    assert torch.equal(mixed[:, 3:], w2.unsqueeze(1).expand(-1, G.n_latent - 3, -1))
    img_mix, lat = G([z1, z2], inject_index=3, noise_mode="const", return_latents=True)
    img_wplus, _ = G(mixed, input_is_latent=True, noise_mode="const")
    torch.testing.assert_close(img_mix, img_wplus)
    # W equals W+ with identical entries
    a, _ = G(w1, input_is_latent=True, noise_mode="const")
    b, _ = G(G.broadcast(w1).clone(), input_is_latent=True, noise_mode="const")
    torch.testing.assert_close(a, b)
    # Changing only the last W+ entry (the last ToRGB) must not touch block features before it.
    wp = G.broadcast(w1).clone()
    wp[:, -1] += 1.0
    out_a = G.synthesis(G.broadcast(w1), noise_mode="const", return_features=True)
    out_b = G.synthesis(wp, noise_mode="const", return_features=True)
    torch.testing.assert_close(out_a.features[-1], out_b.features[-1])
    assert not torch.allclose(out_a.image, out_b.image)


def test_block_latent_indices_follow_reference():
    G = tiny_g(64)
    assert G.block_latent_indices(1) == [0, 1]
    assert G.block_latent_indices(2) == [1, 2, 3]  # convs[0], convs[1], to_rgbs[0]
    assert G.block_latent_indices(G.n_blocks)[-1] == G.n_latent - 1


def test_truncation():
    G = tiny_g()
    z = torch.randn(4, G.style_dim)
    avg = G.mean_latent(256)
    assert avg.shape == (1, G.style_dim)
    w = G.mapping(z)
    torch.testing.assert_close(G.mapping(z, truncation=0.0), avg.expand(4, -1))
    torch.testing.assert_close(G.mapping(z, truncation=0.5), avg + 0.5 * (w - avg))
    torch.testing.assert_close(G.mapping(z, truncation=1.0), w)


def test_features_rgbs_and_feature_swap():
    A, B = tiny_g(32), tiny_g(32)
    torch.manual_seed(5)
    with torch.no_grad():
        for p in B.parameters():
            p.add_(0.1 * torch.randn_like(p))
    w = A.broadcast(A.mapping(torch.randn(2, A.style_dim)))
    full = A.synthesis(w, noise_mode="const", return_features=True, return_rgbs=True)
    assert len(full.features) == A.n_blocks == len(full.rgbs)
    assert [f.shape[-1] for f in full.features] == [4, 8, 16, 32]
    torch.testing.assert_close(full.rgbs[-1], full.image)
    # Stopping early gives the same partial outputs.
    part = A.synthesis(w, noise_mode="const", to_block=2, return_rgbs=True)
    assert part.image is None and len(part.rgbs) == 2
    torch.testing.assert_close(part.rgbs[1], full.rgbs[1])
    # Resuming A from its own block-2 outputs reproduces A; from B's block-2 it is a swap.
    resumed = A.synthesis(w, noise_mode="const", from_block=2, feature=full.features[1], skip=full.rgbs[1])
    torch.testing.assert_close(resumed.image, full.image)
    b_full = B.synthesis(w, noise_mode="const", return_features=True, return_rgbs=True)
    swap = B.synthesis(w, noise_mode="const", from_block=2, feature=full.features[1], skip=full.rgbs[1]).image
    assert not torch.allclose(swap, b_full.image) and not torch.allclose(swap, full.image)


def test_narrow_model_keeps_key_names():
    G = tiny_g(32)
    assert set(G.state_dict()) == expected_generator_keys(32, n_mlp=2)
    assert max(G.channels.values()) == 16


def test_bad_inputs():
    with pytest.raises(ValueError, match="power of two"):
        Generator(48)
    G = tiny_g(16)
    with pytest.raises(ValueError, match="W\\+ latent has"):
        G.synthesis(torch.randn(1, 3, G.style_dim))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(torch.randn(1, G.style_dim), noise_mode="loud")


def test_gradients_flow_second_order():
    """R1 differentiates D through its input gradient; path length does the same in G."""
    torch.manual_seed(0)
    D = Discriminator(16, channel_max=8, channel_base=64)
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    g.square().sum().backward()
    # Every weight reaches the penalty (the very last bias cannot: ∂D/∂x does not depend on it).
    for name, p in D.named_parameters():
        if name.endswith("weight"):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    G = tiny_g(16)
    w = G.broadcast(G.mapping(torch.randn(2, G.style_dim))).detach().requires_grad_(True)
    img = G.synthesis(w, noise_mode="const").image
    (gw,) = torch.autograd.grad((img * torch.randn_like(img)).sum(), w, create_graph=True)
    gw.square().sum().backward()
    assert G.convs[0].conv.weight.grad is not None and G.convs[0].conv.weight.grad.abs().sum() > 0


def test_truncation_above_one_extrapolates_like_nvidia():
    """ψ > 1 moves away from w̄ (NVIDIA's lerp whenever ψ ≠ 1); rosinality's model.py ignores ψ > 1."""
    torch.manual_seed(0)
    G = Generator(16, style_dim=8, n_mlp=2, channel_max=8, channel_base=64).eval()
    z = torch.randn(3, 8)
    avg = G.mean_latent(256)
    w = G.style(z)
    with torch.no_grad():
        torch.testing.assert_close(G.mapping(z, truncation=1.5), avg + 1.5 * (w - avg))
        torch.testing.assert_close(G.mapping(z, truncation=1.5), torch.lerp(avg, w, 1.5))  # NVIDIA's formula
        img, lat = G([z], truncation=1.5, truncation_latent=avg, return_latents=True, noise_mode="const")
        plain, _ = G([z], noise_mode="const")
    torch.testing.assert_close(lat[:, 0], avg + 1.5 * (w - avg))
    assert not torch.allclose(img, plain)


def test_widened_discriminator_computes_what_the_narrow_one_did():
    torch.manual_seed(0)
    narrow = Discriminator(32, 2, channel_base=256, channel_max=16)
    for p in narrow.parameters():  # non-zero biases, so every tensor's copying is checked
        p.data.normal_()
    wide = Discriminator(32, 2, channel_base=256, channel_max=48)  # 3× at 4–8 px, 16 at 16 px, 16 at 32 px
    assert wide.load_widened(narrow.state_dict(), noise=0) > 0
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(wide(x), narrow(x), rtol=1e-4, atol=1e-4)
        wide.load_widened(narrow.state_dict(), noise=0.05, generator=torch.Generator().manual_seed(1))
        moved = (wide(x) - narrow(x)).abs().max()
    assert 0 < moved < 0.2 * narrow(x).abs().mean()  # 2 of 3 copies per channel noised, 5 % each
    w = wide.state_dict()["final_linear.0.weight"]
    assert not torch.equal(w[:16], w[16:32])  # the copies differ: the noise broke their symmetry


def test_widened_generator_draws_what_the_narrow_one_did_and_can_learn_to_use_its_new_channels():
    torch.manual_seed(0)
    narrow = Generator(32, 16, 2, channel_base=128, channel_max=16)  # 16 channels at 4–16 px, 8 at 32 px
    for p in narrow.parameters():  # non-zero biases and noise weights, so every tensor's copying is checked
        p.data.normal_()
    wide = Generator(32, 16, 2, channel_base=512, channel_max=32)  # 2× at 4–16 px, 4× at 32 px
    assert wide.load_widened(narrow.state_dict(), generator=torch.Generator().manual_seed(1)) > 0
    z = torch.randn(4, 16)
    with torch.no_grad():
        a, _ = narrow([z], noise_mode="const")
        b, _ = wide([z], noise_mode="const")
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)  # the copies' noise cannot show: read with weight 0
    w = wide.state_dict()["convs.1.conv.weight"]  # 16 → 16 px: out and in both widened
    assert torch.count_nonzero(w[:, :, 16:]) == 0 and not torch.equal(w[:, :16, :16], w[:, 16:, :16])
    wide([z])[0].square().mean().backward()
    assert wide.convs[1].conv.weight.grad[:, :, 16:].abs().sum() > 0  # the zero readers do learn


def test_widening_refuses_what_it_cannot_keep():
    narrow = Discriminator(32, 2, channel_base=256, channel_max=16)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        Discriminator(32, 2, channel_base=256, channel_max=24).load_widened(narrow.state_dict())
    with pytest.raises(ValueError, match="other keys"):
        Discriminator(16, 2, channel_base=256, channel_max=32).load_widened(narrow.state_dict())
    with pytest.raises(ValueError, match="not a whole fraction"):
        Generator(32, 16, 2, channel_base=256, channel_max=24).load_widened(Generator(32, 16, 2, channel_base=256, channel_max=16).state_dict())
