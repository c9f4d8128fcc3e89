"""Inline SVG charts for the HTML report: grouped horizontal bars and line curves, no plotting library.

SVG keeps the report one self-contained file that any browser renders, and the charts stay sharp
when zoomed. Bars are coloured by role, so a model's bar reads at once against its baselines,
its negative controls and the real-data ceiling.
"""

from __future__ import annotations

import html
import math

ROLE_COLOURS = {  # role of a bar -> fill
    "model": "#1f77b4",
    "baseline": "#9a9a9a",
    "control": "#e6822e",
    "ceiling": "#2ca02c",
}
LINE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
LABEL_W, BAR_W, ROW_H, PAD = 210, 260, 18, 6


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def bar_chart(title: str, higher: bool, bars: list[tuple[str, float | None, str]]) -> str:
    """One metric as horizontal bars ``(label, value or None, role)``; None draws "n/a". Returns an SVG element."""
    values = [v for _, v, _ in bars if v is not None and math.isfinite(v)]
    top = max([abs(v) for v in values] + [1e-12])
    height = PAD * 2 + 20 + ROW_H * len(bars)
    width = LABEL_W + BAR_W + 70
    arrow = "higher is better" if higher else "lower is better"
    parts = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{PAD}" y="{PAD + 12}" class="ct">{_esc(title)} <tspan class="cs">({arrow})</tspan></text>',
    ]
    for i, (label, value, role) in enumerate(bars):
        y = PAD + 20 + i * ROW_H
        parts.append(f'<text x="{LABEL_W - 6}" y="{y + 12}" text-anchor="end" class="cl">{_esc(label)}</text>')
        if value is None or not math.isfinite(value):
            parts.append(f'<text x="{LABEL_W + 4}" y="{y + 12}" class="cn">n/a</text>')
            continue
        length = max(1.0, BAR_W * abs(value) / top)
        colour = ROLE_COLOURS[role]
        parts.append(f'<rect x="{LABEL_W}" y="{y + 2}" width="{length:.1f}" height="{ROW_H - 5}" fill="{colour}"/>')
        parts.append(f'<text x="{LABEL_W + length + 4:.1f}" y="{y + 12}" class="cv">{value:.4g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def legend() -> str:
    """The colour key of the bar roles, as HTML."""
    names = {"model": "model", "baseline": "trivial baseline", "control": "negative control", "ceiling": "real data"}
    return " ".join(
        f'<span class="key"><span class="sw" style="background:{ROLE_COLOURS[r]}"></span>{names[r]}</span>'
        for r in ROLE_COLOURS
    )


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], log_y: bool = True) -> str:
    """Curves ``{name: [(x, y)]}`` in one SVG (log y by default, for losses); empty series are left out."""
    series = {k: [(x, y) for x, y in v if y is not None and (y > 0 or not log_y)] for k, v in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xs = [x for v in series.values() for x, _ in v]
    ys = [fy(y) for v in series.values() for _, y in v]
    x0, x1 = min(xs), max(max(xs), min(xs) + 1)
    y0, y1 = min(ys), max(max(ys), min(ys) + 1e-6)
    w, h, left, top = 520, 220, 56, 28
    width, height = left + w + 190, top + h + 34

    def at(x, y):
        return left + (x - x0) / (x1 - x0) * w, top + h - (fy(y) - y0) / (y1 - y0) * h

    parts = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
        f'<text x="{left}" y="16" class="ct">{_esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#bbb"/>',
    ]
    for k in range(5):
        value = y0 + (y1 - y0) * k / 4
        y = top + h - h * k / 4
        label = 10**value if log_y else value
        parts.append(f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="cs">{label:.3g}</text>')
    for k in range(5):
        x = x0 + (x1 - x0) * k / 4
        parts.append(f'<text x="{at(x, 1)[0]:.1f}" y="{top + h + 14}" text-anchor="middle" class="cs">{x:.0f}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{top + h + 30}" text-anchor="middle" class="cs">step</text>')
    for i, (name, points) in enumerate(series.items()):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in (at(x, y) for x, y in points))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        ly = top + 10 + 16 * i
        parts.append(f'<rect x="{left + w + 10}" y="{ly - 8}" width="12" height="3" fill="{colour}"/>')
        parts.append(f'<text x="{left + w + 26}" y="{ly - 3}" class="cl">{_esc(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)
