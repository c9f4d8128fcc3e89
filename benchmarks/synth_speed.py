"""Single-threaded throughput of the synthetic world renderer (clips per second).

    python benchmarks/synth_speed.py [--clips N] [--frames 16] [--size 64] [--split train] [--json OUT]

Thread pools are pinned to one thread before NumPy loads, so the figure is per core.
"""

import os

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
for _var in _THREAD_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from data_pipeline.synthetic import render_clip  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--split", default="train")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)

    for seed in range(args.warmup):
        render_clip(10_000_000 + seed, args.frames, args.size, args.split)
    seconds = []
    for seed in range(args.clips):
        start = time.perf_counter()
        render_clip(seed, args.frames, args.size, args.split)
        seconds.append(time.perf_counter() - start)
    seconds = np.array(seconds)
    result = {
        "clips": args.clips,
        "frames": args.frames,
        "size": args.size,
        "split": args.split,
        "clips_per_s": round(float(len(seconds) / seconds.sum()), 2),
        "ms_mean": round(float(seconds.mean() * 1e3), 2),
        "ms_median": round(float(np.median(seconds) * 1e3), 2),
        "ms_p95": round(float(np.percentile(seconds, 95) * 1e3), 2),
        "ms_max": round(float(seconds.max() * 1e3), 2),
        "threads": 1,
    }
    columns = ("clips", "frames", "size", "clips_per_s", "ms_mean", "ms_median", "ms_p95", "ms_max")
    print(" ".join(f"{c:>11}" for c in columns))
    print(" ".join(f"{result[c]:>11}" for c in columns))
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
