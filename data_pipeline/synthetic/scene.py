"""Random scene description: ground, backdrop, light, persons, objects, camera path, seg targets.

A scene depends only on ``(seed, split, frames)``, never on the image size, so one seed renders
the same world at every resolution. Geometry is a list of rigid primitives with one pose per
frame; the ground plane (z = 0) and the backdrop dome are implicit.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from data_pipeline.skeleton import BODY_PARTS, PART_INDEX

from .camera import CAMERA_MOTIONS, Camera, camera_path, intrinsics_for
from .humanoid import Humanoid
from .materials import CHECKERED, COLORS, DOTTED, MOTTLED, PLAIN, STRIPED, Materials, accent_color
from .primitives import BOX, ELLIPSOID, local_bounds

SPLITS = ("train", "val", "test", "zeroshot")
FPS = 8.0
WORLD_VERSION = 2  # bumped whenever a seed renders a different clip; recorded in dataset.json
BACKDROP_RADIUS = 13.0  # metres from the middle of the camera path; bounds the far depth
MIN_CLEARANCE = 1.3  # metres between the camera and any object's bounding sphere

# name: (pattern, colour, accent colour, period range in metres)
GROUNDS = {
    "checkered floor": (CHECKERED, (0.78, 0.78, 0.74), (0.30, 0.30, 0.32), (1.2, 2.0)),
    "grassy field": (MOTTLED, (0.30, 0.55, 0.20), (0.18, 0.38, 0.12), (1.5, 3.0)),
    "sandy ground": (MOTTLED, (0.82, 0.72, 0.52), (0.66, 0.55, 0.38), (1.5, 3.0)),
    "wooden floor": (STRIPED, (0.62, 0.42, 0.24), (0.45, 0.29, 0.15), (0.5, 0.9)),
    "tiled floor": (CHECKERED, (0.85, 0.86, 0.88), (0.55, 0.65, 0.75), (0.8, 1.4)),
    "concrete floor": (MOTTLED, (0.60, 0.60, 0.58), (0.45, 0.45, 0.44), (1.0, 2.0)),
}
# Sky (zenith, horizon) and distant hill colours.
SKIES = {
    "clear": ((0.30, 0.50, 0.88), (0.72, 0.83, 0.95), (0.32, 0.42, 0.38)),
    "dusk": ((0.28, 0.28, 0.55), (0.95, 0.62, 0.42), (0.30, 0.24, 0.30)),
    "overcast": ((0.58, 0.60, 0.64), (0.80, 0.81, 0.82), (0.40, 0.44, 0.42)),
}
OBJECT_TEXTURES = {"plain": PLAIN, "striped": STRIPED, "checkered": CHECKERED, "dotted": DOTTED}
TEXTURE_ODDS = (0.3, 0.25, 0.25, 0.2)
OBJECT_MOTIONS = {"box": ("static", "sliding", "spinning"), "sphere": ("static", "rolling", "bouncing")}
MOTION_ODDS = (0.5, 0.35, 0.15)
PERSON_MOTIONS = {"walking": 0.7, "jogging": 0.15, "waving": 0.15}
# Camera motion speeds: radians per second for pans and orbits, metres per second for dollies.
# Camera placement: varied height, pitch (through the target height) and roll, and distances that
# bring objects close, so that no single depth map fits every view.
CAMERA_DISTANCE = (3.5, 7.0)  # metres from the scene centre, horizontally
CAMERA_HEIGHT = (0.9, 2.8)  # metres above the ground
TARGET_HEIGHT = (0.3, 1.4)  # height of the point looked at, metres
CAMERA_ROLL_DEG = 20.0  # roll drawn uniformly in +-this many degrees
CAMERA_RATES = {"static": (0.0, 0.0), "pan": (0.1, 0.18), "dolly": (0.5, 0.9), "orbit": (0.15, 0.3)}
OBJECT_COLORS = [c for c in COLORS if c != "gray"]
SKIN_TONES = ((0.93, 0.75, 0.62), (0.80, 0.58, 0.42), (0.55, 0.38, 0.26), (0.36, 0.24, 0.16))
PANTS_COLORS = ("blue", "black", "gray", "brown", "white", "green")


class _Primitive(NamedTuple):
    kind: int
    shape: np.ndarray  # [3]
    rotation: np.ndarray  # [T, 3, 3] local to world
    origin: np.ndarray  # [T, 3]
    instance: int
    part: int
    material: int


@dataclass
class Scene:
    """Everything needed to render and describe one clip."""

    ground: str
    sky: str
    materials: Materials
    ground_material: int
    # Backdrop: dome of BACKDROP_RADIUS around `backdrop_centre`, with a hill skyline.
    backdrop_centre: np.ndarray  # [3]
    sky_colors: tuple
    skyline: np.ndarray  # [4] amplitudes and phases of the skyline's two harmonics
    light: np.ndarray  # [3] unit vector towards the sun
    ambient: float
    haze_distance: float
    # Primitives other than ground and backdrop, each rigid with a pose per frame.
    kind: np.ndarray  # [P]
    shape: np.ndarray  # [P, 3]
    rotation: np.ndarray  # [P, T, 3, 3] local to world
    origin: np.ndarray  # [P, T, 3]
    instance: np.ndarray  # [P] instance id
    part: np.ndarray  # [P] BODY_PARTS index, 0 for objects
    material: np.ndarray  # [P]
    objects: list  # one dict per instance id 1..N
    joints: np.ndarray  # [T, persons, 15, 3] world joint positions
    seg_targets: list
    seg_query: dict  # what the seg prompt names; see captions.seg_prompt
    camera_motion: str
    camera_eye: np.ndarray  # [T, 3]
    camera_rotation: np.ndarray  # [T, 3, 3]
    horizontal_fov: float

    def camera(self, height: int, width: int) -> Camera:
        """The scene's camera for an image of the given size."""
        k = intrinsics_for(self.horizontal_fov, height, width)
        return Camera(k, self.camera_rotation, self.camera_eye, height, width)


