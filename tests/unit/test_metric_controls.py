"""Negative controls for every metric: a prediction that ignores its input (constant, flat, shuffled across
clips, random) scores clearly worse than the correct one, and the ground truth scores perfectly. Also the
two guards against degenerate outputs: the static-video flag and the flat-clip rule of joint consistency."""

import numpy as np
import pytest

from data_pipeline.benchmark import BenchmarkClip
from data_pipeline.modalities import MODALITIES
from eval.consistency import FLAT_STD, is_flat, joint_consistency
from eval.metrics import (
    densepose_metrics,
    depth_metrics,
    flow_metrics,
    instance_miou,
    least_squares_scale,
    mask_map,
    miou,
    pck,
)
from eval.static_flag import STATIC_FRAME_DIFFERENCE, frame_difference, static_flag
from eval.vbench import motion_smoothness_linear_proxy, temporal_flickering

T, H, W = 4, 24, 32
RNG = np.random.default_rng(0)


def depth_video(seed: int) -> np.ndarray:
    """Metres ``[T, H, W]``: a ground plane receding upwards and a box whose place depends on ``seed``."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(8.0, 2.0, H)[:, None] * np.ones((1, W))
    depth = np.repeat(rows[None], T, axis=0)
    top, left = rng.integers(0, H - 8), rng.integers(0, W - 10)
    for t in range(T):
        depth[t, top : top + 8, left + t : left + t + 10] = rng.uniform(1.0, 1.5)
    return depth


def flow_video(seed: int) -> np.ndarray:
    """Pixels ``[T, H, W, 2]``: a rotation about a centre that depends on ``seed`` (every pixel moves)."""
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0, H), rng.uniform(0, W)
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    flow = np.stack([-(y - cy), x - cx], axis=-1) * 0.2
    return np.repeat(flow[None], T, axis=0)


def seg_video(seed: int) -> np.ndarray:
    """Instance ids ``[T, H, W]``: three rectangles at places that depend on ``seed``."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((T, H, W), np.int64)
    for instance in (1, 2, 3):
        top, left = rng.integers(0, H - 6), rng.integers(0, W - 6)
        ids[:, top : top + 6, left : left + 6] = instance
    return ids


def test_depth_controls():
    gts = [depth_video(s) for s in range(3)]
    perfect = [depth_metrics(0.3 / g + 0.1, g) for g in gts]  # any affine map of the true disparity
    assert all(p["abs_rel"] < 1e-9 and p["delta1"] == 1.0 for p in perfect)
    controls = {
        "constant": [depth_metrics(np.full_like(g, 0.5), g) for g in gts],
        "shuffled": [depth_metrics(1.0 / gts[(i + 1) % 3], g) for i, g in enumerate(gts)],
        "random": [depth_metrics(RNG.uniform(0, 1, g.shape), g) for g in gts],
    }
    for name, scores in controls.items():
        assert np.mean([s["abs_rel"] for s in scores]) > 0.1, name
        assert np.mean([s["delta1"] for s in scores]) < 0.9, name


def test_flow_controls_after_the_least_squares_scale():
    gts = [flow_video(s) for s in range(3)]
    radius = [np.linalg.norm(g, axis=-1).max() for g in gts]
    for g, r in zip(gts, radius):  # a visual form stores speed relative to the clip's radius: the scale restores it
        assert least_squares_scale(g / r, g) == pytest.approx(r)
        assert flow_metrics(least_squares_scale(g / r, g) * (g / r), g)["epe"] < 1e-9
    mean_speed = np.mean([np.linalg.norm(g, axis=-1).mean() for g in gts])

    def epe(pred, gt):
        return flow_metrics(least_squares_scale(pred, gt) * pred, gt)["epe"]

    assert np.mean([epe(np.zeros_like(g), g) for g in gts]) == pytest.approx(mean_speed)  # zero flow: scale 0
    assert np.mean([epe(-g, g) for g in gts]) == pytest.approx(mean_speed)  # a reversed flow is not rescued
    assert np.mean([epe(gts[(i + 1) % 3], g) for i, g in enumerate(gts)]) > 0.5 * mean_speed
    assert np.mean([epe(RNG.normal(size=g.shape), g) for g in gts]) > 0.9 * mean_speed


def test_instance_miou_controls_and_per_clip_matching():
    gts = [seg_video(s) for s in range(3)]
    permuted = [np.choose(g, [0, 7, 5, 9]) for g in gts]  # other ids for the same instances
    assert all(instance_miou(p, g) == 1.0 for p, g in zip(permuted, gts))
    background = np.mean([instance_miou(np.zeros_like(g), g) for g in gts])
    shuffled = np.mean([instance_miou(gts[(i + 1) % 3], g) for i, g in enumerate(gts)])
    random = np.mean([instance_miou(RNG.integers(0, 4, g.shape), g) for g in gts])
    assert background < 0.3 and shuffled < 0.5 and random < 0.2
    # ids mean nothing across clips: pooling them as classes (semantic mIoU) punishes a perfect segmentation
    swapped = [np.choose(gts[0], [0, 2, 3, 1]), gts[1]]
    assert np.mean([instance_miou(p, g) for p, g in zip(swapped, gts[:2])]) == 1.0
    assert miou(swapped, gts[:2]) < 0.8


def test_mask_map_controls():
    gts = [seg_video(s) for s in range(3)]

    def tracks(ids, score=None):
        return [
            {"mask": ids == i, "category": 1, **({"score": score} if score is not None else {})}
            for i in np.unique(ids)
            if i
        ]

    truth = [tracks(g) for g in gts]
    assert mask_map([tracks(g, 1.0) for g in gts], truth)["map"] == 1.0
    assert mask_map([[] for _ in gts], truth)["map"] == 0.0
    assert mask_map([tracks(gts[(i + 1) % 3], 1.0) for i in range(3)], truth)["map"] < 0.3


