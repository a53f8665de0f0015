"""Translation networks: parameter counts, shapes, the animegan2-pytorch state-dict layout, and
``load_generator`` on every kind of file users have (and on the files it must refuse)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toonlab.errors import UserInputError
from translation.animegan import (
    AnimeGANDiscriminator,
    AnimeGANv1Generator,
    AnimeGANv2Generator,
)
from translation.cartoongan import CartoonGANDiscriminator, CartoonGANGenerator
from translation.models import (
    MODELS,
    build_discriminator,
    build_generator,
    infer_model,
    load_generator,
)


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------- sizes


def test_parameter_counts():
    assert n_params(AnimeGANv2Generator()) == 2_143_552  # the port's / REFERENCE's exact count
    assert n_params(AnimeGANv1Generator()) == 3_956_096  # ≈ 3.96 M
    assert n_params(AnimeGANv2Generator(lite=True)) == 683_168  # ≈ 0.70 M
    assert n_params(AnimeGANDiscriminator()) == 1_128_800  # ≈ 1.13 M
    assert n_params(CartoonGANGenerator()) == 11_129_667  # ≈ 11.1 M
    assert n_params(CartoonGANGenerator(improved=True)) == 11_129_667  # only the activation changes
    assert 1.0e6 < n_params(CartoonGANDiscriminator()) < 1.2e6


@pytest.mark.parametrize("name", list(MODELS))
def test_generators_keep_size_and_range(name):
    torch.manual_seed(0)
    G = build_generator(name).eval()
    for h, w in ((32, 32), (40, 64)):  # multiples of 8, non-square too
        x = torch.rand(2, 3, h, w) * 2 - 1
        with torch.no_grad():
            y = G(x)
        assert y.shape == x.shape
        assert y.abs().max() <= 1.0 and torch.isfinite(y).all()


def test_discriminators_are_patch_level():
    x = torch.randn(2, 3, 32, 48)
    D = AnimeGANDiscriminator()
    assert D(x).shape == (2, 1, 8, 12)  # H/4 × W/4
    convs = [m for m in D.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7 and all(m.bias is None for m in convs)
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)  # spectral norm
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in AnimeGANDiscriminator(spectral=False).modules())
    assert build_discriminator("cartoongan")(x).shape == (2, 1, 8, 12)
    assert any(isinstance(m, torch.nn.InstanceNorm2d) for m in build_discriminator("cartoongan-improved").modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in build_discriminator("cartoongan").modules())
    with pytest.raises(ValueError, match="unknown norm"):
        AnimeGANDiscriminator(norm="group")


def test_cartoongan_improved_uses_leaky_relu():
    acts = lambda m: {type(a) for a in m.modules() if isinstance(a, (torch.nn.ReLU, torch.nn.LeakyReLU))}  # noqa: E731
    assert acts(CartoonGANGenerator()) == {torch.nn.ReLU}
    assert acts(CartoonGANGenerator(improved=True)) == {torch.nn.LeakyReLU}


# ----------------------------------------------------------------------------- the port's layout

# bryandlee/animegan2-pytorch `Generator` state dict, written out from its model definition:
# ConvNormLReLU = Sequential(pad, conv[1], GroupNorm(1,C)[2], lrelu); IRB = `layers` Sequential of
# expand ConvNormLReLU[0], depthwise ConvNormLReLU with bias[1], 1×1 conv[2], GroupNorm[3].
PORT_KEYS = """
block_a.0.1.weight 32,3,7,7
block_a.0.2.weight 32
block_a.0.2.bias 32
block_a.1.1.weight 64,32,3,3
block_a.1.2.weight 64
block_a.1.2.bias 64
block_a.2.1.weight 64,64,3,3
block_a.2.2.weight 64
block_a.2.2.bias 64
block_b.0.1.weight 128,64,3,3
block_b.0.2.weight 128
block_b.0.2.bias 128
block_b.1.1.weight 128,128,3,3
block_b.1.2.weight 128
block_b.1.2.bias 128
block_c.0.1.weight 128,128,3,3
block_c.0.2.weight 128
block_c.0.2.bias 128
block_c.1.layers.0.1.weight 256,128,1,1
block_c.1.layers.0.2.weight 256
block_c.1.layers.0.2.bias 256
block_c.1.layers.1.1.weight 256,1,3,3
block_c.1.layers.1.1.bias 256
block_c.1.layers.1.2.weight 256
block_c.1.layers.1.2.bias 256
block_c.1.layers.2.weight 256,256,1,1
block_c.1.layers.3.weight 256
block_c.1.layers.3.bias 256
block_c.2.layers.0.1.weight 512,256,1,1
block_c.2.layers.0.2.weight 512
block_c.2.layers.0.2.bias 512
block_c.2.layers.1.1.weight 512,1,3,3
block_c.2.layers.1.1.bias 512
block_c.2.layers.1.2.weight 512
block_c.2.layers.1.2.bias 512
block_c.2.layers.2.weight 256,512,1,1
block_c.2.layers.3.weight 256
block_c.2.layers.3.bias 256
block_c.3.layers.0.1.weight 512,256,1,1
block_c.3.layers.0.2.weight 512
block_c.3.layers.0.2.bias 512
block_c.3.layers.1.1.weight 512,1,3,3
block_c.3.layers.1.1.bias 512
block_c.3.layers.1.2.weight 512
block_c.3.layers.1.2.bias 512
block_c.3.layers.2.weight 256,512,1,1
block_c.3.layers.3.weight 256
block_c.3.layers.3.bias 256
block_c.4.layers.0.1.weight 512,256,1,1
block_c.4.layers.0.2.weight 512
block_c.4.layers.0.2.bias 512
block_c.4.layers.1.1.weight 512,1,3,3
block_c.4.layers.1.1.bias 512
block_c.4.layers.1.2.weight 512
block_c.4.layers.1.2.bias 512
block_c.4.layers.2.weight 256,512,1,1
block_c.4.layers.3.weight 256
block_c.4.layers.3.bias 256
block_c.5.1.weight 128,256,3,3
block_c.5.2.weight 128
block_c.5.2.bias 128
block_d.0.1.weight 128,128,3,3
block_d.0.2.weight 128
block_d.0.2.bias 128
block_d.1.1.weight 128,128,3,3
block_d.1.2.weight 128
block_d.1.2.bias 128
block_e.0.1.weight 64,128,3,3
block_e.0.2.weight 64
block_e.0.2.bias 64
block_e.1.1.weight 64,64,3,3
block_e.1.2.weight 64
block_e.1.2.bias 64
block_e.2.1.weight 32,64,7,7
block_e.2.2.weight 32
block_e.2.2.bias 32
out_layer.0.weight 3,32,1,1
"""
PORT_LAYOUT = [(k, tuple(int(d) for d in s.split(","))) for k, s in (line.split() for line in PORT_KEYS.split("\n") if line)]


def port_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors under the port's keys; norms near identity so activations stay sane."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in PORT_LAYOUT:
        if len(shape) == 1:
            base = 1.0 if k.endswith("weight") else 0.0
            sd[k] = base + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = shape[1] * shape[2] * shape[3]
            sd[k] = torch.randn(shape, generator=g) / fan_in**0.5
    return sd


def test_port_layout_is_complete_and_counts_match():
    assert len(PORT_LAYOUT) == 77
    assert sum(torch.Size(s).numel() for _, s in PORT_LAYOUT) == 2_143_552
    own = {k: tuple(v.shape) for k, v in AnimeGANv2Generator().state_dict().items()}
    assert list(own.items()) == PORT_LAYOUT  # same keys, same order, same shapes


def test_port_state_dict_loads_strictly_and_is_recognised(tmp_path):
    sd = port_state_dict()
    G = AnimeGANv2Generator()
    G.load_state_dict(sd, strict=True)
    f = tmp_path / "face_paint_512_v2.pt"
    torch.save(sd, f)
    G2, meta = load_generator(f)
    assert meta["model"] == "animegan2" and meta["source"] == "port"
    assert not G2.training and not any(p.requires_grad for p in G2.parameters())
    for k, v in G2.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert infer_model(AnimeGANv2Generator(lite=True).state_dict()) == "animegan2-lite"


def _port_reference(sd: dict[str, torch.Tensor], x: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
    """The port's forward written with functional ops straight from its definition (independent of our modules)."""
    def cnl(h, p, pad, stride=1, groups=1):
        h = F.pad(h, pad, mode="reflect")
        h = F.conv2d(h, sd[f"{p}.1.weight"], sd.get(f"{p}.1.bias"), stride=stride, groups=groups)
        return F.leaky_relu(F.group_norm(h, 1, sd[f"{p}.2.weight"], sd[f"{p}.2.bias"]), 0.2)

    def irb(h, p):
        mid = sd[f"{p}.layers.0.1.weight"].shape[0]
        out = cnl(h, f"{p}.layers.0", (0, 0, 0, 0))
        out = cnl(out, f"{p}.layers.1", (1, 1, 1, 1), groups=mid)
        out = F.conv2d(out, sd[f"{p}.layers.2.weight"])
        out = F.group_norm(out, 1, sd[f"{p}.layers.3.weight"], sd[f"{p}.layers.3.bias"])
        return h + out if h.shape == out.shape else out

    def up(h, size):
        if align_corners:
            return F.interpolate(h, size=size, mode="bilinear", align_corners=True)
        return F.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)

    p1, s2 = (1, 1, 1, 1), (0, 1, 0, 1)
    h = cnl(x, "block_a.0", (3, 3, 3, 3))
    h = cnl(h, "block_a.1", s2, stride=2)
    h = cnl(h, "block_a.2", p1)
    half = h.shape[-2:]
    h = cnl(h, "block_b.0", s2, stride=2)
    h = cnl(h, "block_b.1", p1)
    h = cnl(h, "block_c.0", p1)
    for i in (1, 2, 3, 4):
        h = irb(h, f"block_c.{i}")
    h = cnl(h, "block_c.5", p1)
    h = up(h, half)
    h = cnl(cnl(h, "block_d.0", p1), "block_d.1", p1)
    h = up(h, x.shape[-2:])
    h = cnl(cnl(h, "block_e.0", p1), "block_e.1", p1)
    h = cnl(h, "block_e.2", (3, 3, 3, 3))
    return torch.tanh(F.conv2d(h, sd["out_layer.0.weight"]))


