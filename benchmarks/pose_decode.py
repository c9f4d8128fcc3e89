"""How well skeleton keypoints are read back from their rendered video, on synthetic clips.

Renders clips, encodes the exact keypoints as skeleton videos, stores them losslessly (FFV1), decodes
them and compares with the truth: the share of visible joints found within 2 px, and the mean error
of the joints found. Persons are matched to the truth per frame by the best permutation.

    python benchmarks/pose_decode.py [--clips 32 --frames 16 --size 64] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np

from data_pipeline.modalities import get
from data_pipeline.synthetic import render_clip
from data_pipeline.video_io import decode_video, encode_video


def joint_errors(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Pixel error of every visible true joint of one frame (inf where not found), best person matching.

    ``pred`` is ``[P', K, 3]`` and ``truth`` ``[P, K, 3]`` keypoints (x, y, visibility).
    """
    best = None
    for order in itertools.permutations(range(len(pred)), min(len(pred), len(truth))):
        errors = []
        for p, q in zip(range(len(truth)), order):
            distance = np.hypot(*(pred[q, :, :2] - truth[p, :, :2]).T)
            errors.append(np.where(pred[q, :, 2] > 0, distance, np.inf)[truth[p, :, 2] > 0])
        unmatched = [np.full(int((truth[p, :, 2] > 0).sum()), np.inf) for p in range(len(order), len(truth))]
        errors = np.concatenate(errors + unmatched) if errors or unmatched else np.zeros(0)
        cost = np.minimum(errors, 10).sum()
        if best is None or cost < best[0]:
            best = (cost, errors)
    return best[1] if best else np.concatenate([np.full(int((t[:, 2] > 0).sum()), np.inf) for t in truth])


def measure(clips: int, frames: int, size: int) -> dict:
    pose = get("pose")
    errors = []
    for seed in range(clips):
        clip = render_clip(seed, frames=frames, size=size, split="test")
        meta = {"height": size, "width": size}
        video = decode_video(encode_video(pose.encode(clip.keypoints, meta)))
        pred = pose.decode(video, meta)
        errors += [joint_errors(pred[t], clip.keypoints[t]) for t in range(frames)]
    errors = np.concatenate(errors)
    found = errors[np.isfinite(errors)]
    return {
        "clips": clips,
        "frames": frames,
        "size": size,
        "visible_joints": int(errors.size),
        "within_2px": round(float((errors <= 2).mean()), 4),
        "found": round(float(found.size / errors.size), 4),
        "mean_error_px": round(float(found.mean()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    results = [measure(args.clips, args.frames, size) for size in args.size]
    print(f"{'size':>6} {'joints':>8} {'within 2px':>11} {'found':>7} {'mean err px':>12}")
    for r in results:
        print(
            f"{r['size']:>6} {r['visible_joints']:>8} {r['within_2px']:>11.1%} {r['found']:>7.1%} "
            f"{r['mean_error_px']:>12.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
