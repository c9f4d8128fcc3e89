"""DensePose metrics of one video: body-part accuracy, part mIoU and surface (u, v) error.

Dense IUV maps, as the densepose modality decodes them (``decode_densepose``: float32
``[T, H, W, 3]`` of part index, u, v), are scored pixel by pixel against the true IUV map.
This is a dense per-pixel protocol, not DensePose-COCO's instance-level GPS / GPSm AP (which
needs person detections and geodesic distances on the SMPL surface); it measures whether the
model paints the right part and the right surface coordinates at each pixel.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.skeleton import BODY_PARTS
from eval.metrics.seg import class_iou, confusion_matrix

NUM_PARTS = len(BODY_PARTS)  # 15: index 0 is background, 1..14 are body parts


def _parts(iuv: np.ndarray, name: str) -> np.ndarray:
    """Channel 0 of ``iuv`` as integer part indices, checked to lie in [0, NUM_PARTS)."""
    part = np.rint(iuv[..., 0])
    if not (np.isfinite(part).all() and (part >= 0).all() and (part < NUM_PARTS).all()):
        raise ValueError(f"{name}: expected part indices in [0, {NUM_PARTS - 1}] in channel 0")
    return part.astype(np.int64)


def densepose_metrics(pred, gt) -> dict[str, float | None]:
    """Part accuracy, part mIoU and uv error of one video; ``pred`` and ``gt`` (part, u, v) ``[T, H, W, 3]``.

    Channel 0 is the part index (0 = background, 1..14 the parts of ``BODY_PARTS``; rounded to
    the nearest integer), channels 1 and 2 are u and v in [0, 1].

    - ``part_accuracy``: fraction (0..1) of body pixels (gt part > 0) whose predicted part is the gt part.
    - ``part_miou``: mean IoU over the body parts 1..14 present in gt or pred, from one confusion
      matrix over all pixels (background included in the matrix, so a body pixel predicted as
      background is a false negative of its part), with ``eval.metrics.seg.class_iou``'s convention.
    - ``uv_error``: mean L2 distance of (u, v) over body pixels whose part is predicted right;
      ``None`` (not NaN, so the result stays valid JSON) when there is no such pixel.

    Raises ValueError on a shape mismatch, on part indices out of range, or when gt has no body pixel.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 4 or gt.shape[-1] != 3:
        raise ValueError(f"pred and gt must both be [T, H, W, 3], got {pred.shape} and {gt.shape}")
    pred_part, gt_part = _parts(pred, "pred"), _parts(gt, "gt")
    body = gt_part > 0
    if not body.any():
        raise ValueError("no body pixel (part > 0) in the ground truth")

    hit = body & (pred_part == gt_part)
    ious = class_iou(confusion_matrix(pred_part, gt_part, ignore_index=None, num_classes=NUM_PARTS))
    part_ious = [iou for part, iou in ious.items() if part > 0]  # not empty: gt has a body pixel
    uv_error = np.linalg.norm(pred[hit][:, 1:] - gt[hit][:, 1:], axis=-1)
    return {
        "part_accuracy": float(hit.sum() / body.sum()),
        "part_miou": float(np.mean(part_ious)),
        "uv_error": float(uv_error.mean()) if hit.any() else None,
    }
