"""Line plots as PNG with OpenCV (a core dependency), so benchmarks need no plotting library."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]  # RGB
WIDTH, HEIGHT, MARGIN = 900, 540, (90, 40, 60, 70)  # margins: left, top, right, bottom


def _ticks(low: float, high: float, log: bool, count: int = 5) -> list[tuple[float, float]]:
    """``(position, value)`` of the y ticks; positions are in plotted (log10 when ``log``) units."""
    if log:
        steps = [e + math.log10(m) for e in range(math.floor(low), math.ceil(high) + 1) for m in (1, 2, 5)]
        return [(p, 10.0**p) for p in steps]
    return [(p, p) for p in np.linspace(low, high, count)]


def _label(value: float) -> str:
    return f"{value:.3g}"


def line_plot(
    series: dict[str, list[tuple[float, float]]],
    path: str | Path,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_y: bool = False,
) -> np.ndarray:
    """Draw one line per ``name: [(x, y), ...]`` with a legend; writes ``path`` and returns the RGB image."""
    points = [(x, y) for line in series.values() for x, y in line if y is not None and (y > 0 or not log_y)]
    if not points:
        raise ValueError("nothing to plot")
    xs, ys = np.array([p[0] for p in points], float), np.array([p[1] for p in points], float)
    fy = np.log10 if log_y else (lambda v: np.asarray(v, float))
    x0, x1 = xs.min(), xs.max() if xs.max() > xs.min() else xs.min() + 1
    y0, y1 = float(fy(ys.min())), float(fy(ys.max()))
    if y1 == y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    left, top, right, bottom = MARGIN
    w, h = WIDTH - left - right, HEIGHT - top - bottom

    def at(x, y) -> tuple[int, int]:
        return (int(left + (x - x0) / (x1 - x0) * w), int(top + h - (fy(y) - y0) / (y1 - y0) * h))

    image = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    font, grey = cv2.FONT_HERSHEY_SIMPLEX, (90, 90, 90)
    cv2.rectangle(image, (left, top), (left + w, top + h), grey, 1)
    for position, value in _ticks(y0, y1, log_y):
        y = int(top + h - (position - y0) / (y1 - y0) * h)
        if top <= y <= top + h:
            cv2.line(image, (left, y), (left + w, y), (225, 225, 225), 1)
            cv2.putText(image, _label(value), (8, y + 4), font, 0.4, grey, 1, cv2.LINE_AA)
    for tick in np.linspace(x0, x1, 6):
        x = at(tick, ys.max())[0]
        cv2.putText(image, _label(tick), (x - 12, top + h + 18), font, 0.4, grey, 1, cv2.LINE_AA)
    for k, (name, line) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        kept = [at(x, y) for x, y in line if y is not None and (y > 0 or not log_y)]
        if len(kept) > 1:
            cv2.polylines(image, [np.array(kept, np.int32)], False, colour, 2, cv2.LINE_AA)
        for p in kept:
            cv2.circle(image, p, 3, colour, -1, cv2.LINE_AA)
        y = top + 12 + 18 * k
        cv2.line(image, (left + w - 230, y - 4), (left + w - 205, y - 4), colour, 2)
        cv2.putText(image, name, (left + w - 200, y), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, title, (left + w // 2 - 5 * len(title), 22), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, xlabel, (left + w // 2 - 20, HEIGHT - 20), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, ylabel + (" (log)" if log_y else ""), (8, top - 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if not cv2.imwrite(str(path), image[..., ::-1]):
        raise ValueError(f"could not write {path}")
    return image