@pytest.mark.parametrize("align_corners", [True, False])
def test_v2_forward_matches_the_port_semantics(align_corners):
    sd = port_state_dict(1)
    G = AnimeGANv2Generator().eval()
    G.load_state_dict(sd, strict=True)
    x = torch.rand(1, 3, 32, 48) * 2 - 1  # the port's input convention: RGB in [-1, 1]
    with torch.no_grad():
        ours = G(x, align_corners=align_corners)
        ref = _port_reference(sd, x, align_corners)
    assert ours.std() > 1e-3  # not a degenerate constant image
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)
    if align_corners:  # the port's default forward (torch.hub's face2paint path)
        with torch.no_grad():
            torch.testing.assert_close(G(x), ref, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- load_generator


def test_load_our_checkpoint_picks_g_ema_then_g(tmp_path):
    torch.manual_seed(0)
    g, g_ema = build_generator("animegan2-lite"), build_generator("animegan2-lite")
    f = tmp_path / "000010.pt"
    torch.save({"g": g.state_dict(), "g_ema": g_ema.state_dict(), "step": 10,
                "toonlab": {"model": "animegan2-lite", "preset": "paprika", "step": 10}}, f)
    G, meta = load_generator(f)
    assert meta == {"model": "animegan2-lite", "source": "toonlab", "path": str(f), "which": "g_ema",
                    "step": 10, "preset": "paprika"}
    assert torch.equal(G.block_a[0][1].weight, g_ema.block_a[0][1].weight)
    G, meta = load_generator(f, which="g")
    assert meta["which"] == "g" and torch.equal(G.block_a[0][1].weight, g.block_a[0][1].weight)
    # A bare state dict of one of our other generators is recognised by its keys and shapes.
    torch.save(build_generator("cartoongan-improved").state_dict(), tmp_path / "cg.pt")
    assert load_generator(tmp_path / "cg.pt")[1]["model"] in ("cartoongan", "cartoongan-improved")


def test_load_generator_builds_the_recorded_cyclegan_size_and_export_keeps_it(tmp_path):
    """A CycleGAN trained at other sizes (compare.py --translator-arch) loads through the one loader
    that translate/infer and the app use, and its slim export rebuilds the same sizes."""
    from translation.models import export_generator

    torch.manual_seed(0)
    g = build_generator("cyclegan", {"ngf": 8, "n_blocks": 2, "ndf": 8})  # ndf is D's: ignored here
    assert (g.ngf, g.n_blocks) == (8, 2)
    f = tmp_path / "000004.pt"
    torch.save({"g": g.state_dict(), "toonlab": {"model": "cyclegan", "step": 4,
                                                 "arch": {"ngf": 8, "ndf": 8, "n_blocks": 2}}}, f)
    G, meta = load_generator(f)
    assert (G.ngf, G.n_blocks) == (8, 2) and meta["arch"] == {"ngf": 8, "ndf": 8, "n_blocks": 2}
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(G(x), g.eval()(x))
    slim, info = export_generator(f, tmp_path / "slim.pt", half=False)
    G2, meta2 = load_generator(slim)
    assert info["arch"] == meta["arch"] and (G2.ngf, G2.n_blocks) == (8, 2) and torch.equal(G2(x), G(x))
    # A size record that does not match the weights is still a one-line shape error.
    torch.save({"g": g.state_dict(), "toonlab": {"model": "cyclegan", "arch": {"ngf": 16, "n_blocks": 2}}},
               tmp_path / "lies.pt")
    assert "shape mismatch" in _error(tmp_path / "lies.pt")


def _error(path, **kw) -> str:
    with pytest.raises(UserInputError) as e:
        load_generator(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_load_generator_refuses_bad_files(tmp_path):
    assert "not found" in _error(tmp_path / "missing.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    assert "empty" in _error(tmp_path / "empty.pt") and "empty.pt" in _error(tmp_path / "empty.pt")
    (tmp_path / "junk.pt").write_bytes(b"<html>404 not found</html>")
    assert "junk.pt" in _error(tmp_path / "junk.pt") and "not a loadable torch file" in _error(tmp_path / "junk.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    assert "expected a dict" in _error(tmp_path / "tensor.pt")
    torch.save({"conv1.weight": torch.zeros(2, 3, 3, 3)}, tmp_path / "other.pt")
    assert "unknown layout" in _error(tmp_path / "other.pt")
    sd = port_state_dict()
    sd["block_c.5.1.weight"] = torch.zeros(128, 256, 1, 1)
    torch.save(sd, tmp_path / "bad_shape.pt")
    msg = _error(tmp_path / "bad_shape.pt")
    assert "block_c.5.1.weight" in msg and "[128, 256, 3, 3]" in msg and "[128, 256, 1, 1]" in msg
    sd = port_state_dict()
    del sd["out_layer.0.weight"]
    torch.save(sd, tmp_path / "missing_key.pt")
    assert "out_layer.0.weight" in _error(tmp_path / "missing_key.pt")
    torch.save({"g": port_state_dict(), "toonlab": {"model": "animegan2"}}, tmp_path / "ours.pt")
    assert "g_ema" in _error(tmp_path / "ours.pt", which="g_ema")
    torch.save({"g": port_state_dict(), "toonlab": {"model": "cartoongan"}}, tmp_path / "wrong_model.pt")
    assert "cartoongan" in _error(tmp_path / "wrong_model.pt")


def test_layer_norm_is_group_norm_with_one_group():
    from translation.animegan import LayerNorm2d

    torch.manual_seed(0)
    m = LayerNorm2d(6)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    assert isinstance(m, torch.nn.GroupNorm) and set(m.state_dict()) == {"weight", "bias"}
    x = (torch.randn(2, 6, 5, 7) * 3 + 2).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    ours, ref = m(x), F.group_norm(x2, 1, m.weight, m.bias)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    ours.sin().sum().backward()
    g_ours = x.grad.clone()
    m.zero_grad()
    ref.sin().sum().backward()
    torch.testing.assert_close(g_ours, x2.grad, rtol=1e-4, atol=1e-5)
