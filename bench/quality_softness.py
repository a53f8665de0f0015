"""Is a generator's quality score its softness? Score blurred *renders* the way a generator is scored.

    python bench/quality_softness.py --ckpt train-state/source64w/017811_fp16.pt [--n 2000]

A 64-px generator draws softer images than the crisp renders, and a regressor trained with MSE reads
a less informative image closer to the mean, so blur alone could narrow the readings' spread (sd
ratio < 1) and raise the score. This prints, beside the generator's own sharpness (mean |Laplacian|),
the quality score and the worst fields of fresh renders blurred by a down/up-sampling round trip at
three strengths, measured against the same references as `python -m metrics.probes quality`
(docs/SOURCE_MODEL.md, "Is it the instrument?"). About 2 minutes on two CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import torch
import torch.nn.functional as F
from torch import Tensor

from metrics.probes import (EVAL_OFFSET, ProbeBundle, _fd, _to_float, domain_references, field_shifts,
                            probe_features, probes_for, render_domain)
from stylegan2.checkpoint import load_generator


def sharpness(images: Tensor) -> float:
    """Mean |Laplacian| over pixels and channels of images in [-1, 1]: one softness gauge for every source."""
    k = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    return F.conv2d(images.float(), k, groups=3).abs().mean().item()


def blur(images: Tensor, factor: float) -> Tensor:
    """Down to ``factor`` of the size (antialiased) and back up: the blur of the probes' "GAN look"."""
    h = images.shape[-1]
    s = int(round(h * factor))
    small = F.interpolate(images, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(small, size=(h, h), mode="bilinear", align_corners=False)


@click.command()
@click.option("--ckpt", type=click.Path(exists=True, dir_okay=False), required=True, help="Generator to compare.")
@click.option("--n", type=click.IntRange(2), default=2000, show_default=True, help="Images per set.")
@click.option("--factors", default="0.85,0.75,0.65", show_default=True, help="Blur strengths (down-sampling factors).")
def main(ckpt: str, n: int, factors: str) -> None:
    """Quality score of blurred renders beside a generator's sharpness."""
    try:
        strengths = [float(f) for f in factors.split(",")]
    except ValueError:
        raise click.BadParameter(f"{factors!r} is not a comma-separated list of numbers", param_hint="--factors")
    if not all(0.125 <= f < 1 for f in strengths):
        raise click.BadParameter("each factor must be in [0.125, 1)", param_hint="--factors")
    torch.manual_seed(0)
    bundle = ProbeBundle.load(probes_for("photo"))
    ref, floor, _, _ = domain_references(bundle, "photo", n, 0)
    h = bundle.regressor.head[1].out_features
    G = load_generator(ckpt).eval()
    with torch.no_grad():
        w = G.mapping(torch.randn(256, G.style_dim), truncation=1.0)
        # per-pixel noise adds fine texture of its own, so the sharpness with constant noise is shown too
        rnd, const = (sharpness(G.synthesis(w, noise_mode=m).image) for m in ("random", "const"))
    click.echo(f"generator {ckpt}: sharpness {rnd:.4f} ({const:.4f} with constant noise; 256 samples, truncation 1)")
    u8, _ = render_domain("photo", range(5 * EVAL_OFFSET, 5 * EVAL_OFFSET + n), int(bundle.config["size"]), 0)
    crisp = _to_float(u8)  # faces used by neither the probes' training, their held-out set nor the references
    for name, imgs in [("crisp renders", crisp)] + [(f"renders blurred ×{f:g}", blur(crisp, f))
                                                     for f in strengths]:
        feats = probe_features(bundle, imgs)
        worst = ", ".join(f"{s.field} {s.mean_shift:+.2f} sd, ratio {s.sd_ratio:.2f}"
                          for s in field_shifts(bundle, feats, ref)[:4])
        click.echo(f"{name}: sharpness {sharpness(imgs):.4f}; score {_fd(feats, ref):.2f} (geometry "
                   f"{_fd(feats[:, :h], ref[:, :h]):.2f}, style {_fd(feats[:, h:], ref[:, h:]):.2f}); worst: {worst}")
    click.echo(f"floor (renders vs renders) {floor:.2f}")


if __name__ == "__main__":
    main()
