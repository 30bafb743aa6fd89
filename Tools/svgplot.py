#!/usr/bin/env python3
"""A small SVG line/scatter chart writer for the benchmark reports (standard library only).

    from svgplot import chart
    svg = chart(
        [{"name": "vecstore", "points": [(0.93, 18299, "ef 16"), (0.98, 12442, "ef 32")]},
         {"name": "hnswlib", "points": [(0.93, 17160, None)], "dashed": True}],
        title="docs60k HNSW", x_label="recall@10", y_label="queries/s (1 thread)", log_y=True)
    open("plot.svg", "w").write(svg)

Each series is a polyline through its points (in the order given) with a marker per point, an
optional label beside each marker, and a legend entry. Markers carry a <title> with the exact values
(shown on hover in a browser). Axes get "nice" ticks; `log_y` uses a log10 scale for the y axis.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

PALETTE = ["#4e79a7", "#e15759", "#59a14f", "#f28e2b", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]
MARKERS = ["circle", "square", "diamond", "triangle"]


def _nice_ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    if hi - lo <= 0:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000:
        return f"{v / 1000:g}k" if a < 1e6 else f"{v / 1e6:g}M"
    if a >= 1:
        return f"{v:g}"
    return f"{v:.3g}"


def _marker(kind: str, x: float, y: float, color: str, title: str) -> str:
    t = f"<title>{escape(title)}</title>"
    if kind == "square":
        return f'<rect x="{x - 4:.2f}" y="{y - 4:.2f}" width="8" height="8" fill="{color}">{t}</rect>'
    if kind == "diamond":
        pts = f"{x:.2f},{y - 5:.2f} {x + 5:.2f},{y:.2f} {x:.2f},{y + 5:.2f} {x - 5:.2f},{y:.2f}"
        return f'<polygon points="{pts}" fill="{color}">{t}</polygon>'
    if kind == "triangle":
        pts = f"{x:.2f},{y - 5:.2f} {x + 5:.2f},{y + 4:.2f} {x - 5:.2f},{y + 4:.2f}"
        return f'<polygon points="{pts}" fill="{color}">{t}</polygon>'
    return f'<circle cx="{x:.2f}" cy="{y:.2f}" r="4" fill="{color}">{t}</circle>'


def _head(width: int, height: int, title: str, subtitle: str | None, left: int) -> list[str]:
    """The opening lines of a chart: XML declaration, <svg> element, white background, title and subtitle."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
           f"<title>{escape(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="{left}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>']
    if subtitle:
        out.append(f'<text x="{left}" y="42" fill="#555555">{escape(subtitle)}</text>')
    return out


