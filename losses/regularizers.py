"""Gradient regularizers for GAN training (R1, path length) and the lazy-regularisation Adam fix.

All penalties return *unweighted* values; the caller applies the weight (and, for lazy
regularisation, the ``reg_every`` factor) explicitly. Gradients are taken with
``create_graph=True`` so that ``penalty.backward()`` reaches the network's parameters.

bf16 autocast: the autograd backward runs in whatever dtype the forward used, so the raw
gradient may be bf16. We cast it to (at least) float32 and reduce it with autocast disabled so the
squared norms (which span many orders of magnitude) are accumulated in float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["r1_penalty", "path_length_penalty", "lazy_reg_adam_params"]


def _upcast(t: Tensor) -> Tensor:
    """At least float32: half/bf16 -> float32; float32/float64 unchanged (keeps float64 exact)."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _no_autocast(device: torch.device) -> torch.autocast:
    # Reductions of squared gradients must not be re-cast to bf16 by an enclosing autocast.
    return torch.autocast(device_type=device.type, enabled=False)


def r1_penalty(real_logits: Tensor, real_images: Tensor) -> Tensor:
    """R1 gradient penalty: ``E_x[ ||grad_x D(x)||^2 ]`` on real data.

    Mescheder et al. 2018, "Which Training Methods for GANs do actually Converge?", eq. 9:
    ``R1 = gamma/2 * E[||grad D(x)||^2]``. This function returns only the expectation: the
    per-sample squared gradient norm summed over C, H, W and averaged over the batch.

    The caller multiplies by ``gamma / 2`` and, with lazy regularisation (StyleGAN2,
    Karras et al. 2020 Sec. 3.1: R1 evaluated every ``d_reg_every`` minibatches), also by
    ``d_reg_every``, i.e. ``loss = r1_penalty(...) * (gamma / 2) * d_reg_every``.

    Args:
        real_logits: ``D(real_images)`` (any shape with leading batch dim); may be bf16.
        real_images: the D input, with ``requires_grad=True``, shape ``[N, C, H, W]``.
            With ADA, pass the *un-augmented* images that the augmentation was applied to,
            so the penalty acts on the gradient through the augmentation as well.

    Returns:
        Scalar float32 tensor (float64 for float64 inputs), differentiable w.r.t. D's
        parameters (create_graph=True).
    """
    if not real_images.requires_grad:
        raise ValueError("r1_penalty: real_images must require grad (call .requires_grad_() before D)")
    # Summing the logits gives per-sample gradients in one pass because sample i's logit
    # depends only on image i (true for any D without batch-coupling layers; minibatch-std
    # couples samples weakly, which StyleGAN2 also ignores).
    (grad,) = torch.autograd.grad(
        outputs=_upcast(real_logits).sum(),
        inputs=real_images,
        create_graph=True,
    )
    with _no_autocast(grad.device):
        sq = _upcast(grad).square()
        return sq.reshape(sq.shape[0], -1).sum(dim=1).mean()


