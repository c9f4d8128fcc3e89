"""The paper's ablations as a command: ``python benchmarks/ablations.py --sweep configs/sweeps/<x>.yaml``.

A sweep file names a base config, overrides shared by every variant, and the variants (each a list of
``key=value`` overrides). Every variant trains with ``python train.py`` on the same data, seeds and
step budget, then is evaluated with ``python -m eval.unibench`` on the test split; the per-task
validation-loss curves come from its ``metrics.jsonl``. Writes ``<out>/<sweep>/table.md`` (a
paper-style table), ``convergence.png`` (validation loss against step, one line per variant) and
``summary.json``, and with ``--record`` adds the table to the Ablations section of ``benchmarks/RESULTS.md``.

Sweep file::

    name: table3_tasks
    title: Table 3 - which tasks are trained
    base: configs/tiny.yaml
    overrides: [train.max_steps=300, train.eval_every=50]
    variants:
      conditional only: [routing.curriculum=[], routing.tasks.cond=1, routing.tasks.est=0, routing.tasks.joint=0]
      unified: []
    columns: [val/loss/cond, val/loss/est, val/loss/joint, est.depth.abs_rel]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.plot import line_plot  # noqa: E402
from benchmarks.record import record_section  # noqa: E402

# Column name -> (label, path into the variant's summary, higher is better).
COLUMNS = {
    "val/loss": ("val loss", ("val", "val/loss"), False),
    "val/loss/cond": ("val loss cond", ("val", "val/loss/cond"), False),
    "val/loss/est": ("val loss est", ("val", "val/loss/est"), False),
    "val/loss/joint": ("val loss joint", ("val", "val/loss/joint"), False),
    "val/loss/rgb": ("val loss rgb", ("val", "val/loss/rgb"), False),
    "est.depth.abs_rel": ("depth AbsRel", ("unibench", "estimation", "depth", "model", "abs_rel"), False),
    "est.flow.epe": ("flow EPE", ("unibench", "estimation", "flow", "model", "epe"), False),
    "est.seg.miou": ("seg mIoU", ("unibench", "estimation", "seg", "model", "miou"), True),
    "est.densepose.part_miou": (
        "DensePose part mIoU",
        ("unibench", "estimation", "densepose", "model", "part_miou"),
        True,
    ),
    "gen.depth.abs_rel": (
        "depth→rgb fidelity AbsRel",
        ("unibench", "generation", "depth", "model", "fidelity", "abs_rel"),
        False,
    ),
    "joint.depth.abs_rel": (
        "joint depth consistency AbsRel",
        ("unibench", "joint", "depth", "consistency", "abs_rel"),
        False,
    ),
    "gen.depth.flickering": (
        "depth→rgb flickering",
        ("unibench", "generation", "depth", "model", "vbench", "temporal_flickering", "value"),
        True,
    ),
    "rgb.flickering": ("rgb flickering", ("rgb_quality", "temporal_flickering", "value"), True),
    "rgb.motion": ("rgb motion smoothness (proxy)", ("rgb_quality", "motion_smoothness_linear_proxy", "value"), True),
    "rgb.dynamic": ("rgb dynamic degree", ("rgb_quality", "dynamic_degree", "value"), True),
    "minutes": ("minutes", ("minutes",), False),
}


def load_sweep(path: str) -> dict:
    sweep = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    missing = [key for key in ("name", "base", "variants") if key not in sweep]
    if missing:
        raise ValueError(f"{path}: the sweep file needs {', '.join(missing)}")
    unknown = [c for c in sweep.get("columns", []) if c not in COLUMNS]
    if unknown:
        raise ValueError(f"{path}: unknown columns {unknown}; choose from {', '.join(COLUMNS)}")
    return sweep


def run(args: list[str], log: Path) -> None:
    """Run a command in the repository root, its output to ``log``; stop the sweep if it fails."""
    with open(log, "w") as f:
        result = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed (exit {result.returncode}); see {log}")


def val_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` of every validation record in the run's metrics.jsonl."""
    curves: dict[str, list] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key, value in record.items():
            if key.startswith("val/loss"):
                curves.setdefault(key, []).append((record["step"], value))
    return curves


def task_means(last: dict[str, float]) -> dict[str, float]:
    """``val/loss/<task>``: the mean over modalities of ``val/loss/<task>/<modality>``, the overall mean,
    and ``val/loss/rgb``: the rgb stream's loss when generated from text (text-to-video, or joint)."""
    out = {"val/loss": last["val/loss"]}
    for task in ("cond", "est", "joint", "t2v", "joint_rgb"):
        values = [v for k, v in last.items() if k.startswith(f"val/loss/{task}/")]
        if values:
            out[f"val/loss/{task}"] = float(np.mean(values))
    out["val/loss/rgb"] = out.get("val/loss/t2v", out.get("val/loss/joint_rgb"))
    return out


