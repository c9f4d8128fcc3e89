"""Modality registry: round trips through lossless storage, error bounds, metadata, validation."""

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_pipeline.modalities import MODALITIES, NAMES, SEG_MAX_ID, SEG_PALETTE, get
from data_pipeline.pose_render import JOINT_COLOURS, LIMB_COLOURS
from data_pipeline.skeleton import BODY_PARTS, JOINT_INDEX, JOINTS
from data_pipeline.video_io import decode_video, encode_video

ROOT = Path(__file__).resolve().parents[2]


def stored(video: np.ndarray) -> np.ndarray:
    """Round trip a visual form through a lossless FFV1 .mkv, as shards store it."""
    return decode_video(encode_video(video, "mkv"))


def round_trip(name: str, raw: np.ndarray, meta: dict | None = None) -> tuple[np.ndarray, dict]:
    meta = {} if meta is None else meta
    video = get(name).encode(raw, meta)
    assert video.dtype == np.uint8 and video.shape[-1] == 3
    return get(name).decode(stored(video), meta), meta


# ------------------------------------------------------------------------------------ registry


def test_registry_indices_are_stable_and_unique():
    assert NAMES == ("rgb", "depth", "flow", "seg", "pose", "densepose")
    assert [MODALITIES[n].index for n in NAMES] == list(range(len(NAMES)))
    assert all(get(n).name == n and get(n).prompt for n in NAMES)


def test_pixel_aligned_flags():
    assert {n for n in NAMES if get(n).pixel_aligned} == {"rgb", "depth", "flow", "densepose"}


def test_unknown_modality_lists_valid_names():
    with pytest.raises(ValueError, match="unknown modality 'normals'.*rgb, depth, flow, seg, pose, densepose"):
        get("normals")


BAD_INPUTS = [
    ("rgb", np.zeros((2, 8, 8, 3), np.float32)),
    ("rgb", np.zeros((8, 8, 3), np.uint8)),
    ("depth", np.zeros((2, 8, 8), np.uint16)),
    ("depth", np.ones((2, 8, 8, 1), np.float32)),
    ("flow", np.zeros((2, 8, 8, 3), np.float32)),
    ("flow", np.zeros((2, 8, 8, 2), np.int32)),
    ("seg", np.zeros((2, 8, 8), np.float32)),
    ("seg", np.zeros((2, 8, 8, 1), np.int32)),
    ("pose", np.zeros((2, 1, 14, 3), np.float32)),
    ("pose", np.zeros((2, 15, 3), np.float32)),
    ("densepose", np.zeros((2, 8, 8, 2), np.float32)),
]


@pytest.mark.parametrize("name, raw", BAD_INPUTS, ids=lambda v: v if isinstance(v, str) else f"{v.dtype}{v.shape}")
def test_encode_rejects_wrong_dtype_or_shape(name, raw):
    got = re.escape(f"got {raw.dtype} array of shape {raw.shape}")
    with pytest.raises(ValueError, match=rf"^{name}: expected .*, {got}$"):
        get(name).encode(raw, {"height": 8, "width": 8})


@pytest.mark.parametrize("name", NAMES)
def test_decode_rejects_non_video(name):
    with pytest.raises(ValueError, match=rf"^{name}: expected uint8 video \[T, H, W, 3\], got float32"):
        get(name).decode(np.zeros((2, 8, 8, 3), np.float32), {})


def test_rgb_is_identity():
    frames = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    assert np.array_equal(round_trip("rgb", frames)[0], frames)


# --------------------------------------------------------------------------------------- depth


def scene_depth(t: int = 4, h: int = 48, w: int = 64, near: float = 2.0, far: float = 20.0) -> np.ndarray:
    """A ground plane from ``far`` at the horizon to ``near`` at the bottom, invalid sky above, a sliding box."""
    horizon = h // 3
    rows = np.arange(h, dtype=np.float64)[:, None] * np.ones((1, w))
    disparity = 1 / far + (1 / near - 1 / far) * (rows - horizon) / (h - 1 - horizon)  # linear, as for a plane
    depth = np.repeat(np.where(rows >= horizon, 1 / np.maximum(disparity, 1e-9), np.inf)[None], t, axis=0)
    for i in range(t):
        depth[i, 20:40, 10 + 3 * i : 25 + 3 * i] = 4.0 + 0.1 * i
    depth[:, 30:33, 50:53] = np.nan
    depth[:, 40, 5], depth[:, 41, 6] = 0.0, -1.0
    return depth.astype(np.float32)


