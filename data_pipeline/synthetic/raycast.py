"""Vectorised ray casting of a whole clip at once, with screen-space culling.

Rays are given as ``(frame, x, y)``: the camera ray of ``frame`` through the (sub-)pixel
position ``(x, y)``, scaled so that its parameter is z-depth. Every primitive's projected
bounding box is computed for every frame, and a ray is tested against a primitive only if the
pixel cell containing it lies in that box; all (ray, primitive) candidates of one primitive kind
are intersected in a single batch. Ids returned: GROUND, BACKDROP, or FIRST_PRIMITIVE + index.

Per (primitive, frame) quantities live in tables ``[k, P * T]`` indexed by ``p * T + frame``,
gathered with ``np.take`` along axis 1 (component-major, see ``primitives``).
"""

from __future__ import annotations

import numpy as np

from .camera import Camera
from .primitives import KERNELS, NO_HIT, local_bounds
from .scene import BACKDROP_RADIUS, Scene

GROUND, BACKDROP, FIRST_PRIMITIVE = 0, 1, 2
NEAR = 0.05  # metres; a primitive reaching closer than this to the camera is not culled


def _expand(counts: np.ndarray):
    """For segment lengths ``counts [K]``: segment id and offset within it of every element."""
    segment = np.repeat(np.arange(len(counts)), counts)
    offset = np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)
    return segment, offset


def matvec(m: np.ndarray, x, y, z) -> np.ndarray:
    """Row-major 3x3 matrices ``m [9, N]`` times vectors with components ``x, y, z``: ``[3, N]``."""
    return np.stack([m[3 * i] * x + m[3 * i + 1] * y + m[3 * i + 2] * z for i in range(3)])


def _table(a: np.ndarray) -> np.ndarray:
    """``[P, T, ...]`` per-pair values to a float32 table ``[k, P * T]``."""
    flat = a.reshape(a.shape[0] * a.shape[1], int(np.prod(a.shape[2:])))
    return np.ascontiguousarray(flat.T, dtype=np.float32)


