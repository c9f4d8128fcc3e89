"""Optical flow metrics (EPE, KITTI Fl-all) on cases worked out by hand."""

import numpy as np
import pytest

from eval.metrics import depth, flow, flow_metrics

# one frame of four pixels: true flow (0, 0), (10, 0), (100, 0), (0, 0)
GT = np.array([[[[0.0, 0.0], [10.0, 0.0], [100.0, 0.0], [0.0, 0.0]]]])  # [T=1, H=1, W=4, 2]
# errors 5 (> 3 px and > 5 % of 0: outlier), 2 (< 3 px), 4 (> 3 px but < 5 % of 100 = 5), 3 (not > 3 px)
PRED = np.array([[[[3.0, 4.0], [10.0, 2.0], [100.0, 4.0], [0.0, 3.0]]]])


def approx(result, **expected):
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key


def test_a_perfect_prediction():
    gt = np.random.default_rng(0).normal(0.0, 5.0, size=(3, 4, 5, 2))
    approx(flow_metrics(gt.copy(), gt), epe=0.0, fl_all=0.0)


def test_one_frame_by_hand():
    approx(flow_metrics(PRED, GT), epe=(5 + 2 + 4 + 3) / 4, fl_all=1 / 4)


def test_pixels_are_pooled_over_frames():
    # frame 1: one pixel with error 10 > 3 and > 5 % of |(6, 8)| = 10: an outlier
    gt = np.concatenate([GT, [[[[6.0, 8.0], [6.0, 8.0], [6.0, 8.0], [6.0, 8.0]]]]])
    pred = np.concatenate([PRED, [[[[-4.0, 8.0], [6.0, 8.0], [6.0, 8.0], [6.0, 8.0]]]]])
    approx(flow_metrics(pred, gt), epe=(5 + 2 + 4 + 3 + 10) / 8, fl_all=2 / 8)


def test_invalid_pixels_take_no_part():
    gt = np.concatenate([GT, [[[[np.nan, 0.0], [1.0, np.inf]]]]], axis=2)  # [1, 1, 6, 2]
    pred = np.concatenate([PRED, [[[[1e6, 1e6], [np.nan, -3.0]]]]], axis=2)  # anything, even nan
    valid = np.ones(gt.shape[:3], dtype=bool)
    approx(flow_metrics(pred, gt, valid), epe=3.5, fl_all=0.25)
    valid[0, 0, 0] = False  # leaves the errors 2, 4, 3
    approx(flow_metrics(pred, gt, valid), epe=3.0, fl_all=0.0)


def test_errors():
    with pytest.raises(ValueError, match=r"\(1, 1, 4, 2\) and \(1, 1, 3, 2\)"):
        flow_metrics(PRED, GT[:, :, :3])
    with pytest.raises(ValueError, match="no valid"):
        flow_metrics(PRED, GT, np.zeros((1, 1, 4), dtype=bool))
    with pytest.raises(ValueError, match="no valid"):
        flow_metrics(PRED, np.full_like(GT, np.nan))
    with pytest.raises(ValueError, match="nan or inf"):
        flow_metrics(np.full_like(PRED, np.nan), GT)


def test_mean_over_videos_is_the_depth_one():
    assert flow.mean_over_videos is depth.mean_over_videos
    approx(flow.mean_over_videos([{"epe": 1.0, "fl_all": 0.0}, {"epe": 3.0, "fl_all": 0.5}]), epe=2.0, fl_all=0.25)