def scene_rng(seed: int, split: str, stream: int = 0) -> np.random.Generator:
    """Generator for (seed, split): the split name is mixed in so splits never share scenes.
    ``stream`` separates independent uses (0: the scene, 1: caption wording)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return np.random.default_rng([int(seed) % 2**64, zlib.crc32(split.encode()), stream])


def _path(rng, mid_radius, velocity, times):
    """Ground positions ``[T, 2]`` moving at ``velocity [2]`` whose midpoint is uniform in a disc."""
    r, a = mid_radius * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    mid = np.array([r * np.cos(a), r * np.sin(a)])
    return mid + (times - times.mean())[:, None] * velocity


def _clear(path, radius, placed, margin=0.15):
    """True if a footprint of ``radius`` along ``path [T, 2]`` never touches a placed one."""
    return all(np.min(np.linalg.norm(path - p, axis=1)) >= radius + r + margin for p, r in placed)


def _rot_z(angle):
    angle = np.asarray(angle, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    out[..., 0, 0], out[..., 0, 1], out[..., 1, 0], out[..., 1, 1], out[..., 2, 2] = c, -s, s, c, 1.0
    return out


def _axis_angle(axis, angle):
    """Rotations ``[T, 3, 3]`` about a fixed unit ``axis`` by ``[T]`` angles (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


# Material of each body part (BODY_PARTS names without their side).
_CLOTHING = dict(
    torso="shirt",
    upper_arm="shirt",
    lower_arm="skin",
    head="skin",
    hand="skin",
    upper_leg="pants",
    lower_leg="pants",
    foot="shoes",
)


def _sample_persons(rng, count, times, placed, materials, prims):
    """Add ``count`` humanoids; returns their object dicts and joints ``[persons, T, 15, 3]``."""
    infos, joints = [], []
    for _ in range(count):
        motion = str(rng.choice(list(PERSON_MOTIONS), p=list(PERSON_MOTIONS.values())))
        for _ in range(30):
            person = Humanoid(
                height=rng.uniform(1.55, 1.9),
                start=np.zeros(2),
                heading=rng.uniform(0, 2 * np.pi),
                motion=motion,
                phase=rng.uniform(0, 2 * np.pi),
            )
            direction = np.array([np.cos(person.heading), np.sin(person.heading)])
            path = _path(rng, 1.6, person.speed * direction, times)
            if _clear(path, 0.35, placed):
                break
        else:
            continue
        person = replace(person, start=path[0])
        placed.append((path, 0.35))
        shirt, pants = rng.choice(OBJECT_COLORS), rng.choice(PANTS_COLORS)
        texture = "striped" if rng.uniform() < 0.35 else "plain"
        skin = SKIN_TONES[rng.integers(len(SKIN_TONES))]
        stripes = rng.uniform(0.12, 0.2)
        mats = {
            "shirt": materials.add(COLORS[shirt], accent_color(shirt), OBJECT_TEXTURES[texture], stripes),
            "skin": materials.add(skin, skin, PLAIN, 1.0),
            "pants": materials.add(COLORS[pants], COLORS[pants], PLAIN, 1.0),
            "shoes": materials.add((0.12, 0.1, 0.1), (0.12, 0.1, 0.1), PLAIN, 1.0),
        }
        joint_xyz, (kind, shape, rot, origin) = person.pose(times)
        for name, *geometry in zip(BODY_PARTS[1:], kind, shape, rot, origin):
            clothing = mats[_CLOTHING[name.split("_", 1)[-1]]]
            prims.append(_Primitive(*geometry, instance=len(infos) + 1, part=PART_INDEX[name], material=clothing))
        joints.append(joint_xyz)
        infos.append(
            dict(
                category="person",
                color=str(shirt),
                texture=texture,
                motion=person.motion,
                pants_color=str(pants),
                height=round(person.height, 3),
                speed=round(person.speed, 3),
                heading=round(person.heading, 4),
            )
        )
    return infos, joints


def _sample_objects(rng, count, times, placed, materials, prims, first_id):
    """Add up to ``count`` boxes and spheres, static or moving; returns their object dicts."""
    infos = []
    for _ in range(count):
        category = "box" if rng.uniform() < 0.5 else "sphere"
        motion = str(rng.choice(OBJECT_MOTIONS[category], p=MOTION_ODDS))
        color, texture = str(rng.choice(OBJECT_COLORS)), str(rng.choice(list(OBJECT_TEXTURES), p=TEXTURE_ODDS))
        if category == "box":
            half = rng.uniform(0.25, 0.5, size=3)
            footprint = float(np.hypot(half[0], half[1]))
        else:
            half = np.full(3, rng.uniform(0.28, 0.55))
            footprint = float(half[0])
        speed = rng.uniform(0.5, 1.1) if motion in ("sliding", "rolling") else 0.0
        heading = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(heading), np.sin(heading)])
        for _ in range(30):
            path = _path(rng, 2.6, speed * direction, times)
            if _clear(path, footprint, placed):
                break
        else:
            continue
        placed.append((path, footprint))
        origin = np.concatenate([path, np.full((len(times), 1), half[2])], axis=1)
        yaw0 = rng.uniform(0, 2 * np.pi)
        if motion == "spinning":
            rotation = _rot_z(yaw0 + rng.choice([-1, 1]) * rng.uniform(0.8, 2.0) * times)
        elif motion == "rolling":
            axis = np.array([-direction[1], direction[0], 0.0])  # up x direction
            rotation = _axis_angle(axis, speed * times / half[0]) @ _rot_z(yaw0)
        else:
            rotation = np.broadcast_to(_rot_z(yaw0), (len(times), 3, 3))
        if motion == "bouncing":
            height, period = rng.uniform(0.3, 0.6), rng.uniform(0.6, 1.0)
            origin[:, 2] += height * np.abs(np.sin(np.pi * (times / period + rng.uniform())))
        period = 2 * max(half) / rng.uniform(1.5, 2.5)  # 1.5 to 2.5 pattern periods across the object
        material = materials.add(COLORS[color], accent_color(color), OBJECT_TEXTURES[texture], period)
        kind = BOX if category == "box" else ELLIPSOID
        prims.append(_Primitive(kind, half, rotation, origin, first_id + len(infos), 0, material))
        infos.append(
            dict(
                category=category,
                color=color,
                texture=texture,
                motion=motion,
                size=round(float(2 * max(half)), 3),
                speed=round(float(speed), 3),
            )
        )
    return infos


