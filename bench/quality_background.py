"""Does a cartoon generator's quality score read its background? Score it with the backgrounds painted out.

    python bench/quality_background.py --ckpt toonlab/assets/cartoon_webtoon64.pt --domain webtoon [--n 1000]

The cartoon domains draw each face on one flat colour, and the fine-tuned generators' backgrounds look
more saturated and more alike than the renders' (docs/images/comparison_webtoon.png), so the quality
score (`python -m metrics.probes quality`) could be reading background colour more than the face. This
scores the same generator samples and the same renders twice against each other: as they are, and with
each image's background painted one mid grey. A render's background is exact
(``toonlab.synthetic.background_mask``: the same face drawn again on other background colours, the
pixels that change); a sample's is the region joined to the image border without crossing a colour
edge (``--tol``; the ink outlines close the face off). It prints both halves of the score (geometry and
style features) each time, how much of the image was painted out, the background's mean saturation and
value in samples and renders, and the style classifier's mean P(cartoon) both ways (docs/PROBES.md,
"What the quality and style scores read on a cartoon domain"). About 40 s on two CPU cores at
``--n 1000``.
"""

from __future__ import annotations

import colorsys
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from metrics.probes import (QUALITY_OFFSETS, ProbeBundle, _fd, _to_float, generator_samples, probe_features,
                            probes_for)
from metrics.probes import render_domain
from stylegan2.checkpoint import load_generator
from toonlab.synthetic import DOMAINS, background_mask, sample_params

GREY = 0.0  # mid grey in [-1, 1]
#: More of the image than this is not a background: the renders' backgrounds cover 0.55–0.73 of it.
MAX_BACKGROUND = 0.76


def sample_background_mask(images: Tensor, tol: float) -> Tensor:
    """[N, H, W] bool: the region joined to the image border without crossing an edge — a pixel whose
    colour differs from a 4-neighbour's by more than ``tol`` (RGB distance in [0, 1] units). The
    cartoons' ink outlines close the face, hair and clothes off; the generators' backgrounds are
    smooth gradients (a vignette), not flat, so a distance to one background colour would not do."""
    x = ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()  # N, H, W, 3 in [0, 1]
    # Edges are found on a blurred copy: the generators' per-pixel noise would break a background up.
    x = ndimage.gaussian_filter(x, sigma=(0, 1, 1, 0))
    edge = _edges(x, tol)
    out = np.zeros_like(edge)
    for i, e in enumerate(edge):
        out[i] = _border_region(e)
        # A gap in an outline lets the fill run into the face: then the image gets half the tolerance.
        t = tol
        while out[i].mean() > MAX_BACKGROUND and t > tol / 8:
            t /= 2
            out[i] = _border_region(_edges(x[i : i + 1], t)[0])
    return torch.from_numpy(out)


def _edges(x: np.ndarray, tol: float) -> np.ndarray:
    dy = np.linalg.norm(np.diff(x, axis=1), axis=-1)
    dx = np.linalg.norm(np.diff(x, axis=2), axis=-1)
    edge = np.zeros(x.shape[:3], dtype=bool)
    edge[:, 1:] |= dy > tol
    edge[:, :-1] |= dy > tol
    edge[:, :, 1:] |= dx > tol
    edge[:, :, :-1] |= dx > tol
    return edge


def _border_region(edge: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(~edge)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    # one pixel more: the anti-aliased rim between background and outline is background colour too
    return ndimage.binary_dilation(np.isin(labels, border[border > 0]))


def paint_out(images: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask[:, None], torch.full_like(images, GREY), images)


def background_hsv(images: Tensor, mask: Tensor) -> tuple[float, float]:
    """Mean saturation and value of the background pixels (each image's mean colour, then HSV)."""
    x = ((images.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)
    sv = [colorsys.rgb_to_hsv(*x[i][m].mean(0).tolist())[1:] for i, m in enumerate(mask) if m.any()]
    s, v = np.mean(sv, 0) if sv else (float("nan"), float("nan"))
    return float(s), float(v)


def renders(domain: str, n: int, offset: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Renders of faces ``offset…`` (as :func:`metrics.probes.render_domain`) and their exact background
    masks (:func:`toonlab.synthetic.background_mask`)."""
    u8, _ = render_domain(domain, range(offset, offset + n), size, seed)
    mask = np.stack([background_mask(sample_params(i, seed), domain, size, u8[j])
                     for j, i in enumerate(range(offset, offset + n))])
    return _to_float(u8), torch.from_numpy(mask)


@click.command()
@click.option("--ckpt", type=click.Path(exists=True, dir_okay=False), required=True, help="Cartoon generator.")
@click.option("--domain", type=click.Choice([d for d in DOMAINS if d != "photo"]), default="webtoon",
              show_default=True, help="The synthetic domain it draws.")
@click.option("--n", type=click.IntRange(2), default=1000, show_default=True, help="Images per set.")
@click.option("--tol", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Colour step between neighbouring pixels that counts as an edge (ends the background).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--probes", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Probe bundle [the bundled one whose classifier detects --domain].")
@click.option("--picture", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the first 8 samples and renders, as drawn and painted out (PNG).")
def main(ckpt: str, domain: str, n: int, tol: float, seed: int, probes: str | None,
         picture: Path | None) -> None:
    """The quality score of a cartoon generator with and without its backgrounds."""
    torch.manual_seed(seed)
    bundle = ProbeBundle.load(probes or probes_for(domain))
    size = int(bundle.config["size"])
    G = load_generator(ckpt).eval()
    if G.size != size:
        raise click.UsageError(f"{ckpt} draws {G.size} px; the probes read {size} px")
    sets = {"samples": torch.cat(list(generator_samples(G, n, seed)))}
    masks = {"samples": sample_background_mask(sets["samples"], tol)}
    for k, offset in (("renders", QUALITY_OFFSETS[0]), ("renders (second set)", QUALITY_OFFSETS[1])):
        sets[k], masks[k] = renders(domain, n, offset, size, seed)
    if picture is not None:
        from toonlab.atomic import save_image_atomic
        from toonlab.images import make_grid, to_pil

        rows = [x[:8] for k in ("samples", "renders") for x in (sets[k], paint_out(sets[k], masks[k]))]
        save_image_atomic(make_grid([to_pil(i) for r in rows for i in r], cols=8,
                                    row_labels=["samples", "painted", "renders", "painted"]), picture)
    h = bundle.regressor.head[1].out_features
    for k in sets:
        s, v = background_hsv(sets[k], masks[k])
        click.echo(f"{k}: background {masks[k].float().mean().item():.0%} of the pixels, mean saturation {s:.2f}, "
                   f"value {v:.2f}")
    for painted in (False, True):
        feats = {k: probe_features(bundle, paint_out(x, masks[k]) if painted else x) for k, x in sets.items()}
        ref = feats["renders"]
        line = []
        for k in ("samples", "renders (second set)"):
            a = feats[k]
            line.append(f"{k} {_fd(a, ref):.1f} (geometry {_fd(a[:, :h], ref[:, :h]):.1f}, "
                        f"style {_fd(a[:, h:], ref[:, h:]):.1f})")
        with torch.no_grad():  # the style score's probability, on these ψ = 1 samples
            p = {k: torch.sigmoid(bundle.classifier(paint_out(x, masks[k]) if painted else x).float()).mean().item()
                 for k, x in sets.items()}
        click.echo(f"{'backgrounds painted grey' if painted else 'as drawn'}: " + "; ".join(line)
                   + f"; P({domain}): samples {p['samples']:.3f}, renders {p['renders']:.3f}")


if __name__ == "__main__":
    main()