def test_depth_round_trip_relative_error_bound():
    depth = scene_depth()
    valid = np.isfinite(depth) & (depth > 0)
    ratio = depth[valid].max() / depth[valid].min()
    assert 9 < ratio <= 10
    decoded, meta = round_trip("depth", depth)
    assert set(meta) == {"disp_min", "disp_max"} and meta["disp_min"] == pytest.approx(1 / depth[valid].max())
    rel = np.abs(decoded[valid] - depth[valid]) / depth[valid]
    assert rel.max() <= 0.01
    assert rel.max() <= 1.01 * (ratio - 1) / (2 * 763)
    assert (decoded[~valid] == 0).all()


def test_depth_near_is_bright_and_invalid_is_black():
    video = get("depth").encode(scene_depth(), {})
    level = video.astype(int).sum(-1)
    assert (np.ptp(video.astype(int), axis=-1) <= 1).all()
    assert level[0, 47, 60] > level[0, 30, 12] > level[0, 20, 60] > 0
    assert level[0, 0, 0] == level[0, 31, 51] == level[0, 40, 5] == level[0, 41, 6] == 0


def test_depth_without_meta_is_relative_disparity():
    depth = scene_depth()
    valid = np.isfinite(depth) & (depth > 0)
    relative = get("depth").decode(get("depth").encode(depth, {}), None)
    assert relative.min() == 0 and relative.max() == 1
    fit = np.polyfit(1 / depth[valid], relative[valid], 1)
    assert np.abs(np.polyval(fit, 1 / depth[valid]) - relative[valid]).max() < 1e-3
    assert (relative[~valid] == 0).all()


def test_depth_honours_given_scale():
    depth = scene_depth()
    valid = np.isfinite(depth) & (depth > 0)
    meta = {"disp_min": 0.01, "disp_max": 1.0}
    decoded, meta = round_trip("depth", depth, meta)
    assert meta == {"disp_min": 0.01, "disp_max": 1.0}
    assert (np.abs(decoded[valid] - depth[valid]) / depth[valid]).max() < 0.05  # coarser scale, larger error
    with pytest.raises(ValueError, match="depth: expected 0 < disp_min <= disp_max"):
        get("depth").encode(depth, {"disp_min": 0.0, "disp_max": 1.0})


def test_depth_constant_and_empty_clips():
    flat, meta = round_trip("depth", np.full((2, 8, 8), 3.0, np.float32))
    assert np.allclose(flat, 3.0, rtol=1e-6) and meta["disp_min"] == meta["disp_max"]
    empty, _ = round_trip("depth", np.full((2, 8, 8), np.nan, np.float32))
    assert (empty == 0).all()


# ---------------------------------------------------------------------------------------- flow


def random_flow(rng: np.random.Generator, t: int = 3, h: int = 32, w: int = 32, radius: float = 7.5) -> np.ndarray:
    """Vectors in every direction with magnitudes from near zero up to exactly ``radius``."""
    angle = rng.uniform(-np.pi, np.pi, (t, h, w))
    magnitude = radius * rng.uniform(0, 1, (t, h, w)) ** 3
    magnitude[0, 0] = radius  # a row of max-length vectors
    magnitude[0, 1] = rng.uniform(0, 1e-3, w)  # and one of near-zero ones
    angle[0, 0] = np.linspace(-np.pi, np.pi, w)
    return np.stack([magnitude * np.cos(angle), magnitude * np.sin(angle)], axis=-1).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1])
def test_flow_round_trip_end_point_error(seed):
    flow = random_flow(np.random.default_rng(seed))
    decoded, meta = round_trip("flow", flow)
    assert meta["max_radius"] == pytest.approx(7.5, rel=1e-6)
    assert np.hypot(*np.moveaxis(decoded - flow, -1, 0)).max() <= 0.02 * meta["max_radius"]


def test_flow_smooth_field_and_direction_convention():
    ys, xs = np.mgrid[0:24, 0:32] + 0.5
    rotation = np.stack([-(ys - 12), xs - 16], axis=-1) * 0.3
    flow = np.stack([rotation, rotation * 0.5, np.zeros_like(rotation)]).astype(np.float32)  # last frame zero
    decoded, meta = round_trip("flow", flow)
    assert np.hypot(*np.moveaxis(decoded - flow, -1, 0)).max() <= 0.02 * meta["max_radius"]
    assert np.abs(decoded[-1]).max() < 1e-6
    right = get("flow").encode(np.array([[[[1.0, 0.0]]]], np.float32), {"max_radius": 1.0})
    assert right[0, 0, 0].tolist() == [255, 0, 0]  # +x is red
    assert get("flow").encode(np.zeros((1, 1, 1, 2), np.float32), {})[0, 0, 0].tolist() == [255, 255, 255]


