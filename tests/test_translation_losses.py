"""Translation losses against their formulas, the feature networks (offline) and edge smoothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losses.features import (
    FeatureNetwork,
    _vgg19_layer_index,
    resnet_features,
    vgg19_features,
)
from losses.translation import (
    color_loss,
    content_loss,
    edge_smoothed_fake_loss,
    gram,
    grayscale,
    lsgan_d_loss,
    lsgan_g_loss,
    style_loss,
    tv_loss,
)
from toonlab.errors import UserInputError
from toonlab.images import rgb_to_yuv
from toonlab.weights import WeightsNotFound
from translation.data import edge_smooth


def solid(rgb01: tuple[float, float, float], h: int = 2, w: int = 3) -> torch.Tensor:
    """A one-colour image given in [0, 1], returned in the networks' [-1, 1]."""
    return (torch.tensor(rgb01).view(1, 3, 1, 1) * 2 - 1).expand(1, 3, h, w).clone()


# ----------------------------------------------------------------------------- colour


@pytest.mark.parametrize("rgb,yuv", [
    ((1.0, 1.0, 1.0), (1.0, 0.0, 0.0)),  # white: full luma, no chroma (each chroma row sums to 0)
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (0.299, -0.14714119, 0.61497538)),  # pure primaries pick one column of the matrix
    ((0.0, 1.0, 0.0), (0.587, -0.28886916, -0.51496512)),
    ((0.0, 0.0, 1.0), (0.114, 0.43601035, -0.10001026)),
    ((0.5, 0.25, 1.0), (0.299 * 0.5 + 0.587 * 0.25 + 0.114,
                        -0.14714119 * 0.5 - 0.28886916 * 0.25 + 0.43601035,
                        0.61497538 * 0.5 - 0.51496512 * 0.25 - 0.10001026)),
])
def test_rgb_to_yuv_known_colours(rgb, yuv):
    out = rgb_to_yuv(solid(rgb))
    assert out.shape == (1, 3, 2, 3)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor(yuv), rtol=0, atol=1e-6)
    assert torch.equal(out, out[..., :1, :1].expand_as(out))  # per pixel


def test_grayscale_is_luma_in_three_channels():
    x = torch.rand(2, 3, 4, 5) * 2 - 1
    g = grayscale(x)
    assert g.shape == x.shape and torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert g.min() >= -1 and g.max() <= 1
    torch.testing.assert_close(grayscale(solid((1.0, 1.0, 1.0))), solid((1.0, 1.0, 1.0)))
    # In [0, 1] terms it is exactly the Y of rgb_to_yuv.
    torch.testing.assert_close((g[:, 0] + 1) / 2, rgb_to_yuv(x)[:, 0])


def test_color_loss_is_l1_on_y_plus_huber_on_uv():
    gray_mid, white = solid((0.5, 0.5, 0.5)), solid((1.0, 1.0, 1.0))
    assert color_loss(gray_mid, gray_mid) == 0
    # Neutral colours differ only in Y: the loss is the L1 of the luma difference.
    torch.testing.assert_close(color_loss(white, gray_mid), torch.tensor(0.5))
    # Red vs black: |ΔY| = 0.299, Huber(ΔU) = ½ΔU², Huber(ΔV) = ½ΔV² (both below δ = 1).
    red, black = solid((1.0, 0.0, 0.0)), solid((0.0, 0.0, 0.0))
    want = 0.299 + 0.5 * 0.14714119**2 + 0.5 * 0.61497538**2
    torch.testing.assert_close(color_loss(red, black), torch.tensor(want), rtol=1e-6, atol=1e-7)
    assert color_loss(black, red) == color_loss(red, black)


# ----------------------------------------------------------------------------- Gram / content / style / TV


def test_gram_is_per_image_and_normalised_by_hwc():
    f = torch.ones(2, 4, 3, 5)
    torch.testing.assert_close(gram(f), torch.full((2, 4, 4), 1 / 4))  # H·W·1·1 / (H·W·C)
    x = torch.randn(2, 6, 5, 7)
    manual = torch.stack([xi.reshape(6, -1) @ xi.reshape(6, -1).T for xi in x]) / (6 * 5 * 7)
    torch.testing.assert_close(gram(x), manual)
    # The normalisation makes it resolution independent: nearest ×2 upsampling keeps the Gram.
    torch.testing.assert_close(gram(F.interpolate(x, scale_factor=2, mode="nearest")), gram(x))
    # Per image: changing image 1 leaves image 0's Gram alone.
    y = x.clone()
    y[1] += 1
    torch.testing.assert_close(gram(y)[0], gram(x)[0])


def test_content_and_style_losses():
    f = torch.randn(2, 8, 6, 6)
    assert content_loss(f, f) == 0 and style_loss(f, f) == 0
    torch.testing.assert_close(content_loss(f + 0.5, f), torch.tensor(0.5))
    # A mirrored feature map has the same Gram (style is position-free) but different content.
    mirrored = f.flip(-1)
    assert style_loss(mirrored, f) < 1e-6 and content_loss(mirrored, f) > 0.1
    assert style_loss(2 * f, f) > 0
    assert content_loss(f.bfloat16(), f.bfloat16()).dtype == torch.float32


