"""Pinhole camera with one pose per frame and the scripted camera motions of the synthetic world.

World frame: x, y span the ground plane, z points up. Camera frame follows OpenCV: x right,
y down, z forward. Pixel convention (also OpenCV's): the pixel in row ``i``, column ``j`` has its
centre at ``(x, y) = (j, i)`` and covers ``[j - 0.5, j + 0.5) x [i - 0.5, i + 0.5)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CAMERA_MOTIONS = (
    "static",
    "pan left",
    "pan right",
    "dolly in",
    "dolly out",
    "orbit left",
    "orbit right",
)

_UP = np.array([0.0, 0.0, 1.0])


@dataclass
class Camera:
    """Shared intrinsics plus a camera-to-world rotation and a centre for every frame."""

    intrinsics: np.ndarray  # [3, 3]
    rotation: np.ndarray  # [T, 3, 3], columns are the camera axes in world coordinates
    centre: np.ndarray  # [T, 3]
    height: int
    width: int

    @property
    def world_to_camera(self) -> np.ndarray:
        """Extrinsics ``[T, 4, 4]`` mapping homogeneous world points to camera coordinates."""
        frames = len(self.centre)
        rot_t = self.rotation.transpose(0, 2, 1)
        out = np.zeros((frames, 4, 4))
        out[:, :3, :3] = rot_t
        out[:, :3, 3] = -np.einsum("tij,tj->ti", rot_t, self.centre)
        out[:, 3, 3] = 1.0
        return out

    def project(self, points: np.ndarray):
        """Project world points ``[T, ..., 3]``, one set per frame, with that frame's camera.

        Returns ``(xy [T, ..., 2], z [T, ...])``: pixel coordinates and depth along the optical
        axis.
        """
        flat = points.reshape(len(points), -1, 3)  # [T, M, 3]
        cam = np.matmul(flat - self.centre[:, None], self.rotation).reshape(points.shape)  # R^T (p - c)
        z = cam[..., 2]
        k = self.intrinsics
        with np.errstate(divide="ignore", invalid="ignore"):
            x = k[0, 0] * cam[..., 0] / z + k[0, 2]
            y = k[1, 1] * cam[..., 1] / z + k[1, 2]
        return np.stack([x, y], axis=-1), z


def intrinsics_for(horizontal_fov_deg: float, height: int, width: int) -> np.ndarray:
    """Square-pixel intrinsics with the principal point at the image centre."""
    focal = 0.5 * width / np.tan(np.radians(horizontal_fov_deg) / 2)
    return np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height - 1) / 2], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations ``[T, 3, 3]`` looking from ``eye`` to ``target`` with z up."""
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, _UP)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=-1)


def _rotate_z(vectors: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """Rotate ``[T, 3]`` vectors about the world z axis by ``[T]`` angles (counter-clockwise)."""
    c, s = np.cos(angles), np.sin(angles)
    x, y = vectors[..., 0], vectors[..., 1]
    return np.stack([c * x - s * y, s * x + c * y, vectors[..., 2]], axis=-1)


def roll_about_forward(rotation: np.ndarray, angle: float) -> np.ndarray:
    """Turn camera-to-world rotations ``[T, 3, 3]`` by ``angle`` radians about their optical axis."""
    c, s = np.cos(angle), np.sin(angle)
    return rotation @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def camera_path(motion: str, eye: np.ndarray, target: np.ndarray, times: np.ndarray, rate: float, roll: float = 0.0):
    """Per-frame ``(rotation [T, 3, 3], centre [T, 3])`` of a scripted motion.

    ``eye`` and ``target`` give the view at the middle of the clip; the motion runs at a
    constant ``rate`` (radians per second for pans and orbits, metres per second for dollies)
    on either side of it, so the clip is centred on the sampled view. "pan left" turns the
    camera to its left; "orbit left" moves it to its left around the target. ``roll`` (radians)
    tilts the horizon for the whole clip.
    """
    if motion not in CAMERA_MOTIONS:
        raise ValueError(f"unknown camera motion {motion!r}; choose from {CAMERA_MOTIONS}")
    s = times - (times[0] + times[-1]) / 2  # [T] seconds from the middle frame
    eye = np.broadcast_to(eye, (len(times), 3)).astype(np.float64)
    target = np.broadcast_to(target, (len(times), 3)).astype(np.float64)
    sign = -1.0 if motion.endswith("right") or motion.endswith("out") else 1.0
    if motion.startswith("pan"):
        target = eye + _rotate_z(target - eye, sign * rate * s)
    elif motion.startswith("dolly"):
        ahead = (target - eye) * np.array([1.0, 1.0, 0.0])
        ahead /= np.linalg.norm(ahead, axis=-1, keepdims=True)
        shift = sign * rate * s[:, None] * ahead
        eye, target = eye + shift, target + shift
    elif motion.startswith("orbit"):
        # The camera's left is clockwise around the target seen from above.
        eye = target + _rotate_z(eye - target, -sign * rate * s)
    return roll_about_forward(look_at(eye, target), roll), eye
