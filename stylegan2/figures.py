"""Figures and videos from any generator: style mixing, truncation sweeps, latent interpolation.

Every tool takes a list of *panels*: the source generator first, then any generators fine-tuned
from it (cartoons, layer-swapped blends). Latents come from the source — its mapping network,
its ``w_avg`` for truncation — and the same W+ latent is rendered through every panel's
synthesis network, so a column of panels shows one face in every style (how Cartoon-StyleGAN's
and Toonify's figures are made). Seeds give the same z as ``generate.py`` (a CPU
``torch.Generator`` per seed), so seed 7 here is seed 7 there.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from stylegan2.checkpoint import load_generator
from stylegan2.latents import load_latent
from stylegan2.networks import NOISE_MODES, Generator
from stylegan2.sampling import seed_inputs
from toonlab.errors import UserInputError
from toonlab.images import check_finite_images, make_grid, to_uint8
from toonlab.runtime import autocast, progress
from toonlab.video import write_video

#: Style-mixing presets: the StyleGAN paper's coarse (4²–8²), middle (16²–32²) and fine (64²+)
#: styles, on the two-entries-per-resolution W+ indexing NVIDIA's figure code uses
#: (StyleGAN's generate_figures.py: ranges 0–3, 4–7, 8–17 at 1024 px).
STYLE_PRESETS = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}


# --------------------------------------------------------------------------------------------
# Generators and latents
# --------------------------------------------------------------------------------------------


@dataclass
class Panel:
    """One generator a figure is rendered through, with the label it gets."""

    label: str
    G: Generator


def load_panels(ckpt: str | Path, cartoons: Sequence[str | Path] = (), device: str | torch.device = "cpu",
                labels: Sequence[str] | None = None) -> list[Panel]:
    """The source generator and any fine-tuned from it; all must share its W+ shape."""
    paths = [Path(ckpt), *map(Path, cartoons)]
    names = list(labels) if labels else [p.stem for p in paths]
    if len(set(names)) != len(names):  # a/G.pt and b/G.pt: tell them apart
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    panels = [Panel(names[0], load_generator(paths[0], device=device))]
    src = panels[0].G
    for name, path in zip(names[1:], paths[1:]):
        G = load_generator(path, device=device)
        if (G.n_latent, G.style_dim) != (src.n_latent, src.style_dim):
            raise UserInputError(f"{path} is a {G.size} px / {G.style_dim}-d generator; the source {paths[0]} is "
                                 f"{src.size} px / {src.style_dim}-d (fine-tuned generators share the source's shape)")
        panels.append(Panel(name, G))
    return panels


def style_layers(n_latent: int, spec: str) -> list[int]:
    """W+ indices from a preset (``coarse``/``middle``/``fine``) or a list like ``0-3`` or ``0,2,6-7``.

    Presets follow the StyleGAN paper's split by resolution, with W+ entry i standing for
    4·2^(i//2) px; a preset the generator is too small for (``fine`` below 64 px) is an error.
    """
    spec = spec.strip().lower()
    if spec in STYLE_PRESETS:
        lo, hi = STYLE_PRESETS[spec]
        out = [i for i in range(n_latent) if lo <= 4 * 2 ** (i // 2) <= hi]
        if not out:
            raise UserInputError(f"--styles {spec}: this generator ({n_latent} W+ entries) has no {spec} layers")
        return out
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserInputError(f"--styles {spec!r}: use coarse, middle, fine or indices like 0-3 or 0,2,6-7")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise UserInputError(f"--styles {spec!r}: range {part} runs backwards")
        out.extend(range(a, b + 1))
    bad = [i for i in out if i >= n_latent]
    if bad:
        raise UserInputError(f"--styles {spec!r}: index {bad[0]} is out of range (this generator has W+ entries "
                             f"0-{n_latent - 1})")
    return sorted(set(out))


@torch.no_grad()
def seed_latents(G: Generator, seeds: Sequence[int], truncation: float = 1.0) -> tuple[Tensor, Tensor, list[list[Tensor]]]:
    """z [N, D], truncated W+ [N, n_latent, D] and each seed's random noise maps (as generate.py draws them)."""
    inputs = [seed_inputs(G, s) for s in seeds]
    z = torch.cat([i[0] for i in inputs])
    w = G.mapping(z.to(G.w_avg.device), truncation=truncation)
    return z, G.broadcast(w).cpu(), [i[1] for i in inputs]


@torch.no_grad()
def render(G: Generator, latents: Tensor, noise: Sequence[Sequence[Tensor]] | None = None,
           noise_mode: str = "const", batch: int = 8, precision: str = "fp32", bar=None) -> Tensor:
    """W+ latents [N, n_latent, D] → images [N, 3, H, W] in [-1, 1] on the CPU, in batches.

    ``noise`` (per image, a list of maps), when given, is used as is — so every panel sees the
    same maps; otherwise ``noise_mode`` ("const": each generator's stored maps, "none", "random").
    """
    if noise_mode not in NOISE_MODES:
        raise UserInputError(f"noise mode must be one of {', '.join(NOISE_MODES)}")
    dev = G.w_avg.device
    out = []
    for s in range(0, len(latents), batch):
        lat = latents[s : s + batch].to(dev)
        maps = None
        if noise is not None:
            maps = [torch.cat([n[k] for n in noise[s : s + batch]]).to(dev) for k in range(G.num_layers)]
        with autocast(dev, precision):
            img = G.synthesis(lat, noise=maps, noise_mode=noise_mode).image
        out.append(check_finite_images(img.float().cpu()))  # NaN weights: an error, not a black figure
        if bar is not None:
            bar.update(len(lat))
    return torch.cat(out)


def _tiles(images: Tensor, size: int | None) -> list[Image.Image]:
    tiles = [Image.fromarray(a) for a in to_uint8(images)]
    if size and tiles and tiles[0].size != (size, size):
        tiles = [t.resize((size, size), Image.Resampling.LANCZOS) for t in tiles]
    return tiles


def _blank(tile: Image.Image) -> Image.Image:
    return Image.new("RGB", tile.size, (255, 255, 255))


def _side_by_side(figures: Sequence[Image.Image], labels: Sequence[str]) -> Image.Image:
    if len(figures) == 1:
        return figures[0]
    return make_grid(list(figures), cols=len(figures), padding=8, col_labels=list(labels))


# --------------------------------------------------------------------------------------------
# Style mixing
# --------------------------------------------------------------------------------------------


def mix_latents(w_rows: Tensor, w_cols: Tensor, layers: Sequence[int]) -> Tensor:
    """[R, L, D] × [C, L, D] → [R·C, L, D]: row r's latent with ``layers`` taken from column c."""
    out = w_rows[:, None].repeat(1, len(w_cols), 1, 1)
    idx = torch.as_tensor(list(layers), dtype=torch.long)
    out[:, :, idx] = w_cols[None, :, idx].expand(len(w_rows), -1, -1, -1)
    return out.reshape(-1, *w_rows.shape[1:])


def style_mixing_figure(panels: Sequence[Panel], rows: Sequence[int], cols: Sequence[int], styles: str = "coarse",
                        truncation: float = 1.0, noise_mode: str = "const", size: int | None = None,
                        batch: int = 8, precision: str = "fp32", show_progress: bool = True) -> Image.Image:
    """NVIDIA's style_mixing.py figure: the top row shows the column seeds, the left column the row
    seeds, cell (r, c) row r's latent with the ``styles`` layers from column c — once per panel."""
    src = panels[0].G
    layers = style_layers(src.n_latent, styles)
    _, w_rows, n_rows = seed_latents(src, rows, truncation)
    _, w_cols, n_cols = seed_latents(src, cols, truncation)
    mixed = mix_latents(w_rows, w_cols, layers)
    latents = torch.cat([w_cols, w_rows, mixed])
    noise = None
    if noise_mode == "random":  # seeded per image, shared by the panels; a mixed cell keeps its row's noise
        noise = n_cols + n_rows + [n_rows[r] for r in range(len(rows)) for _ in cols]
    bar = progress(total=len(latents) * len(panels), desc="mix", unit="img", disable=not show_progress)
    figures = []
    for p in panels:
        tiles = _tiles(render(p.G, latents, noise, noise_mode, batch, precision, bar), size)
        top, left, cells = tiles[: len(cols)], tiles[len(cols) : len(cols) + len(rows)], tiles[len(cols) + len(rows) :]
        grid = [_blank(tiles[0]), *top]
        for r in range(len(rows)):
            grid += [left[r], *cells[r * len(cols) : (r + 1) * len(cols)]]
        figures.append(make_grid(grid, cols=len(cols) + 1, col_labels=[styles] + [f"seed {c}" for c in cols],
                                 row_labels=[""] + [f"seed {r}" for r in rows]))
    bar.close()
    return _side_by_side(figures, [p.label for p in panels])


# --------------------------------------------------------------------------------------------
# Truncation sweep
# --------------------------------------------------------------------------------------------


def truncation_sweep_figure(panels: Sequence[Panel], seeds: Sequence[int], psis: Sequence[float],
                            noise_mode: str = "const", size: int | None = None, batch: int = 8,
                            precision: str = "fp32", show_progress: bool = True) -> Image.Image:
    """Rows: seeds; columns: truncation ψ (w' = w̄ + ψ (w − w̄), w̄ the source's mean w) — per panel."""
    src = panels[0].G
    _, w, noise = seed_latents(src, seeds, 1.0)
    avg = src.mean_w().cpu()  # w̄ from the checkpoint, or estimated once from 4096 samples
    latents = torch.cat([src.truncate(w[i : i + 1], psi, avg.unsqueeze(1)) for i in range(len(seeds)) for psi in psis])
    noise = [noise[i] for i in range(len(seeds)) for _ in psis] if noise_mode == "random" else None
    bar = progress(total=len(latents) * len(panels), desc="truncation", unit="img", disable=not show_progress)
    figures = [make_grid(_tiles(render(p.G, latents, noise, noise_mode, batch, precision, bar), size), cols=len(psis),
                         col_labels=[f"psi {psi:g}" for psi in psis], row_labels=[f"seed {s}" for s in seeds])
               for p in panels]
    bar.close()
    return _side_by_side(figures, [p.label for p in panels])


# --------------------------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------------------------


@dataclass
class Key:
    """A keyframe: a seed (z and its truncated W+) or a projected latent file (W+, optimised noise)."""

    label: str
    w: Tensor  # [n_latent, D]
    z: Tensor | None = None  # [D], seeds only
    noise: list[Tensor] | None = None  # [1, 1, r, r] maps, latent files only


def seed_keys(G: Generator, seeds: Sequence[int], truncation: float = 1.0) -> list[Key]:
    z, w, _ = seed_latents(G, seeds, truncation)
    return [Key(f"seed {s}", w[i], z[i]) for i, s in enumerate(seeds)]


def latent_keys(G: Generator, paths: Sequence[str | Path]) -> list[Key]:
    """Keyframes from ``latent.pt`` files (inversion/project.py); they must fit the source's W+."""
    keys = []
    for p in paths:
        lat = load_latent(p)
        w = lat["latent"][0]
        if tuple(w.shape) != (G.n_latent, G.style_dim):
            raise UserInputError(f"{p}: latent of shape {list(w.shape)}, the source generator takes "
                                 f"[{G.n_latent}, {G.style_dim}] ({G.size} px)")
        noise = lat.get("noise")
        if noise is not None and [t.shape[-1] for t in noise] != G.noise_shapes():
            noise = None
        keys.append(Key(Path(p).parent.name or Path(p).stem, w, None, noise))
    return keys


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation (Shoemake 1985), the Z-space path of the StyleGAN PPL metric."""
    an, bn = a / a.norm(), b / b.norm()
    omega = torch.arccos((an * bn).sum().clamp(-1, 1))
    so = torch.sin(omega)
    if so.abs() < 1e-6:  # (anti)parallel: the great circle is undefined, the chord is fine
        return torch.lerp(a, b, t)
    return torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b


def _blend_noise(a: list[Tensor], b: list[Tensor], t: float) -> list[Tensor]:
    # Two independent unit Gaussians mixed linearly lose variance mid-way (√½ at t=½); dividing by
    # √((1−t)² + t²) keeps the maps unit-variance, so textures do not fade between keys.
    s = math.sqrt((1 - t) ** 2 + t**2)
    return [((1 - t) * x + t * y) / s for x, y in zip(a, b)]


def check_keys(keys: Sequence[Key], space: str, blend_noise: bool = False) -> None:
    """One-line errors for keyframes that cannot be interpolated as asked."""
    if len(keys) < 2:
        raise UserInputError("interpolation needs at least two keyframes (seeds and/or latent files)")
    if space not in ("w", "z"):
        raise UserInputError(f"unknown interpolation space {space!r} (use w or z)")
    if space == "z" and any(k.z is None for k in keys):
        raise UserInputError("--space z interpolates seeds' z vectors; projected latents live in W+ (use --space w)")
    if blend_noise and any(k.noise is None for k in keys):
        raise UserInputError("projected noise needs every keyframe to be a latent file with noise maps")


def interpolation_path(G: Generator, keys: Sequence[Key], frames: int, space: str = "w", loop: bool = True,
                       truncation: float = 1.0, blend_noise: bool = False) -> Iterator[tuple[Tensor, list[Tensor] | None]]:
    """Yield (W+ [n_latent, D], noise maps or None) for every frame: ``frames`` per transition.

    ``space="w"``: lerp of W+ (seeds and latent files); ``space="z"``: slerp of z, then the
    mapping network and truncation (seeds only). With ``loop`` the last key goes back to the first.
    """
    check_keys(keys, space, blend_noise)
    pairs = list(zip(keys, keys[1:])) + ([(keys[-1], keys[0])] if loop else [])
    ts = [i / frames for i in range(frames)]
    for a, b in pairs:
        for t in ts:
            if space == "w":
                w = torch.lerp(a.w, b.w, t)
            else:
                with torch.no_grad():
                    z = slerp(a.z, b.z, t).unsqueeze(0).to(G.w_avg.device)
                    w = G.broadcast(G.mapping(z, truncation=truncation))[0].cpu()
            yield w, (_blend_noise(a.noise, b.noise, t) if blend_noise else None)
    if not loop:
        yield keys[-1].w, (keys[-1].noise if blend_noise else None)


def _frame(tiles: Sequence[Image.Image], labels: Sequence[str]) -> np.ndarray:
    if len(tiles) == 1:
        return np.asarray(tiles[0])
    fit = max(1, tiles[0].width // 6)  # the default bitmap font is ~6 px a character: keep labels apart
    labels = [lb if len(lb) <= fit else lb[: fit - 1] + "…" for lb in labels]
    return np.asarray(make_grid(list(tiles), cols=len(tiles), padding=2, col_labels=labels))


def interpolation_video(panels: Sequence[Panel], keys: Sequence[Key], out: str | Path, frames: int = 30,
                        fps: float = 30.0, space: str = "w", loop: bool = True, truncation: float = 1.0,
                        noise_mode: str = "const", size: int | None = None, batch: int = 8, precision: str = "fp32",
                        seed: int = 0, preview: str | Path | None = None, show_progress: bool = True) -> dict:
    """Render the keyframe path through every panel side by side and write an mp4 (H.264).

    ``noise_mode`` is "const", "none", "random" (one set of maps, drawn from ``seed``, for the
    whole clip: no flicker) or "projected" (the latent files' optimised maps, blended between
    keys). ``preview`` also writes a PNG contact sheet of 8 evenly spaced frames (rows of 4).
    Returns ``{"path", "frames", "fps", "size"}``.
    """
    src = panels[0].G
    blend = noise_mode == "projected"
    mode = "const" if blend else noise_mode
    if mode not in NOISE_MODES:
        raise UserInputError(f"noise mode must be projected or one of {', '.join(NOISE_MODES)}")
    check_keys(keys, space, blend)
    g = torch.Generator().manual_seed(seed)
    fixed = [torch.randn(1, 1, r, r, generator=g) for r in src.noise_shapes()]
    total = (len(keys) - (0 if loop else 1)) * frames + (0 if loop else 1)
    bar = progress(total=total * len(panels), desc="interpolate", unit="img", disable=not show_progress)
    labels = [p.label for p in panels]
    picks = set(np.linspace(0, total - 1, min(8, total)).round().astype(int).tolist()) if preview else set()
    sheet: list[np.ndarray] = []
    shape: list[int] = []
    written = [0]

    def frames_iter() -> Iterator[np.ndarray]:
        path = interpolation_path(src, keys, frames, space, loop, truncation, blend)
        while chunk := [step for _, step in zip(range(batch), path)]:
            lat = torch.stack([w for w, _ in chunk])
            noise = [m for _, m in chunk] if blend else [fixed] * len(chunk) if mode == "random" else None
            tiles = [_tiles(render(p.G, lat, noise, mode, batch, precision, bar), size) for p in panels]
            for i in range(len(chunk)):
                f = _frame([t[i] for t in tiles], labels)
                if not shape:
                    shape.extend([f.shape[1], f.shape[0]])
                if written[0] in picks:
                    sheet.append(f)
                written[0] += 1
                yield f

    path = write_video(frames_iter(), out, fps=fps)
    bar.close()
    if preview:
        from toonlab.atomic import save_image_atomic

        save_image_atomic(make_grid([Image.fromarray(f) for f in sheet], cols=min(4, len(sheet)), padding=2), preview)
    return {"path": path, "frames": written[0], "fps": fps, "size": shape}