def test_flow_honours_given_max_radius():
    flow = random_flow(np.random.default_rng(2), radius=3.0)
    meta = {"max_radius": 6.0}
    video = get("flow").encode(flow, meta)
    assert meta == {"max_radius": 6.0}
    assert video.astype(int).min(axis=-1).min() >= 127  # nothing beyond half saturation
    decoded = get("flow").decode(stored(video), meta)
    assert np.hypot(*np.moveaxis(decoded - flow, -1, 0)).max() <= 0.02 * 6.0
    clipped = get("flow").decode(get("flow").encode(flow, {"max_radius": 1.0}), {"max_radius": 1.0})
    assert np.hypot(clipped[..., 0], clipped[..., 1]).max() <= 1.0 + 1e-6


def test_flow_zero_clip_and_relative_decode():
    zero, meta = round_trip("flow", np.zeros((2, 4, 4, 2), np.float32))
    assert (zero == 0).all() and meta["max_radius"] > 0
    flow = random_flow(np.random.default_rng(3))
    relative = get("flow").decode(get("flow").encode(flow, {}), None)
    assert np.abs(relative * 7.5 - flow).max() <= 0.02 * 7.5
    with pytest.raises(ValueError, match="flow: expected finite"):
        get("flow").encode(np.full((1, 2, 2, 2), np.nan, np.float32), {})


# ----------------------------------------------------------------------------------------- seg


def test_seg_palette_is_far_apart():
    assert SEG_MAX_ID >= 255 and SEG_PALETTE[0].tolist() == [0, 0, 0]
    colours = SEG_PALETTE.astype(int)
    gap = np.abs(colours[:, None] - colours[None]).max(-1) + 1000 * np.eye(len(colours), dtype=int)
    assert gap.min() >= 40


def test_seg_round_trip_exact_with_and_without_noise():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, SEG_MAX_ID + 1, (3, 24, 24))
    ids[:, :8] = 0
    decoded, meta = round_trip("seg", ids)
    assert np.array_equal(decoded, ids) and meta["ids"] == sorted(set(ids.ravel()) - {0})
    noisy = get("seg").encode(ids, {}).astype(int) + rng.integers(-8, 9, (3, 24, 24, 3))
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    assert np.array_equal(get("seg").decode(noisy, None), ids)
    assert np.array_equal(get("seg").decode(noisy, meta), ids)


def test_seg_decode_restricted_to_meta_ids():
    ids = np.zeros((1, 8, 8), np.int64)
    ids[0, 2:6, 2:6] = 7
    video = get("seg").encode(ids, meta := {})
    video[0, 3, 3] = (video[0, 3, 3].astype(int) * 0.6).astype(np.uint8)  # far off the palette
    assert get("seg").decode(video, meta)[0, 3, 3] == 7
    with pytest.raises(ValueError, match=r"seg: expected ids in \[0, 342\]"):
        get("seg").encode(np.full((1, 2, 2), 400), {})


# ----------------------------------------------------------------------------------- densepose


def test_densepose_round_trip():
    rng = np.random.default_rng(0)
    part = rng.integers(0, len(BODY_PARTS), (3, 20, 20)).astype(np.float32)
    iuv = np.concatenate([part[..., None], rng.uniform(0, 1, (3, 20, 20, 2))], axis=-1).astype(np.float32)
    iuv[part == 0, 1:] = 0
    decoded, _ = round_trip("densepose", iuv)
    assert np.array_equal(decoded[..., 0], part)
    assert np.abs(decoded[..., 1:] - iuv[..., 1:]).max() <= 2 / 255
    assert (get("densepose").encode(iuv, {})[part == 0] == 0).all()
    with pytest.raises(ValueError, match="densepose: expected integer part indices"):
        get("densepose").encode(iuv + np.array([0.5, 0, 0], np.float32), {})


# ---------------------------------------------------------------------------------------- pose


def walker(rng: np.random.Generator, frames: int, size: int, x: float) -> np.ndarray:
    """A walking-like figure 30-50 px tall centred near column ``x``: keypoints ``[T, K, 3]``."""
    h = rng.uniform(30, 50)
    pelvis_y = rng.uniform(0.5 * h + 2, size - 0.5 * h - 2)
    speed, phase, facing = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi), rng.choice([-1, 1])
    out = np.ones((frames, len(JOINTS), 3))
    for t in range(frames):
        swing = np.sin(phase + 0.6 * t)
        at = {"pelvis": np.array([x + speed * t, pelvis_y + 0.02 * h * abs(swing)])}
        at["neck"] = at["pelvis"] + (0.03 * h * facing, -0.32 * h)
        at["head"] = at["neck"] + (0.02 * h * facing, -0.13 * h)
        for side, sign in (("right", 1), ("left", -1)):
            s = swing * sign
            bend = (-0.5 * s, -0.9 - 0.7 * s, 0.45 * s, 0.35 * s - 0.3 * max(0, -s) - 0.1)
            at[f"{side}_shoulder"] = at["neck"] + (-sign * 0.1 * h, 0.02 * h)
            at[f"{side}_hip"] = at["pelvis"] + (-sign * 0.055 * h, 0)
            bones = (("shoulder", "elbow", 0.16), ("elbow", "wrist", 0.14))
            bones += (("hip", "knee", 0.25), ("knee", "ankle", 0.25))
            for (a, b, length), angle in zip(bones, bend):
                at[f"{side}_{b}"] = at[f"{side}_{a}"] + length * h * np.array([facing * np.sin(angle), np.cos(angle)])
        for name, xy in at.items():
            out[t, JOINT_INDEX[name], :2] = xy
    return out


