"""Pose metric of one video: PCK@0.1 with bounding-box normalisation, people matched per frame.

Keypoints are ``[T, P, K, 3]`` = (x, y, visibility) in pixels, as ``decode_pose`` returns them
(missing joints and empty person slots are (0, 0, 0)). The decoder's person slots need not line
up with the ground truth's (it orders people left to right in the first frame and tracks them),
so people are matched anew in every frame before joints are compared.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

NO_OVERLAP = 1e6  # matching cost of two people without a joint visible in both


def _pair_costs(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean distance ``[P_pred, P_gt]`` over the joints visible in both; ``NO_OVERLAP`` where there are none."""
    both = (pred[:, None, :, 2] > 0) & (gt[None, :, :, 2] > 0)  # [Pp, Pg, K]
    distance = np.linalg.norm(pred[:, None, :, :2] - gt[None, :, :, :2], axis=-1)
    total = np.where(both, distance, 0.0).sum(axis=-1)
    count = both.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), NO_OVERLAP)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost one-to-one (pred, gt) pairs of a rectangular cost matrix (scipy's Hungarian solver)."""
    if min(cost.shape) == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return list(zip(rows.tolist(), cols.tolist()))


def pck(pred, gt, threshold: float = 0.1) -> float:
    """PCK (0..1) of one video; ``pred`` ``[T, P_pred, K, 3]``, ``gt`` ``[T, P_gt, K, 3]`` (x, y, visibility).

    A joint is visible when its visibility is > 0 and its values are finite. In each frame, pred
    and gt people are paired one to one by minimum total cost (the Hungarian assignment,
    ``scipy.optimize.linear_sum_assignment``, polynomial in the number of people), the cost of a
    pair being the mean distance over the joints visible in both. A visible gt
    joint is correct when the paired pred person's joint is visible and within
    ``threshold * size`` pixels of it (distance <= that bound), ``size`` being the larger of the
    width and height of the box around that gt person's visible joints in that frame (the
    common "bbox" normalisation of PCK@0.1). Gt people left unpaired score 0 on all their joints.
    Returns correct / all visible gt joints of the video; ValueError when gt has none, or on a
    shape mismatch (T and K must agree; the number of people may differ).
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    same_t_and_k = pred.ndim == gt.ndim == 4 and pred.shape[::2] == gt.shape[::2]  # (T, K)
    if not (same_t_and_k and pred.shape[-1] == gt.shape[-1] == 3):
        raise ValueError(f"pred and gt must be [T, P, K, 3] with the same T and K, got {pred.shape} and {gt.shape}")
    pred = np.where(np.isfinite(pred).all(-1, keepdims=True), pred, 0.0)  # non-finite joints are invisible
    gt = np.where(np.isfinite(gt).all(-1, keepdims=True), gt, 0.0)
    visible = gt[..., 2] > 0  # [T, Pg, K]
    if not visible.any():
        raise ValueError("no visible ground-truth joint in the video")

    correct = 0
    for pred_people, gt_people, seen in zip(pred, gt, visible):
        for p, g in _assign(_pair_costs(pred_people, gt_people)):
            if not seen[g].any():
                continue
            xy = gt_people[g, seen[g], :2]
            size = (xy.max(axis=0) - xy.min(axis=0)).max()
            distance = np.linalg.norm(pred_people[p, :, :2] - gt_people[g, :, :2], axis=-1)
            correct += int((seen[g] & (pred_people[p, :, 2] > 0) & (distance <= threshold * size)).sum())
    return correct / int(visible.sum())