def path_length_penalty(
    fake_images: Tensor,
    latents: Tensor,
    mean_path_length: Tensor | float,
    decay: float = 0.01,
    *,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """StyleGAN2 path length regularisation.

    Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", eq. 4:
    ``E_{w,y}( ||J_w^T y||_2 - a )^2`` with ``y ~ N(0, I) / sqrt(H*W)`` (scaled so the
    penalty does not depend on resolution) and ``a`` an exponential moving average of the
    lengths. ``J_w^T y`` is one vector-Jacobian product: ``grad_w sum(img * y)``.

    Latent shapes:
        * ``[N, D]`` (single w): ``length = sqrt(sum_D grad^2)``.
        * ``[N, L, D]`` (W+, one w per layer): ``length = sqrt(mean_L sum_D grad^2)``
          (StyleGAN2's convention: average over the broadcast copies, so the value matches
          the ``[N, D]`` case when all copies receive equal gradient).

    The caller weights it: ``loss = penalty * pl_weight * g_reg_every`` (lazy regularisation).

    Args:
        fake_images: ``G(latents)``, shape ``[N, C, H, W]``; may be bf16.
        latents: the w (or W+) tensor the images were synthesised from; must be part of the
            graph (e.g. mapping output, or a leaf with ``requires_grad=True``).
        mean_path_length: running mean ``a`` (tensor or float). A tensor so that under DDP
            the caller can all-reduce / broadcast it; it is not modified in place.
        decay: EMA rate: ``a_new = a + decay * (mean(lengths) - a)``.
        noise: optional fixed ``y`` before the ``1/sqrt(H*W)`` scaling (same shape as the
            images); ``None`` draws ``randn_like``. Useful for tests and exact replays.

    Returns:
        ``(penalty, new_mean_path_length, path_lengths)``: ``penalty`` is a differentiable
        scalar ``mean((lengths - a_new)^2)`` (StyleGAN2 compares to the *updated* mean and
        differentiates through that update, as both reference implementations do); the
        other two are detached tensors (scalar and ``[N]``). All float32 (float64 if the
        images are float64).
    """
    if fake_images.ndim != 4:
        raise ValueError(f"path_length_penalty: fake_images must be [N, C, H, W], got {tuple(fake_images.shape)}")
    if latents.ndim not in (2, 3):
        raise ValueError(f"path_length_penalty: latents must be [N, D] or [N, L, D], got {tuple(latents.shape)}")
    h, w = fake_images.shape[2], fake_images.shape[3]
    images = _upcast(fake_images)
    if noise is None:
        noise = torch.randn(fake_images.shape, device=fake_images.device, dtype=torch.float32)
    noise = noise.to(device=images.device, dtype=images.dtype) / math.sqrt(h * w)
    with _no_autocast(fake_images.device):
        (grad,) = torch.autograd.grad(
            outputs=(images * noise).sum(),
            inputs=latents,
            create_graph=True,
        )
        sq = _upcast(grad).square().sum(dim=-1)
        if latents.ndim == 3:
            sq = sq.mean(dim=1)
        # No epsilon: matches eq. 4 exactly; a zero-length path only occurs if G ignores w.
        lengths = sq.sqrt()  # [N]
        mean = torch.as_tensor(mean_path_length, device=lengths.device).to(lengths.dtype).detach()
        # The penalty is measured against the *updated* mean, and the gradient flows through that
        # update too (decay · mean(lengths) depends on G), as in rosinality's train.py:96-98 and
        # NVIDIA's training/loss.py:85-87; only the stored running value is detached.
        new_mean = mean + decay * (lengths.mean() - mean)
        penalty = (lengths - new_mean).square().mean()
    return penalty, new_mean.detach(), lengths.detach()


def lazy_reg_adam_params(
    lr: float, betas: tuple[float, float], reg_every: int
) -> tuple[float, tuple[float, float]]:
    """Adam hyper-parameters corrected for lazy regularisation.

    StyleGAN2 (Karras et al. 2020, Sec. 3.1, "lazy regularization"): when a regulariser is evaluated
    only every ``k = reg_every`` minibatches (in its own optimiser step), the optimiser runs
    ``k + 1`` steps per ``k`` minibatches. To keep the effective learning rate and momentum
    time constants unchanged, scale with ``c = k / (k + 1)``:
    ``lr' = lr * c`` and ``beta_i' = beta_i ** c``.

    Returns:
        ``(lr', (beta1', beta2'))``.
    """
    if reg_every < 1:
        raise ValueError(f"lazy_reg_adam_params: reg_every must be >= 1, got {reg_every}")
    c = reg_every / (reg_every + 1)
    return lr * c, (betas[0] ** c, betas[1] ** c)


def noise_regularizer(noises: Sequence[Tensor]) -> Tensor:
    """The projector's noise regulariser (Karras et al. 2020, §C / rosinality's ``projector.py``):
    per-sample sum of squared shift-1 autocorrelations (x and y) at every 2×-pooled scale ≥ 8 px.

    Keeps the optimised noise maps noise-like, so the image is not painted into them. Returns [N]:
    one value per image (rosinality's ``noise_regularize`` averages over the batch first).
    """
    total = 0.0
    for noise in noises:
        n = noise.float()
        while True:
            total = total + (n * n.roll(1, dims=3)).mean(dim=(1, 2, 3)).square()
            total = total + (n * n.roll(1, dims=2)).mean(dim=(1, 2, 3)).square()
            if n.shape[-1] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return total
