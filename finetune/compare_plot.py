"""Line plots of the comparison's curves (structure error, style score, quality against kimg), drawn
with PIL: matplotlib is not a toonlab dependency and the plot needs only axes, lines and a legend.

    curves_figure({"webtoon": {"freezeSG": {"kimg": [...], "structure_error": [...], ...}}}, panels)

One row of panels per target, one panel per quantity, one line per method (the caller averages
over seeds), a shared legend under each row.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

__all__ = ["curves_figure", "nice_ticks"]

# Distinguishable on white, colour-blind-friendly first (Okabe–Ito), then a few more.
PALETTE = [(0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233),
           (0, 0, 0), (240, 228, 66), (120, 120, 120), (150, 60, 60), (60, 60, 150), (60, 150, 60)]
DASHED = "+swap"  # layer-swapped rows are drawn dashed in their method's colour


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(1, n - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks, t = [], start
    while t <= hi + step * 0.5:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def _dashed(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], fill, width: int, dash: float = 6) -> None:
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        length = math.hypot(x1 - x0, y1 - y0)
        k = max(1, int(length // dash))
        for i in range(0, k, 2):
            a, b = i / k, min(1.0, (i + 1) / k)
            draw.line([(x0 + (x1 - x0) * a, y0 + (y1 - y0) * a), (x0 + (x1 - x0) * b, y0 + (y1 - y0) * b)],
                      fill=fill, width=width)


def _panel(draw: ImageDraw.ImageDraw, font, box: tuple[int, int, int, int], title: str,
           series: Mapping[str, tuple[Sequence[float], Sequence[float]]], colours: Mapping[str, tuple[int, int, int]],
           xlabel: str) -> None:
    x0, y0, x1, y1 = box
    # A wide right margin: the next panel's y labels sit right-aligned against *its* axis, and the gap
    # keeps them from reading as a right-hand axis of this one.
    left, bottom, top, right = 48, 30, 18, 24
    px0, py0, px1, py1 = x0 + left, y0 + top, x1 - right, y1 - bottom
    draw.text((x0 + left, y0 + 2), title, fill=(0, 0, 0), font=font)
    xs = [x for xv, _ in series.values() for x in xv]
    ys = [y for _, yv in series.values() for y in yv if y is not None and math.isfinite(y)]
    if not xs or not ys:
        draw.rectangle([px0, py0, px1, py1], outline=(0, 0, 0))
        draw.text((px0 + 4, py0 + 4), "no data", fill=(0, 0, 0), font=font)
        return
    xt, yt = nice_ticks(min(0.0, min(xs)), max(xs)), nice_ticks(min(ys), max(ys))
    xlo, xhi, ylo, yhi = xt[0], xt[-1], yt[0], yt[-1]
    xhi = xhi if xhi > xlo else xlo + 1
    yhi = yhi if yhi > ylo else ylo + 1

    def X(v: float) -> float:
        return px0 + (v - xlo) / (xhi - xlo) * (px1 - px0)

    def Y(v: float) -> float:
        return py1 - (v - ylo) / (yhi - ylo) * (py1 - py0)

    for t in yt:
        draw.line([(px0, Y(t)), (px1, Y(t))], fill=(228, 228, 228))
        label = _fmt(t)
        draw.text((px0 - 4 - draw.textlength(label, font=font), Y(t) - 5), label, fill=(60, 60, 60), font=font)
    for t in xt:
        draw.line([(X(t), py0), (X(t), py1)], fill=(238, 238, 238))
        draw.text((X(t) - 6, py1 + 3), _fmt(t), fill=(60, 60, 60), font=font)
    draw.rectangle([px0, py0, px1, py1], outline=(0, 0, 0))
    draw.text(((px0 + px1) // 2 - 12, py1 + 15), xlabel, fill=(0, 0, 0), font=font)
    for name, (xv, yv) in series.items():
        pts = [(X(x), Y(y)) for x, y in zip(xv, yv) if y is not None and math.isfinite(y)]
        c = colours[name]
        if len(pts) > 1:
            if DASHED in name:
                _dashed(draw, pts, c, 2)
            else:
                draw.line(pts, fill=c, width=2)
        for x, y in pts:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=c)


def curves_figure(curves: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]],
                  panels: Sequence[tuple[str, str]], panel_size: tuple[int, int] = (330, 230),
                  xkey: str = "kimg", xlabel: str = "kimg") -> Image.Image:
    """``curves[target][method][key]`` = values (``xkey``: the x axis); ``panels`` = (key, title) pairs.
    Methods keep one colour across every panel and target; a ``+swapK`` row is dashed in its method's."""
    font = ImageFont.load_default()
    methods: list[str] = []
    for per in curves.values():
        for m in per:
            if m not in methods:
                methods.append(m)
    base = [m for m in methods if DASHED not in m] + [m.split(DASHED)[0] for m in methods if DASHED in m]
    base = list(dict.fromkeys(base))
    colours = {m: PALETTE[base.index(m.split(DASHED)[0]) % len(PALETTE)] for m in methods}
    pw, ph = panel_size
    per_line = max(1, (pw * len(panels)) // 150)
    legend_rows = math.ceil(len(methods) / per_line)
    row_h = ph + 22 + 14 * legend_rows
    img = Image.new("RGB", (pw * len(panels), row_h * max(1, len(curves))), "white")
    draw = ImageDraw.Draw(img)
    for r, (target, per) in enumerate(curves.items()):
        top = r * row_h
        draw.text((4, top + 2), f"target: {target} (mean over seeds)", fill=(0, 0, 0), font=font)
        for c, (key, title) in enumerate(panels):
            series = {m: (list(v[xkey]), list(v.get(key) or [])) for m, v in per.items() if v.get(key)}
            _panel(draw, font, (c * pw, top + 14, (c + 1) * pw, top + 14 + ph), title, series, colours, xlabel)
        ly = top + 16 + ph
        for i, m in enumerate(methods):
            lx = 8 + (i % per_line) * 150
            yy = ly + (i // per_line) * 14 + 6
            if DASHED in m:
                _dashed(draw, [(lx, yy), (lx + 22, yy)], colours[m], 2, 4)
            else:
                draw.line([(lx, yy), (lx + 22, yy)], fill=colours[m], width=2)
            draw.text((lx + 26, yy - 6), m, fill=(0, 0, 0), font=font)
    return img
