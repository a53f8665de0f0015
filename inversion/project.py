"""Project face photos into a StyleGAN2 generator, then render them as cartoons.

    python inversion/project.py face.jpg                      # bundled generator, W+, 1000 steps
    python inversion/project.py a.jpg b.jpg --cartoon webtoon.pt --swap 2,3 --video
    toonlab project face.jpg --ckpt ffhq256.pt --cartoon toon.pt

Optimisation projector with rosinality's schedule and weights (``projector.py``; REFERENCE.md §5):
start at the mean of 10,000 mapped W, optimise the latent and every noise map with Adam; learning
rate 0.1 ramping up over the first 5 % and down (cosine) over the last 25 %; Gaussian noise on the
latent that fades out by 75 % of the run; loss = LPIPS-VGG at <= 256 px + 1e5 x noise regulariser
(``losses/regularizers.py``; + optional MSE); noise maps renormalised after every step.  The
optimised noise is kept and used for every rendering (NVIDIA's projector drops it, which users
report as a bug).

Offline (``--perceptual auto``, the default): when torchvision's VGG16 weights are not on disk the
perceptual term falls back to pixel MSE + (1 - MS-SSIM) (``losses/ssim.py``) with one warning
line; the loss used is printed and stored in each photo's ``projection.json`` and ``latent.pt``.
Bad photos in a batch are skipped and listed; only a batch with no usable photo is an error.

Deliberate differences from rosinality's projector:
- the default space is **W+** (one w per layer; ``--space w`` for a single w): rosinality's
  default is W (W+ only with ``--w_plus``). W+ reconstructs photos far better and cartoon
  fine-tunes render it unchanged; W keeps the latent closer to the generator's distribution.
- several photos are optimised as one batch, but every image is its own problem: the noise
  regulariser, the noise re-normalisation (mean and std) and the MSE are computed per image and
  the per-image losses summed, so a photo's result does not depend on what it is batched with.
  rosinality's ``noise_regularize``/``noise_normalize_`` (``projector.py:16-44``) and its MSE take
  means over the whole batch. With one photo the two are the same.

Starting from an encoder (``--encoder PATH|bundled``, ``inversion/encoder.py``): the encoder's W+
replaces the mean w as the starting latent, and the noise maps start at the generator's stored
(const) maps, so step 0 renders exactly the encoder's reconstruction. ``--iters 0`` returns that
W+ as it is (its latent.pt has no noise maps: renderers use the const maps). The Gaussian latent
noise of the schedule is off from an encoder start: it exists to explore away from the mean, and
here it would only throw away the encoder's answer during the first 75 % of a short refinement.

Speed: the target's LPIPS features are computed once, not every step; the generator's weights
carry no gradient; bf16 autocast on CUDA; several photos are optimised as one batch.
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toonlab.images import tensor_to_uint8, to_tensor

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from losses.perceptual import TargetLPIPS, build_lpips
from losses.regularizers import noise_regularizer
from losses.ssim import MSSSIMLoss
from stylegan2.blend import blend_generators
from stylegan2.checkpoint import load_generator
from stylegan2.latents import save_latent
from stylegan2.networks import NOISE_MODES, Generator
from stylegan2.sampling import render
from toonlab.atomic import save_image_atomic, write_json_atomic
from toonlab.errors import ToonlabError, UserInputError, one_line_warnings, user_errors
from toonlab.images import make_grid, non_finite_error, to_pil
from toonlab.options import ToonCommand
from toonlab.runtime import (
    autocast,
    bundled_generator,
    enable_tf32,
    pick_device,
    progress,
    resolve_precision,
)
from toonlab.video import write_video

#: The projector's perceptual terms: ``auto`` = LPIPS-VGG when its ImageNet trunk is on disk, else
#: pixel + MS-SSIM (with one warning line); ``lpips`` is the old name of ``lpips-vgg``.
PERCEPTUAL = ("auto", "lpips-vgg", "lpips", "random", "msssim", "none")

#: What each resolved choice is called on the result (latent.pt settings, projection.json, the log).
LOSS_NAMES = {"lpips-vgg": "LPIPS-VGG + noise regulariser", "random": "LPIPS on a random VGG trunk + noise regulariser",
              "msssim": "pixel MSE + MS-SSIM + noise regulariser", "none": "pixel MSE + noise regulariser"}


# ---- configuration and results -----------------------------------------------------------------


@dataclass
class ProjectConfig:
    """Settings of one projection run: rosinality's schedule and loss weights, but W+ by default
    and per-image regularisation (see the module docstring)."""

    steps: int = 1000
    space: str = "w+"  # "w+" (one w per layer) or "w" (one w broadcast to all layers)
    lr: float = 0.1
    lr_rampup: float = 0.05
    lr_rampdown: float = 0.25
    latent_noise: float = 0.05  # x std of W
    latent_noise_ramp: float = 0.75
    noise_regularize: float = 1e5
    mse: float = 0.0
    optimize_noise: bool = True
    n_mean_latent: int = 10000
    perceptual_res: int = 256  # LPIPS sees images average-pooled to at most this size
    precision: str = "fp32"
    seed: int = 0
    video_every: int = 0  # keep a frame every k steps (0: none)

    def __post_init__(self) -> None:
        if self.space not in ("w", "w+"):
            raise UserInputError(f"--space must be w or w+, got {self.space!r}")
        if self.steps < 0:  # 0: the encoder's W+ as it is (checked where the encoder is known)
            raise UserInputError("--iters must be >= 0")


@dataclass
class Projection:
    """What a projection produced, for a batch of N targets."""

    latent: Tensor  # [N, n_latent, D] W+ (W is stored broadcast)
    noise: list[Tensor]  # per layer [N, 1, r, r]
    image: Tensor  # [N, 3, H, W] in [-1, 1]
    history: list[dict] = field(default_factory=list)
    frames: list[Tensor] = field(default_factory=list)  # [N, 3, H, W] uint8 snapshots
    seconds: float = 0.0


# ---- schedule and regulariser ------------------------------------------------------------------


def learning_rate(t: float, base: float, rampup: float = 0.05, rampdown: float = 0.25) -> float:
    """Linear ramp-up over the first ``rampup`` of the run, cosine ramp-down over the last ``rampdown``."""
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return base * ramp


@torch.no_grad()
def normalize_noise_(noises: Sequence[Tensor]) -> None:
    """Zero mean, unit std per sample, in place (after every optimiser step); rosinality's
    normalises over the whole batch at once."""
    for n in noises:
        mean = n.mean(dim=(1, 2, 3), keepdim=True)
        std = n.std(dim=(1, 2, 3), keepdim=True)
        n.sub_(mean).div_(std)


@torch.no_grad()
def w_statistics(G: Generator, n: int = 10000, seed: int = 0, chunk: int = 4096) -> tuple[Tensor, float]:
    """Mean w [D] of ``n`` mapped latents and the scalar spread sqrt(E||w - mean||^2)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    dev = G.w_avg.device
    ws = [G.style(torch.randn(min(chunk, n - i), G.style_dim, generator=g).to(dev)) for i in range(0, n, chunk)]
    w = torch.cat(ws).float()
    mean = w.mean(0)
    std = float(((w - mean).square().sum() / n).sqrt())
    return mean, std