def _bounding_spheres(kind, shape, rotation, origin):
    """World centres ``[P, T, 3]`` and radii ``[P]`` of spheres enclosing each primitive."""
    lo, hi = local_bounds(kind, shape)
    centre = np.einsum("ptij,pj->pti", rotation, (lo + hi) / 2) + origin
    return centre, np.linalg.norm(hi - lo, axis=1) / 2


def _sample_camera(rng, times, centres, radii):
    """Camera motion, per-frame eye ``[T, 3]`` and rotation ``[T, 3, 3]`` keeping clear of objects."""
    for attempt in range(60):
        motion = str(rng.choice(CAMERA_MOTIONS)) if attempt < 50 else "static"
        distance = rng.uniform(*CAMERA_DISTANCE) if attempt < 50 else 8.5
        azimuth = rng.uniform(0, 2 * np.pi)
        eye = np.array([distance * np.cos(azimuth), distance * np.sin(azimuth), rng.uniform(*CAMERA_HEIGHT)])
        target = np.array([*rng.uniform(-0.5, 0.5, size=2), rng.uniform(*TARGET_HEIGHT)])
        roll = np.radians(rng.uniform(-CAMERA_ROLL_DEG, CAMERA_ROLL_DEG))
        rotation, eye = camera_path(motion, eye, target, times, rng.uniform(*CAMERA_RATES[motion.split()[0]]), roll)
        gaps = np.linalg.norm(centres - eye[None], axis=-1) - radii[:, None]  # [P, T]
        if gaps.size == 0 or gaps.min() >= MIN_CLEARANCE:
            break
    return motion, eye, rotation


