"""Segmentation metrics (semantic mIoU, YouTube-VIS mask mAP) on cases worked out by hand."""

import numpy as np
import pytest

from eval.metrics import mask_map, miou, per_class_iou
from eval.metrics.seg import confusion_matrix

# video A [T=2, H=1, W=3] and video B [T=1, H=1, W=2]; 255 is ignored
GTS = [np.array([[[0, 0, 1]], [[1, 1, 255]]]), np.array([[[2, 0]]])]
PREDS = [np.array([[[0, 1, 1]], [[1, 2, 0]]]), np.array([[[2, 0]]])]
# (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (1,2) [ignored] (2,2) (0,0)
# class 0: TP 2, gt 3, pred 2 -> union 3; class 1: TP 2, gt 3, pred 3 -> union 4; class 2: TP 1, gt 1, pred 2 -> union 2


def test_miou_by_hand_over_one_confusion_matrix():
    assert per_class_iou(PREDS, GTS) == pytest.approx({0: 2 / 3, 1: 1 / 2, 2: 1 / 2}, abs=1e-12)
    assert miou(PREDS, GTS) == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3, abs=1e-12)
    # rows are gt, columns pred
    np.testing.assert_array_equal(confusion_matrix(PREDS, GTS), [[2, 1, 0], [0, 2, 1], [0, 0, 1]])


def test_a_class_only_predicted_counts_with_iou_zero():
    # class 0: TP 1, union 2; class 3 is only predicted: IoU 0, and it is averaged in; classes 1, 2 are absent
    gt, pred = np.array([[[0, 0]]]), np.array([[[0, 3]]])
    assert per_class_iou(pred, gt) == {0: 0.5, 3: 0.0}
    assert miou(pred, gt) == pytest.approx(0.25)
    assert miou(gt, gt) == 1.0  # a single array is one video


def test_miou_errors():
    with pytest.raises(ValueError, match=r"\(1, 1, 2\) and \(1, 1, 3\)"):
        miou([np.zeros((1, 1, 2), int)], [np.zeros((1, 1, 3), int)])
    with pytest.raises(ValueError, match="no pixel"):
        miou(np.zeros((1, 2, 2), int), np.full((1, 2, 2), 255))
    with pytest.raises(ValueError, match="videos"):
        miou(PREDS, GTS[:1])
    with pytest.raises(ValueError, match="integer"):
        miou(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int))


def m(*frames):
    """A boolean mask [T, H=1, W] from rows of 0 / 1."""
    return np.array([[row] for row in frames], dtype=bool)


def test_map_of_a_perfect_prediction_is_one():
    gts = [
        [
            {"mask": m([1, 1, 0, 0], [0, 1, 1, 0]), "category": 1},
            {"mask": m([0, 0, 0, 1], [0, 0, 0, 1]), "category": 2},
        ],
        [{"mask": m([1, 0, 0, 0], [1, 1, 0, 0]), "category": 1}],
    ]
    preds = [[dict(g, score=0.5) for g in video] for video in gts]
    assert mask_map(preds, gts) == {"map": 1.0, "map50": 1.0, "map75": 1.0}


def test_map_by_hand():
    # masks [T=2, H=1, W=4]; video 0 has gts g0 (category 1) and g2 (category 2), video 1 has g1 (category 1)
    g0, g2, g1 = m([1, 1, 0, 0], [1, 1, 0, 0]), m([0, 0, 1, 1], [0, 0, 0, 1]), m([0, 0, 1, 1], [0, 0, 1, 1])
    gts = [[{"mask": g0, "category": 1}, {"mask": g2, "category": 2}], [{"mask": g1, "category": 1}]]
    preds = [
        [
            {"mask": g2, "score": 0.5, "category": 2},  # = g2
            {"mask": g0, "score": 0.9, "category": 1},
        ],  # = g0
        [
            {"mask": m([1, 0, 0, 0], [0, 0, 0, 0]), "score": 0.8, "category": 1},  # IoU 0 with g1: a false positive
            {"mask": m([0, 1, 1, 1], [0, 1, 1, 1]), "score": 0.7, "category": 1},  # IoU with g1: 4 / 6 = 2/3
            {"mask": g1, "score": 0.3, "category": 2},  # no category 2 gt in video 1: a false positive
            {"mask": g1, "score": 0.99, "category": 3},
        ],  # no category 3 gt anywhere: the category is left out
    ]
    # category 1, two gts, ranked 0.9 (TP), 0.8 (FP), 0.7 (TP where the threshold is <= 2/3):
    #   thresholds .50 .55 .60 .65: recall .5 .5 1, precision 1 1/2 2/3 -> from the right 1 2/3 2/3;
    #     the 51 recall points 0 .. .50 take 1, the 50 points .51 .. 1 take 2/3: AP = (51 + 50 * 2/3) / 101 = 253/303
    #   thresholds .70 .. .95: recall stays .5, precision 1 1/2 1/3 -> 1 1/2 1/3; points 0 .. .50 take 1, the rest 0:
    #     AP = 51/101 = 153/303
    #   mean over the 10 thresholds: (4 * 253 + 6 * 153) / 3030 = 193/303
    # category 2, one gt, ranked 0.5 (TP), 0.3 (FP): recall 1 1, precision 1 1/2 -> 1 1/2; all points take 1: AP 1
    result = mask_map(preds, gts)
    assert result.keys() == {"map", "map50", "map75"}
    assert result["map50"] == pytest.approx((253 / 303 + 1) / 2, abs=1e-12)
    assert result["map75"] == pytest.approx((153 / 303 + 1) / 2, abs=1e-12)
    assert result["map"] == pytest.approx((193 / 303 + 1) / 2, abs=1e-12)


def test_a_prediction_takes_the_unmatched_gt_with_the_best_iou():
    # gts a = [1 1 0 0] and b = [0 1 1 1]; the first prediction [1 1 1 1] has IoU 2/4 with a and 3/4 with b, so takes b,
    # and leaves a to the second prediction (= a). Taking a first would leave b with IoU 1/4 to it: map50 51/101
    a, b = m([1, 1, 0, 0]), m([0, 1, 1, 1])
    gts = [[{"mask": a, "category": 0}, {"mask": b, "category": 0}]]
    preds = [[{"mask": m([1, 1, 1, 1]), "score": 0.9, "category": 0}, {"mask": a, "score": 0.8, "category": 0}]]
    assert mask_map(preds, gts)["map50"] == 1.0


def test_a_category_without_predictions_scores_zero():
    # category 1 perfect (AP 1), category 2 never predicted (AP 0)
    gts = [[{"mask": m([1, 0]), "category": 1}, {"mask": m([0, 1]), "category": 2}]]
    preds = [[{"mask": m([1, 0]), "score": 1.0, "category": 1}]]
    assert mask_map(preds, gts) == {"map": 0.5, "map50": 0.5, "map75": 0.5}
    assert mask_map([[]], gts) == {"map": 0.0, "map50": 0.0, "map75": 0.0}
    with pytest.raises(ValueError, match="no ground-truth"):
        mask_map(preds, [[]])
    with pytest.raises(ValueError, match="videos"):
        mask_map(preds, gts * 2)
    with pytest.raises(ValueError, match=r"\(1, 1, 2\) and \(1, 1, 3\)"):
        mask_map(preds, [[{"mask": m([1, 0, 0]), "category": 1}]])