# ---- perceptual loss -----------------------------------------------------------------------------


def pool_to(x: Tensor, res: int) -> Tensor:
    """Average-pool square images down to at most ``res`` px (LPIPS was trained at <= 256 px)."""
    if x.shape[-1] > res:
        x = F.avg_pool2d(x, x.shape[-1] // res)
    return x


def resolve_perceptual(kind: str, weights: str | os.PathLike | None = None) -> tuple[str, str | None]:
    """``(choice, warning)``: ``auto`` becomes ``lpips-vgg`` when the VGG16 trunk is on disk (the
    torch hub cache or ``weights``), else ``msssim`` with one warning line saying what is missing,
    where to put it and what it changes. Other choices are returned as they are (``lpips`` →
    ``lpips-vgg``)."""
    if kind not in PERCEPTUAL:
        raise UserInputError(f"--perceptual must be one of {', '.join(PERCEPTUAL)}, got {kind!r}")
    if kind == "lpips":
        return "lpips-vgg", None
    if kind != "auto":
        return kind, None
    from losses.perceptual import LPIPS_TRUNK_FILES
    from toonlab.weights import WeightsNotFound, hub_checkpoint_dir, locate_weights

    try:
        locate_weights(LPIPS_TRUNK_FILES["vgg"], weights)
        return "lpips-vgg", None
    except WeightsNotFound:
        if weights is not None:
            raise
    where = hub_checkpoint_dir()
    return "msssim", (f"LPIPS-VGG weights {LPIPS_TRUNK_FILES['vgg']} not found in {where} (put torchvision's "
                      f"VGG16 ImageNet file there or pass --lpips-weights); projecting with pixel MSE + MS-SSIM "
                      "instead: it needs no weights, but the likeness is looser (softer eyes and hair)")


def build_perceptual(kind: str, weights: str | os.PathLike | None, device: torch.device) -> nn.Module | None:
    """LPIPS-VGG (``lpips-vgg``/``lpips``), a random-trunk LPIPS (``random``, offline, lower quality),
    pixel + MS-SSIM (``msssim``, offline, no weights) or ``none``; ``auto`` is resolved first
    (:func:`resolve_perceptual`)."""
    kind = resolve_perceptual(kind, weights)[0]
    if kind == "none":
        return None
    if kind == "msssim":
        return MSSSIMLoss()
    if kind == "lpips-vgg":
        dist = build_lpips("vgg", weights=weights, device=device)
    else:
        dist = build_lpips("vgg", random=True, device=device)
    return dist.model  # the lpips.LPIPS module (frozen, eval)


# ---- the projector -------------------------------------------------------------------------------


def project(
    G: Generator,
    targets: Tensor,
    perceptual: nn.Module | None,
    cfg: ProjectConfig,
    show_progress: bool = True,
    on_step: Callable[[int, dict], None] | None = None,
    init: Tensor | None = None,
) -> Projection:
    """Optimise latents (and noise) so that ``G`` reproduces ``targets`` [N, 3, H, W] in [-1, 1].

    ``perceptual`` is an ``lpips.LPIPS`` module, an :class:`MSSSIMLoss` (then the pixel MSE weight is
    at least 1 too: pixel + MS-SSIM) or None (then the loss is MSE, weight >= 1).
    ``init``: starting W+ [N, n_latent, D] (an encoder's; the noise then starts at G's const maps and
    the latent noise is off); with ``cfg.steps == 0`` it is returned as it is.
    """
    dev = G.w_avg.device
    n = targets.shape[0]
    if targets.shape[-1] != G.size or targets.shape[-2] != G.size:
        targets = F.interpolate(targets, size=(G.size, G.size), mode="area")
    targets = targets.to(dev, torch.float32)
    G.eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)

    if init is not None:
        init = init.to(dev, torch.float32)
        if init.shape != (n, G.n_latent, G.style_dim):
            raise UserInputError(f"the starting W+ is {tuple(init.shape)}; this generator needs "
                                 f"{(n, G.n_latent, G.style_dim)}")
        if cfg.steps == 0:
            start = time.perf_counter()
            return Projection(latent=init.clone(), noise=[], image=render(G, init), seconds=time.perf_counter() - start)
    elif cfg.steps == 0:
        raise UserInputError("--iters 0 needs --encoder (there is nothing to return without one)")
    shape = (n, G.n_latent, G.style_dim) if cfg.space == "w+" else (n, G.style_dim)
    w_std = 0.0  # an encoder start needs neither the mean w nor the latent noise's scale
    if init is None:
        w_mean, w_std = w_statistics(G, cfg.n_mean_latent, cfg.seed)
        latent = w_mean.expand(shape).clone().requires_grad_(True)
        g = torch.Generator(device="cpu").manual_seed(cfg.seed)
        noises = [torch.randn(n, 1, r, r, generator=g).to(dev) for r in G.noise_shapes()]
    else:
        start_w = init if cfg.space == "w+" else init.mean(1)  # W: the layers' mean
        latent = start_w.clone().requires_grad_(True)
        noises = [t.to(dev).expand(n, -1, -1, -1).clone() for t in G.const_noise()]
    noise_scale = cfg.latent_noise if init is None else 0.0
    params = [latent]
    if cfg.optimize_noise:
        for t in noises:
            t.requires_grad_(True)
        params += noises
    opt = torch.optim.Adam(params, lr=cfg.lr)

    p_target = pool_to(targets, cfg.perceptual_res)
    structural = isinstance(perceptual, MSSSIMLoss)
    with autocast(dev, cfg.precision):
        if perceptual is None:
            lpips_fn = None
        elif structural:
            lpips_fn = perceptual.for_target(p_target)
        else:
            lpips_fn = TargetLPIPS(perceptual, p_target)
    mse_w = cfg.mse if lpips_fn is not None and not structural else max(cfg.mse, 1.0)

    result = Projection(latent=latent, noise=noises, image=targets)
    bar = progress(total=cfg.steps, desc="project", unit="step", disable=not show_progress)
    start = time.perf_counter()
    for step in range(cfg.steps):
        t = step / cfg.steps
        lr = learning_rate(t, cfg.lr, cfg.lr_rampup, cfg.lr_rampdown)
        for group in opt.param_groups:
            group["lr"] = lr
        strength = w_std * noise_scale * max(0.0, 1.0 - t / cfg.latent_noise_ramp) ** 2
        lat = latent + torch.randn_like(latent) * strength
        if cfg.space == "w":
            lat = lat.unsqueeze(1).expand(n, G.n_latent, G.style_dim)
        with autocast(dev, cfg.precision):
            img = G.synthesis(lat, noise=noises).image
            p_loss = lpips_fn(pool_to(img, cfg.perceptual_res)).float() if lpips_fn is not None else None
        img = img.float()
        mse = (img - targets).square().mean(dim=(1, 2, 3))
        n_loss = noise_regularizer(noises) if cfg.optimize_noise else torch.zeros(n, device=dev)
        per_image = cfg.noise_regularize * n_loss + mse_w * mse
        if p_loss is not None:
            per_image = per_image + p_loss
        # Sum over the batch: each image's gradient is independent of how many share the batch.
        opt.zero_grad(set_to_none=True)
        per_image.sum().backward()
        opt.step()
        if cfg.optimize_noise:
            normalize_noise_(noises)

        # Reading losses back syncs the GPU, so only every 10th step (and the last).
        if step % 10 == 0 or step == cfg.steps - 1:
            rec = dict(step=step + 1, lr=lr, mse=mse.mean().item(), noise_reg=n_loss.mean().item(),
                       perceptual=p_loss.mean().item() if p_loss is not None else None)
            if not math.isfinite(rec["mse"]):  # NaN weights or an overflow: stop now, not after every step
                raise non_finite_error(img.detach(), "the generator")
            result.history.append(rec)
            if on_step is not None:
                on_step(step, rec)
            if show_progress:
                bar.set_postfix({"1-msssim" if structural else "lpips":
                                 f"{rec['perceptual']:.3f}" if p_loss is not None else "-", "mse": f"{rec['mse']:.4f}"})
        if cfg.video_every and (step % cfg.video_every == 0 or step == cfg.steps - 1):
            result.frames.append(tensor_to_uint8(img).cpu())
        bar.update(1)
    bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    result.seconds = time.perf_counter() - start

    with torch.no_grad():
        final = latent.detach()
        if cfg.space == "w":
            final = final.unsqueeze(1).expand(n, G.n_latent, G.style_dim)
        result.latent = final.clone()
        result.noise = [t.detach().clone() for t in noises]
        result.image = render(G, result.latent, result.noise)
    return result