def test_tv_loss():
    assert tv_loss(torch.full((1, 3, 5, 5), 0.3)) == 0
    ramp = torch.arange(6.0).view(1, 1, 1, 6).expand(2, 3, 4, 6) * 0.1  # horizontal steps of 0.1
    torch.testing.assert_close(tv_loss(ramp), torch.tensor(0.01 / 2))
    checker = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2 * 2.0 - 1  # ±1 alternating
    torch.testing.assert_close(tv_loss(checker.view(1, 1, 4, 4)), torch.tensor(4.0))


# ----------------------------------------------------------------------------- adversarial


def test_lsgan_d_loss_terms_and_weights():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert lsgan_d_loss(ones, zeros, zeros, zeros) == 0  # a perfect D
    assert lsgan_d_loss(ones, zeros) == 0  # gray / smooth terms are optional
    torch.testing.assert_close(lsgan_d_loss(zeros, zeros), torch.tensor(1.0))  # (0 - 1)² on real
    torch.testing.assert_close(lsgan_d_loss(ones, ones, ones, ones), torch.tensor(1 + 1 + 0.1))  # v1 weights 1/1/1/0.1
    torch.testing.assert_close(lsgan_d_loss(ones, zeros, zeros, ones, weights=(1.2, 1.2, 1.2, 0.8)), torch.tensor(0.8))
    torch.testing.assert_close(lsgan_d_loss(ones, zeros, ones * 2, zeros, weights=(1, 1, 1.7, 1)), torch.tensor(6.8))
    with pytest.raises(ValueError):
        lsgan_d_loss(ones, zeros, weights=(1, 1))


def test_generator_and_edge_losses():
    assert lsgan_g_loss(torch.ones(3, 1, 2, 2)) == 0
    torch.testing.assert_close(lsgan_g_loss(torch.zeros(3, 1, 2, 2)), torch.tensor(1.0))
    z = torch.zeros(2, 1, 3, 3)
    torch.testing.assert_close(edge_smoothed_fake_loss(z, "bce"), torch.tensor(math.log(2)))  # D unsure
    assert edge_smoothed_fake_loss(torch.full_like(z, -30.0), "bce") < 1e-10  # confidently fake
    assert edge_smoothed_fake_loss(z, "lsgan") == 0
    torch.testing.assert_close(edge_smoothed_fake_loss(z + 1, "lsgan"), torch.tensor(1.0))
    with pytest.raises(ValueError):
        edge_smoothed_fake_loss(z, "hinge")


# ----------------------------------------------------------------------------- feature networks


def test_vgg19_cut_is_conv4_4_before_relu():
    assert _vgg19_layer_index("conv4_4") == 26  # torchvision features[25] is conv4_4, [26] its ReLU
    assert _vgg19_layer_index("conv1_1") == 1
    with pytest.raises(UserInputError):
        _vgg19_layer_index("fc7")
    f = vgg19_features(random=True)
    assert isinstance(f.trunk[-1], torch.nn.Conv2d) and f.trunk[-1].out_channels == 512
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = f(x)
    assert y.shape == (2, 512, 4, 4) and (y < 0).any()  # pre-ReLU: negative values survive
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the image ...
    assert not any(p.requires_grad for p in f.parameters())  # ... but the network is frozen
    f.train()
    assert not f.training  # stays in eval under a parent's .train()
    # Random features are seeded: the same network on every build (resumed runs rely on it).
    torch.testing.assert_close(vgg19_features(random=True)(x.detach()), y.detach())


def test_feature_weights_from_disk_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFound) as e:
        vgg19_features()
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "--features-weights" in msg and "--features random" in msg and "\n" not in msg
    with pytest.raises(WeightsNotFound, match="resnet50-0676ba61.pth"):
        resnet_features()
    # A file in torchvision's layout (features.N.* plus a classifier we ignore) loads into the trunk.
    donor = vgg19_features(random=True)
    sd = {f"features.{k}": v + 1 for k, v in donor.trunk.state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(4, 4)
    (tmp_path / "hub/checkpoints").mkdir(parents=True)
    torch.save(sd, tmp_path / "hub/checkpoints/vgg19-dcbb9e9d.pth")
    f = vgg19_features()
    assert f.source.endswith("vgg19-dcbb9e9d.pth")
    torch.testing.assert_close(f.trunk[25].weight, donor.trunk[25].weight + 1)
    del sd["features.25.weight"]
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(UserInputError, match="features.25.weight"):
        vgg19_features(tmp_path / "partial.pth")


def test_resnet_features_shape():
    f = resnet_features(random=True)
    assert isinstance(f, FeatureNetwork)
    y = f(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert y.shape == (1, 512, 8, 8)  # layer2: stride 8, 512 channels like VGG19 conv4_4
    with pytest.raises(UserInputError):
        resnet_features(layer="avgpool", random=True)


# ----------------------------------------------------------------------------- edge smoothing


def test_edge_smooth_blurs_only_near_edges():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, 20:] = (255, 128, 0)  # one vertical edge between columns 19 and 20
    out = edge_smooth(img)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert np.array_equal(out[:, :14], img[:, :14]) and np.array_equal(out[:, 26:], img[:, 26:])  # far: untouched
    assert (out[:, 19] != img[:, 19]).any() and (out[:, 20] != img[:, 20]).any()  # at the edge: blurred
    assert 0 < out[5, 19, 0] < 255  # a mix of both sides
    flat = np.full((16, 16, 3), 77, np.uint8)
    assert np.array_equal(edge_smooth(flat), flat)
    assert edge_smooth(img[..., 0]).shape == (40, 40)
    with pytest.raises(ValueError):
        edge_smooth(img.astype(np.float32))