class RayCaster:
    """Intersects batches of camera rays with a scene seen through a camera."""

    def __init__(self, scene: Scene, camera: Camera):
        self.scene, self.camera = scene, camera
        self.frames, self.height, self.width = len(camera.centre), camera.height, camera.width
        k = camera.intrinsics
        self.k = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        cam_rot, centre = camera.rotation, camera.centre
        rot_t = scene.rotation.transpose(0, 1, 3, 2)  # [P, T, 3, 3] world -> local
        # Camera-frame ray direction -> local direction (row-major 3x3), camera centre and sun
        # direction in each primitive's local frame.
        self.to_local = _table(rot_t @ cam_rot[None])  # [9, P*T]
        self.eye_local = _table(np.einsum("ptij,ptj->pti", rot_t, centre[None] - scene.origin))  # [3, P*T]
        self.light_local = _table(np.einsum("ptij,j->pti", rot_t, scene.light))  # [3, P*T]
        self.shape = np.ascontiguousarray(scene.shape.T, dtype=np.float32)  # [3, P]
        # Per-frame scalars for the ground and the dome (see _background).
        dome = centre - scene.backdrop_centre
        self.background = np.concatenate(
            [
                cam_rot[:, 2, :].T,  # world z of the camera axes
                centre[None, :, 2],
                np.einsum("tji,tj->it", cam_rot, dome),  # dome-relative eye in camera axes
                (np.sum(dome**2, axis=1) - BACKDROP_RADIUS**2)[None],
            ]
        ).astype(np.float32)  # [8, T]
        self.rects = self._screen_rects()  # [P, T, 4] inclusive pixel ranges x0, x1, y0, y1

    def _screen_rects(self) -> np.ndarray:
        """Pixel rectangles covering each primitive's projection, from its 8 box corners."""
        scene = self.scene
        lo, hi = local_bounds(scene.kind, scene.shape)
        corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
        local = lo[:, None] + corners[None] * (hi - lo)[:, None]  # [P, 8, 3]
        world = np.einsum("ptij,pcj->tpci", scene.rotation, local) + scene.origin.transpose(1, 0, 2)[:, :, None]
        xy, z = self.camera.project(world)  # [T, P, 8, 2], [T, P, 8]
        xy = np.nan_to_num(xy, nan=0.0, posinf=0.0, neginf=0.0)
        lo_xy = np.floor(xy.min(axis=2) + 0.49)  # [T, P, 2] cell holding the leftmost point
        hi_xy = np.floor(xy.max(axis=2) + 0.51)
        rect = np.stack([lo_xy[..., 0], hi_xy[..., 0], lo_xy[..., 1], hi_xy[..., 1]], axis=-1)
        rect = np.clip(rect, -1, [self.width, self.width - 1, self.height, self.height - 1])
        rect[..., ::2] = np.maximum(rect[..., ::2], 0)  # empty when x0 > x1 or y0 > y1
        rect[z.min(axis=2) < NEAR] = [0, self.width - 1, 0, self.height - 1]
        rect[z.max(axis=2) < NEAR] = [0, -1, 0, -1]
        return rect.transpose(1, 0, 2).astype(np.int64)

    def directions(self, x, y):
        """Camera-frame ray directions ``(dx, dy)`` (dz = 1) through pixel positions, float32."""
        fx, fy, cx, cy = self.k
        return ((x - cx) / fx).astype(np.float32), ((y - cy) / fy).astype(np.float32)

    def cast(self, frame: np.ndarray, x: np.ndarray, y: np.ndarray, grid: bool = False):
        """Nearest hit of each ray: ``(depth float32 [N], id int32 [N])``.

        ``grid=True`` declares the rays to be exactly the pixel centres of all frames in
        ``[T, H, W]`` order, which skips bucketing them into cells.
        """
        dx, dy = self.directions(x, y)
        depth, ids = self._background(frame, dx, dy)
        cells = None if grid else self._cells(frame, x, y)
        for kind, kernel in KERNELS.items():
            prims = np.flatnonzero(self.scene.kind == kind)
            if len(prims) == 0:
                continue
            pair, ray = self._candidates(prims, cells)
            if len(ray) == 0:
                continue
            p = prims[pair // self.frames]
            q = p * self.frames + pair % self.frames
            d = matvec(np.take(self.to_local, q, axis=1), dx[ray], dy[ray], 1.0)  # [3, M] local directions
            t = kernel(np.take(self.eye_local, q, axis=1), d, np.take(self.shape, p, axis=1))
            hit = np.flatnonzero((t > 0) & (t < NO_HIT))
            ray, t, p = ray[hit], t[hit], p[hit]
            np.minimum.at(depth, ray, t)
            win = t == depth[ray]
            ids[ray[win]] = FIRST_PRIMITIVE + p[win]
        return depth, ids

    def _background(self, frame, dx, dy):
        """Depth and id of the ground plane or the backdrop dome, whichever each ray meets first.

        Both are solved from per-frame scalars: the world height of the ray direction for the
        ground, and the camera centre relative to the dome (in camera axes) for the dome.
        """
        zx, zy, zz, eye_z, ox, oy, oz, c = np.take(self.background, frame, axis=1)
        dz = zx * dx + zy * dy + zz
        with np.errstate(divide="ignore"):
            t_ground = np.where(dz < 0, -eye_z / dz, NO_HIT)
        a = 1.0 + dx * dx + dy * dy
        b = ox * dx + oy * dy + oz
        t_dome = (np.sqrt(b * b - a * c) - b) / a
        ground = t_ground < t_dome
        return np.where(ground, t_ground, t_dome), np.where(ground, GROUND, BACKDROP).astype(np.int32)

    def _cells(self, frame, x, y):
        """Bucket arbitrary rays by pixel cell: ``(order, start [T*H*W], count [T*H*W])``."""
        col = np.clip(np.floor(x + 0.5), 0, self.width - 1).astype(np.int64)
        row = np.clip(np.floor(y + 0.5), 0, self.height - 1).astype(np.int64)
        cell = (frame * self.height + row) * self.width + col
        count = np.bincount(cell, minlength=self.frames * self.height * self.width)
        return np.argsort(cell, kind="stable"), np.cumsum(count) - count, count

    def _candidates(self, prims: np.ndarray, cells):
        """All (primitive-frame pair, ray) candidates of the given primitives.

        Pairs are numbered ``i * T + frame`` with ``i`` indexing ``prims``.
        """
        rect = self.rects[prims].reshape(-1, 4)  # [len(prims) * T, 4]
        width = np.maximum(rect[:, 1] - rect[:, 0] + 1, 0)
        height = np.maximum(rect[:, 3] - rect[:, 2] + 1, 0)
        pair, offset = _expand(width * height)
        col = rect[pair, 0] + offset % width[pair]
        row = rect[pair, 2] + offset // width[pair]
        cell = ((pair % self.frames) * self.height + row) * self.width + col
        if cells is None:
            return pair, cell
        order, start, count = cells
        which, offset = _expand(count[cell])
        return pair[which], order[start[cell[which]] + offset]