def pose_accuracy(
    persons: int, size: int, clips: int, frames: int = 8, seed: int = 0, noise: int = 0
) -> tuple[float, float]:
    """Fraction of in-frame joints recovered within 2 px, and their mean error, over random clips.

    People start side by side and walk (they may overlap, even cross); decoded people are matched
    to the true ones by the best permutation over the whole clip, so identity must hold over time.
    """
    rng, noise_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)
    within, errors = [], []
    for _ in range(clips):
        columns = (np.linspace(0.2, 0.8, persons) if persons > 1 else rng.uniform(0.3, 0.7, 1)) * size
        truth = np.stack([walker(rng, frames, size, x + rng.uniform(-2, 2)) for x in columns], axis=1)
        meta = {"height": size, "width": size}
        video = stored(get("pose").encode(truth, meta)).astype(int)
        video += noise_rng.integers(-noise, noise + 1, video.shape)
        decoded = get("pose").decode(np.clip(video, 0, 255).astype(np.uint8), meta)
        best = min(
            (decoded[:, list(order)] for order in itertools.permutations(range(persons))),
            key=lambda d: np.minimum(np.hypot(*np.moveaxis(d[..., :2] - truth[..., :2], -1, 0)), 10).sum(),
        )
        error = np.hypot(*np.moveaxis(best[..., :2] - truth[..., :2], -1, 0))
        inside = ((truth[..., :2] >= 1) & (truth[..., :2] <= size - 1)).all(axis=-1)
        found = best[..., 2] > 0
        within.append((found & (error <= 2))[inside])
        errors.append(error[found & inside])
    return float(np.concatenate(within).mean()), float(np.concatenate(errors).mean())


@pytest.mark.parametrize("persons, size", [(1, 64), (3, 64), (1, 128), (3, 128)])
def test_pose_decode_accuracy(persons, size):
    within, mean_error = pose_accuracy(persons, size, clips=8)
    assert within >= 0.93 and mean_error <= 0.8, (within, mean_error)


def test_pose_decode_tolerates_noise():
    within, mean_error = pose_accuracy(3, 64, clips=4, noise=16)
    assert within >= 0.93 and mean_error <= 0.8, (within, mean_error)


def test_pose_render_and_metadata():
    truth = walker(np.random.default_rng(5), 2, 64, 32)[:, None]
    truth[1, 0, JOINT_INDEX["left_wrist"]] = (40, 40, 0)  # an invisible joint is not drawn
    meta = {"height": 64, "width": 64}
    video = get("pose").encode(truth, meta)
    assert meta["persons"] == 1 and video.shape == (2, 64, 64, 3)
    colours = {tuple(c) for c in video.reshape(-1, 3).tolist()}
    assert colours <= {(0, 0, 0)} | {tuple(c) for c in np.concatenate([JOINT_COLOURS, LIMB_COLOURS]).tolist()}
    assert len({tuple(c) for c in JOINT_COLOURS.tolist()}) == len(JOINTS)
    decoded = get("pose").decode(stored(video), None)  # persons inferred when meta is missing
    assert decoded.shape == (2, 1, len(JOINTS), 3)
    assert decoded[1, 0, JOINT_INDEX["left_wrist"]].tolist() == [0, 0, 0]
    assert (decoded[0, 0, :, 2] == 1).all()
    with pytest.raises(ValueError, match="pose: encode needs the frame size"):
        get("pose").encode(truth, {})


def test_pose_empty_frames():
    truth = np.zeros((2, 2, len(JOINTS), 3))
    decoded, meta = round_trip("pose", truth, {"height": 32, "width": 32})
    assert meta["persons"] == 2 and decoded.shape == (2, 2, len(JOINTS), 3) and (decoded == 0).all()


def test_registry_imports_no_other_package_of_the_project():
    code = "import json, sys, data_pipeline.modalities; print(json.dumps([m.split('.')[0] for m in sys.modules]))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert not {"unity", "models", "eval"} & set(json.loads(run.stdout))