def chart(series: list[dict], title: str, x_label: str, y_label: str, log_y: bool = False,
          width: int = 760, height: int = 480, subtitle: str | None = None) -> str:
    """An SVG document plotting `series` (dicts with name, points [(x, y, label|None)], optional color,
    dashed, marker)."""
    pts = [(x, y) for s in series for (x, y, *_rest) in s["points"] if x is not None and y is not None]
    if not pts:
        raise ValueError("chart: no points")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    xlo, xhi = min(xs), max(xs)
    pad = (xhi - xlo) * 0.06 or 0.01
    xlo, xhi = xlo - pad, xhi + pad
    if log_y:
        ylo, yhi = min(ys) / 1.3, max(ys) * 1.3
        yticks = _log_ticks(ylo, yhi)
    else:
        ylo, yhi = min(0.0, min(ys)), max(ys) * 1.08
        yticks = _nice_ticks(ylo, yhi)
    xticks = _nice_ticks(xlo, xhi)
    left, right, top, bottom = 78, 215, 58 if subtitle else 44, 56
    pw, ph = width - left - right, height - top - bottom

    def px(x):
        return left + (x - xlo) / (xhi - xlo) * pw

    def py(y):
        if log_y:
            return top + ph - (math.log10(y) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo)) * ph
        return top + ph - (y - ylo) / (yhi - ylo) * ph

    out = _head(width, height, title, subtitle, left)
    out.append('<g stroke="#e4e4e4">')
    for t in xticks:
        if xlo <= t <= xhi:
            out.append(f'<line x1="{px(t):.2f}" y1="{top}" x2="{px(t):.2f}" y2="{top + ph}"/>')
    for t in yticks:
        out.append(f'<line x1="{left}" y1="{py(t):.2f}" x2="{left + pw}" y2="{py(t):.2f}"/>')
    out.append("</g>")
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#888888"/>')
    out.append('<g fill="#444444" font-size="11">')
    for t in xticks:
        if xlo <= t <= xhi:
            out.append(f'<text x="{px(t):.2f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in yticks:
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.2f}" text-anchor="end">{_fmt(t)}</text>')
    out.append("</g>")
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 14}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(20 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"{escape(y_label)}</text>")
    for i, s in enumerate(series):
        color = s.get("color") or PALETTE[i % len(PALETTE)]
        marker = s.get("marker") or MARKERS[i % len(MARKERS)]
        good = [p for p in s["points"] if p[0] is not None and p[1] is not None]
        dash = ' stroke-dasharray="6 4"' if s.get("dashed") else ""
        if len(good) > 1 and not s.get("no_line"):
            path = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y, *_ in good)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}/>')
        for p in good:
            x, y = p[0], p[1]
            label = p[2] if len(p) > 2 else None
            tip = f"{s['name']}: {x_label} {x:.4g}, {y_label} {y:,.4g}" + (f" ({label})" if label else "")
            out.append(_marker(marker, px(x), py(y), color, tip))
            if label:
                out.append(f'<text x="{px(x) + 6:.2f}" y="{py(y) - 6:.2f}" font-size="10" fill="{color}">'
                           f"{escape(str(label))}</text>")
        ly = top + 8 + 20 * i
        lx = left + pw + 16
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>')
        out.append(_marker(marker, lx + 11, ly, color, s["name"]))
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{escape(s["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write(path: str, svg: str) -> None:
    """Writes `svg` to `path`, creating the directory."""
    import os
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(svg)


def bars(groups: list[str], series: list[dict], title: str, y_label: str, width: int = 760, height: int = 420,
         subtitle: str | None = None) -> str:
    """An SVG grouped bar chart: one group per entry of `groups`, one bar per series (dicts with name and
    values aligned with `groups`; None leaves a gap). Bars carry a <title> with the exact value."""
    vals = [v for s in series for v in s["values"] if v is not None]
    if not vals:
        raise ValueError("bars: no values")
    ymax = max(vals) * 1.1
    yticks = _nice_ticks(0.0, ymax)
    left, right, top, bottom = 78, 170, 58 if subtitle else 44, 56
    pw, ph = width - left - right, height - top - bottom

    def py(y):
        return top + ph - y / yticks[-1] * ph if yticks[-1] > 0 else top + ph

    out = _head(width, height, title, subtitle, left)
    out.append('<g stroke="#e4e4e4">')
    for t in yticks:
        out.append(f'<line x1="{left}" y1="{py(t):.2f}" x2="{left + pw}" y2="{py(t):.2f}"/>')
    out.append("</g>")
    out.append('<g fill="#444444" font-size="11">')
    for t in yticks:
        out.append(f'<text x="{left - 6}" y="{py(t) + 4:.2f}" text-anchor="end">{_fmt(t)}</text>')
    out.append("</g>")
    gw = pw / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    for gi, g in enumerate(groups):
        gx = left + gi * gw + gw * 0.1
        out.append(f'<text x="{left + gi * gw + gw / 2:.2f}" y="{top + ph + 16}" text-anchor="middle" '
                   f'font-size="11">{escape(g)}</text>')
        for si, s in enumerate(series):
            v = s["values"][gi]
            if v is None:
                continue
            color = s.get("color") or PALETTE[si % len(PALETTE)]
            x = gx + si * bw
            out.append(f'<rect x="{x:.2f}" y="{py(v):.2f}" width="{bw - 2:.2f}" height="{top + ph - py(v):.2f}" '
                       f'fill="{color}"><title>{escape(s["name"])}, {escape(g)}: {v:,.4g}</title></rect>')
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#888888"/>')
    out.append(f'<text transform="translate(20 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
               f"{escape(y_label)}</text>")
    for si, s in enumerate(series):
        color = s.get("color") or PALETTE[si % len(PALETTE)]
        ly = top + 8 + 20 * si
        out.append(f'<rect x="{left + pw + 16}" y="{ly - 6}" width="12" height="12" fill="{color}"/>')
        out.append(f'<text x="{left + pw + 34}" y="{ly + 4}">{escape(s["name"])}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
