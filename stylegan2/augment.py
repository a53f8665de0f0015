"""Adaptive discriminator augmentation (ADA).

Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data" (NeurIPS),
Sec. 2-3 and Appendix B. Written from the paper's description only.

The discriminator sees *every* image -- real and generated -- through the same stochastic
augmentation ``T``. Because each augmentation is applied with probability ``p < 1`` (and the
augmentations are invertible as distributions), the generator cannot win by producing
augmented-looking images: the augmentations do not "leak" (paper Sec. 2.2).

Implemented groups (the paper's default "bgc" pipeline), each augmentation applied to each
sample independently with probability ``p``:

* pixel blitting: x-flip, 90-degree rotations, integer translation (up to 1/8 of the size);
  done by exact index gathering, so pixel values are copied, not interpolated.
* general geometric: isotropic scale, pre-rotation, anisotropic scale, post-rotation,
  fractional translation, composed into ONE affine matrix per sample and resampled once with
  bilinear resampling with mirror padding, written as gathers (see ``_affine_resample``).
* colour: brightness, contrast, luma flip, hue rotation, saturation, composed into ONE
  ``(C+1) x (C+1)`` homogeneous colour matrix per sample.

Everything on the image path is differentiable to second order (R1 is computed through the
augmented reals): gathers (blit and bilinear resampling; sampling positions carry no grad), einsum and
where. No in-place op touches a tensor that may require grad.

Images are expected in StyleGAN's ``[-1, 1]`` range, so 0 is mid-grey: brightness shifts,
contrast scales and the luma flip mirror around it.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["AdaptiveAugment", "AdaController", "P_MAX"]

_LN2 = math.log(2.0)

# Largest float32 below 1.0; used as the p ceiling so that p < 1 holds in float32 and float64.
P_MAX = 1.0 - 2.0**-24


# --------------------------------------------------------------------------------------------
# Per-sample random parameters
# --------------------------------------------------------------------------------------------


def _apply_mask(n: int, p: float, device: torch.device) -> Tensor:
    """Bool [n]: which samples get this augmentation (independently, probability p)."""
    return torch.rand(n, device=device) < p


def _gated(mask: Tensor, value: Tensor, identity: float) -> Tensor:
    """``value`` where the augmentation applies, the parameter's identity value elsewhere."""
    return torch.where(mask, value, torch.full_like(value, identity))


def _rot2(theta: Tensor) -> Tensor:
    """[n] angles -> [n, 3, 3] homogeneous 2-D rotation matrices."""
    c, s = torch.cos(theta), torch.sin(theta)
    m = torch.eye(3, device=theta.device, dtype=theta.dtype).repeat(theta.shape[0], 1, 1)
    m[:, 0, 0], m[:, 0, 1] = c, -s
    m[:, 1, 0], m[:, 1, 1] = s, c
    return m


def _scale2(sx: Tensor, sy: Tensor) -> Tensor:
    m = torch.eye(3, device=sx.device, dtype=sx.dtype).repeat(sx.shape[0], 1, 1)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate2(tx: Tensor, ty: Tensor) -> Tensor:
    m = torch.eye(3, device=tx.device, dtype=tx.dtype).repeat(tx.shape[0], 1, 1)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _mirror_index(idx: Tensor, size: int) -> Tensor:
    """Map integer indices onto [0, size) by mirroring about the pixel edges (... 1 0 | 0 1 ...).

    This is the same convention as ``grid_sample(padding_mode="reflection",
    align_corners=False)``, so blitting and geometric transforms pad identically.
    """
    r = torch.remainder(idx, 2 * size)
    return torch.where(r >= size, 2 * size - 1 - r, r)


# --------------------------------------------------------------------------------------------
# Augmentation module
# --------------------------------------------------------------------------------------------


