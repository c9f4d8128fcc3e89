"""PCK@0.1 of pose keypoints, with people matched per frame, on cases worked out by hand."""

import time
from itertools import permutations

import numpy as np
import pytest

from eval.metrics import pck, pose

# one frame, two people, K = 3 joints (x, y, visibility)
A = [[0, 0, 1], [10, 0, 1], [10, 20, 1]]  # box 10 x 20: size 20, so within 0.1 * 20 = 2 px
B = [[100, 0, 1], [104, 0, 1], [0, 0, 0]]  # third joint not visible; box 4 x 0: size 4, within 0.4 px
GT = np.array([[A, B]], dtype=np.float64)  # [T=1, P=2, K=3, 3]
# predicted in the other slot order: B first, then A
PRED_B = [[100, 0.3, 1], [104, 0.5, 1], [50, 50, 1]]  # 0.3 <= 0.4 right, 0.5 > 0.4 wrong, third not in gt
PRED_A = [[1, 0, 1], [10, 3, 1], [10, 20, 0]]  # 1 <= 2 right, 3 > 2 wrong, third not predicted: wrong
PRED = np.array([[PRED_B, PRED_A]], dtype=np.float64)


def test_one_frame_by_hand():
    # matching pairs pred 0 with gt B (mean distance 0.4) and pred 1 with A (2); 2 right of 5 visible gt joints
    assert pck(PRED, GT) == pytest.approx(2 / 5, abs=1e-12)
    assert pck(GT, GT) == 1.0
    assert pck(GT[:, ::-1], GT) == 1.0  # slot order does not matter


def test_unmatched_and_extra_people():
    assert pck(GT[:, :1], GT) == pytest.approx(3 / 5)  # only A predicted: B's two joints are wrong
    extra = np.concatenate([GT, [[[[7, 7, 1], [8, 8, 1], [9, 9, 1]]]]], axis=1)
    assert pck(extra, GT) == 1.0  # an extra predicted person is ignored
    padded = np.concatenate([GT, np.zeros((1, 1, 3, 3))], axis=1)  # decode_pose's empty slot: all (0, 0, 0)
    assert pck(PRED, padded) == pytest.approx(2 / 5, abs=1e-12)


def test_joints_are_pooled_over_the_video():
    # frame 1: only A, predicted with the first joint 5 px off: 2 right of 3
    gt = np.concatenate([GT, [[A, [[0, 0, 0]] * 3]]])
    pred = np.concatenate([GT, [[[[5, 0, 1], [10, 0, 1], [10, 20, 1]], [[0, 0, 0]] * 3]]])
    assert pck(pred, gt) == pytest.approx((5 + 2) / (5 + 3), abs=1e-12)  # not the frame mean (1 + 2/3) / 2


def test_people_are_matched_by_minimum_total_cost():
    # one-joint people 100 px tall (the second joint 100 px below the first); gt at x = 0 and 3, pred at x = 1 and -2.
    # Costs [[1, 2], [2, 5]]: greedy would pair (0, 0) then (1, 1) (total 6, one person within 2.5 px: PCK 0.5);
    # the Hungarian assignment pairs (0, 1) and (1, 0) (total 4, both within 2.5 px)
    def people(*xs):
        return np.array([[[[x, 0, 1], [x, 100, 1]] for x in xs]], dtype=np.float64)

    assert pck(people(1, -2), people(0, 3), threshold=0.025) == 1.0
    assert pck(people(1, -2), people(0, 3), threshold=0.015) == 0.0


def _best_by_enumeration(cost):
    """The minimum total cost over every one-to-one pairing, by brute force (the reference)."""
    rows, cols = cost.shape
    if rows > cols:
        return _best_by_enumeration(cost.T)
    return min(cost[range(rows), list(c)].sum() for c in permutations(range(cols), rows))


def test_assignment_is_minimum_total_cost():
    rng = np.random.default_rng(0)
    for shape in [(3, 3), (5, 7), (7, 5), (1, 4), (0, 3)]:
        cost = rng.uniform(size=shape)
        pairs = pose._assign(cost)
        assert len(pairs) == min(shape)
        assert len({p for p, _ in pairs}) == len({g for _, g in pairs}) == len(pairs)  # one to one
        if min(shape):
            assert sum(cost[p, g] for p, g in pairs) == pytest.approx(_best_by_enumeration(cost))


def test_many_people_match_fast():
    # 6 predicted against 16 gt people: 5.8 M pairings to enumerate; the Hungarian solver needs no enumeration
    rng = np.random.default_rng(1)
    gt = rng.uniform(0, 200, size=(16, 16, 15, 3))  # [T, P, K, 3]
    gt[..., 2] = 1
    pred = gt[:, rng.permutation(16)[:6]] + rng.normal(0, 0.5, size=(16, 6, 15, 3))
    pred[..., 2] = 1
    start = time.perf_counter()
    score = pck(pred, gt)
    assert time.perf_counter() - start < 1.0
    assert score == pytest.approx(6 / 16, abs=0.02)  # the 6 predicted people found among 16, the other 10 missed


def test_errors():
    with pytest.raises(ValueError, match="no visible"):
        pck(PRED, np.zeros_like(GT))
    with pytest.raises(ValueError, match=r"\(1, 2, 2, 3\) and \(1, 2, 3, 3\)"):
        pck(PRED[:, :, :2], GT)
