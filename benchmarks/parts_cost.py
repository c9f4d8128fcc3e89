"""What the UnityVideo parts cost in training-step time, at equal total tokens, measured in one process.

    python benchmarks/parts_cost.py --config configs/tiny.yaml [--repeats 30 --steps 1 --warmup 2]
        [throughput.py's geometry flags: --batch --frames --height --width ...] [--json OUT] [key=value ...]

Variants (same config otherwise): a plain DiT (``model.switcher=none``, ``model.in_context=none``), the
switcher alone, the dual cross-attention alone, a text-to-video DiT's caption cross-attention alone
(``caption_only``) and the full UnityVideo block (``adaln`` + ``dual``), each on two streams of ``T'``
latent frames, and the plain and full models on one stream of ``2·T'`` latent
frames (the same tokens in one sequence). All models are built first; then each round runs ``--steps``
training steps of every variant in turn (the order rotated each round), so drift from other jobs on
the machine hits all variants alike. A ratio is taken per round (medians of that round's steps) and
its median over rounds is reported, with the interquartile range, next to the analytic FLOP ratio of
``models/flops.py``. Goal: switcher + dual cross-attention add at most 10% step time.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.record import env_prefix  # noqa: E402
from benchmarks.throughput import Bench, device_name, parser, resolve  # noqa: E402

PLAIN = ["model.switcher=none", "model.in_context=none"]
# name -> (overrides, streams, latent-frame multiplier)
VARIANTS = {
    "plain, 2 streams": (PLAIN, 2, 1),
    "switcher only, 2 streams": (["model.switcher=adaln", "model.in_context=none"], 2, 1),
    "dual cross-attn only, 2 streams": (["model.switcher=none", "model.in_context=dual"], 2, 1),
    "caption cross-attn (T2V DiT), 2 streams": (["model.switcher=none", "model.in_context=caption_only"], 2, 1),
    "UnityVideo, 2 streams": (["model.switcher=adaln", "model.in_context=dual"], 2, 1),
    "plain, 1 stream x2 frames": (PLAIN, 1, 2),
    "UnityVideo, 1 stream x2 frames": (["model.switcher=adaln", "model.in_context=dual"], 1, 2),
}
# ratio name -> (numerator, denominator)
RATIOS = {
    "switcher + dual / plain (2 streams) [goal <= 1.10]": ("UnityVideo, 2 streams", "plain, 2 streams"),
    "switcher / plain (2 streams)": ("switcher only, 2 streams", "plain, 2 streams"),
    "dual / plain (2 streams)": ("dual cross-attn only, 2 streams", "plain, 2 streams"),
    "switcher + dual / caption cross-attn T2V DiT (2 streams)": (
        "UnityVideo, 2 streams",
        "caption cross-attn (T2V DiT), 2 streams",
    ),
    "2 streams / 1 stream x2 frames (plain)": ("plain, 2 streams", "plain, 1 stream x2 frames"),
    "2 streams / 1 stream x2 frames (UnityVideo)": ("UnityVideo, 2 streams", "UnityVideo, 1 stream x2 frames"),
    "UnityVideo 2 streams / plain 1 stream x2 frames": ("UnityVideo, 2 streams", "plain, 1 stream x2 frames"),
}


def variant_args(args, overrides: list[str], streams: int, multiplier: int):
    """``args`` for one variant: its overrides and stream count; ``multiplier`` x the latent frames."""
    out = copy.copy(args)
    out.overrides, out.streams = [*args.overrides, *overrides], streams
    if multiplier > 1:
        ct = resolve(args)["geometry"]["compression"][0]
        latent_t = resolve(args)["geometry"]["latent"][0]
        out.frames = (multiplier * latent_t - 1) * ct + 1  # causal codec: T' = (frames - 1) // ct + 1
    return out


def main(argv=None) -> dict:
    base = parser()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], parents=[base], conflict_handler="resolve")
    p.add_argument("--repeats", type=int, default=30, help="rounds over all variants (the median ratio is kept)")
    p.add_argument("--steps", type=int, default=1, help="timed steps per variant per round (1: finest interleaving)")
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    benches, info = {}, {}
    for name, (overrides, streams, multiplier) in VARIANTS.items():
        resolved = resolve(variant_args(args, overrides, streams, multiplier))
        benches[name] = bench = Bench(
            resolved, device, args.compile, args.precision, args.sdpa_backend, args.seed, not args.no_fused
        )
        g = bench.geometry
        info[name] = {
            "overrides": resolved["overrides"],
            "x": g["x"],
            "flops_forward_per_sample": bench.forward_flops(),
        }
        for _ in range(args.warmup):
            bench.step()
    names = list(benches)
    times = {name: [] for name in names}  # per repeat: the median step time of that repeat
    for repeat in range(args.repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            times[name].append(float(np.median([benches[name].step() for _ in range(args.steps)])))
        print(
            f"repeat {repeat + 1}/{args.repeats}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in names),
            file=sys.stderr,
        )
    ratios = {}
    for label, (num, den) in RATIOS.items():
        per_repeat = np.array(times[num]) / np.array(times[den])
        q25, median, q75 = np.percentile(per_repeat, [25, 50, 75])
        ratios[label] = {
            "median": float(median),
            "q25": float(q25),
            "q75": float(q75),
            "flops": info[num]["flops_forward_per_sample"] / info[den]["flops_forward_per_sample"],
        }
    result = {
        "variants": {
            n: {**info[n], "step_time_s": float(np.median(times[n])), "per_repeat_s": times[n]} for n in names
        },
        "ratios": ratios,
        "device": device_name(device),
        "threads": torch.get_num_threads(),
        "command": f"{env_prefix()}python benchmarks/parts_cost.py "
        f"{shlex.join(sys.argv[1:] if argv is None else argv)}",
    }
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(result: dict) -> str:
    """Markdown: the variants' step times, then the ratios (measured median and range, analytic FLOPs)."""
    lines = [
        "| variant | x [B, S, C, T', H', W'] | step time (median) | forward GFLOP / sample |",
        "| --- | --- | --- | --- |",
    ]
    for name, v in result["variants"].items():
        lines.append(
            f"| {name} | {v['x']} | {v['step_time_s'] * 1e3:.1f} ms | {v['flops_forward_per_sample'] / 1e9:.3f} |"
        )
    lines += [
        "",
        "| ratio | measured (median) | interquartile range over rounds | analytic FLOPs |",
        "| --- | --- | --- | --- |",
    ]
    for label, r in result["ratios"].items():
        lines.append(f"| {label} | {r['median']:.3f} | {r['q25']:.3f}–{r['q75']:.3f} | {r['flops']:.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