class AdaptiveAugment(nn.Module):
    """ADA augmentation pipeline ("bgc": blitting, geometric, colour), applied before D.

    Apply it to BOTH real and generated images, every time they are shown to D (including the
    R1 pass: run D on ``augment(reals)`` with ``reals.requires_grad_()``; the penalty is taken
    w.r.t. the un-augmented reals, through the augmentation).

    ``p`` is a plain Python float attribute (no device sync to read it). Set it from
    :class:`AdaController` (``augment.p = controller.p``) or fix it for constant augmentation.
    With ``p == 0`` the input tensor itself is returned (exact identity, no work).

    Per-augmentation probabilities (paper Appendix B): each augmentation is applied with
    probability ``p``, except the two arbitrary rotations, which use
    ``p_rot = 1 - sqrt(1 - p)`` each so that *some* rotation happens with probability ``p``.

    Args:
        p: initial augmentation probability in [0, 1].
        blit: enable the pixel-blitting group.
        geom: enable the general-geometric group.
        color: enable the colour group.

    Input: ``[N, C, H, W]`` float tensor (fp32/fp16/bf16, CPU or CUDA). Output: same shape and
    dtype. Internally computation is float32 (float64 for float64 input) with autocast
    disabled, because grid coordinates in bf16 would be off by up to a pixel at 256 px.
    Random parameters are always drawn in float32, so a seed gives the same transform
    for every input dtype.
    90-degree rotations need square images; for ``H != W`` only 0/180 degrees are used.
    Hue rotation needs ``C == 3``; for other channel counts it is skipped (the other colour
    ops generalise: the luma axis is ``(1, ..., 1) / sqrt(C)``).
    """

    # Distribution parameters from the paper (Appendix B), named for readability.
    INT_TRANSLATE_MAX = 0.125  # integer translation: U(-0.125, 0.125) * size, rounded
    SCALE_STD = 0.2 * _LN2  # isotropic / anisotropic scale: lognormal(0, (0.2 ln 2)^2)
    FRAC_TRANSLATE_STD = 0.125  # fractional translation: N(0, 0.125^2) * size
    BRIGHTNESS_STD = 0.2  # brightness: N(0, 0.2^2) added
    CONTRAST_STD = 0.5 * _LN2  # contrast: lognormal(0, (0.5 ln 2)^2)
    SATURATION_STD = _LN2  # saturation: lognormal(0, (ln 2)^2)

    def __init__(self, p: float = 0.0, *, blit: bool = True, geom: bool = True, color: bool = True) -> None:
        super().__init__()
        self.p = p
        self.blit = blit
        self.geom = geom
        self.color = color

    @property
    def p(self) -> float:
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"AdaptiveAugment: p must be in [0, 1], got {value}")
        self._p = value

    def extra_repr(self) -> str:
        return f"p={self.p:.4f}, blit={self.blit}, geom={self.geom}, color={self.color}"

    def forward(self, images: Tensor) -> Tensor:
        if self._p <= 0.0:
            return images  # fast path: exact identity, same tensor
        if images.ndim != 4:
            raise ValueError(f"AdaptiveAugment: expected [N, C, H, W], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"AdaptiveAugment: expected a floating-point image tensor, got {images.dtype}")
        p = self._p
        # float32 for fp32/fp16/bf16 (geometry must not be done in 8-bit mantissas); float64
        # is kept as is so that gradcheck-style tests are meaningful.
        compute_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        with torch.autocast(device_type=images.device.type, enabled=False):
            x = images.to(compute_dtype)
            if self.blit:
                x = self._pixel_blit(x, p)
            if self.geom:
                x = self._geometric(x, p)
            if self.color:
                x = self._colour(x, p)
        return x.to(images.dtype)

    # ---- pixel blitting -------------------------------------------------------------------

    def _pixel_blit(self, x: Tensor, p: float) -> Tensor:
        """x-flip, k*90 deg rotation, integer translation: one exact gather per sample."""
        n, c, h, w = x.shape
        dev = x.device
        flip = _apply_mask(n, p, dev) & (torch.randint(0, 2, (n,), device=dev) == 1)
        if h == w:
            quarter = torch.randint(0, 4, (n,), device=dev)
        else:
            quarter = 2 * torch.randint(0, 2, (n,), device=dev)  # only 0/180 keep the shape
        quarter = torch.where(_apply_mask(n, p, dev), quarter, torch.zeros_like(quarter))
        t = (torch.rand(n, 2, device=dev) * 2.0 - 1.0) * self.INT_TRANSLATE_MAX
        t = torch.round(t * torch.tensor([w, h], device=dev, dtype=t.dtype)).long()
        t = torch.where(_apply_mask(n, p, dev)[:, None], t, torch.zeros_like(t))
        return _blit(x, flip, quarter, t)

    # ---- general geometric ----------------------------------------------------------------

    def _geometric(self, x: Tensor, p: float) -> Tensor:
        """Scale, rotate, anisotropic scale, rotate, fractional translate: one resample."""
        n, c, h, w = x.shape
        dev = x.device
        p_rot = 1.0 - math.sqrt(max(0.0, 1.0 - p))

        m_iso = _apply_mask(n, p, dev)
        s_iso = _gated(m_iso, torch.exp(torch.randn(n, device=dev) * self.SCALE_STD), 1.0)
        m_rot1 = _apply_mask(n, p_rot, dev)
        rot1 = _gated(m_rot1, (torch.rand(n, device=dev) * 2.0 - 1.0) * math.pi, 0.0)
        m_aniso = _apply_mask(n, p, dev)
        s_aniso = _gated(m_aniso, torch.exp(torch.randn(n, device=dev) * self.SCALE_STD), 1.0)
        m_rot2 = _apply_mask(n, p_rot, dev)
        rot2 = _gated(m_rot2, (torch.rand(n, device=dev) * 2.0 - 1.0) * math.pi, 0.0)
        m_frac = _apply_mask(n, p, dev)
        t_frac = torch.randn(n, 2, device=dev) * self.FRAC_TRANSLATE_STD
        t_frac = torch.where(m_frac[:, None], t_frac, torch.zeros_like(t_frac))
        t_frac = t_frac * torch.tensor([w, h], device=dev, dtype=t_frac.dtype)  # -> pixels
        active = m_iso | m_rot1 | m_aniso | m_rot2 | m_frac

        inv = _geometric_inverse_matrix(s_iso, rot1, s_aniso, rot2, t_frac)
        out = _affine_resample(x, inv)
        # Untouched samples stay bit-exact (identity resampling would differ by rounding).
        return torch.where(active[:, None, None, None], out, x)

    # ---- colour ---------------------------------------------------------------------------

    def _colour(self, x: Tensor, p: float) -> Tensor:
        """Brightness, contrast, luma flip, hue rotation, saturation as one colour matrix."""
        n, c, h, w = x.shape
        dev = x.device
        m_bri = _apply_mask(n, p, dev)
        b = _gated(m_bri, torch.randn(n, device=dev) * self.BRIGHTNESS_STD, 0.0)
        m_con = _apply_mask(n, p, dev)
        k = _gated(m_con, torch.exp(torch.randn(n, device=dev) * self.CONTRAST_STD), 1.0)
        m_luma = _apply_mask(n, p, dev)
        flip = _gated(m_luma, torch.randint(0, 2, (n,), device=dev).float(), 0.0)
        m_hue = _apply_mask(n, p, dev) if c == 3 else torch.zeros(n, dtype=torch.bool, device=dev)
        hue = _gated(m_hue, (torch.rand(n, device=dev) * 2.0 - 1.0) * math.pi, 0.0)
        m_sat = _apply_mask(n, p, dev)
        s = _gated(m_sat, torch.exp(torch.randn(n, device=dev) * self.SATURATION_STD), 1.0)
        active = m_bri | m_con | m_luma | m_hue | m_sat

        out = _apply_colour_matrix(x, _colour_matrix(c, b, k, flip, hue, s))
        return torch.where(active[:, None, None, None], out, x)


# --------------------------------------------------------------------------------------------
# Deterministic transforms (explicit per-sample parameters; used by the module, and testable)
# --------------------------------------------------------------------------------------------


def _blit(x: Tensor, flip: Tensor, quarter: Tensor, shift: Tensor) -> Tensor:
    """Exact pixel blitting: x-flip, then ``quarter`` * 90 deg rotation, then integer shift.

    Args:
        x: ``[N, C, H, W]``.
        flip: bool ``[N]``, mirror left-right.
        quarter: int ``[N]`` in 0..3, quarter turns (clockwise on screen, y pointing down);
            odd values require ``H == W``.
        shift: int ``[N, 2]``, ``(dx, dy)`` in pixels; content moves right/down for positive.

    Works in "doubled centred" integer coordinates ``X = 2j - (W - 1)`` so that the image
    centre is 0 and flips/quarter turns stay integer for even and odd sizes alike. For each
    output pixel the source is found by undoing the steps in reverse order; out-of-range
    sources are mirrored (:func:`_mirror_index`). One gather: values are copied exactly.
    """
    n, c, h, w = x.shape
    dev = x.device
    if h != w and bool((quarter % 2 == 1).any()):
        raise ValueError("AdaptiveAugment: 90/270 degree rotations need square images")
    X = (2 * torch.arange(w, device=dev) - (w - 1)).view(1, 1, w).expand(n, h, w)
    Y = (2 * torch.arange(h, device=dev) - (h - 1)).view(1, h, 1).expand(n, h, w)
    # Undo the shift (doubled units).
    X = X - 2 * shift[:, 0, None, None]
    Y = Y - 2 * shift[:, 1, None, None]
    # Undo the rotation; forward quarter turn k is (X, Y) -> (cX - sY, sX + cY).
    cos_tab = torch.tensor([1, 0, -1, 0], device=dev)
    sin_tab = torch.tensor([0, 1, 0, -1], device=dev)
    cq = cos_tab[quarter.long()][:, None, None]
    sq = sin_tab[quarter.long()][:, None, None]
    X, Y = cq * X + sq * Y, -sq * X + cq * Y
    # Undo the flip (self-inverse).
    X = torch.where(flip[:, None, None], -X, X)

    j = _mirror_index(torch.div(X + (w - 1), 2, rounding_mode="floor"), w)
    i = _mirror_index(torch.div(Y + (h - 1), 2, rounding_mode="floor"), h)
    idx = (i * w + j).reshape(n, 1, h * w).expand(n, c, h * w)
    # gather's backward is scatter_add (linear in the incoming grad): second order flows.
    return x.reshape(n, c, h * w).gather(2, idx).reshape(n, c, h, w)


def _geometric_inverse_matrix(
    s_iso: Tensor, rot_pre: Tensor, s_aniso: Tensor, rot_post: Tensor, shift: Tensor
) -> Tensor:
    """Inverse of ``M = T(shift) @ R(rot_post) @ diag(s_aniso, 1/s_aniso) @ R(rot_pre) @ diag(s_iso, s_iso)``.

    All arguments ``[N]`` float32 except ``shift`` ``[N, 2]`` (pixels, ``(dx, dy)``). Pixel
    coordinates with the origin at the image centre, x right, y down. Returns ``[N, 3, 3]``
    mapping an OUTPUT pixel to its SOURCE pixel (what the resampler wants). Built exactly by
    right-multiplying the inverse steps in forward order -- no numerical 3x3 inversion:
    ``M^-1 = S_iso^-1 @ R_pre^-1 @ S_aniso^-1 @ R_post^-1 @ T^-1``.
    """
    inv = _scale2(1.0 / s_iso, 1.0 / s_iso)
    inv = inv @ _rot2(-rot_pre)
    inv = inv @ _scale2(1.0 / s_aniso, s_aniso)
    inv = inv @ _rot2(-rot_post)
    inv = inv @ _translate2(-shift[:, 0], -shift[:, 1])
    return inv


def _reflect_coord(v: Tensor, size: int) -> Tensor:
    """Mirror continuous pixel-centre coordinates about the image edges (-0.5 and size - 0.5)."""
    m = torch.remainder(v + 0.5, 2 * size)
    return (torch.where(m >= size, 2 * size - m, m) - 0.5).clamp(0, size - 1)


def _affine_resample(x: Tensor, inv: Tensor) -> Tensor:
    """Resample ``x`` with per-sample inverse pixel-space matrices ``inv`` ``[N, 3, 3]``.

    Bilinear with mirror padding, the same result as ``grid_sample(padding_mode="reflection",
    align_corners=False)``, but written as four gathers: R1 is computed through the augmented
    reals and needs the second derivative w.r.t. the image, which gather has (its backward is
    scatter-add) and CUDA ``grid_sampler_2d_backward`` does not (torch 2.11: "derivative ... not
    implemented").  Pixel coordinates are centred on the image (edges at +-W/2).
    """
    n, c, h, w = x.shape
    dev = x.device
    ys = torch.arange(h, device=dev, dtype=inv.dtype) + (0.5 - h / 2)
    xs = torch.arange(w, device=dev, dtype=inv.dtype) + (0.5 - w / 2)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1), torch.ones(h * w, device=dev, dtype=inv.dtype)])
    src = inv[:, :2, :] @ pts  # [N, 2, H*W] source positions, centred pixel units
    ix = _reflect_coord(src[:, 0] + (w / 2 - 0.5), w)
    iy = _reflect_coord(src[:, 1] + (h / 2 - 0.5), h)
    x0f, y0f = ix.floor(), iy.floor()
    fx = (ix - x0f).to(x.dtype).unsqueeze(1)
    fy = (iy - y0f).to(x.dtype).unsqueeze(1)
    x0, y0 = x0f.long(), y0f.long()
    x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
    flat = x.reshape(n, c, h * w)

    def tap(yi: Tensor, xi: Tensor) -> Tensor:
        return flat.gather(2, (yi * w + xi).unsqueeze(1).expand(n, c, h * w))

    top = tap(y0, x0) * (1 - fx) + tap(y0, x1) * fx
    bottom = tap(y1, x0) * (1 - fx) + tap(y1, x1) * fx
    return (top * (1 - fy) + bottom * fy).reshape(n, c, h, w)


