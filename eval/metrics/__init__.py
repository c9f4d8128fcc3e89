"""Metrics of estimated modalities against their ground truth."""

from eval.metrics.depth import depth_metrics, mean_over_videos

__all__ = ["depth_metrics", "mean_over_videos"]
