"""Training step time and peak memory with online encoding against precomputed latents and text, in one run.

    python benchmarks/precomputed.py [--clips 16] [--frames 17] [--size 64] [--batch 4] [--steps 8]
                                     [--json OUT] [--record]

Builds a synthetic train / val set, the tiny random Wan VAE and UMT5 (``benchmarks/tiny_pretrained.py``)
and their precomputed shards in a temporary folder, then measures each mode in a fresh process of its
own (so that its peak memory is its own): ``online`` decodes the clips, runs the VAE and the text
encoder at every step; ``precomputed`` reads the stored latents and embeddings (the weights are not
even loaded). The same model, seed, batches and routes in both; a step is the loader's batch plus one
optimizer step, the first ``--warmup`` steps left out. Reports ms per step (median of wall time, and
of the process's CPU time, which other jobs on the machine do not inflate), samples/s, the process's
peak resident memory and, on a GPU, the peak allocated device memory; and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.record import record_section  # noqa: E402
from benchmarks.tiny_pretrained import model_overrides, save_umt5, save_wan_vae  # noqa: E402

MODES = ("online", "precomputed")


def config_overrides(work: Path, args, mode: str) -> list[str]:
    settings = {
        "run.dir": work / "runs",
        "run.name": mode,
        "data.root": work / "latent",
        "data.precomputed": "never" if mode == "online" else "always",
        "data.frames": args.frames,
        "data.size": args.size,
        "data.crop_scale": "[1.0,1.0]",
        "data.batch_size": args.batch,
        "data.num_workers": 0,
        "data.shuffle_buffer": 8,
        "train.max_steps": args.warmup + args.steps,
        "train.eval_every": 10**6,
        "train.log_every": 10**6,
        "checkpoint.save_every": 10**6,
        "checkpoint.keep_initial": False,
        "routing.curriculum": "[]",
    }
    return model_overrides(work / "weights") + [f"{key}={value}" for key, value in settings.items()]


def prepare(work: Path, args) -> None:
    """Pixel splits, the tiny weights and the precomputed splits under ``work``."""
    from data_pipeline.synthetic.build import build_synthetic
    from unity.precompute import main as precompute_main

    for split, clips in (("train", args.clips), ("val", 2)):
        build_synthetic(str(work / "pixels" / split), clips, frames=args.frames, size=args.size, split=split)
    save_wan_vae(work / "weights" / "vae")
    save_umt5(work / "weights" / "umt5", width=args.text_width, layers=2)
    argv = ["--data", str(work / "pixels"), "--out", str(work / "latent"), *model_overrides(work / "weights")]
    if precompute_main(argv + [f"model.text_max_tokens={16}"]) != 0:
        raise SystemExit("precompute failed")


def measure(work: Path, args, mode: str) -> dict:
    """Train ``--warmup`` + ``--steps`` steps in this process and time the last ``--steps``."""
    import torch

    from unity.config import load
    from unity.train.trainer import Trainer

    trainer = Trainer(load(None, config_overrides(work, args, mode)))
    batches, times, cpu_times = iter(trainer.loader), [], []
    for step in range(args.warmup + args.steps):
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train_step(batches)
        trainer.step += 1
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    cuda = torch.cuda.is_available()
    step_s = statistics.median(times)
    return {
        "mode": mode,
        "ms_per_step": 1000 * step_s,
        "cpu_ms_per_step": 1000 * statistics.median(cpu_times),  # this process's CPU time: steady beside other jobs
        "samples_per_s": args.batch / step_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "codec_loaded": type(trainer.codec).__name__,
        "text_loaded": type(trainer.text).__name__,
    }


def table(results: dict) -> str:
    rows = [
        "| mode | ms / step | CPU ms / step | samples / s | peak RSS (MB) | peak device memory (MB) | codec, text |"
    ]
    rows.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results["modes"]:
        device = "-" if r["peak_device_mb"] is None else f"{r['peak_device_mb']:.0f}"
        rows.append(
            f"| {r['mode']} | {r['ms_per_step']:.1f} | {r['cpu_ms_per_step']:.1f} | {r['samples_per_s']:.1f} "
            f"| {r['peak_rss_mb']:.0f} | {device} | {r['codec_loaded']}, {r['text_loaded']} |"
        )
    ratio = results["online_over_precomputed"]
    rows.append(
        f"\nonline / precomputed: {ratio['step_time']:.2f}x step time ({ratio['cpu_time']:.2f}x CPU time), "
        f"{ratio['peak_rss']:.2f}x peak RSS"
    )
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16, help="training clips rendered and precomputed")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip: 1 + 4k for the Wan VAE")
    parser.add_argument("--size", type=int, default=64, help="square frame size, a multiple of 8")
    parser.add_argument("--batch", type=int, default=4, help="samples per step")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per mode")
    parser.add_argument("--warmup", type=int, default=2, help="steps left out of the timing")
    parser.add_argument("--text-width", type=int, default=64, help="width of the tiny UMT5")
    parser.add_argument("--json", default=None, help="write the figures here")
    parser.add_argument("--record", action="store_true", help="add a section to benchmarks/RESULTS.md")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in a child process
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.mode:
        print(json.dumps(measure(Path(args.work), args, args.mode)))
        return 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        prepare(Path(work), args)
        own = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("--record",)]
        modes = []
        for mode in MODES:
            command = [sys.executable, __file__, *own, "--mode", mode, "--work", work]
            result = subprocess.run(command, capture_output=True, text=True, env={**os.environ})
            if result.returncode != 0:
                raise SystemExit(f"{mode} failed:\n{result.stderr[-3000:]}")
            modes.append(json.loads(result.stdout.strip().splitlines()[-1]))
    online, stored = modes
    results = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("mode", "work", "json", "record")},
        "modes": modes,
        "online_over_precomputed": {
            "step_time": online["ms_per_step"] / stored["ms_per_step"],
            "cpu_time": online["cpu_ms_per_step"] / stored["cpu_ms_per_step"],
            "peak_rss": online["peak_rss_mb"] / stored["peak_rss_mb"],
        },
        "seconds": time.perf_counter() - start,
    }
    print(table(results))
    print(f"({results['seconds']:.0f} s in all)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if args.record:
        details = f" ({results['seconds']:.0f} s in all)"
        record_section("precomputed.py", "Online encoding against precomputed latents", table(results), details=details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
