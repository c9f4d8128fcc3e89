"""Pixel colour: the sky-and-hills backdrop, Lambert shading under a sun plus ambient light,
and distance haze, so that brightness, shading and contrast all carry depth cues.
Colours are component-major ``[3, N]`` float32."""

from __future__ import annotations

import numpy as np

from .scene import BACKDROP_RADIUS, Scene


def backdrop_color(scene: Scene, points: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Colour ``[3, N]`` of backdrop points ``[3, N]``: a sky gradient above a hill skyline.

    Angles are handled through the unit complex number of the azimuth (its powers give the
    skyline's harmonics) and the sine of the elevation, avoiding slow inverse trigonometry.
    ``footprint [N]`` is the pixel size in metres on the dome; it softens the skyline edge.
    """
    centre = scene.backdrop_centre.astype(np.float32)
    vx, vy = points[0] - centre[0], points[1] - centre[1]
    rise = (points[2] - centre[2]) * np.float32(1.0 / BACKDROP_RADIUS)  # sine of the elevation
    z1 = (vx + 1j * vy).astype(np.complex64)
    z1 /= np.abs(z1) + np.float32(1e-6)  # [N] exp(i azimuth)
    z3 = z1 * z1 * z1
    z7 = z3 * z3 * z1
    a1, a2, p1, p2 = scene.skyline
    harmonics = np.complex64(a1 * np.exp(1j * p1)) * z3 + np.complex64(a2 * np.exp(1j * p2)) * z7
    skyline = 0.07 + harmonics.imag  # [N] elevation (as a sine) of the hill tops
    hill = np.clip((skyline - rise) * BACKDROP_RADIUS / np.maximum(footprint, 1e-3) + 0.5, 0.0, 1.0)

    zenith, horizon, hills = (np.asarray(c, np.float32)[:, None] for c in scene.sky_colors)
    height = np.clip(rise * 2.0, 0.0, 1.0) ** 0.7
    clouds = 0.04 * (z3 * z3 * np.exp(1j * 9 * rise).astype(np.complex64)).imag * z1.real
    sky = horizon + (zenith - horizon) * height + clouds
    relief = 0.75 + 0.25 * np.clip(rise / np.maximum(skyline, 1e-3), 0.0, 1.0) + 0.06 * (z7 * z7 * z3).imag
    land = hills * relief
    return (sky + (land - sky) * hill).astype(np.float32)


def lambert(albedo: np.ndarray, cos_light: np.ndarray, ambient: float) -> np.ndarray:
    """Diffuse colour ``[3, N]`` from albedo and the cosine between normal and sun direction."""
    return albedo * (ambient + (1.0 - ambient) * np.maximum(cos_light, 0.0))


def haze(scene: Scene, color: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Blend ``[3, N]`` colours towards the horizon colour with ray length ``distance [N]``."""
    fog = 1.0 - np.exp(-distance * np.float32(1.0 / scene.haze_distance))
    return color + (np.asarray(scene.sky_colors[1], np.float32)[:, None] - color) * fog
