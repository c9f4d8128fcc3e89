"""Optical flow metrics of one video: end-point error (EPE) and the KITTI outlier rate Fl-all.

The prediction is forward flow in pixels, scored against the true forward flow. A predicted
visual form carries no magnitude scale (``decode_flow`` without the clip's ``max_radius`` gives
speed relative to an unknown radius), so it is first brought to pixels by ``least_squares_scale``. EPE is the
standard Sintel / KITTI end-point error; Fl-all is KITTI 2015's share of outliers, a pixel
being an outlier when its error exceeds both 3 px and 5 % of the true flow's length. Both are
taken over all valid pixels of the video at once (every pixel weighs the same); average videos
with ``mean_over_videos`` (every video weighs the same).
"""

from __future__ import annotations

import numpy as np

from eval.metrics.depth import mean_over_videos

__all__ = ["flow_metrics", "least_squares_scale", "mean_over_videos"]

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


def least_squares_scale(pred, gt, valid=None) -> float:
    """The scale ``s >= 0`` minimising ``sum |s * pred - gt|^2`` over valid pixels: ``<pred, gt> / <pred, pred>``.

    For a flow known up to its magnitude (the flow modality stores speed relative to a per-clip
    radius that a prediction does not carry), as depth is aligned before it is scored. The scale is
    not allowed below 0 (a reversed flow is not rescued by a sign) and is 0 for an all-zero
    prediction. ``pred`` and ``gt`` ``[T, H, W, 2]``; valid pixels as in ``flow_metrics``.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 4 or gt.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [T, H, W, 2], got {pred.shape} and {gt.shape}")
    mask = np.isfinite(gt).all(axis=-1) & np.isfinite(pred).all(axis=-1)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    power = float(np.sum(pred[mask] ** 2))
    return max(float(np.sum(pred[mask] * gt[mask])) / power, 0.0) if power > 0 else 0.0
