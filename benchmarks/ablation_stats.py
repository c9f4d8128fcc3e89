"""The numbers of an ablation sweep: its columns, seeds aggregated as mean ± std, and convergence curves.

Every variant runs with several seeds. A table cell is the mean over seeds ± their standard
deviation (``ddof=1``); the best mean of a column is bold only when it is better by more than the
spread, i.e. when its mean ± std interval overlaps no other row's (``spread_winner``). Columns
compare like with like: the same task for every row (text-to-video rgb for runs with and without
auxiliary modalities), or n/a where a row cannot do it.

Convergence is plotted against optimizer steps and against *rgb-task steps*: the training samples
whose rgb stream was noised (conditional generation, joint generation, text to video), divided by
the batch size, so a run that spends a quarter of its samples on other tasks is not credited with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RGB_TASKS = ("cond", "joint", "t2v")  # tasks whose rgb stream is noised (generated)


def lookup(summary: dict, path: tuple):
    value = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _static_share(path: tuple):
    def share(summary: dict) -> float | None:
        videos, still = lookup(summary, (*path, "videos")), lookup(summary, (*path, "static_videos"))
        return None if not videos else still / videos

    return share


def _at(*path):
    return lambda summary: lookup(summary, path)


def _above_ceiling(modality: str, metric: str):
    """1 when joint consistency beats the real-data ceiling (the estimator agreeing with its own generator)."""

    def flag(summary: dict) -> float | None:
        consistency = (UNI, "joint", modality, "consistency")
        model = lookup(summary, (*consistency, "model", metric))
        real = lookup(summary, (*consistency, "real video", metric))
        return None if model is None or real is None else float(model < real)

    return flag


UNI = "unibench"
# Column name -> (label, value of one run's summary, higher is better or None when not ranked).
COLUMNS = {
    "val/loss": ("val loss (routed tasks)", _at("val", "val/loss"), False),
    "val/loss/cond": ("val loss cond", _at("val", "val/loss/cond"), False),
    "val/loss/est": ("val loss est", _at("val", "val/loss/est"), False),
    "val/loss/joint": ("val loss joint", _at("val", "val/loss/joint"), False),
    "val/loss/t2v": ("val loss text→video rgb", _at("val", "val/loss/t2v"), False),
    "val/loss/joint_rgb": ("val loss joint, rgb stream", _at("val", "val/loss/joint_rgb"), False),
    "est.depth.abs_rel": ("depth AbsRel", _at(UNI, "estimation", "depth", "model", "abs_rel"), False),
    "est.flow.epe": ("flow EPE", _at(UNI, "estimation", "flow", "model", "epe"), False),
    "est.seg.miou": ("seg mIoU", _at(UNI, "estimation", "seg", "model", "miou"), True),
    "est.densepose.part_miou": (
        "DensePose part mIoU",
        _at(UNI, "estimation", "densepose", "model", "part_miou"),
        True,
    ),
    "gen.depth.abs_rel": (
        "depth→rgb fidelity AbsRel",
        _at(UNI, "generation", "depth", "model", "fidelity", "abs_rel"),
        False,
    ),
    "gen.depth.flickering": (
        "depth→rgb flickering",
        _at(UNI, "generation", "depth", "model", "vbench", "temporal_flickering", "value"),
        True,
    ),
    "joint.depth.abs_rel": (
        "joint depth consistency AbsRel",
        _at(UNI, "joint", "depth", "consistency", "model", "abs_rel"),
        False,
    ),
    "joint.depth.shuffled": (
        "same, shuffled pairs (control)",
        _at(UNI, "joint", "depth", "consistency", "shuffled pairs", "abs_rel"),
        None,
    ),
    "joint.depth.real": (
        "same, real data (ceiling)",
        _at(UNI, "joint", "depth", "consistency", "real video", "abs_rel"),
        None,
    ),
    "joint.depth.above_ceiling": ("share of seeds above the ceiling", _above_ceiling("depth", "abs_rel"), None),
    "joint.depth.flat": ("joint depth: flat clips", _at(UNI, "joint", "depth", "consistency", "flat_clips"), None),
    "t2v.flickering": ("t2v flickering", _at(UNI, "t2v", "vbench", "temporal_flickering", "value"), True),
    "t2v.motion": (
        "t2v motion smoothness (proxy)",
        _at(UNI, "t2v", "vbench", "motion_smoothness_linear_proxy", "value"),
        True,
    ),
    "t2v.dynamic": ("t2v dynamic degree (DIS)", _at(UNI, "t2v", "vbench", "dynamic_degree_dis", "value"), True),
    "t2v.static": ("t2v static share", _static_share((UNI, "t2v", "static")), None),
    # VBench's model-based dimensions: filled when the sweep runs with --vbench-weights
    "t2v.aesthetic": ("t2v aesthetic quality", _at(UNI, "t2v", "vbench", "aesthetic_quality", "value"), True),
    "t2v.imaging": ("t2v imaging quality", _at(UNI, "t2v", "vbench", "imaging_quality", "value"), True),
    "t2v.overall": ("t2v overall consistency", _at(UNI, "t2v", "vbench", "overall_consistency", "value"), True),
    "t2v.motion_amt": ("t2v motion smoothness (AMT-S)", _at(UNI, "t2v", "vbench", "motion_smoothness", "value"), True),
    "minutes": ("minutes", _at("minutes"), None),
}  # higher None: a control, a ceiling or a flag, never ranked
EVAL_MODALITIES = ("depth", "flow", "seg", "densepose")  # modalities a column may name (est.<m>., gen.<m>.)


def column_modalities(columns: list[str]) -> list[str]:
    """The auxiliary modalities the columns need evaluated (``est.depth.abs_rel`` needs depth)."""
    return [m for m in EVAL_MODALITIES if any(c.split(".")[1:2] == [m] for c in columns)]


def rgb_task_steps(records: list[dict], batch_size: int) -> dict[int, float]:
    """``{step: rgb-task steps so far}`` from per-step ``samples/<task>`` counts (``train.log_every=1``)."""
    total, out = 0, {}
    for record in sorted((r for r in records if "loss" in r), key=lambda r: r["step"]):
        total += sum(record.get(f"samples/{task}", 0) for task in RGB_TASKS)
        out[record["step"]] = total / batch_size
    return out


def run_curves(run_dir: Path, batch_size: int) -> dict:
    """Validation curves of one run: ``{metric: [(step, value)]}`` and ``rgb_steps: {step: rgb-task steps}``."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    curves: dict[str, list] = {}
    for record in records:
        for key, value in record.items():
            if key.startswith("val/loss"):
                curves.setdefault(key, []).append((record["step"], value))
    return {"val": curves, "rgb_steps": rgb_task_steps(records, batch_size)}


