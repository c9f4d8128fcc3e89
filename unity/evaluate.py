"""Depth estimation on held-out clips with ground truth: the trained model against the mean-map prior.

Clips are read straight from the shards (``<key>.rgb.mkv`` and the raw ``<key>.depth.npy``). The
model estimates each clip's depth stream from its rgb stream with the sampler; its visual form is
read back as relative disparity, which ``eval.metrics.depth`` aligns per clip (scale and shift in
disparity) before AbsRel and δ<1.25. The baseline predicts, for every clip, the mean training
disparity map, aligned the same way.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.benchmark import BenchmarkClip, clip_features, load_clips, training_prior
from data_pipeline.modalities import MODALITIES
from eval.metrics.depth import depth_metrics, mean_over_videos
from unity.network import Trained
from unity.pipeline import SamplerSettings, run_task

DEPTH = MODALITIES["depth"]


def load_depth_clips(root: str, limit: int) -> list[BenchmarkClip]:
    """Up to ``limit`` clips of the split ``root`` with raw depth ground truth."""
    clips = load_clips(root, limit)
    if any("depth" not in clip.gt for clip in clips):
        raise ValueError(f"{root} has no raw depth ground truth; build it with `synth --with-gt`")
    return clips


def estimate_disparity(trained: Trained, clips: list[BenchmarkClip], settings: SamplerSettings) -> list[np.ndarray]:
    """Relative disparity ``[T, H, W]`` per clip, from the model's estimate of the depth stream."""
    was_training = trained.dit.training
    trained.dit.eval()
    videos = run_task(trained, "estimate", "depth", [c.caption for c in clips], rgb=np.stack([c.videos["rgb"] for c in clips]),
                      prompts=[c.prompts["depth"] for c in clips], settings=settings,
                      features=clip_features(clips))["depth"]
    trained.dit.train(was_training)
    return [DEPTH.decode(video) for video in videos]


def depth_report(predictions: list[np.ndarray], clips: list[BenchmarkClip]) -> dict[str, float]:
    """Mean AbsRel, δ<1.25 and RMSE over clips."""
    return mean_over_videos([depth_metrics(p, c.gt["depth"]) for p, c in zip(predictions, clips)])


def mean_map_report(train_root: str, clips: list[BenchmarkClip], limit: int = 256) -> dict[str, float]:
    """Metrics of the trivial prior: the mean training disparity map predicted for every clip."""
    prior = DEPTH.decode(training_prior(train_root, "depth", limit))
    return depth_report([prior] * len(clips), clips)


def summary_table(results: dict) -> str:
    """The run's depth-estimation and validation figures as a small text table."""
    rows = [("model (trained)", results["depth.abs_rel"], results["depth.delta1"]),
            ("model at step 0", results["step0.depth.abs_rel"], results["step0.depth.delta1"]),
            ("mean training disparity map", results["baseline_mean.depth.abs_rel"], results["baseline_mean.depth.delta1"])]
    lines = [f"{'depth estimation (test split)':<30} {'AbsRel':>8} {'delta1':>8}"]
    lines += [f"{name:<30} {abs_rel:>8.4f} {delta1:>8.4f}" for name, abs_rel, delta1 in rows]
    lines.append(f"validation flow-matching loss: {results['val_loss_first']:.4f} at step 0 -> "
                 f"{results['val_loss_last']:.4f} at step {results['steps']}")
    return "\n".join(lines)
