"""Articulated humanoid: a gait cycle drives a kinematic chain whose rigid links carry the
14 body parts of ``skeleton.BODY_PARTS`` and whose joints are ``skeleton.JOINTS``.

Body frame: x forward, y left, z up. Every part is a rigid body (fixed bone lengths), so a point
on its surface keeps its local coordinates from frame to frame, which is what makes the optical
flow and DensePose coordinates exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_pipeline.skeleton import BODY_PARTS, JOINTS

from .primitives import CAPSULE, ELLIPSOID

# Gait parameters per motion: stride cycles per second, stride length / body height, and
# swing amplitudes (radians) of hip, knee, shoulder and elbow.
GAITS = {
    "walking": dict(cadence=0.9, stride=0.8, hip=0.42, knee=0.9, shoulder=0.35, elbow=0.35),
    "jogging": dict(cadence=1.2, stride=0.85, hip=0.6, knee=1.5, shoulder=0.6, elbow=1.2),
    "waving": dict(cadence=0.0, stride=0.0, hip=0.0, knee=0.0, shoulder=0.08, elbow=0.25),
}

# Proportions as fractions of body height.
_HIP_WIDTH, _SHOULDER_WIDTH, _SHOULDER_DROP = 0.05, 0.105, 0.025
_TORSO, _NECK_TO_HEAD = 0.30, 0.09
_UPPER_ARM, _FOREARM, _THIGH, _SHIN, _ANKLE = 0.17, 0.15, 0.245, 0.245, 0.04

# Part shapes as fractions of body height: ellipsoid semi-axes (local x forward, y left, z along
# the part) and capsules as (proximal joint, radius, length).
_ELLIPSOIDS = dict(
    head=(0.05, 0.057, 0.066), torso=(0.063, 0.097, 0.17), hand=(0.014, 0.022, 0.04), foot=(0.06, 0.025, 0.022)
)
_CAPSULES = dict(
    upper_arm=("shoulder", 0.026, _UPPER_ARM),
    lower_arm=("elbow", 0.021, _FOREARM),
    upper_leg=("hip", 0.042, _THIGH),
    lower_leg=("knee", 0.031, _SHIN),
)

_FLIP = np.diag([1.0, -1.0, -1.0])  # local +z onto the hanging direction -z


def _rot(axis: int, angle: np.ndarray) -> np.ndarray:
    """Rotations ``[T, 3, 3]`` about body axis 0 (x), 1 (y) or 2 (z) by ``[T]`` angles."""
    angle = np.asarray(angle, dtype=np.float64)
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out = np.zeros(angle.shape + (3, 3))
    out[..., axis, axis] = 1.0
    out[..., i, i], out[..., i, j], out[..., j, i], out[..., j, j] = c, -s, s, c
    return out


def _swing(angle):
    """Rotation swinging a hanging limb forward by ``angle`` (about the body's left axis)."""
    return _rot(1, -np.asarray(angle))


def _attach(rotation: np.ndarray, origin: np.ndarray, offset) -> np.ndarray:
    """Points ``[T, 3]`` at ``offset`` (in the frames ``rotation [T, 3, 3]``) from ``origin``."""
    return origin + np.einsum("tij,j->ti", rotation, np.asarray(offset, dtype=np.float64))


@dataclass
class Humanoid:
    """One person's sampled appearance and motion parameters (all in metres / seconds)."""

    height: float
    start: np.ndarray  # [2] ground position at time 0
    heading: float  # walking direction, radians from the world x axis
    motion: str  # key of GAITS
    phase: float  # gait phase at time 0

    @property
    def speed(self) -> float:
        gait = GAITS[self.motion]
        return gait["cadence"] * gait["stride"] * self.height

    def pose(self, times: np.ndarray):
        """Joint positions ``[T, 15, 3]`` and part poses at ``times [T]``.

        Part poses are ``(kind [14], shape [14, 3], rotation [14, T, 3, 3], origin [14, T, 3])``
        in the order of ``BODY_PARTS[1:]``, rotations mapping part-local to world coordinates.
        """
        h, gait, frames = self.height, GAITS[self.motion], len(times)
        phi = self.phase + 2 * np.pi * gait["cadence"] * times  # [T] gait phase
        body = np.broadcast_to(_rot(2, self.heading), (frames, 3, 3))
        # The torso twists with the stride and leans forward with its amplitude.
        torso = body @ _rot(2, 0.08 * gait["hip"] * np.sin(phi)) @ _swing(-0.15 * gait["hip"])

        pelvis = np.zeros((frames, 3))
        joints = {"pelvis": pelvis, "neck": _attach(torso, pelvis, [0, 0, _TORSO * h])}
        joints["head"] = _attach(torso, joints["neck"], [0, 0, _NECK_TO_HEAD * h])
        links = {}
        for side, sign in (("right", -1.0), ("left", 1.0)):
            # Legs swing in antiphase; a knee bends most while its leg swings forward; each arm
            # swings against the leg of its side.
            leg_phase = phi if side == "right" else phi + np.pi
            thigh = body @ _swing(gait["hip"] * np.sin(leg_phase))
            shin = thigh @ _swing(-0.05 - gait["knee"] * np.maximum(0.0, np.cos(leg_phase - 0.4)))
            upper_arm = torso @ _rot(0, sign * 0.12) @ _swing(-gait["shoulder"] * np.sin(leg_phase))
            elbow = 0.25 + gait["elbow"] * (0.5 + 0.5 * np.sin(leg_phase))
            if self.motion == "waving" and side == "right":
                upper_arm = torso @ _rot(0, sign * 2.5) @ _swing(np.full(frames, 0.2))  # raised sideways
                elbow = 0.5 + 0.4 * np.sin(2 * np.pi * 1.5 * times + self.phase)
            forearm = upper_arm @ _swing(elbow)
            links.update(
                {
                    f"{side}_upper_leg": thigh,
                    f"{side}_lower_leg": shin,
                    f"{side}_upper_arm": upper_arm,
                    f"{side}_lower_arm": forearm,
                }
            )

            hip = joints[f"{side}_hip"] = _attach(body, pelvis, [0, sign * _HIP_WIDTH * h, 0])
            knee = joints[f"{side}_knee"] = _attach(thigh, hip, [0, 0, -_THIGH * h])
            joints[f"{side}_ankle"] = _attach(shin, knee, [0, 0, -_SHIN * h])
            shoulder = [0, sign * _SHOULDER_WIDTH * h, -_SHOULDER_DROP * h]
            shoulder = joints[f"{side}_shoulder"] = _attach(torso, joints["neck"], shoulder)
            elbow = joints[f"{side}_elbow"] = _attach(upper_arm, shoulder, [0, 0, -_UPPER_ARM * h])
            joints[f"{side}_wrist"] = _attach(forearm, elbow, [0, 0, -_FOREARM * h])

        # Place the body: translate along the heading, lowest ankle at ankle height.
        root = np.zeros((frames, 3))
        root[:, :2] = self.start + self.speed * times[:, None] * [np.cos(self.heading), np.sin(self.heading)]
        root[:, 2] = _ANKLE * h - np.minimum(joints["right_ankle"][:, 2], joints["left_ankle"][:, 2])
        joints = {name: p + root for name, p in joints.items()}

        # Each part: (shape as fractions of height, local-to-world rotation, local origin).
        parts = {
            "torso": (_ELLIPSOIDS["torso"], torso, (joints["pelvis"] + joints["neck"]) / 2),
            "head": (_ELLIPSOIDS["head"], torso, joints["head"]),
        }
        for side in ("right", "left"):
            for seg, (start, radius, length) in _CAPSULES.items():
                link = links[f"{side}_{seg}"] @ _FLIP
                parts[f"{side}_{seg}"] = ((radius, length, 0.0), link, joints[f"{side}_{start}"])
            hand = links[f"{side}_lower_arm"] @ _FLIP
            wrist = _attach(hand, joints[f"{side}_wrist"], [0, 0, 0.04 * h])
            parts[f"{side}_hand"] = (_ELLIPSOIDS["hand"], hand, wrist)
            foot = _attach(body, joints[f"{side}_ankle"], [0.045 * h, 0, -0.02 * h])
            parts[f"{side}_foot"] = (_ELLIPSOIDS["foot"], body, foot)

        order = BODY_PARTS[1:]
        kind = np.array([CAPSULE if name.endswith(("_arm", "_leg")) else ELLIPSOID for name in order])
        shape = np.array([parts[name][0] for name in order]) * h
        rotation = np.stack([np.broadcast_to(parts[name][1], (frames, 3, 3)) for name in order])
        origin = np.stack([parts[name][2] for name in order])
        joint_xyz = np.stack([joints[name] for name in JOINTS], axis=1)
        return joint_xyz, (kind, shape, rotation, origin)