def _colour_matrix(c: int, brightness: Tensor, contrast: Tensor, luma_flip: Tensor, hue: Tensor, saturation: Tensor) -> Tensor:
    """Compose the colour transforms into one homogeneous ``[N, C+1, C+1]`` matrix.

    Acting on ``[rgb, 1]``, composed by left-multiplication in the paper's order, with ``v``
    the unit luma (grey) axis ``(1, ..., 1) / sqrt(C)``:

    * brightness ``b``: ``rgb + b``
    * contrast ``k``: ``rgb * k`` (around mid-grey 0 of the [-1, 1] range)
    * luma flip ``i`` in {0, 1}: ``(I - 2 v v^T i)`` -- mirror across the plane normal to v
    * hue ``theta``: rotation about v (Rodrigues), only for ``C == 3``
    * saturation ``s``: ``v v^T + (I - v v^T) s`` -- scale the part off the grey axis

    All parameters are float ``[N]`` (``luma_flip`` 0.0 / 1.0); ``hue`` is ignored for C != 3.
    """
    n = brightness.shape[0]
    dev, f32 = brightness.device, torch.float32
    eye_c = torch.eye(c, device=dev, dtype=f32)
    v = torch.full((c,), 1.0 / math.sqrt(c), device=dev, dtype=f32)
    vv = torch.outer(v, v)  # projector onto the luma axis

    def embed(block: Tensor, offset: Tensor | None = None) -> Tensor:
        # Fresh tensors built from parameters that never require grad: in-place is safe here.
        m = torch.eye(c + 1, device=dev, dtype=f32).repeat(n, 1, 1)
        m[:, :c, :c] = block
        if offset is not None:
            m[:, :c, c] = offset
        return m

    col = lambda t: t.to(f32)[:, None, None]  # noqa: E731  [N] -> [N, 1, 1]
    mat = embed(eye_c.expand(n, c, c), brightness.to(f32)[:, None].expand(n, c))
    mat = embed(eye_c * col(contrast)) @ mat
    mat = embed(eye_c - 2.0 * vv * col(luma_flip)) @ mat
    if c == 3:
        a = 1.0 / math.sqrt(3.0)
        cross = torch.tensor([[0.0, -a, a], [a, 0.0, -a], [-a, a, 0.0]], device=dev, dtype=f32)  # [v]x
        cos_h, sin_h = col(torch.cos(hue)), col(torch.sin(hue))
        mat = embed(cos_h * eye_c + sin_h * cross + (1.0 - cos_h) * vv) @ mat
    mat = embed(vv + (eye_c - vv) * col(saturation)) @ mat
    return mat


