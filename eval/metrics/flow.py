"""Optical flow metrics of one video: end-point error (EPE) and the KITTI outlier rate Fl-all.

The prediction is forward flow in pixels, as the flow modality decodes it (``decode_flow``,
scaled by the clip's stored ``max_radius``), scored against the true forward flow. EPE is the
standard Sintel / KITTI end-point error; Fl-all is KITTI 2015's share of outliers, a pixel
being an outlier when its error exceeds both 3 px and 5 % of the true flow's length. Both are
taken over all valid pixels of the video at once (every pixel weighs the same); average videos
with ``mean_over_videos`` (every video weighs the same).
"""

from __future__ import annotations

import numpy as np

from eval.metrics.depth import mean_over_videos

__all__ = ["flow_metrics", "mean_over_videos"]

OUTLIER_PX = 3.0  # KITTI: an outlier's end-point error exceeds 3 px ...
OUTLIER_REL = 0.05  # ... and 5 % of the true flow's magnitude


def flow_metrics(pred, gt, valid=None) -> dict[str, float]:
    """EPE (px) and Fl-all (fraction 0..1) of one video; ``pred`` and ``gt`` forward flow ``[T, H, W, 2]`` (dx, dy).

    Valid pixels: both ``gt`` components finite, and ``valid`` (bool ``[T, H, W]``) where given.
    The flow modality stores the last frame's forward flow as zero (there is no next frame);
    to leave it out, pass ``valid`` False on it or slice both arrays to ``[:-1]``.
    Raises ValueError on a shape mismatch, when no pixel is valid, or when ``pred`` is not
    finite on a valid pixel.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 4 or gt.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [T, H, W, 2], got {pred.shape} and {gt.shape}")
    mask = np.isfinite(gt).all(axis=-1)
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != mask.shape:
            raise ValueError(f"valid must be [T, H, W] = {mask.shape}, got {valid.shape}")
        mask &= valid
    if not mask.any():
        raise ValueError("no valid ground-truth flow in the video")
    if not np.isfinite(pred[mask]).all():
        raise ValueError("pred has nan or inf on valid pixels")

    epe = np.linalg.norm(pred[mask] - gt[mask], axis=-1)  # [N]
    magnitude = np.linalg.norm(gt[mask], axis=-1)
    outlier = (epe > OUTLIER_PX) & (epe > OUTLIER_REL * magnitude)
    return {"epe": float(epe.mean()), "fl_all": float(outlier.mean())}
