"""DensePose metrics (part accuracy, part mIoU, uv error) on cases worked out by hand."""

import numpy as np
import pytest

from data_pipeline.modalities import decode_densepose, encode_densepose
from eval.metrics import densepose_metrics


def iuv(parts, u, v):
    """(part, u, v) [T=1, H=1, W, 3] from per-pixel lists."""
    return np.stack([parts, u, v], axis=-1).astype(np.float32)[None, None]


# five pixels: gt parts 0 1 1 2 3, predicted 1 1 2 2 0; body pixels are the last four, parts right at pixels 1 and 3
GT = iuv([0, 1, 1, 2, 3], [0.0, 0.5, 0.1, 0.2, 0.9], [0.0, 0.5, 0.1, 0.2, 0.9])
PRED = iuv([1, 1, 2, 2, 0], [0.7, 0.8, 0.6, 0.2, 0.0], [0.7, 0.9, 0.6, 0.2, 0.0])


def test_one_frame_by_hand():
    # part 1: TP 1 (pixel 1), gt 2, pred 2 -> IoU 1/3; part 2: TP 1, gt 1, pred 2 -> 1/2; part 3: TP 0, gt 1 -> 0
    # uv at the right-part pixels: |(0.3, 0.4)| = 0.5 at pixel 1, 0 at pixel 3
    result = densepose_metrics(PRED, GT)
    assert result.keys() == {"part_accuracy", "part_miou", "uv_error"}
    assert result["part_accuracy"] == pytest.approx(2 / 4, abs=1e-12)
    assert result["part_miou"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3, abs=1e-12)
    assert result["uv_error"] == pytest.approx((0.5 + 0.0) / 2, abs=1e-6)  # float32 inputs


def test_a_perfect_prediction_and_the_codec_round_trip():
    rng = np.random.default_rng(0)
    gt = np.concatenate([rng.integers(0, 15, size=(2, 6, 7, 1)), rng.uniform(0, 1, size=(2, 6, 7, 2))], axis=-1)
    gt[..., 1:] *= gt[..., :1] > 0  # the codec zeroes u, v on background
    assert densepose_metrics(gt, gt) == {"part_accuracy": 1.0, "part_miou": 1.0, "uv_error": 0.0}
    result = densepose_metrics(decode_densepose(encode_densepose(gt)), gt)
    assert result["part_accuracy"] == 1.0 and result["part_miou"] == 1.0
    assert result["uv_error"] <= np.sqrt(2) * 0.5 / 255 + 1e-6


def test_uv_error_is_none_without_a_right_part():
    # gt parts 0 4, predicted 4 0: part 4 has TP 0 and union 2
    result = densepose_metrics(iuv([4, 0], [0.5, 0], [0.5, 0]), iuv([0, 4], [0, 0.5], [0, 0.5]))
    assert result == {"part_accuracy": 0.0, "part_miou": 0.0, "uv_error": None}


def test_errors():
    with pytest.raises(ValueError, match=r"\(1, 1, 5, 3\) and \(1, 1, 4, 3\)"):
        densepose_metrics(PRED, GT[:, :, :4])
    with pytest.raises(ValueError, match="no body"):
        densepose_metrics(PRED, np.zeros_like(GT))
    with pytest.raises(ValueError, match=r"\[0, 14\]"):
        densepose_metrics(iuv([15, 0, 0, 0, 0], [0] * 5, [0] * 5), GT)
