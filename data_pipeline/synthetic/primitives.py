"""Convex primitives in their local frames: ray intersection, normals and surface coordinates.

Vectors are stored component-major, ``[3, N]``, so that every component is a contiguous array
(several times faster in NumPy than strided ``[N, 3]`` columns). Rays are ``o + t d`` with ``d``
not normalised; ``t`` is returned as is, so camera rays scaled to unit optical-axis length give
z-depth directly.

Local frames: an ellipsoid is centred at the origin with semi-axes ``shape``; a capsule runs
from the origin along +z for ``shape[1]`` metres with radius ``shape[0]``; a box is centred at
the origin with half extents ``shape``.
"""

from __future__ import annotations

import numpy as np

ELLIPSOID, CAPSULE, BOX = 0, 1, 2
NO_HIT = np.float32(np.inf)


def local_bounds(kind: np.ndarray, shape: np.ndarray):
    """Axis-aligned local bounding boxes ``(lo [P, 3], hi [P, 3])`` of primitives ``shape [P, 3]``."""
    hi = shape.astype(np.float64).copy()
    caps = kind == CAPSULE
    radius, length = shape[caps, 0], shape[caps, 1]
    hi[caps] = np.stack([radius, radius, length + radius], axis=-1)
    lo = -hi
    lo[caps, 2] = -radius
    return lo, hi


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _sphere_entry(o: np.ndarray, d: np.ndarray, radius) -> np.ndarray:
    """Entry parameter of rays into a sphere at the origin (inf on a miss).

    Solved about the point of closest approach, which keeps float32 accurate for small
    spheres seen from far away.
    """
    a = _dot(d, d)
    t_mid = -_dot(o, d) / a
    closest = o + t_mid * d
    gap = radius * radius - _dot(closest, closest)
    t = t_mid - np.sqrt(np.maximum(gap, 0.0) / a)
    return np.where(gap >= 0, t, NO_HIT)


def _ellipsoid(o, d, shape):
    return _sphere_entry(o / shape, d / shape, 1.0)


def _capsule(o, d, shape):
    radius, length = shape[0], shape[1]
    # Side of the infinite cylinder around z, solved in the xy plane like the sphere.
    a = np.maximum(d[0] * d[0] + d[1] * d[1], 1e-12)
    t_mid = -(o[0] * d[0] + o[1] * d[1]) / a
    cx, cy = o[0] + t_mid * d[0], o[1] + t_mid * d[1]
    gap = radius * radius - cx * cx - cy * cy
    t_side = t_mid - np.sqrt(np.maximum(gap, 0.0) / a)
    z = o[2] + t_side * d[2]
    t_side = np.where((gap >= 0) & (z >= 0) & (z <= length), t_side, NO_HIT)
    # End caps: the entry into a union of convex parts is the earliest entry into any part.
    top = o.copy()
    top[2] -= length
    return np.minimum(t_side, np.minimum(_sphere_entry(o, d, radius), _sphere_entry(top, d, radius)))


def _box(o, d, shape):
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-shape - o) * inv
        t2 = (shape - o) * inv
    t_near = np.minimum(t1, t2).max(axis=0)
    t_far = np.maximum(t1, t2).min(axis=0)
    return np.where(t_near <= t_far, t_near, NO_HIT)


# Entry parameter ``t [N]`` of rays ``o, d [3, N]`` into primitives of one kind with
# ``shape [3, N]``; inf on a miss, negative when the primitive lies behind the ray.
KERNELS = {ELLIPSOID: _ellipsoid, CAPSULE: _capsule, BOX: _box}


def _angles(x, y, z):
    """Azimuth around z in [0, 1) and polar angle from +z in [0, 1] of directions."""
    azimuth = np.minimum(np.arctan2(y, x) * np.float32(0.5 / np.pi) + np.float32(0.5), np.float32(1.0))
    cos_polar = z / (np.sqrt(x * x + y * y + z * z) + np.float32(1e-12))
    return azimuth, np.arccos(np.clip(cos_polar, -1.0, 1.0)) * np.float32(1.0 / np.pi)


def surface(kind: np.ndarray, shape: np.ndarray, p: np.ndarray):
    """Local geometry at surface points ``p [3, N]`` of primitives ``kind [N]``, ``shape [3, N]``.

    Returns ``normal [3, N]`` (unit, local frame), texture coordinates ``st [2, N]`` in metres
    of surface, ``stretch [2, N]`` (texture units per metre of surface, used to widen the
    texture filter) and a body-surface parameterisation ``uv [2, N]`` in [0, 1]: azimuth and
    polar angle for ellipsoids, azimuth and axial position for capsules.
    """
    n = p.shape[1]
    normal = np.zeros((3, n), np.float32)
    st = np.zeros((2, n), np.float32)
    stretch = np.ones((2, n), np.float32)
    uv = np.zeros((2, n), np.float32)

    sel = np.flatnonzero(kind == ELLIPSOID)
    if len(sel):
        axes = shape[:, sel]
        q = p[:, sel] / axes  # [3, n] point on the unit sphere
        g = q / axes
        normal[:, sel] = g / np.sqrt(_dot(g, g))
        azimuth, polar = _angles(*q)
        uv[:, sel] = azimuth, polar
        mean_r = axes.mean(axis=0)
        st[:, sel] = azimuth * np.float32(2 * np.pi) * mean_r, polar * np.float32(np.pi) * mean_r
        stretch[0, sel] = 1.0 / np.maximum(np.sin(polar * np.float32(np.pi)), 0.05)

    sel = np.flatnonzero(kind == CAPSULE)
    if len(sel):
        radius, length = shape[0, sel], shape[1, sel]
        q = p[:, sel]
        g = q.copy()
        g[2] -= np.clip(q[2], 0.0, length)  # [3, n] offset from the nearest axis point
        normal[:, sel] = g / np.sqrt(_dot(g, g))
        azimuth, _ = _angles(*g)
        uv[:, sel] = azimuth, np.clip((q[2] + radius) / (length + 2 * radius), 0.0, 1.0)
        st[:, sel] = azimuth * np.float32(2 * np.pi) * radius, q[2]

    sel = np.flatnonzero(kind == BOX)
    if len(sel):
        half, q = shape[:, sel], p[:, sel]
        face = np.argmax(np.abs(q) / half, axis=0)  # [n] axis of the face hit
        cols = np.arange(len(sel))
        normal[face, sel] = np.sign(q[face, cols])
        others = np.array([[1, 2], [0, 2], [0, 1]])[face].T  # [2, n] in-face axes
        st[:, sel] = q[others, cols] + half[others, cols]
    return normal, st, stretch, uv
