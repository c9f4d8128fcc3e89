"""Seconds per video of VBench's model-based quality dimensions (``eval/vbench_quality.py``) on this machine.

    python benchmarks/vbench_quality_cost.py [--frames 16 --height 320 --width 512] [--dims ...] [--record]

Builds the full-size networks with random weights (the cost of a forward pass does not depend on the
weight values, so no weight file is needed): CLIP ViT-L/14 image tower + linear head (aesthetic
quality), MUSIQ (imaging quality), ViCLIP-L/14 (overall consistency), AMT-S (motion smoothness).
Each dimension runs once on a short clip to warm up, then is timed on one video of the given size:
the process's CPU seconds (all its threads; what the work costs, however busy the machine is) and
the wall-clock seconds. With ``--record`` the table goes to its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.record import record_section  # noqa: E402
from eval import amt, vbench_quality  # noqa: E402
from eval.vbench import motion_smoothness  # noqa: E402
from eval.viclip import ViCLIP  # noqa: E402

DIMS = vbench_quality.DIMENSIONS


def random_video(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour fields ``[T, H, W, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (frames, max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    return (
        np.stack([cv2.resize(c, (width, height), interpolation=cv2.INTER_CUBIC) for c in coarse])
        .clip(0, 255)
        .astype(np.uint8)
    )


def build(dim: str):
    """The full-size network of ``dim`` with random weights, and the call that scores one video with it."""
    if dim == "aesthetic_quality":
        import open_clip

        visual = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None).visual
        scorer = vbench_quality.AestheticScorer(visual, torch.nn.Linear(768, 1)).eval()
        return lambda v: vbench_quality.aesthetic_quality(v, scorer)
    if dim == "imaging_quality":
        from pyiqa.archs.musiq_arch import MUSIQ

        musiq = MUSIQ(pretrained=False).eval()
        return lambda v: vbench_quality.imaging_quality(v, musiq)
    if dim == "overall_consistency":
        viclip = ViCLIP().eval()
        return lambda v: vbench_quality.overall_consistency(v, "a red kite over a beach", viclip)
    net = amt.AMTS().eval()
    return lambda v: motion_smoothness(v, vbench_quality.amt_interpolator(net))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--height", type=int, default=320)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--dims", nargs="+", choices=DIMS, default=list(DIMS))
    parser.add_argument("--record", action="store_true", help="add the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    video = random_video(args.frames, args.height, args.width)
    rows = []
    for dim in args.dims:
        start = time.perf_counter()
        score = build(dim)
        built = time.perf_counter() - start
        try:
            score(video[:3])  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            value = score(video)
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        except vbench_quality.Unscorable as exc:
            print(f"{dim}: {exc}")
            rows.append(f"| {dim} | n/a | n/a | {built:.1f} | {str(exc).split(';')[0]} |")
            continue
        print(f"{dim}: {cpu:.2f} CPU s, {seconds:.2f} s wall per video (value {value:.4f})", flush=True)
        rows.append(f"| {dim} | {cpu:.1f} | {seconds:.1f} | {built:.1f} | |")
    size = f"{args.frames} frames of {args.height}×{args.width}"
    table = "\n".join(
        [
            f"| dimension | CPU s per video ({size}) | wall s | s to build | notes |",
            "| --- | ---: | ---: | ---: | --- |",
            *rows,
        ]
    )
    print(table)
    if args.record:
        threads = torch.get_num_threads()
        record_section(
            "vbench_quality_cost.py",
            f"{size}, {threads} torch thread{'s' if threads != 1 else ''}",
            table,
            argv,
            details=" (float32, full-size random-weight networks)",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