def task_means(last: dict[str, float]) -> dict[str, float]:
    """``val/loss/<task>``: the mean over modalities of ``val/loss/<task>/<modality>``, and the overall mean."""
    out = {"val/loss": last["val/loss"]}
    for task in ("cond", "est", "joint", "t2v", "joint_rgb"):
        values = [v for k, v in last.items() if k.startswith(f"val/loss/{task}/")]
        if values:
            out[f"val/loss/{task}"] = float(np.mean(values))
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(values, np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def spread_winner(stats: list[tuple[float, float] | None], higher: bool) -> int | None:
    """The row whose mean is best by more than the spread (its mean ± std overlaps no other row's), else None."""
    present = [(i, s) for i, s in enumerate(stats) if s is not None]
    if len(present) < 2:
        return None
    best, (mean, std) = max(present, key=lambda p: p[1][0]) if higher else min(present, key=lambda p: p[1][0])
    clear = all(abs(mean - m) > std + s for i, (m, s) in present if i != best)
    return best if clear else None


def table(columns: list[str], variants: dict[str, list[dict]]) -> str:
    """A Markdown table: one row per variant, each cell mean ± std over the variant's seeds."""
    columns = [*columns, "minutes"] if "minutes" not in columns else columns
    stats = {}
    for c in columns:
        value = COLUMNS[c][1]
        per_row = [[v for v in (value(s) for s in runs) if v is not None] for runs in variants.values()]
        stats[c] = [mean_std(v) if v else None for v in per_row]
    winners = {c: None if COLUMNS[c][2] is None else spread_winner(stats[c], COLUMNS[c][2]) for c in columns}
    arrows = {True: " ↑", False: " ↓", None: ""}
    lines = [
        "| variant | " + " | ".join(f"{COLUMNS[c][0]}{arrows[COLUMNS[c][2]]}" for c in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for row, name in enumerate(variants):
        cells = []
        for c in columns:
            s = stats[c][row]
            text = "n/a" if s is None else (f"{s[0]:.2f}" if c == "minutes" else f"{s[0]:.4f} ± {s[1]:.4f}")
            cells.append(f"**{text}**" if winners[c] == row else text)
        seeds = len(variants[name])
        lines.append(f"| {name} ({seeds} seed{'s' if seeds > 1 else ''}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_curve(runs: list[dict], metric: str, x: str) -> list[tuple[float, float]]:
    """``[(x, mean value over seeds)]`` of a validation metric at the steps every seed validated.

    ``x``: ``step`` or ``rgb_steps`` (the seeds' mean rgb-task steps at that step).
    """
    per_run = [{int(s): v for s, v in r["curves"]["val"].get(metric, [])} for r in runs]
    rgb = [{int(s): v for s, v in r["curves"]["rgb_steps"].items()} for r in runs]  # JSON keys are strings
    steps = sorted(set.intersection(*(set(c) for c in per_run))) if per_run else []
    points = []
    for step in steps:
        where = step if x == "step" else float(np.mean([r.get(step, 0.0) for r in rgb]))
        points.append((where, float(np.mean([c[step] for c in per_run]))))
    return points