def _sample_seg_targets(rng, split, objects):
    """Instance ids the seg prompt names and a description of the query.

    Train, val and test always target every person (those scenes always contain one). The
    zero-shot split targets non-person objects only: all of them ("segment two objects"), all
    of one category ("segment two spheres") or a single uniquely described one ("segment the
    red box").
    """
    ids = {
        kind: [i + 1 for i, o in enumerate(objects) if (o["category"] == "person") == (kind == "person")]
        for kind in ("person", "object")
    }
    if split != "zeroshot":
        return ids["person"], {"kind": "persons", "count": len(ids["person"])}
    things = [(i, objects[i - 1]) for i in ids["object"]]
    mode = rng.choice(["all", "category", "single"], p=[0.4, 0.25, 0.35])
    if mode == "single":
        unique = [
            (i, o)
            for i, o in things
            if sum(p["color"] == o["color"] and p["category"] == o["category"] for _, p in things) == 1
        ]
        if unique:
            i, o = unique[rng.integers(len(unique))]
            return [i], {"kind": "single", "color": o["color"], "category": o["category"]}
    if mode == "category":
        for category in rng.permutation(["box", "sphere"]):
            members = [i for i, o in things if o["category"] == category]
            if len(members) >= 2:
                return members, {"kind": "category", "category": str(category), "count": len(members)}
    return [i for i, _ in things], {"kind": "objects", "count": len(things)}


def sample_scene(seed: int, frames: int, split: str) -> Scene:
    """Draw a scene for ``(seed, split)`` lasting ``frames`` frames at FPS."""
    rng = scene_rng(seed, split)
    times = np.arange(frames) / FPS
    materials = Materials()

    ground = str(rng.choice(list(GROUNDS)))
    pattern, color, accent, periods = GROUNDS[ground]
    ground_material = materials.add(color, accent, pattern, rng.uniform(*periods))
    sky = str(rng.choice(list(SKIES)))

    if split == "zeroshot":
        n_persons, n_objects = int(rng.choice([0, 1, 2], p=[0.3, 0.4, 0.3])), int(rng.integers(2, 5))
    else:
        n_persons, n_objects = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2])), int(rng.integers(1, 5))
    placed, prims = [], []
    persons, joints = _sample_persons(rng, n_persons, times, placed, materials, prims)
    objects = persons + _sample_objects(rng, n_objects, times, placed, materials, prims, len(persons) + 1)
    for i, info in enumerate(objects):
        info["id"] = i + 1

    kind = np.array([p.kind for p in prims], dtype=np.int64)
    shape = np.array([p.shape for p in prims], dtype=np.float64).reshape(-1, 3)
    rotation = np.array([np.broadcast_to(p.rotation, (frames, 3, 3)) for p in prims]).reshape(-1, frames, 3, 3)
    origin = np.array([p.origin for p in prims]).reshape(-1, frames, 3)
    motion, eye, cam_rotation = _sample_camera(rng, times, *_bounding_spheres(kind, shape, rotation, origin))
    seg_targets, seg_query = _sample_seg_targets(rng, split, objects)

    sun_azimuth, sun_elevation = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.15)
    light = np.array(
        [
            np.cos(sun_azimuth) * np.cos(sun_elevation),
            np.sin(sun_azimuth) * np.cos(sun_elevation),
            np.sin(sun_elevation),
        ]
    )
    joints = np.stack(joints, axis=1) if joints else np.zeros((frames, 0, 15, 3))
    return Scene(
        ground=ground,
        sky=sky,
        materials=materials,
        ground_material=ground_material,
        backdrop_centre=np.array([*eye[:, :2].mean(axis=0), 0.0]),
        sky_colors=SKIES[sky],
        skyline=np.concatenate([rng.uniform(0.02, 0.06, 2), rng.uniform(0, 2 * np.pi, 2)]),
        light=light,
        ambient=float(rng.uniform(0.35, 0.5)),
        haze_distance=float(rng.uniform(25.0, 50.0)),
        kind=kind,
        shape=shape,
        rotation=rotation,
        origin=origin,
        instance=np.array([p.instance for p in prims], dtype=np.int32),
        part=np.array([p.part for p in prims], dtype=np.int32),
        material=np.array([p.material for p in prims], dtype=np.int64),
        objects=objects,
        joints=joints,
        seg_targets=seg_targets,
        seg_query=seg_query,
        camera_motion=motion,
        camera_eye=eye,
        camera_rotation=cam_rotation,
        horizontal_fov=float(rng.uniform(50.0, 65.0)),
    )
