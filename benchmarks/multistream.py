"""One auxiliary stream per sample against one to three, on the same budget and seeds:
``python benchmarks/multistream.py [--seeds 0 1 2] [--budget 300] [--record]``.

The variants train ``configs/multistream.yaml`` (the tiny CPU model, same data and batch) and differ
only in ``routing.aux_streams``: ``[1.0]`` (rgb and one modality, UnityVideo's pair) or ``[1, 1, 1]``
(rgb and k = 1, 2 or 3 modalities, equally likely), both for ``--budget`` steps; a third trains
``[1.0]`` for 1.63x the steps, the CPU time per step of the second, to tell more signal per step from
more compute. Each seed (``run.seed``: weights, routing and noise) trains once per variant; every run
is then evaluated with ``python -m eval.unibench`` on the test split: ``--estimate`` modalities
estimated one at a time and in one pass, and RGB generated from ``--controls`` one at a time and
together (fidelity: each control estimated back from the generated RGB). The step cost is CPU seconds
of the training process per step on one thread (``OMP_NUM_THREADS=1``), which other jobs on a shared
machine do not inflate as they do wall-clock time. Writes ``<out>/table.md`` (mean ± std over seeds)
and ``summary.json``; with ``--record`` the table goes to its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.record import record_section  # noqa: E402

CONFIG = "configs/multistream.yaml"
# variant -> (folder prefix, overrides, steps as a multiple of --budget). The third gives k = 1 the CPU time of
# k in {1, 2, 3} (1.63x the steps: the CPU s / step ratio measured on this config), to tell more signal per
# step from more compute per step.
VARIANTS = {
    "k = 1": ("k1", ["routing.aux_streams=[1.0]"], 1.0),
    "k in {1, 2, 3}": ("k123", ["routing.aux_streams=[1.0,1.0,1.0]"], 1.0),
    "k = 1, 1.63x steps (equal CPU)": ("k1long", ["routing.aux_streams=[1.0]"], 1.63),
}
# Metric of each estimated modality in the table, with whether higher is better.
METRIC = {"depth": ("abs_rel", False), "flow": ("epe", False), "seg": ("miou", True), "pose": ("pck", True)}
METRIC.update({"densepose": ("part_miou", True)})


def run(args: list[str], log: Path) -> None:
    """Run a command in the repository root, its output to ``log``; stop if it fails."""
    with open(log, "w") as f:
        result = subprocess.run(args, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed (exit {result.returncode}); see {log}")


def cpu_seconds_per_step(overrides: list[str], seed: int, steps: int = 20, warmup: int = 5) -> float:
    """CPU seconds of the training process per optimizer step (the model's work; the loader's workers
    are other processes), after ``warmup`` steps: a cost that other jobs on the machine do not inflate."""
    from unity.config import load
    from unity.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as folder:
        config = load(CONFIG, [*overrides, f"run.dir={folder}", f"run.seed={seed}"])
        trainer = Trainer(config)
        batches = iter(trainer.loader)
        for i in range(warmup + steps):
            if i == warmup:
                start = time.process_time()
            trainer.train_step(batches)
            trainer.step += 1
        seconds = (time.process_time() - start) / steps
        trainer.metrics.close()
    return seconds


def last_val_loss(run_dir: Path) -> float:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["val/loss"] for r in records if "val/loss" in r][-1]


def train_and_evaluate(variant: str, seed: int, out: Path, args) -> dict:
    """Train (unless already done) and evaluate one variant at one seed; returns its figures."""
    prefix, overrides, factor = VARIANTS[variant]
    steps = round(args.budget * factor)
    name = f"{prefix}_seed{seed}"
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "checkpoints" / f"step_{steps:07d}"
    if not (args.resume and done.is_dir()):
        start = time.perf_counter()
        train = [sys.executable, "train.py", "--config", CONFIG, *overrides, f"run.dir={out}", f"run.name={name}"]
        train += [f"run.seed={seed}", f"train.max_steps={steps}", "train.resume=never"]
        try:
            run(train, folder / "train.log")
        except RuntimeError:
            if not done.is_dir():  # the training itself failed, not only the report of the finished run
                raise
            print(f"    trained, but train.py's report of the run failed: see {folder / 'train.log'}", flush=True)
        (folder / "train_minutes.txt").write_text(f"{(time.perf_counter() - start) / 60:.2f}\n")
    if args.train_only:
        return {}
    results = folder / "unibench" / "results.json"
    if not (args.resume and results.is_file()):
        bench = [sys.executable, "-m", "eval.unibench", "--ckpt", str(folder), "--data", args.data]
        bench += ["--out", str(folder / "unibench"), "--clips", str(args.clips), "--steps", str(args.steps)]
        bench += [
            "--modalities",
            "--multi-estimate",
            *args.estimate,
            "--multi-control",
            *args.controls,
        ]  # no pair tables
        run(bench, folder / "unibench.log")
    cpu = folder / "cpu_seconds_per_step.txt"
    if not (args.resume and cpu.is_file()):
        cpu.write_text(f"{cpu_seconds_per_step(overrides, seed)}\n")
    split = json.loads(results.read_text())["splits"]["test"]
    row = {"variant": variant, "seed": seed, **figures(split, args), "val loss": last_val_loss(folder)}
    row["CPU s / step"] = float(cpu.read_text())
    return row


def figures(split: dict, args) -> dict:
    """The table's numbers from one run's UniBench split."""
    out = {"CPU s / step": None}
    multi = split["multi_estimation"]
    for label, row in (("one at a time", multi["one at a time"]), ("one pass", multi["one pass"])):
        for modality in args.estimate:
            metric = METRIC[modality][0]
            out[f"{modality} {metric}, {label}"] = row["scores"][modality].get(metric)
    # measured back to back in one process: the ratio holds on a shared machine, the seconds do not
    out["estimation time, one pass / one at a time"] = (
        multi["one pass"]["seconds_per_clip"] / multi["one at a time"]["seconds_per_clip"]
    )
    control = split["multi_control"]["rows"]
    together = "+".join(args.controls)
    for modality in args.controls:  # from itself, from all together; from the others and another clip's video
        metric = METRIC[modality][0]
        sources = [modality, together, *(m for m in args.controls if m != modality), "another clip's real video"]
        for source in sources:
            out[f"{modality} fidelity {metric}, from {source}"] = control[source]["fidelity"][modality].get(metric)
    return out


def better(column: str) -> str:
    """↑ or ↓ for a row of the table."""
    if column.startswith(("CPU s", "estimation time", "val loss")):
        return "↓"
    return "↑" if METRIC[column.split(" ")[0]][1] else "↓"


def table(rows: list[dict]) -> str:
    """Columns as rows (one per figure), variants as columns: mean ± std over seeds."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    columns = [c for c in rows[0] if c not in ("variant", "seed")]
    lines = ["| figure | " + " | ".join(variants) + " |", "| --- |" + " ---: |" * len(variants)]
    for column in columns:
        cells = []
        for variant in variants:
            values = [r[column] for r in rows if r["variant"] == variant and r[column] is not None]
            cells.append(f"{np.mean(values):.4f} ± {np.std(values):.4f}" if values else "n/a")
        lines.append(f"| {column} {better(column)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=300, help="train.max_steps of every run")
    parser.add_argument("--data", default="data/synth-8x32/test", help="test shards with ground truth")
    parser.add_argument("--clips", type=int, default=8, help="test clips for eval.unibench")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps for generation")
    parser.add_argument("--estimate", nargs="+", default=["depth", "flow", "seg"], help="estimated in one pass")
    parser.add_argument("--controls", nargs="+", default=["depth", "seg"], help="controls of generation")
    parser.add_argument("--out", default="runs/multistream_compare", help="folder of the runs")
    parser.add_argument("--resume", action="store_true", help="reuse finished trainings and evaluations")
    parser.add_argument("--train-only", action="store_true", help="train every run, evaluate nothing")
    parser.add_argument("--record", action="store_true", help="add the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        for variant in VARIANTS:
            print(f"{variant}, seed {seed}", flush=True)
            start = time.perf_counter()
            row = train_and_evaluate(variant, seed, out, args)
            if row:
                rows.append(row)
            print(f"    done in {(time.perf_counter() - start) / 60:.1f} min", flush=True)
    if not rows:
        return 0
    text = table(rows)
    (out / "table.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(text)
    if args.record:
        details = f" ({len(args.seeds)} seeds, {args.budget} steps of batch 8 unless said, {args.clips} test clips)"
        command = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("--resume", "--train-only")]
        record_section("multistream.py", "One against several auxiliary streams", text, command, details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
