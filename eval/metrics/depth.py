"""Video depth metrics under the DepthCrafter protocol: affine alignment in disparity, then errors in depth.

The prediction is relative disparity (inverse depth up to an unknown scale and shift, as the
depth modality encodes it). One least-squares scale and shift per video maps it onto the true
disparity ``1 / gt`` over the valid pixels; the aligned disparity is inverted to depth and scored
per frame against ``gt`` in metres with AbsRel, δ < 1.25 and RMSE, then averaged over frames.
"""

from __future__ import annotations

import numpy as np


def depth_metrics(pred, gt, valid=None, max_depth: float | None = None) -> dict[str, float]:
    """AbsRel, δ1 and RMSE of one video; ``pred`` relative disparity and ``gt`` depth, both ``[T, H, W]``.

    Valid pixels: ``gt`` finite and positive (and ``<= max_depth``), and ``valid`` where given.
    Predicted depth is capped at ``max_depth`` (the aligned disparity is clipped to at least
    ``1 / max_depth``), which by default is twice the deepest valid ``gt``: an aligned disparity
    near or below zero would otherwise become an unbounded or negative depth. DepthCrafter uses a
    fixed per-dataset cap instead (70 m on Sintel, 80 m on KITTI); pass it as ``max_depth``.
    Frames without valid pixels are skipped; a video without any raises ValueError.
    """
    pred, gt = np.asarray(pred, dtype=np.float64), np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or gt.ndim != 3:
        raise ValueError(f"pred and gt must both be [T, H, W], got {pred.shape} and {gt.shape}")
    with np.errstate(invalid="ignore"):
        mask = np.isfinite(gt) & (gt > 0)
        if max_depth is not None:
            mask &= gt <= max_depth
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    if not mask.any():
        raise ValueError("no valid ground-truth depth in the video")
    cap = max_depth if max_depth is not None else 2.0 * gt[mask].max()

    x = pred[mask]
    design = np.stack([x, np.ones_like(x)], axis=1)  # [N, 2]
    (scale, shift), *_ = np.linalg.lstsq(design, 1.0 / gt[mask], rcond=None)  # minimum norm if pred is constant
    depth = 1.0 / np.maximum(scale * pred + shift, 1.0 / cap)  # [T, H, W], in (0, cap]

    frames = [(depth[i][mask[i]], gt[i][mask[i]]) for i in range(len(gt)) if mask[i].any()]
    abs_rel = [np.mean(np.abs(d - g) / g) for d, g in frames]
    delta1 = [np.mean(np.maximum(d / g, g / d) < 1.25) for d, g in frames]
    rmse = [np.sqrt(np.mean((d - g) ** 2)) for d, g in frames]
    return {"abs_rel": float(np.mean(abs_rel)), "delta1": float(np.mean(delta1)), "rmse": float(np.mean(rmse))}


def mean_over_videos(results: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over videos (every video weighs the same, as in DepthCrafter)."""
    if not results:
        raise ValueError("no videos to average")
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}