def rgb_quality(unibench: dict) -> dict:
    """VBench-style dimensions of the RGB a variant generates from text its own way: joint generation
    with its first modality, or text-to-video for a run without auxiliary modalities."""
    joint = unibench.get("joint", {})
    return next(iter(joint.values()))["vbench"] if joint else unibench["t2v"]["vbench"]


def lookup(summary: dict, path: tuple) -> float | None:
    value = summary
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def run_variant(sweep: dict, name: str, overrides: list[str], out: Path, args) -> dict:
    """Train and evaluate one variant (skipped when its summary exists and --resume); returns its summary."""
    folder = out / name.replace(" ", "_")
    summary_path = folder / "summary.json"
    if args.resume and summary_path.is_file():
        return json.loads(summary_path.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    train = [
        sys.executable,
        "train.py",
        "--config",
        sweep["base"],
        *sweep.get("overrides", []),
        *overrides,
        f"run.dir={out}",
        f"run.name={folder.name}",
        "train.resume=never",
    ]
    if args.budget:
        train.append(f"train.max_steps={args.budget}")
    run(train, folder / "train.log")
    unibench = [
        sys.executable,
        "-m",
        "eval.unibench",
        "--ckpt",
        str(folder),
        "--data",
        str(Path(sweep.get("data", "data/synth-8x32")) / "test"),
        "--out",
        str(folder / "unibench"),
        "--clips",
        str(args.clips),
        "--steps",
        str(args.steps),
    ]
    run(unibench, folder / "unibench.log")
    curves = val_curves(folder)
    last = {key: points[-1][1] for key, points in curves.items()}
    unibench = json.loads((folder / "unibench" / "results.json").read_text())["splits"]["test"]
    summary = {
        "variant": name,
        "overrides": overrides,
        "minutes": (time.perf_counter() - start) / 60,
        "val": task_means(last),
        "curve": curves["val/loss"],
        "unibench": unibench,
        "rgb_quality": rgb_quality(unibench),
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def table(sweep: dict, summaries: list[dict]) -> str:
    """A Markdown table: one row per variant, the sweep's columns, the best value of each column in bold."""
    columns = sweep.get("columns", ["val/loss", "val/loss/cond", "val/loss/est", "val/loss/joint", "est.depth.abs_rel"])
    columns = [*columns, "minutes"] if "minutes" not in columns else columns
    values = [[lookup(s, COLUMNS[c][1]) for c in columns] for s in summaries]
    best = []
    for j, c in enumerate(columns):
        present = [row[j] for row in values if row[j] is not None]
        best.append(None if c == "minutes" or not present else (max if COLUMNS[c][2] else min)(present))
    lines = [
        "| variant | " + " | ".join(f"{COLUMNS[c][0]} {'↑' if COLUMNS[c][2] else '↓'}" for c in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for summary, row in zip(summaries, values):
        cells = ["n/a" if v is None else (f"**{v:.4f}**" if v == b else f"{v:.4f}") for v, b in zip(row, best)]
        lines.append(f"| {summary['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", required=True, help="configs/sweeps/<x>.yaml")
    parser.add_argument(
        "--budget", type=int, default=None, help="train.max_steps of every variant (default: the sweep's)"
    )
    parser.add_argument("--clips", type=int, default=8, help="test clips for eval.unibench")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps for generation in eval.unibench")
    parser.add_argument("--out", default="runs/ablations", help="parent folder of the sweep's runs")
    parser.add_argument("--only", nargs="+", default=None, help="run these variants only")
    parser.add_argument("--resume", action="store_true", help="reuse variants that already have a summary.json")
    parser.add_argument("--record", action="store_true", help="add the table to its section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) / sweep["name"]
    variants = {k: v for k, v in sweep["variants"].items() if not args.only or k in args.only}
    summaries = []
    for i, (name, overrides) in enumerate(variants.items()):
        print(f"[{i + 1}/{len(variants)}] {name}: {' '.join(overrides) or '(base)'}", flush=True)
        summaries.append(run_variant(sweep, name, list(overrides), out, args))
        print(
            f"    done in {summaries[-1]['minutes']:.1f} min, val loss {summaries[-1]['val']['val/loss']:.4f}",
            flush=True,
        )
    text = table(sweep, summaries)
    line_plot(
        {s["variant"]: s["curve"] for s in summaries},
        out / "convergence.png",
        title=f"{sweep['name']}: validation loss",
        xlabel="step",
        ylabel="val loss",
        log_y=True,
    )
    (out / "table.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    print(text)
    if args.record:  # the plot is kept beside RESULTS.md, since runs/ is not part of the repository
        figure = ROOT / "benchmarks" / "figures" / f"{sweep['name']}_convergence.png"
        figure.parent.mkdir(exist_ok=True)
        shutil.copyfile(out / "convergence.png", figure)
        record_section(
            "ablations.py",
            sweep.get("title", sweep["name"]),
            f"{text}\n\n![{sweep['name']} convergence](figures/{figure.name})",
            argv,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
