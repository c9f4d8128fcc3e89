"""The report of a finished training run: depth estimation on held-out clips, trained vs untrained vs a prior.

``python train.py`` hands its finished run here (``python -m eval.run_report RUN`` does the same for
any run folder). The trained model (the last checkpoint's EMA weights) and the untrained one (the
step-0 checkpoint) estimate the depth of ``eval.clips`` clips of the ``eval.split`` split, beside the
mean training disparity map; ``<run>/eval/results.json`` gets the figures and the validation losses
the trainer recorded, and the table is printed.

Clips are read straight from the shards (``<key>.rgb.mkv`` and the raw ``<key>.depth.npy``). The
model estimates each clip's depth stream from its rgb stream with the sampler; its visual form is
read back as relative disparity, which ``eval.metrics.depth`` aligns per clip (scale and shift in
disparity) before AbsRel and δ<1.25. The baseline predicts, for every clip, the mean training
disparity map, aligned the same way.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from data_pipeline.benchmark import BenchmarkClip, clip_features, load_clips, training_prior
from data_pipeline.check import Skips
from data_pipeline.modalities import MODALITIES
from eval.metrics.depth import depth_metrics, mean_over_videos
from unity.inference.loading import Trained, load_trained
from unity.inference.pipeline import SamplerSettings, run_task
from unity.train.checkpoint import INITIAL, find_checkpoint, read_state

DEPTH = MODALITIES["depth"]


def load_depth_clips(root: str, limit: int, skips: Skips | None = None) -> list[BenchmarkClip]:
    """Up to ``limit`` clips of the split ``root`` with raw depth ground truth (damaged ones go to ``skips``)."""
    clips = load_clips(root, limit, skips=skips)
    if any("depth" not in clip.gt for clip in clips):
        raise ValueError(f"{root} has no raw depth ground truth; build it with `synth --with-gt`")
    return clips


def estimate_disparity(trained: Trained, clips: list[BenchmarkClip], settings: SamplerSettings) -> list[np.ndarray]:
    """Relative disparity ``[T, H, W]`` per clip, from the model's estimate of the depth stream."""
    videos = run_task(
        trained,
        "est",
        "depth",
        [c.caption for c in clips],
        rgb=np.stack([c.videos["rgb"] for c in clips]),
        prompts=[c.prompts["depth"] for c in clips],
        settings=settings,
        features=clip_features(clips),
    )["depth"]
    return [DEPTH.decode(video) for video in videos]


def depth_report(predictions: list[np.ndarray], clips: list[BenchmarkClip]) -> dict[str, float]:
    """Mean AbsRel, δ<1.25 and RMSE over clips."""
    return mean_over_videos([depth_metrics(p, c.gt["depth"]) for p, c in zip(predictions, clips)])


def mean_map_report(
    train_root: str, clips: list[BenchmarkClip], limit: int = 256, skips: Skips | None = None
) -> dict[str, float]:
    """Metrics of the trivial prior: the mean training disparity map predicted for every clip."""
    prior = DEPTH.decode(training_prior(train_root, "depth", limit, skips))
    return depth_report([prior] * len(clips), clips)


def summary_table(results: dict) -> str:
    """The run's depth-estimation and validation figures as a small text table."""
    rows = [("model (trained)", ""), ("model at step 0", "step0."), ("mean training disparity map", "baseline_mean.")]
    lines = [f"{'depth estimation (test split)':<30} {'AbsRel':>8} {'delta1':>8}"]
    lines += [
        f"{name:<30} {results[prefix + 'depth.abs_rel']:>8.4f} {results[prefix + 'depth.delta1']:>8.4f}"
        for name, prefix in rows
        if prefix + "depth.abs_rel" in results
    ]
    if results.get("val_loss_first") is not None and results.get("val_loss_last") is not None:
        lines.append(
            f"validation flow-matching loss: {results['val_loss_first']:.4f} at step 0 -> "
            f"{results['val_loss_last']:.4f} at step {results['steps']}"
        )
    training, evaluation = results.get("skipped_training") or 0, results.get("skipped_evaluation") or 0
    if training or evaluation:
        lines.append(
            f"skipped: {training} damaged sample(s) or shard part(s) in training, {evaluation} in the "
            "evaluation's reading (the warnings name them)"
        )
    return "\n".join(lines)


def evaluate_run(run: str | Path, device: str | None = None) -> dict:
    """Evaluate a finished run folder as its config's ``eval`` section says; writes ``eval/results.json``."""
    final = find_checkpoint(run)
    trained = load_trained(final, use_ema=True, device=device)
    run_dir, config = final.parent.parent, trained.config
    root = os.path.join(config.data.root, config.eval.split)
    skips = Skips()
    clips = load_depth_clips(root, config.eval.clips, skips)
    settings = SamplerSettings(steps=config.eval.steps, seed=config.run.seed)
    state = read_state(final, rank=0)
    results = {
        "steps": state["step"],
        "val_loss_first": state.get("val_loss_first"),
        "val_loss_last": state.get("val_loss_last"),
        "skipped_training": state.get("skipped_samples", 0),  # what the training loader skipped (main rank)
    }
    reports = {"": depth_report(estimate_disparity(trained, clips, settings), clips)}
    initial = run_dir / "checkpoints" / INITIAL
    if initial.is_dir():  # the untrained weights (checkpoint.keep_initial)
        untrained = load_trained(initial, use_ema=False, device=device)
        reports["step0."] = depth_report(estimate_disparity(untrained, clips, settings), clips)
    reports["baseline_mean."] = mean_map_report(os.path.join(config.data.root, "train"), clips, skips=skips)
    results["skipped_evaluation"] = skips.count
    for prefix, values in reports.items():
        results.update({f"{prefix}depth.{k}": v for k, v in values.items()})
    (run_dir / "eval").mkdir(exist_ok=True)
    (run_dir / "eval" / "results.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.run_report", description=__doc__.split("\n")[0])
    parser.add_argument("run", help="a run folder (its latest checkpoint is evaluated)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        results = evaluate_run(args.run, args.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(summary_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
