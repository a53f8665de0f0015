"""StarGAN v2 inference: loading a checkpoint's EMA networks, latent- and reference-guided
translation, the sample grids and the style interpolation video.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from toonlab.atomic import save_image_atomic
from toonlab.checkpoint import read_checkpoint
from toonlab.errors import UserInputError
from toonlab.images import make_grid, to_uint8
from toonlab.runtime import autocast
from toonlab.video import write_video
from translation.stargan2_data import MultiDomainData, open_multidomain
from translation.stargan2_networks import MODEL_NAME, StarGAN2Nets, build_networks


def load_stargan2(path: str | Path, device: str | torch.device = "cpu", ema: bool = True
                  ) -> tuple[StarGAN2Nets, dict[str, Any]]:
    """G, F, E (EMA copies by default) in eval mode, and the metadata (``domains``, ``arch``, ``step``)."""
    ckpt = read_checkpoint(path, MODEL_NAME, "StarGAN v2 checkpoint")
    meta = ckpt["toonlab"]
    nets = build_networks(meta["arch"], discriminator=False, init=False)
    suffix = "_ema" if ema else ""
    try:
        for key, m in (("g", nets.G), ("f", nets.F), ("e", nets.E)):
            m.load_state_dict(ckpt[key + suffix])
    except (RuntimeError, KeyError) as e:
        raise UserInputError(f"{path}: {str(e).splitlines()[0][:200]}") from None
    for m in (nets.G, nets.F, nets.E):
        m.to(device).eval().requires_grad_(False)
    return nets, {**meta, "path": str(path)}


def domain_index(domains: Sequence[str], name: str) -> int:
    if name not in domains:
        raise UserInputError(f"unknown domain {name!r} (this model has {', '.join(domains)})")
    return list(domains).index(name)


@torch.no_grad()
def translate(nets: StarGAN2Nets, x: Tensor, y_trg: Tensor | int, z: Tensor | None = None,
              ref: Tensor | None = None, precision: str = "fp32") -> Tensor:
    """Translate ``x`` to domain(s) ``y_trg`` with a latent code ``z`` (latent-guided) or a reference image."""
    if (z is None) == (ref is None):
        raise ValueError("give exactly one of z (latent-guided) or ref (reference-guided)")
    dev = next(nets.G.parameters()).device
    x = x.to(dev)
    y = torch.full((len(x),), int(y_trg), device=dev, dtype=torch.long) if isinstance(y_trg, int) else y_trg.to(dev)
    with autocast(dev, precision):
        s = nets.F(z.to(dev), y) if z is not None else nets.E(ref.to(dev), y)
        return nets.G(x, s).float().clamp(-1, 1)


def latent_grid(nets: StarGAN2Nets, x: Tensor, domains: Sequence[str], seed: int = 0, n_styles: int = 1,
                device: torch.device | str = "cpu", precision: str = "fp32") -> Image.Image:
    """Row 1: the sources; then ``n_styles`` rows per target domain, one latent code per row."""
    g = torch.Generator().manual_seed(seed)
    rows, labels = [x.cpu()], ["source"]
    for d, name in enumerate(domains):
        for k in range(n_styles):
            z = torch.randn(1, nets.arch["latent_dim"], generator=g).repeat(len(x), 1)
            rows.append(translate(nets, x, d, z=z, precision=precision).cpu())
            labels.append(name if n_styles == 1 else f"{name} {k}")
    return make_grid(torch.cat(rows), cols=len(x), row_labels=labels)


def reference_grid(nets: StarGAN2Nets, x: Tensor, refs: Tensor, y_refs: Tensor, domains: Sequence[str],
                   precision: str = "fp32") -> Image.Image:
    """First row: the references; first column: the sources; cell (i, j) = source j in reference i's style."""
    blank = torch.ones_like(x[:1])
    rows = [torch.cat([blank, x.cpu()])]
    for r, y in zip(refs, y_refs):
        out = translate(nets, x, torch.full((len(x),), int(y)), ref=r[None].repeat(len(x), 1, 1, 1), precision=precision)
        rows.append(torch.cat([r[None].cpu(), out.cpu()]))
    labels = ["sources"] + [domains[int(y)] for y in y_refs]
    return make_grid(torch.cat(rows), cols=len(x) + 1, row_labels=labels)


def interpolation_video(nets: StarGAN2Nets, x: Tensor, y_trg: int, path: str | Path, n_keys: int = 4,
                        frames_per_key: int = 24, fps: int = 24, seed: int = 0, precision: str = "fp32") -> Path:
    """Sources side by side, their style sliding between ``n_keys`` latent styles of ``y_trg`` (an mp4, OpenCV)."""
    path = Path(path)
    g = torch.Generator().manual_seed(seed)
    dev = next(nets.G.parameters()).device
    y = torch.full((n_keys,), y_trg, dtype=torch.long, device=dev)
    keys = nets.F(torch.randn(n_keys, nets.arch["latent_dim"], generator=g).to(dev), y)
    keys = torch.cat([keys, keys[:1]])  # loop back to the first style
    frames = []
    for k in range(n_keys):
        for t in torch.linspace(0, 1, frames_per_key + 1)[:-1]:
            s = torch.lerp(keys[k], keys[k + 1], float(t))[None].repeat(len(x), 1)
            with torch.no_grad(), autocast(dev, precision):
                out = nets.G(x.to(dev), s).float().clamp(-1, 1).cpu()
            frames.append(torch.cat([torch.cat(list(x.cpu()), dim=-1), torch.cat(list(out), dim=-1)], dim=-2))
    return write_video([to_uint8(f) for f in frames], path, fps=fps)


def test_data(meta: dict[str, Any], data: str | None, n_test: int, seed_offset: int = 1000) -> MultiDomainData:
    """Test images: ``data`` (class sub-folders) or, for a synthetic run, unseen synthetic faces."""
    arch, domains = meta["arch"], meta["domains"]
    if data is None:
        cfg = meta.get("config", {})
        if cfg.get("data"):
            raise UserInputError("this model was trained on --data folders: give the test images with --data "
                                 "(one sub-folder per domain)")
        return open_multidomain(None, arch["img_size"], domains, synthetic_length=n_test, synthetic_seed=seed_offset)
    return open_multidomain(data, arch["img_size"], domains)


def sample_figures(ckpt: str | Path, out: str | Path, data: str | None = None, n: int = 4, seed: int = 0,
                   device: str | torch.device = "cpu", video: bool = True, frames_per_key: int = 16,
                   precision: str = "fp32") -> list[Path]:
    """Write ``latent.png``, ``reference.png`` and ``interpolation_<domain>.mp4`` under ``out``."""
    nets, meta = load_stargan2(ckpt, device)
    domains = meta["domains"]
    test = test_data(meta, data, max(n, 2))
    xs, ys = test.fixed(n)
    g = torch.Generator().manual_seed(seed)
    src = xs[torch.randperm(len(xs), generator=g)[:n]]
    refs_idx = torch.randperm(len(xs), generator=g)[:n]
    out = Path(out)
    paths = [save_image_atomic(latent_grid(nets, src, domains, seed=seed, n_styles=2, precision=precision), out / "latent.png"),
             save_image_atomic(reference_grid(nets, src, xs[refs_idx], ys[refs_idx], domains, precision=precision),
                         out / "reference.png")]
    if video:
        target = len(domains) - 1
        paths.append(interpolation_video(nets, src, target, out / f"interpolation_{domains[target]}.mp4",
                                         frames_per_key=frames_per_key, seed=seed, precision=precision))
    return paths
