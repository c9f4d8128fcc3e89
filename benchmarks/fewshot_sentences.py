"""The UniVid few-shot claim, measured: a base model against base + LoRA on held-out visual sentences.

    python benchmarks/fewshot_sentences.py --base runs/tiny --adapted runs/univid_lora_s0 runs/univid_lora_s1 \
        runs/univid_lora_s2 --data data/fewshot-8x32/test [--clips 32] [--steps 1] [--record]

Each held-out clip ``i`` forms the sentence (rgb_j, depth_j, rgb_i) -> depth_i with its neighbour
``j = i + 1`` as the example pair; the generated B' is read back as relative disparity and scored
with the DepthCrafter protocol (``eval.metrics.depth``). Rows: the base model on sentences (never
trained on them), base + adapter (the mean ± std over the adapters given, one per training seed),
and for reference the base's own two-stream depth estimation and the mean training disparity map of
the base's data. The adapter is called better than the base only where the difference exceeds the
spread of its seeds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ablation_stats import mean_std  # noqa: E402
from benchmarks.record import record_section  # noqa: E402
from data_pipeline.benchmark import load_clips  # noqa: E402
from data_pipeline.modalities import MODALITIES  # noqa: E402
from eval.run_report import depth_report, estimate_disparity, mean_map_report  # noqa: E402
from unity.inference.loading import load_trained  # noqa: E402
from unity.inference.pipeline import SamplerSettings, run_task  # noqa: E402
from unity.method.sentences import partners  # noqa: E402

DEPTH = MODALITIES["depth"]


def sentence_depth(trained, clips, settings) -> list[np.ndarray]:
    """Relative disparity of B' for every clip's sentence (its neighbour's rgb and depth as the example)."""
    pair = partners(len(clips))
    context = np.stack(
        [
            np.stack([clips[pair[i]].videos["rgb"], clips[pair[i]].videos["depth"], c.videos["rgb"]])
            for i, c in enumerate(clips)
        ]
    )  # [N, 3, T, H, W, 3]
    out = run_task(
        trained,
        "sentence",
        "depth",
        [c.caption for c in clips],
        context=context,
        prompts=[c.prompts["depth"] for c in clips],
        settings=settings,
    )["B_prime"]
    return [DEPTH.decode(video) for video in out]


def verdict(base: dict, adapted: list[dict], metric: str, higher: bool) -> str:
    """Whether the adapters beat the base on ``metric`` by more than the spread of their seeds."""
    mean, std = mean_std([a[metric] for a in adapted])
    gain = (mean - base[metric]) * (1 if higher else -1)
    word = "better" if gain > std else ("worse" if -gain > std else "within the spread of the seeds")
    return f"{metric}: {base[metric]:.4f} -> {mean:.4f} ± {std:.4f}, {word}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the base run (or checkpoint)")
    parser.add_argument(
        "--adapted", required=True, nargs="+", help="LoRA runs trained on sentences from the base, one per seed"
    )
    parser.add_argument("--data", required=True, help="held-out clips with depth ground truth")
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1, help="sampler steps (1 = the posterior-mean estimate)")
    parser.add_argument("--record", action="store_true", help="add the table to its section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        clips = load_clips(args.data, args.clips)
        base, adapters = load_trained(args.base), [load_trained(run) for run in args.adapted]
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    settings = SamplerSettings(steps=args.steps)
    adapted = [depth_report(sentence_depth(adapter, clips, settings), clips) for adapter in adapters]
    rows = {
        "base, visual sentence (no adapter)": [depth_report(sentence_depth(base, clips, settings), clips)],
        f"base + LoRA adapter, visual sentence ({len(adapted)} seeds)": adapted,
        "base, two-stream estimation (reference)": [depth_report(estimate_disparity(base, clips, settings), clips)],
    }
    rows["mean training disparity map (reference)"] = [
        mean_map_report(str(Path(base.config.data.root) / "train"), clips)
    ]

    def cell(results: list[dict], metric: str) -> str:
        mean, std = mean_std([r[metric] for r in results])
        return f"{mean:.4f} ± {std:.4f}" if len(results) > 1 else f"{mean:.4f}"

    lines = ["| held-out sentences: depth of B' | AbsRel ↓ | δ1 ↑ |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {cell(r, 'abs_rel')} | {cell(r, 'delta1')} |" for name, r in rows.items()]
    base_sentence = rows["base, visual sentence (no adapter)"][0]
    lines += [
        "",
        "Adapter vs base: "
        + "; ".join(
            verdict(base_sentence, adapted, metric, higher) for metric, higher in (("abs_rel", False), ("delta1", True))
        )
        + ".",
    ]
    table = "\n".join(lines)
    print(table)
    if args.record:
        record_section(
            "fewshot_sentences.py",
            "Few-shot visual sentences (UniVid)",
            table,
            argv,
            f" ({len(clips)} held-out sentences; adapters: {', '.join(f'`{a}`' for a in args.adapted)})",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
