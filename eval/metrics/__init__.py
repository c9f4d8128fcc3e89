"""Metrics of estimated modalities against their ground truth, in plain NumPy.

- ``depth``: AbsRel, δ1, RMSE after per-video affine alignment in disparity (DepthCrafter protocol).
- ``flow``: end-point error and KITTI Fl-all of forward flow, after a least-squares scale when it has none.
- ``seg``: semantic mIoU over one confusion matrix, instance mIoU per video (instances matched),
  and YouTube-VIS mask mAP (COCO AP, track IoU).
- ``densepose``: body-part accuracy, part mIoU and (u, v) error of IUV maps.
- ``pose``: PCK@0.1 (bounding-box normalised) with people matched per frame.

Per-video results average with ``mean_over_videos``.
"""

from eval.metrics.densepose import densepose_metrics
from eval.metrics.depth import depth_metrics, mean_over_videos
from eval.metrics.flow import flow_metrics, least_squares_scale
from eval.metrics.pose import pck
from eval.metrics.seg import instance_miou, mask_map, miou, per_class_iou

__all__ = [
    "densepose_metrics",
    "depth_metrics",
    "flow_metrics",
    "instance_miou",
    "least_squares_scale",
    "mask_map",
    "mean_over_videos",
    "miou",
    "pck",
    "per_class_iou",
]