# ---- end-to-end: photos in, pictures out -------------------------------------------------------------


def _load_target(path: str, size: int, align: bool, landmarks: str | None) -> Image.Image:
    from inversion.align import align_photo, load_photo

    if align:
        return align_photo(path, size=size, landmarks=landmarks)[0][0]
    img = load_photo(path)
    if img.width != img.height:
        s = min(img.size)  # pre-aligned crops should be square; centre-crop the rest
        img = img.crop(((img.width - s) // 2, (img.height - s) // 2, (img.width + s) // 2, (img.height + s) // 2))
    return img.resize((size, size), Image.Resampling.LANCZOS)


def parse_swaps(spec: str | None) -> list[int]:
    if not spec:
        return []
    try:
        return sorted({int(s) for s in spec.split(",") if s.strip()})
    except ValueError:
        raise UserInputError(f"--swap takes block numbers like 2,3; got {spec!r}") from None


def run_project(
    photos: Sequence[str],
    out: str | os.PathLike = "projections",
    ckpt: str | os.PathLike | None = None,
    cartoons: Sequence[str] = (),
    swaps: Sequence[int] = (),
    cfg: ProjectConfig | None = None,
    align: bool = True,
    perceptual: str = "auto",
    perceptual_weights: str | None = None,
    landmarks: str | None = None,
    noise_mode: str = "projected",
    video: bool = False,
    device: str = "auto",
    show_progress: bool = True,
    encoder: str | os.PathLike | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[Path]:
    """Align, project (one batch), render through each cartoon generator and blend; write files.

    Returns each usable photo's output folder: ``aligned.png``, ``projected.png``,
    ``cartoon_<name>.png``, ``swap<k>_<name>.png``, ``grid.png``, ``latent.pt`` (that photo's
    latent only), ``projection.json`` and ``projection.mp4`` with ``video``. ``encoder`` (a file or
    ``"bundled"``): its W+ is the result (``cfg.steps == 0``) or the start. A photo that cannot be
    read or aligned is skipped and reported through ``on_skip(photo, reason)``; ``UserInputError``
    only when none is usable.
    """
    cfg = cfg or ProjectConfig()
    dev = pick_device(device)
    if dev.type == "cuda":
        enable_tf32()
    ckpt = Path(ckpt) if ckpt is not None else bundled_generator()
    G = load_generator(ckpt, device=dev)
    enc = None
    if encoder is not None:
        from inversion.encoder import load_encoder

        enc = load_encoder(encoder, device=dev, generator=ckpt)  # warns once when trained for another G
    elif cfg.steps == 0:
        raise UserInputError("--iters 0 needs --encoder (there is nothing to return without one)")
    if cfg.steps == 0:
        perceptual = "none"  # the encoder's W+ as it is: no loss is optimised, none needs weights
    perceptual, fallback = resolve_perceptual(perceptual, perceptual_weights)
    if fallback is not None:
        warnings.warn(fallback, stacklevel=2)
    percept = build_perceptual(perceptual, perceptual_weights, dev)
    toons = [(Path(c).stem, load_generator(c, device=dev)) for c in cartoons]
    for name, T in toons:
        if T.size != G.size or T.n_latent != G.n_latent:
            raise UserInputError(f"cartoon generator {name} is {T.size} px; the source is {G.size} px")
    if noise_mode not in ("projected", *NOISE_MODES):
        raise UserInputError(f"--noise-mode must be projected, {', '.join(NOISE_MODES)}")

    names = [Path(p).stem for p in photos]
    if len(set(names)) != len(names):  # a/face.jpg and b/face.jpg must not share an output folder
        names = [f"{i:02d}_{s}" for i, s in enumerate(names)]
    # One bad photo (zero bytes, not an image, no face) must not cost the others: skip and list it,
    # like translate and prepare; only a batch with nothing usable is an error.
    good, aligned, bad = [], [], []
    for photo, name in zip(photos, names):
        try:
            aligned.append(_load_target(photo, G.size, align, landmarks))
            good.append((photo, name))
        except (UserInputError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            bad.append((str(photo), reason if str(photo) in reason else f"{photo}: {reason}"))
            if on_skip is not None:
                on_skip(str(photo), bad[-1][1])
    if not good:
        listed = "; ".join(r for _, r in bad[:5]) + (f"; ... {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UserInputError(f"no usable photo ({len(bad)} skipped): {listed}")
    photos, names = [p for p, _ in good], [n for _, n in good]
    targets = torch.stack([to_tensor(a) for a in aligned])
    init = None
    if enc is not None:
        from inversion.encoder import encode

        init = encode(enc, G, targets)
    result = project(G, targets, percept, cfg, show_progress=show_progress and cfg.steps > 0, init=init)

    blends = [(f"swap{k}_{name}", blend_generators(G, T, k)) for name, T in toons for k in swaps]
    noise = result.noise if noise_mode == "projected" and result.noise else None
    nmode = "const" if noise_mode == "projected" else noise_mode
    # A bundled cartoon's name already starts with "cartoon_" (cartoon_webtoon64): not twice.
    renders = [(f"cartoon_{name.removeprefix('cartoon_')}", render(T, result.latent, noise, nmode))
               for name, T in toons]
    renders += [(label, render(B, result.latent, noise, nmode)) for label, B in blends]

    settings = asdict(cfg)
    loss = LOSS_NAMES[perceptual] if cfg.steps > 0 else "none (the encoder's W+, not optimised)"
    settings.update(perceptual=perceptual, loss=loss, align=align, size=G.size,
                    encoder=str(enc.path) if enc is not None else None)
    folders = []
    for i, (photo, name) in enumerate(zip(photos, names)):
        folder = Path(out) / name
        folder.mkdir(parents=True, exist_ok=True)
        tiles = [aligned[i], to_pil(result.image[i])]
        labels = ["photo (aligned)", "projected"]
        save_image_atomic(aligned[i], folder / "aligned.png")
        save_image_atomic(tiles[1], folder / "projected.png")
        for label, imgs in renders:
            pil = to_pil(imgs[i])
            save_image_atomic(pil, folder / f"{label}.png")
            tiles.append(pil)
            labels.append(label.replace("cartoon_", "").replace("_", " "))
        grid = make_grid(tiles, cols=len(tiles), col_labels=labels, fit_labels=True)
        save_image_atomic(grid, folder / "grid.png")
        save_latent(folder / "latent.pt", result.latent[i], [t[i] for t in result.noise] if result.noise else None,
                    ckpt, settings, source=str(photo))
        # Which loss made this projection, next to it (the fallback changes the likeness).
        final = result.history[-1] if result.history else {}
        write_json_atomic(folder / "projection.json", dict(
            source=str(photo), ckpt=str(ckpt), perceptual=perceptual, loss=loss,
            encoder=str(enc.path) if enc is not None else None,
            steps=cfg.steps, space=cfg.space, seconds=round(result.seconds, 3),
            final_mse=final.get("mse"), final_perceptual=final.get("perceptual")))
        if video and result.frames:
            frames = [f[i].permute(1, 2, 0).numpy() for f in result.frames]
            target = np.asarray(aligned[i].resize(frames[0].shape[1::-1]))
            write_video([np.concatenate([target, f], axis=1) for f in frames], folder / "projection.mp4")
        folders.append(folder)
    return folders


@click.command(name="project", cls=ToonCommand, aliases={"--steps": "--iters", "--perceptual-weights": "--lpips-weights"})
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Source (face) generator. Default: the bundled 64-px synthetic-face generator.")
@click.option("--cartoon", "cartoons", multiple=True, type=click.Path(dir_okay=False),
              help="Cartoon generator(s) fine-tuned from --ckpt; repeat or comma-separate for several.")
@click.option("--swap", default=None, help="Also render layer-swapped blends source→cartoon at these blocks, e.g. 2,3.")
@click.option("--out", default="projections", show_default=True, type=click.Path(file_okay=False),
              help="One sub-folder per photo.")
@click.option("--iters", "steps", type=click.IntRange(0), default=1000, show_default=True,
              help="Optimisation steps (0 with --encoder: the encoder's W+ as it is).")
@click.option("--encoder", default=None, help="Start from this encoder's W+ (a file from `toonlab encoder train`, "
                                              "or 'bundled').")
@click.option("--space", type=click.Choice(["w+", "w"]), default="w+", show_default=True)
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=0.1, show_default=True)
@click.option("--mse", type=click.FloatRange(0), default=0.0, show_default=True, help="Weight of a pixel MSE term.")
@click.option("--noise-regularize", type=click.FloatRange(0), default=1e5, show_default=True)
@click.option("--no-noise-opt", is_flag=True, help="Keep the noise maps fixed (optimise the latent only).")
@click.option("--perceptual", type=click.Choice(list(PERCEPTUAL)), default="auto", show_default=True,
              help="auto: LPIPS-VGG when torchvision's vgg16-397923af.pth is in the torch hub cache (or "
                   "--lpips-weights), else pixel + MS-SSIM with a warning; lpips-vgg: insist on it; random: LPIPS "
                   "on a random trunk; msssim: pixel + MS-SSIM (offline); none: pixel MSE only. lpips = lpips-vgg.")
@click.option("--features", type=click.Choice(["imagenet", "random"]), default="imagenet", show_default=True,
              help="The LPIPS trunk's weights: ImageNet from disk, or random (offline, a looser likeness).")
@click.option("--lpips-weights", "perceptual_weights", type=click.Path(dir_okay=False), default=None,
              show_default="the torch hub cache", help="torchvision VGG16 ImageNet weights (vgg16-397923af.pth).")
@click.option("--no-align", is_flag=True, help="Photos are already aligned square crops.")
@click.option("--landmarks", type=click.Path(dir_okay=False), default=None, help="dlib 68-landmark model file.")
@click.option("--noise-mode", type=click.Choice(["projected", *NOISE_MODES]), default="projected", show_default=True,
              help="Noise for the cartoon renders: the optimised maps, or the cartoon checkpoint's const maps, ...")
@click.option("--video", is_flag=True, help="Also write projection.mp4 of the optimisation.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help="auto: bf16 on CUDA, fp32 on CPU.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True)
def main(photos, ckpt, cartoons, swap, out, steps, encoder, space, lr, mse, noise_regularize, no_noise_opt, perceptual,
         features, perceptual_weights, no_align, landmarks, noise_mode, video, precision, seed, device) -> None:
    """Project face photo(s) into the generator and render them as cartoons."""
    from toonlab.errors import one_line_warnings

    one_line_warnings()  # an encoder trained for another generator: one line
    with user_errors():
        dev = pick_device(device)
        precision = resolve_precision(precision, dev)
        if perceptual in ("lpips", "lpips-vgg", "auto") and features == "random":
            perceptual = "random"  # the API's name for LPIPS on a random trunk
        perceptual, fallback = resolve_perceptual(perceptual if steps > 0 else "none", perceptual_weights)
        if fallback is not None:
            click.echo(f"warning: {fallback}", err=True)
        cfg = ProjectConfig(steps=steps, space=space, lr=lr, mse=mse, noise_regularize=noise_regularize,
                            optimize_noise=not no_noise_opt, precision=precision, seed=seed,
                            video_every=max(1, steps // 100) if video else 0)
        toon_list = [c for item in cartoons for c in item.split(",") if c]
        if ckpt is None and not bundled_generator().exists():
            raise ToonlabError(f"no --ckpt given and the bundled generator is missing at {bundled_generator()}")
        skipped: list[str] = []
        folders = run_project(photos, out, ckpt, toon_list, parse_swaps(swap), cfg, align=not no_align,
                              perceptual=perceptual, perceptual_weights=perceptual_weights, landmarks=landmarks,
                              noise_mode=noise_mode, video=video, device=str(dev), encoder=encoder,
                              on_skip=lambda photo, reason: skipped.append(reason))
    if steps > 0:
        click.echo(f"loss: {LOSS_NAMES[perceptual]} (--perceptual {perceptual}; recorded in projection.json)")
    for f in folders:
        click.echo(f"wrote {f}/ (grid.png, projected.png, latent.pt, projection.json, ...)")
    for reason in skipped:
        click.echo(f"skipped {reason}", err=True)
    if skipped:
        click.echo(f"projected {len(folders)} of {len(folders) + len(skipped)} photos; {len(skipped)} skipped "
                   "(listed above)", err=True)
    if perceptual == "random" and steps > 0:
        click.echo("note: --features random uses an untrained VGG trunk; expect a looser likeness", err=True)


@click.command(name="apply", cls=ToonCommand)
@click.argument("photos", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--encoder", "encoder", default="bundled", show_default=True, help="Encoder file, or 'bundled'.")
@click.option("--ckpt", type=click.Path(dir_okay=False), default=None,
              help="Source generator. Default: the bundled 64-px synthetic-face generator.")
@click.option("--out", type=click.Path(file_okay=False), default="encoded", show_default=True,
              help="One sub-folder per photo (latent.pt, projected.png, grid.png).")
@click.option("--no-align", is_flag=True, help="Photos are already aligned square crops.")
@click.option("--landmarks", type=click.Path(dir_okay=False), default=None, help="dlib 68-landmark model file.")
@click.option("--device", default="auto", show_default=True)
def apply_cmd(photos: Sequence[str], encoder: str, ckpt: str | None, out: str, no_align: bool,
              landmarks: str | None, device: str) -> None:
    """Encode photos in one forward pass (= `project --encoder E --iters 0`)."""
    from toonlab.errors import one_line_warnings

    one_line_warnings()
    with user_errors():
        folders = run_project(photos, out, ckpt, cfg=ProjectConfig(steps=0), align=not no_align, perceptual="none",
                              landmarks=landmarks, device=device, encoder=encoder, show_progress=False,
                              on_skip=lambda photo, reason: click.echo(f"skipped {reason}", err=True))
    for f in folders:
        click.echo(f"wrote {f}/ (latent.pt, projected.png, grid.png)")


def extend_encoder_cli(group: click.Group) -> click.Group:
    """Add ``apply`` to the ``encoder`` command group (composed in toonlab/cli.py)."""
    group.add_command(apply_cmd)
    return group


if __name__ == "__main__":
    from toonlab.cli import run_script  # the entry point composes the command (toonlab/cli.py)

    run_script("project")
