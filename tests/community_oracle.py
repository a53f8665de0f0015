"""An independent, deliberately naive re-statement of the community StyleGAN2 forward pass.

Written from the published semantics (per-sample *grouped* convolutions with modulated weights,
transposed conv + blur for upsampling, FIR filters via explicit zero insertion), reading a plain
state dict. Our networks compute the same maths differently (shared-weight convs, the ops
package), so agreement between the two is evidence that a community checkpoint renders the
same image in toonlab as in the code it came from.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def naive_upfirdn(x: Tensor, k: Tensor, up: int, pad0: int, pad1: int) -> Tensor:
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, (pad0, pad1, pad0, pad1))
    kk = torch.flip(k, [0, 1])[None, None].repeat(c, 1, 1, 1).to(x)
    return F.conv2d(x, kk, groups=c)


def lrelu(x: Tensor, b: Tensor) -> Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + b.view(shape), 0.2) * math.sqrt(2)


def eq_linear(sd, prefix, x, lr_mul=1.0, act=False):
    w = sd[prefix + ".weight"]
    b = sd[prefix + ".bias"]
    out = F.linear(x, w * (lr_mul / math.sqrt(w.shape[1])))
    return lrelu(out, b * lr_mul) if act else out + b * lr_mul


def modconv(sd, prefix, x, style, demod=True, up=False):
    w = sd[prefix + ".weight"]  # [1, O, I, k, k]
    _, O, I, k, _ = w.shape
    n = x.shape[0]
    s = eq_linear(sd, prefix + ".modulation", style)  # bias_init=1 already in the stored bias
    weight = w / math.sqrt(I * k * k) * s.view(n, 1, I, 1, 1)
    if demod:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, O, 1, 1, 1)
    if up:
        wt = weight.transpose(1, 2).reshape(n * I, O, k, k)
        out = F.conv_transpose2d(x.reshape(1, n * I, *x.shape[2:]), wt, stride=2, groups=n)
        out = out.view(n, O, *out.shape[2:])
        return naive_upfirdn(out, sd[prefix + ".blur.kernel"], 1, 1, 1)
    out = F.conv2d(x.reshape(1, n * I, *x.shape[2:]), weight.reshape(n * O, I, k, k), padding=k // 2, groups=n)
    return out.view(n, O, *out.shape[2:])


def styled(sd, prefix, x, style, noise, up=False):
    out = modconv(sd, prefix + ".conv", x, style, up=up)
    out = out + sd[prefix + ".noise.weight"] * noise
    return lrelu(out, sd[prefix + ".activate.bias"])


def to_rgb(sd, prefix, x, style, skip):
    out = modconv(sd, prefix + ".conv", x, style, demod=False) + sd[prefix + ".bias"]
    if skip is not None:
        out = out + naive_upfirdn(skip, sd[prefix + ".upsample.kernel"], 2, 2, 1)
    return out


def mapping(sd, z: Tensor, lr_mlp: float = 0.01) -> Tensor:
    x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        x = eq_linear(sd, f"style.{i}", x, lr_mul=lr_mlp, act=True)
        i += 1
    return x


def synthesis(sd, latent: Tensor, noises: list[Tensor]) -> Tensor:
    n = latent.shape[0]
    x = sd["input.input"].repeat(n, 1, 1, 1)
    x = styled(sd, "conv1", x, latent[:, 0], noises[0])
    skip = to_rgb(sd, "to_rgb1", x, latent[:, 1], None)
    j = 0
    while f"to_rgbs.{j}.bias" in sd:
        i = 2 * j + 1
        x = styled(sd, f"convs.{2 * j}", x, latent[:, i], noises[i], up=True)
        x = styled(sd, f"convs.{2 * j + 1}", x, latent[:, i + 1], noises[i + 1])
        skip = to_rgb(sd, f"to_rgbs.{j}", x, latent[:, i + 2], skip)
        j += 1
    return skip


def discriminator(sd, img: Tensor) -> Tensor:
    def conv(prefix, x, down=False, act=True, k=3):
        if down:
            x = naive_upfirdn(x, sd[prefix + ".0.kernel"], 1, (len_k(prefix) + 1) // 2, len_k(prefix) // 2)
            w = sd[prefix + ".1.weight"]
            x = F.conv2d(x, w / math.sqrt(w[0].numel()), stride=2)
            return lrelu(x, sd[prefix + ".2.bias"]) if act else x
        w = sd[prefix + ".0.weight"]
        x = F.conv2d(x, w / math.sqrt(w[0].numel()), padding=w.shape[-1] // 2)
        return lrelu(x, sd[prefix + ".1.bias"]) if act else x

    def len_k(prefix):  # blur pad p = taps − 2 + (ksize − 1)
        w = sd[prefix + ".1.weight"]
        return 4 - 2 + (w.shape[-1] - 1)

    x = conv("convs.0", img)
    i = 1
    while f"convs.{i}.conv1.0.weight" in sd:
        out = conv(f"convs.{i}.conv1", x)
        out = conv(f"convs.{i}.conv2", out, down=True)
        skip = conv(f"convs.{i}.skip", x, down=True, act=False)
        x = (out + skip) / math.sqrt(2)
        i += 1
    n, c, h, w = x.shape
    g = min(n, 4)
    s = x.view(g, -1, 1, c, h, w)
    s = torch.sqrt(s.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
    x = torch.cat([x, s.repeat(g, 1, h, w)], 1)
    x = conv("final_conv", x)
    x = eq_linear(sd, "final_linear.0", x.view(n, -1), act=True)
    return eq_linear(sd, "final_linear.1", x)