def _apply_colour_matrix(x: Tensor, mat: Tensor) -> Tensor:
    """``out[n] = mat[n, :C, :C] @ x[n] + mat[n, :C, C]`` per pixel (einsum; differentiable)."""
    c = x.shape[1]
    mat = mat.to(x.dtype)
    return torch.einsum("nij,njhw->nihw", mat[:, :c, :c], x) + mat[:, :c, c, None, None]


# --------------------------------------------------------------------------------------------
# Adaptive p controller
# --------------------------------------------------------------------------------------------


ReduceFn = Callable[[Tensor], "Tensor | None"]


class AdaController:
    """The ADA heuristic that tunes ``p`` (Karras et al. 2020, Sec. 3, overfitting heuristic r_t).

    ``r_t = E[sign(D_train)]`` over the real images D saw since the last adjustment. Every
    ``interval`` training steps, ``p += sign(r_t - target) * (batch * interval) / (ada_kimg * 1000)``
    so ``p`` can go from 0 to 1 in ``ada_kimg`` thousand images; ``p`` is clamped to
    ``[0, 1)`` (we use ``P_MAX``, the largest float32 below 1).

    Usage, every training step (all DDP ranks in lockstep)::

        controller.observe(real_logits)          # D's logits on (augmented) reals, any number of calls
        augment.p = controller.update(global_batch, reduce_fn=all_reduce_sum)

    ``update`` counts its own calls and only adjusts on every ``interval``-th one, so call it
    exactly once per training step. The accumulators (sum of signs, count) live on the logits'
    device as one float32 tensor ``[2]``; ``reduce_fn`` is given that tensor on adjustment
    steps to SUM it across ranks -- it may work in place and return ``None`` (e.g.
    ``torch.distributed.all_reduce``) or return the reduced tensor. One host sync per
    adjustment (reading ``r_t``).
    """

    def __init__(
        self,
        target: float = 0.6,
        interval: int = 4,
        ada_kimg: float = 500.0,
        p: float = 0.0,
    ) -> None:
        if interval < 1:
            raise ValueError(f"AdaController: interval must be >= 1, got {interval}")
        if ada_kimg <= 0:
            raise ValueError(f"AdaController: ada_kimg must be > 0, got {ada_kimg}")
        self.target = float(target)
        self.interval = int(interval)
        self.ada_kimg = float(ada_kimg)
        self.p = min(max(float(p), 0.0), P_MAX)
        self.rt: float | None = None  # last r_t used for an adjustment (for logging)
        self._stats = torch.zeros(2, dtype=torch.float32)  # [sum of sign(D(real)), count]
        self._steps = 0  # update() calls since the last adjustment

    def observe(self, real_logits: Tensor) -> None:
        """Accumulate ``sign(D(real))``; no host sync (the accumulator follows the logits' device)."""
        logits = real_logits.detach()
        if self._stats.device != logits.device:
            self._stats = self._stats.to(logits.device)
        self._stats[0] += logits.float().sign().sum()
        self._stats[1] += logits.numel()

    def update(self, batch_size_total: int, reduce_fn: ReduceFn | None = None) -> float:
        """Call once per training step; every ``interval`` calls, adjust and return ``p``.

        Args:
            batch_size_total: images per training step summed over all ranks.
            reduce_fn: optional cross-rank SUM of the ``[2]`` stats tensor (see class doc).

        Returns:
            The current ``p`` (changed only on adjustment steps, and only if something was
            observed; a tie ``r_t == target`` leaves it unchanged).
        """
        self._steps += 1
        if self._steps < self.interval:
            return self.p
        stats = self._stats.clone()
        if reduce_fn is not None:
            reduced = reduce_fn(stats)
            if isinstance(reduced, Tensor):
                stats = reduced
        sign_sum, count = stats.tolist()
        if count > 0:
            self.rt = sign_sum / count
            direction = (self.rt > self.target) - (self.rt < self.target)
            adjust = direction * batch_size_total * self._steps / (self.ada_kimg * 1000.0)
            self.p = min(max(self.p + adjust, 0.0), P_MAX)
        self._stats = torch.zeros_like(self._stats)
        self._steps = 0
        return self.p

    def state_dict(self) -> dict:
        """Everything needed for an exact resume: ``p``, the accumulators, the step phase."""
        return {
            "p": self.p,
            "rt": self.rt,
            "stats": self._stats.detach().cpu().clone(),
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict) -> None:
        self.p = min(max(float(state["p"]), 0.0), P_MAX)
        self.rt = state.get("rt")
        stats = torch.as_tensor(state["stats"], dtype=torch.float32).reshape(2)
        self._stats = stats.to(self._stats.device).clone()
        self._steps = int(state["steps"])
