"""The paper's ablations as a command: ``python benchmarks/ablations.py --sweep configs/sweeps/<x>.yaml``.

A sweep file names a base config, overrides shared by every variant, the variants (each a list of
``key=value`` overrides) and the table's columns (``benchmarks/ablation_stats.py``). Every variant
trains with ``python train.py`` once per seed (``run.seed``; ``--seeds``, default 0 1 2) on the same
data and step budget, then is evaluated with ``python -m eval.unibench`` on the test split (the
modalities its columns name). Writes ``<out>/<sweep>/table.md`` (mean ± std over seeds, bold only
where a row is better by more than the spread), ``convergence.png`` (text-to-video rgb validation loss
against optimizer steps and against rgb-task steps, one line per variant, the mean over seeds) and
``summary.json`` (every run), and with ``--record`` adds the table to the Ablations section of
``benchmarks/RESULTS.md``.

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

import cv2
import numpy as np
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ablation_stats import COLUMNS, column_modalities, mean_curve, run_curves, table, task_means  # noqa: E402
from benchmarks.plot import line_plot  # noqa: E402
from benchmarks.record import record_section  # noqa: E402

DEFAULT_COLUMNS = ["val/loss", "val/loss/cond", "val/loss/est", "val/loss/joint", "est.depth.abs_rel"]
CURVE = "val/loss/t2v/rgb"  # the convergence plot's metric: the same task for every variant


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


def run_variant(sweep: dict, name: str, overrides: list[str], seed: int, out: Path, args) -> dict:
    """Train and evaluate one variant with one seed (skipped when its summary exists and --resume)."""
    folder = out / f"{name.replace(' ', '_')}_seed{seed}"
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
        f"run.seed={seed}",
        "train.resume=never",
        "train.log_every=1",  # every step's task counts, for the rgb-task steps of the convergence plot
    ]
    if args.budget:
        train.append(f"train.max_steps={args.budget}")
    run(train, folder / "train.log")
    config = OmegaConf.load(folder / "config.yaml")
    trained = list(config.data.modalities)
    wanted = [m for m in column_modalities(sweep.get("columns", DEFAULT_COLUMNS)) if m in trained]
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
        "--seed",
        str(seed),
    ]
    if args.vbench_weights:  # VBench's model-based dimensions (t2v.aesthetic, ...): eval/vbench_files.py
        unibench += ["--weights", args.vbench_weights]
    if trained:  # a run with auxiliary modalities: those the columns need (none: text to video alone)
        unibench += ["--modalities", *wanted] if wanted else ["--modalities"]
    run(unibench, folder / "unibench.log")
    curves = run_curves(folder, int(config.data.batch_size))
    last = {key: points[-1][1] for key, points in curves["val"].items()}
    summary = {
        "variant": name,
        "seed": seed,
        "overrides": overrides,
        "minutes": (time.perf_counter() - start) / 60,
        "val": task_means(last),
        "curves": curves,
        "unibench": json.loads((folder / "unibench" / "results.json").read_text())["splits"]["test"],
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def convergence_plot(variants: dict[str, list[dict]], path: Path, title: str) -> None:
    """Two panels side by side: the mean t2v rgb validation loss against steps and against rgb-task steps."""
    panels = []
    for x, label in (("step", "optimizer step"), ("rgb_steps", "rgb-task steps (samples with rgb noised / batch)")):
        series = {name: mean_curve(runs, CURVE, x) for name, runs in variants.items()}
        panel = path.with_name(f"{path.stem}_{x}.png")
        panels.append(line_plot(series, panel, title=title, xlabel=label, ylabel="val loss t2v rgb", log_y=True))
        panel.unlink()
    if not cv2.imwrite(str(path), np.concatenate(panels, axis=1)[..., ::-1]):
        raise ValueError(f"could not write {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", required=True, help="configs/sweeps/<x>.yaml")
    parser.add_argument(
        "--budget", type=int, default=None, help="train.max_steps of every variant (default: the sweep's)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="run.seed values (>= 3 for spreads)")
    parser.add_argument("--clips", type=int, default=8, help="test clips for eval.unibench")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps for generation in eval.unibench")
    parser.add_argument("--vbench-weights", default=None, help="eval.unibench --weights: VBench's networks' files")
    parser.add_argument("--out", default="runs/ablations", help="parent folder of the sweep's runs")
    parser.add_argument("--only", nargs="+", default=None, help="run these variants only")
    parser.add_argument("--resume", action="store_true", help="reuse runs that already have a summary.json")
    parser.add_argument("--record", action="store_true", help="add the table to its section of benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) / sweep["name"]
    variants = {k: v for k, v in sweep["variants"].items() if not args.only or k in args.only}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    jobs = [(name, seed) for seed in args.seeds for name in variants]  # seed-major: every variant early
    for i, (name, seed) in enumerate(jobs):
        overrides = list(variants[name])
        print(f"[{i + 1}/{len(jobs)}] {name}, seed {seed}: {' '.join(overrides) or '(base)'}", flush=True)
        runs[name].append(run_variant(sweep, name, overrides, seed, out, args))
        done = runs[name][-1]
        print(f"    done in {done['minutes']:.1f} min, val loss {done['val']['val/loss']:.4f}", flush=True)
    text = table(sweep.get("columns", DEFAULT_COLUMNS), runs)
    convergence_plot(runs, out / "convergence.png", f"{sweep['name']}: text-to-video rgb validation loss")
    (out / "table.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(runs, indent=2))
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
