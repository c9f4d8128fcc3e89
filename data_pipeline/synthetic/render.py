"""Render one synthetic clip: RGB plus exact ground truth for every modality.

Conventions: pixel (row i, column j) has its centre at (x, y) = (j, i), as in OpenCV; keypoints,
intrinsics and flow all use it. Flow is forward (t -> t+1) and zero on the last frame, whose
occlusion mask is all True.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .captions import describe
from .primitives import surface
from .raycast import BACKDROP, FIRST_PRIMITIVE, GROUND, NEAR, RayCaster, matvec
from .scene import FPS, Scene, sample_scene, scene_rng
from .shading import backdrop_color, haze, lambert

_DEPTH_TOLERANCE = 1e-3  # relative; a re-cast hit this close to the moved point is the point
# Textures are box-filtered over this many pixels: a little wider than one pixel, so that
# sharp pattern edges stay smooth enough to be resampled (by flow warps, by resizing).
_TEXTURE_FILTER_PIXELS = 1.5


@dataclass
class SyntheticClip:
    """A rendered clip with its ground truth; shapes use T frames, H x W pixels, P persons.

    Flow moves each pixel centre to where its surface point projects in the next frame (object,
    limb and camera motion); occlusion is True where that point is hidden at t+1 or leaves the
    image. Keypoint visibility is 1 when the joint lies in front of the camera and projects inside the
    image, whether or not another object hides it. DensePose is (part index of
    ``skeleton.BODY_PARTS``, u, v): for capsule limbs u is the angle around the bone / 2 pi and v
    runs along it from the proximal joint; for the ellipsoidal torso, head, hands and feet u is
    the azimuth / 2 pi and v the polar angle / pi about the part's local z axis (the body's up
    axis for torso, head and feet, the forearm's direction for hands).
    """

    rgb: np.ndarray  # uint8 [T, H, W, 3]
    depth: np.ndarray  # float32 [T, H, W], metres along the optical axis
    flow: np.ndarray  # float32 [T, H, W, 2], (dx, dy) pixels to frame t+1
    occlusion: np.ndarray  # bool [T, H, W], point not visible at t+1
    instance: np.ndarray  # int32 [T, H, W], 0 = ground / backdrop
    seg: np.ndarray  # int32 [T, H, W], instance ids of seg_targets, 0 elsewhere
    seg_targets: list
    keypoints: np.ndarray  # float32 [T, P, 15, 3], (x, y, visibility)
    densepose: np.ndarray  # float32 [T, H, W, 3], (part, u, v)
    intrinsics: np.ndarray  # float64 [3, 3]
    world_to_camera: np.ndarray  # float64 [T, 4, 4], OpenCV axes
    objects: list  # dict per instance id
    camera_motion: str
    caption: str
    prompts: dict  # modality name -> prompt
    fps: float = FPS
    meta: dict = field(default_factory=dict)


def render_clip(seed: int, frames: int = 16, size: int | tuple[int, int] = 64, split: str = "train") -> SyntheticClip:
    """Render the clip of ``(seed, split)`` with ``frames`` frames at ``size`` (int or (H, W)).

    ``split`` is one of ``scene.SPLITS``. Deterministic: equal arguments give bit-identical
    arrays; the scene itself does not depend on ``size``.
    """
    height, width = (size, size) if np.isscalar(size) else size
    height, width, frames = int(height), int(width), int(frames)
    if frames < 1 or height < 1 or width < 1:
        raise ValueError(f"need at least one frame and pixel, got frames={frames} size={size}")
    scene = sample_scene(seed, frames, split)
    camera = scene.camera(height, width)
    caster = RayCaster(scene, camera)

    hw = height * width
    pixel = np.arange(hw)
    frame = np.repeat(np.arange(frames), hw)  # [T*H*W] rays in [T, H, W] order
    x = np.tile(pixel % width, frames).astype(np.float64)
    y = np.tile(pixel // width, frames).astype(np.float64)
    depth, ids = caster.cast(frame, x, y, grid=True)
    points = _hit_points(camera, x[:hw], y[:hw], depth)
    rgb, part, uv = _shade(scene, caster, frame, x, y, depth, ids, points)
    flow, occlusion = _motion(scene, caster, x, y, ids, points)

    xy, z = camera.project(scene.joints)  # [T, P, 15, 2], [T, P, 15]
    visible = (z > NEAR) & _inside(xy[..., 0], xy[..., 1], height, width)
    keypoints = np.concatenate([np.nan_to_num(xy), visible[..., None]], axis=-1)

    instance = np.concatenate([[0, 0], scene.instance])[ids]
    seg = np.where(np.isin(instance, scene.seg_targets), instance, 0)
    caption, prompts = describe(scene, scene_rng(seed, split, stream=1))
    grid = (frames, height, width)
    return SyntheticClip(
        rgb=rgb.T.reshape(grid + (3,)),
        depth=depth.reshape(grid),
        flow=flow.reshape(grid + (2,)),
        occlusion=occlusion.reshape(grid),
        instance=instance.reshape(grid).astype(np.int32),
        seg=seg.reshape(grid).astype(np.int32),
        seg_targets=list(scene.seg_targets),
        keypoints=keypoints.astype(np.float32),
        densepose=np.stack([part.astype(np.float32), uv[0], uv[1]], axis=-1).reshape(grid + (3,)),
        intrinsics=camera.intrinsics,
        world_to_camera=camera.world_to_camera,
        objects=[dict(o) for o in scene.objects],
        camera_motion=scene.camera_motion,
        caption=caption,
        prompts=prompts,
        fps=FPS,
        meta=dict(
            seed=int(seed),
            split=split,
            ground=scene.ground,
            sky=scene.sky,
            seg_query=dict(scene.seg_query),
            horizontal_fov=round(scene.horizontal_fov, 4),
            pixel_convention="pixel (row i, col j) is centred at (x, y) = (j, i)",
            flow="forward t -> t+1, zero on the last frame",
            world_up="z",
            keypoint_visibility="in front of the camera and inside the image; occluders ignored",
        ),
    )


def _inside(x, y, height: int, width: int):
    """Whether pixel positions fall inside the image (pixel centres at integers)."""
    return (x >= -0.5) & (x < width - 0.5) & (y >= -0.5) & (y < height - 0.5)


def _hit_points(camera, x, y, depth) -> np.ndarray:
    """World points ``[3, T*H*W]`` (float64) seen at pixel centres ``x, y [H*W]`` of every frame."""
    k, frames = camera.intrinsics, len(camera.centre)
    dx, dy = (x - k[0, 2]) / k[0, 0], (y - k[1, 2]) / k[1, 1]  # [HW]
    depth = depth.reshape(frames, -1)
    rot, centre = camera.rotation, camera.centre
    return np.stack(
        [
            centre[:, i, None] + depth * (rot[:, i, 0, None] * dx + rot[:, i, 1, None] * dy + rot[:, i, 2, None])
            for i in range(3)
        ]
    ).reshape(3, -1)


def _shade(scene: Scene, caster: RayCaster, frame, x, y, depth, ids, points):
    """Colour ``uint8 [3, N]``, DensePose part ``[N]`` and uv ``[2, N]`` of every primary ray
    hitting world ``points [3, N]``."""
    dx, dy = caster.directions(x, y)
    ray_scale = np.sqrt(1.0 + dx * dx + dy * dy)  # ray length per metre of depth
    ray_length = depth * ray_scale
    filter_size = ray_length * np.float32(_TEXTURE_FILTER_PIXELS / caster.k[0])  # metres, facing the camera
    color = np.empty((3, len(depth)), np.float32)
    part = np.zeros(len(depth), np.int32)
    uv = np.zeros((2, len(depth)), np.float32)

    sel = np.flatnonzero(ids == BACKDROP)
    color[:, sel] = backdrop_color(scene, points[:, sel].astype(np.float32), filter_size[sel])

    sel = np.flatnonzero(ids == GROUND)
    # Grazing factor: cosine between the ray and the ground normal, from the camera height.
    grazing = np.maximum(np.take(caster.camera.centre[:, 2], frame[sel]) / ray_length[sel], 0.1)
    footprint = np.broadcast_to(filter_size[sel] / grazing, (2, len(sel)))
    material = np.full(len(sel), scene.ground_material)
    albedo = scene.materials.albedo(material, points[:2, sel].astype(np.float32), footprint)
    color[:, sel] = lambert(albedo, np.float32(scene.light[2]), scene.ambient)

    sel = np.flatnonzero(ids >= FIRST_PRIMITIVE)
    prim, f = ids[sel] - FIRST_PRIMITIVE, frame[sel]
    q = prim * caster.frames + f
    d = matvec(np.take(caster.to_local, q, axis=1), dx[sel], dy[sel], 1.0)  # [3, n] local ray directions
    local = np.take(caster.eye_local, q, axis=1) + depth[sel] * d
    normal, st, stretch, part_uv = surface(scene.kind[prim], np.take(caster.shape, prim, axis=1), local)
    facing = np.abs(_dot(normal, d)) / ray_scale[sel]
    footprint = (filter_size[sel] / np.maximum(facing, 0.1)) * stretch
    albedo = scene.materials.albedo(scene.material[prim], st, footprint)
    color[:, sel] = lambert(albedo, _dot(normal, np.take(caster.light_local, q, axis=1)), scene.ambient)
    part[sel] = scene.part[prim]
    body = scene.part[prim] > 0
    uv[:, sel[body]] = part_uv[:, body]

    color = haze(scene, color, ray_length)
    rgb = np.clip(color * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return rgb, part, uv


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot products of component-major ``[3, N]`` arrays."""
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _motion(scene: Scene, caster: RayCaster, x, y, ids, points):
    """Forward flow ``[N, 2]`` and occlusion ``[N]`` of every primary ray.

    The world point seen at a pixel (float64, rebuilt from the stored depth) is carried by its
    primitive's rigid motion to the next frame and projected with the next camera. It is
    visible there if a ray cast through its new position hits the same primitive at its depth.
    """
    camera = caster.camera
    frames, hw = caster.frames, caster.height * caster.width
    n = (frames - 1) * hw  # rays that have a next frame
    flow = np.zeros((len(ids), 2), np.float32)
    occlusion = np.ones(len(ids), bool)
    if n == 0:
        return flow, occlusion

    # Rigid motion of each primitive from frame t to t+1 in world coordinates, as tables
    # [9 | 3, P * (T-1)] indexed by p * (T-1) + t.
    rotation = scene.rotation[:, 1:] @ scene.rotation[:, :-1].transpose(0, 1, 3, 2)  # [P, T-1, 3, 3]
    shift = scene.origin[:, 1:] - np.einsum("ptij,ptj->pti", rotation, scene.origin[:, :-1])
    rotation, shift = rotation.reshape(-1, 9).T.copy(), shift.reshape(-1, 3).T.copy()

    moved = points[:, :n].copy()
    sel = np.flatnonzero(ids[:n] >= FIRST_PRIMITIVE)
    q = (ids[sel] - FIRST_PRIMITIVE) * (frames - 1) + sel // hw
    moved[:, sel] = matvec(np.take(rotation, q, axis=1), *points[:, sel]) + np.take(shift, q, axis=1)

    # Camera coordinates in the next frame: R^T (p - c), frame by frame.
    rel = moved.reshape(3, frames - 1, hw) - camera.centre[1:].T[:, :, None]
    rot_next = camera.rotation[1:]
    cam = [sum(rot_next[:, j, i, None] * rel[j] for j in range(3)) for i in range(3)]  # 3 x [T-1, HW]
    k = camera.intrinsics
    z = cam[2].reshape(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        nx = (k[0, 0] * cam[0] / cam[2] + k[0, 2]).reshape(n)
        ny = (k[1, 1] * cam[1] / cam[2] + k[1, 2]).reshape(n)
    flow[:n, 0], flow[:n, 1] = nx - x[:n], ny - y[:n]
    cand = np.flatnonzero(_inside(nx, ny, caster.height, caster.width) & (z > NEAR))
    depth_next, ids_next = caster.cast(cand // hw + 1, nx[cand], ny[cand])
    same = (ids_next == ids[cand]) & (np.abs(depth_next - z[cand]) <= _DEPTH_TOLERANCE * z[cand])
    occlusion[cand[same]] = False
    return flow, occlusion
