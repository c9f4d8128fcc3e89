"""Named colours and procedural textures, box-filtered over each pixel's footprint.

Filtering matters at 64x64: an unfiltered checkerboard seen from afar aliases into moire that
no flow field can explain, so every pattern fades towards its mean as its period approaches
the pixel footprint, while staying crisp when it is resolvable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLORS = {
    "red": (0.80, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.82, 0.12),
    "green": (0.15, 0.62, 0.20),
    "cyan": (0.10, 0.72, 0.80),
    "blue": (0.12, 0.28, 0.85),
    "purple": (0.50, 0.18, 0.70),
    "pink": (0.95, 0.50, 0.70),
    "brown": (0.45, 0.28, 0.12),
    "white": (0.92, 0.92, 0.90),
    "gray": (0.50, 0.50, 0.50),
    "black": (0.10, 0.10, 0.10),
}
PATTERNS = ("plain", "striped", "checkered", "dotted", "mottled")
PLAIN, STRIPED, CHECKERED, DOTTED, MOTTLED = range(len(PATTERNS))

# Wave vectors (cycles per period) and amplitudes of the mottled pattern.
_MOTTLE_WAVES = np.array([[1.0, 0.3], [-0.4, 1.1], [2.3, -1.7]], np.float32)
_MOTTLE_AMPS = np.array([0.45, 0.35, 0.2], np.float32)


def accent_color(name: str) -> np.ndarray:
    """Second colour of a patterned surface: white on dark colours, a dark shade on light ones."""
    base = np.array(COLORS[name])
    if base @ np.array([0.3, 0.59, 0.11]) < 0.5:
        return np.array([0.93, 0.93, 0.9])
    return 0.3 * base


@dataclass
class Materials:
    """Table of surface materials referenced by index: two colours, a pattern and its period."""

    base: list = field(default_factory=list)
    accent: list = field(default_factory=list)
    pattern: list = field(default_factory=list)
    period: list = field(default_factory=list)

    def add(self, base, accent, pattern: int, period: float) -> int:
        self.base.append(np.asarray(base, np.float32))
        self.accent.append(np.asarray(accent, np.float32))
        self.pattern.append(pattern)
        self.period.append(period)
        return len(self.period) - 1

    def albedo(self, index: np.ndarray, st: np.ndarray, footprint: np.ndarray) -> np.ndarray:
        """Colour ``[3, N]`` of material ``index [N]`` at texture coordinates ``st [2, N]``
        (metres), averaged over a pixel footprint ``[2, N]`` (metres)."""
        freq = np.take(1.0 / np.asarray(self.period, np.float32), index)
        value = pattern_value(np.take(np.asarray(self.pattern), index), st * freq, footprint * freq)
        base = np.take(np.stack(self.base, axis=1), index, axis=1)  # [3, N]
        accent = np.take(np.stack(self.accent, axis=1), index, axis=1)
        return base + (accent - base) * value


def _square_integral(x):
    """Integral from 0 to x of the square wave that is 1 on the second half of each period."""
    return np.floor(x) * 0.5 + np.maximum(x - np.floor(x) - 0.5, 0.0)


def filtered_square(x: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Square wave of period 1 box-filtered over ``width``: exact area coverage in [0, 1]."""
    width = np.maximum(width, 1e-3)
    return (_square_integral(x + width / 2) - _square_integral(x - width / 2)) / width


def pattern_value(pattern: np.ndarray, st: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Accent coverage in [0, 1] of each pattern at ``st [2, N]`` with filter ``width [2, N]``,
    both in pattern periods. Stripes run along s (they vary with t)."""
    value = np.zeros(len(pattern), np.float32)
    kinds = np.unique(pattern)
    for kind in kinds:
        sel = slice(None) if len(kinds) == 1 else np.flatnonzero(pattern == kind)
        (s, t), (ws, wt) = st[:, sel], width[:, sel]
        if kind == STRIPED:
            value[sel] = filtered_square(t, wt)
        elif kind == CHECKERED:
            a, b = filtered_square(s, ws), filtered_square(t, wt)
            value[sel] = a + b - 2 * a * b
        elif kind == DOTTED:
            # Dots of radius 0.3 on a unit lattice; edge blurred by the footprint, then faded
            # to their area fraction once they shrink below a pixel.
            w = np.maximum(ws, wt)
            dist = np.hypot(s - np.floor(s) - 0.5, t - np.floor(t) - 0.5)
            dots = np.clip((0.3 - dist) / np.maximum(w, 1e-3) + 0.5, 0.0, 1.0)
            fade = np.clip(2 * w - 0.5, 0.0, 1.0)
            value[sel] = dots + (np.float32(np.pi * 0.09) - dots) * fade
        elif kind == MOTTLED:
            w = np.maximum(ws, wt)
            total = np.full(len(s), 0.5, np.float32)
            for (ks, kt), amp in zip(_MOTTLE_WAVES, _MOTTLE_AMPS):
                gain = np.clip(1.0 - np.hypot(ks, kt) * w, 0.0, 1.0)
                total += (0.5 * amp) * np.sin(np.float32(2 * np.pi) * (ks * s + kt * t)) * gain
            value[sel] = total
    return value