def test_densepose_controls():
    rng = np.random.default_rng(1)
    gts = []
    for _ in range(3):
        iuv = np.zeros((T, H, W, 3))
        top, left = rng.integers(0, H - 10), rng.integers(0, W - 10)
        iuv[:, top : top + 10, left : left + 10, 0] = rng.integers(1, 15, (10, 10))
        iuv[:, top : top + 10, left : left + 10, 1:] = rng.uniform(0, 1, (10, 10, 2))
        gts.append(iuv)
    perfect = densepose_metrics(gts[0], gts[0])
    assert perfect["part_accuracy"] == 1.0 and perfect["part_miou"] == 1.0 and perfect["uv_error"] == 0.0
    assert densepose_metrics(np.zeros_like(gts[0]), gts[0])["part_accuracy"] == 0.0
    shuffled = np.mean([densepose_metrics(gts[(i + 1) % 3], g)["part_accuracy"] for i, g in enumerate(gts)])
    assert shuffled < 0.2


def test_pck_controls():
    rng = np.random.default_rng(2)
    people = [np.concatenate([rng.uniform(0, 64, (T, 2, 15, 2)), np.ones((T, 2, 15, 1))], axis=-1) for _ in range(3)]
    assert pck(people[0], people[0]) == 1.0
    assert pck(np.zeros((T, 0, 15, 3)), people[0]) == 0.0  # nobody read back: 0, not "not measurable"
    assert np.mean([pck(people[(i + 1) % 3], p) for i, p in enumerate(people)]) < 0.2


def test_still_video_wins_flickering_but_is_flagged_static():
    coarse = RNG.uniform(0, 255, (H // 4, W // 4, 3))
    texture = np.repeat(np.repeat(coarse, 4, axis=0), 4, axis=1).astype(np.uint8)  # smooth enough to move
    still = np.repeat(texture[None], 8, axis=0)
    moving = np.stack([np.roll(texture, 2 * t, axis=1) for t in range(8)])
    noise = RNG.integers(0, 256, (8, H, W, 3)).astype(np.uint8)
    # the dimensions alone reward the still video over real motion, and punish noise
    assert temporal_flickering(still) == 1.0 > temporal_flickering(moving) > temporal_flickering(noise)
    assert motion_smoothness_linear_proxy(still) == 1.0 > motion_smoothness_linear_proxy(noise)
    # ... which is why the flag goes with them
    assert frame_difference(still) == 0.0 and frame_difference(moving) > STATIC_FRAME_DIFFERENCE
    assert static_flag(np.stack([still, still, moving]))["value"] is True
    flag = static_flag(np.stack([moving, noise, still]))
    assert flag["value"] is False and flag["static_videos"] == 1 and flag["videos"] == 3
    near_blank = (128 + RNG.integers(-1, 2, (8, H, W, 3))).astype(np.uint8)  # a 10-step model's "video"
    assert temporal_flickering(near_blank) > 0.99 and static_flag(near_blank[None])["value"] is True


def depth_clip(i: int, depth: np.ndarray) -> BenchmarkClip:
    meta = {}
    MODALITIES["depth"].encode(depth, meta)
    return BenchmarkClip(f"k{i}", "", {}, {"encoding": {"depth": meta}}, {}, {"depth": depth})


def test_joint_consistency_cannot_be_won_by_flat_outputs():
    depths = [depth_video(s) for s in range(4)]
    clips = [depth_clip(i, d) for i, d in enumerate(depths)]
    forms = np.stack([MODALITIES["depth"].encode(d, {}) for d in depths])  # [N, T, H, W, 3]
    rgb = RNG.integers(0, 256, forms.shape).astype(np.uint8)
    flat = np.full_like(forms, 120)
    random = np.stack([MODALITIES["depth"].encode(RNG.uniform(1, 10, (T, H, W)), {}) for _ in depths])
    assert is_flat(flat[0]) and not is_flat(random[0]) and FLAT_STD == 2.0

    # the case: uniform random depth against a flat estimate aligned perfectly (AbsRel 6e-16)
    degenerate = joint_consistency("depth", random, flat, rgb, clips)
    assert degenerate["flat_clips"] == 4 and "not_measurable" in degenerate["model"]
    assert joint_consistency("depth", flat, flat, flat, clips)["beats_shuffled"] is None

    # streams that agree beat the shuffled control; the real data ceiling is scored the same way
    agree = joint_consistency("depth", forms, forms, rgb, clips, real=(forms, forms, rgb))
    assert agree["flat_clips"] == 0 and agree["model"]["abs_rel"] < 0.01
    assert agree["shuffled pairs"]["abs_rel"] > 0.1 and agree["beats_shuffled"] is True
    assert agree["real video"]["abs_rel"] < 0.01 and agree["real_flat_clips"] == 0
    assert agree["above_ceiling"] is False  # as good as on real data, not better

    # a model that copies its rgb into the modality agrees with its own estimator better than reality allows
    copied = joint_consistency("depth", forms, forms, rgb, clips, real=(forms, np.roll(forms, 1, axis=0), rgb))
    assert copied["model"]["abs_rel"] < 0.01 and copied["above_ceiling"] is True

    # both streams drawing the same prior map for every clip agree perfectly, and no better than shuffled pairs
    prior = np.repeat(forms[:1], 4, axis=0)
    assert joint_consistency("depth", prior, prior, rgb, clips)["beats_shuffled"] is False
