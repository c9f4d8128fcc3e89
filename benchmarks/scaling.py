"""Step time and peak memory against clip length, with and without activation checkpointing.

    python benchmarks/scaling.py --config configs/tiny.yaml [--latent-frames 8 16 32 64] [--height 32 --width 32]
        [--batch 2 --steps 3 --warmup 1] [--json OUT] [--plot benchmarks/scaling.png]
        [any throughput.py flag or key=value, passed on]

Each point is one ``benchmarks/throughput.py`` run in its own process, so the peak memory of one
configuration (CUDA's max allocated, or on CPU the process's peak RSS) is not that of another; the
points run in the order (frames, checkpointing off / on) so both settings of a clip length see the
same load. Prints a Markdown table, writes the plot (step time and peak memory against latent frames,
one line per setting, drawn with OpenCV) and, with ``--json``, every run's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.plot import line_plot  # noqa: E402
from benchmarks.record import env_prefix  # noqa: E402


def frames_for(latent_frames: int, temporal: int) -> int:
    """Pixel frames giving ``latent_frames`` through a causal codec of temporal compression ``temporal``."""
    return latent_frames if temporal == 1 else (latent_frames - 1) * temporal + 1


def run_point(args, latent_frames: int, ckpt: bool) -> dict:
    """One throughput.py process; returns its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        command = [
            sys.executable,
            str(ROOT / "benchmarks" / "throughput.py"),
            "--config",
            args.config,
            "--frames",
            str(frames_for(latent_frames, args.compression[0] if args.compression else 1)),
            "--height",
            str(args.height),
            "--width",
            str(args.width),
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--gemm-size",
            str(args.gemm_size),
            "--ckpt-act" if ckpt else "--no-ckpt-act",
            "--json",
            str(out),
            *args.extra,
        ]
        if args.compression:
            command += ["--compression", *map(str, args.compression)]
        subprocess.run(command, check=True, cwd=ROOT, env=os.environ)
        return json.loads(out.read_text())


def table(points: list[dict]) -> str:
    """Markdown: one row per (latent frames, checkpointing)."""
    lines = [
        (
            "| latent frames | tokens / sample | activation ckpt | step time (median) | tokens/s | MFU | "
            "peak mem (GB) | peak mem - before model (GB) |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in points:
        r = p["result"]
        lines.append(
            f"| {p['latent_frames']} | {r['geometry']['tokens_per_sample']:,} | {'on' if p['ckpt'] else 'off'} | "
            f"{r['step_time_s']:.3f} s | {r['tokens_per_s']:,.0f} | {r['mfu']:.1%} | {r['peak_mem_gb']:.2f} | "
            f"{r['peak_mem_gb'] - r['rss_before_model_gb']:.2f} |"
        )
    return "\n".join(lines)


def plot(points: list[dict], path: str, title: str) -> None:
    """Two panels stacked: step time and peak memory against latent frames, one line per setting."""
    panels = []
    for key, label in (("step_time_s", "step time (s)"), ("peak_mem_gb", "peak memory (GB)")):
        series = {
            f"activation ckpt {'on' if ckpt else 'off'}": [
                (p["latent_frames"], p["result"][key]) for p in points if p["ckpt"] == ckpt
            ]
            for ckpt in (False, True)
        }
        with tempfile.TemporaryDirectory() as tmp:
            panels.append(
                line_plot(
                    series, Path(tmp) / "panel.png", title=f"{title}: {label}", xlabel="latent frames", ylabel=label
                )
            )
    image = np.vstack(panels)  # [2·H, W, 3] RGB
    if not cv2.imwrite(path, image[..., ::-1]):
        raise ValueError(f"could not write {path}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny.yaml")
    p.add_argument("--latent-frames", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--compression", type=int, nargs=3, default=None, metavar=("T", "H", "W"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--gemm-size", type=int, default=1024)
    p.add_argument("--json", default=None, help="write every run's JSON here")
    p.add_argument("--plot", default=str(ROOT / "benchmarks" / "scaling.png"))
    args, args.extra = p.parse_known_args(argv)  # the rest goes to throughput.py (model.depth=12, --attn math)
    points = []
    for latent_frames in args.latent_frames:
        for ckpt in (False, True):
            points.append(
                {"latent_frames": latent_frames, "ckpt": ckpt, "result": run_point(args, latent_frames, ckpt)}
            )
    command = env_prefix() + "python benchmarks/scaling.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "points": points}, indent=2) + "\n")
    markdown = table(points)
    plot(points, args.plot, f"{Path(args.config).stem}, {args.height}x{args.width}, batch {args.batch}")
    print(f"`{command}`\n\n{markdown}")
    return points


if __name__ == "__main__":
    main()
