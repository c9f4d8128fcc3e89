"""Video depth metrics (DepthCrafter protocol) on cases worked out by hand."""

import math

import numpy as np
import pytest

from eval.metrics import depth_metrics, mean_over_videos

GT = np.array([[[1.0, 2.0]], [[4.0, 4.0]]])  # [T=2, H=1, W=2] metres; disparity 1, 1/2, 1/4, 1/4


def approx(result, **expected):
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_an_affine_function_of_true_disparity_is_perfect():
    gt = np.random.default_rng(0).uniform(1.0, 10.0, size=(3, 8, 8))
    approx(depth_metrics(3.0 / gt + 0.2, gt), abs_rel=0.0, delta1=1.0, rmse=0.0)


def test_a_constant_prediction_becomes_the_mean_disparity():
    # the fit is degenerate; the minimum-norm solution is the mean disparity 1/2, i.e. 2 m everywhere
    # frame 0: depths 2, 2 vs 1, 2; frame 1: 2, 2 vs 4, 4
    approx(
        depth_metrics(np.full_like(GT, 0.3), GT),
        abs_rel=(0.5 + 0.5) / 2,
        delta1=(0.5 + 0.0) / 2,
        rmse=(math.sqrt(0.5) + 2.0) / 2,
    )


def test_two_frames_by_hand():
    # disparity 1, 1/2, 1/4, 1/4 on pred 2, 1, 0, 1: least squares scale 3/8, shift 1/8, so the aligned
    # disparity is 7/8, 1/2, 1/8, 1/2 and the depth 8/7, 2, 8, 2 (the floor 1/(2 * 4) = 1/8 is not hit)
    pred = np.array([[[2.0, 1.0]], [[0.0, 1.0]]])
    expected = dict(
        abs_rel=(1 / 14 + 0.75) / 2, delta1=(1.0 + 0.0) / 2, rmse=(1 / (7 * math.sqrt(2)) + math.sqrt(10)) / 2
    )
    approx(depth_metrics(pred, GT), **expected)
    approx(depth_metrics(5 * pred - 1, GT), **expected)  # invariant to the prediction's scale and shift

    # invalid pixels (no depth, NaN, inf, or masked out) take no part, whatever is predicted there
    gt = np.concatenate([GT, [[[0.0, np.nan]], [[np.inf, 5.0]]]], axis=2)  # [2, 1, 4]
    garbage = np.concatenate([pred, [[[1e6, -3.0]], [[7.0, 1e-9]]]], axis=2)
    valid = np.ones_like(gt, dtype=bool)
    valid[1, 0, 3] = False
    approx(depth_metrics(garbage, gt, valid), **expected)


def test_aligned_disparity_is_floored_at_half_the_farthest_disparity():
    # disparity 1, 1/10, 1/10, 1/10 on pred 0, 1, 2, 3: scale -0.27, shift 0.73; aligned 0.73, 0.46, 0.19, -0.08,
    # the last floored at 1/20 (twice the farthest depth, 10 m) or, with max_depth=15, at 1/15
    gt, pred = np.array([[[1.0, 10.0, 10.0, 10.0]]]), np.array([[[0.0, 1.0, 2.0, 3.0]]])
    for cap, result in ((20.0, depth_metrics(pred, gt)), (15.0, depth_metrics(pred, gt, max_depth=15.0))):
        depth = np.array([1 / 0.73, 1 / 0.46, 1 / 0.19, cap])
        approx(
            result,
            abs_rel=float(np.mean(np.abs(depth - gt[0, 0]) / gt[0, 0])),
            delta1=0.0,
            rmse=float(np.sqrt(np.mean((depth - gt[0, 0]) ** 2))),
        )


def test_frames_without_valid_pixels_are_skipped():
    gt = np.concatenate([GT, np.zeros((1, 1, 2))])  # a third frame without depth
    pred = np.array([[[2.0, 1.0]], [[0.0, 1.0]], [[5.0, 5.0]]])
    approx(depth_metrics(pred, gt), **depth_metrics(pred[:2], GT))
    with pytest.raises(ValueError, match="no valid"):
        depth_metrics(pred, np.zeros_like(pred))
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        depth_metrics(pred[0], gt[0])


def test_mean_over_videos():
    results = [{"abs_rel": 0.1, "delta1": 0.9, "rmse": 1.0}, {"abs_rel": 0.3, "delta1": 0.5, "rmse": 3.0}]
    approx(mean_over_videos(results), abs_rel=0.2, delta1=0.7, rmse=2.0)
    with pytest.raises(ValueError):
        mean_over_videos([])
