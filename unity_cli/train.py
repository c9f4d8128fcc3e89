"""The main job: ``unity-train [--config tiny] [key=value ...]`` (``unity train``, ``python train.py`` in a checkout).

Trains (``unity.train.trainer``), then hands the finished run to its evaluation (``eval.run_report``),
which writes ``<run>/eval/results.json`` and prints the table. Runs the same way in one process and
under ``deepspeed`` or ``torchrun`` (``parallel.engine=deepspeed``); the main rank evaluates. ``--config``
takes a YAML file or the name of a shipped config (``tiny``, ``tiny_long``, ``univid_lora``, ...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from unity.config import ConfigError, load
from unity_cli.packages import check_packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="unity-train", description=__doc__)
    parser.add_argument(
        "--config", default="tiny", help="YAML config over the schema in unity/config/, or a shipped config's name"
    )
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    problem = check_packages()
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from unity.train import distributed
    from unity.train.precomputed_set import PrecomputedDataError
    from unity.train.trainer import completed_run, train

    run_dir = os.path.join(config.run.dir, config.run.name)
    done = completed_run(config)
    if done is not None:  # every rank reads the same files: all of them stop here
        if distributed.rank() == 0:
            print(
                f"{run_dir} is complete: its latest checkpoint is at step {done['step']} "
                f"(train.max_steps={config.train.max_steps}); raise train.max_steps to continue it"
            )
    else:
        try:
            train(config)
        except (PrecomputedDataError, ImportError) as e:  # data that do not fit the config, a missing extra
            print(f"error: {e}", file=sys.stderr)
            return 2
    if distributed.rank() == 0:
        report(run_dir, done)
    if distributed.initialized():
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
        # Skip interpreter teardown: DeepSpeed's CPU communication threads can abort the process
        # ("terminate called without an active exception") while static objects are destroyed.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def report(run_dir: str, done: dict | None) -> None:
    """Print the finished run's results: evaluated now, or read back when a complete run was started again.

    An evaluation that lacks pretrained weights (a run trained from precomputed shards whose codec or text
    encoder folder is gone) says what to put back, and the finished training still succeeds.
    """
    from eval.run_report import evaluate_run, summary_table

    saved = os.path.join(run_dir, "eval", "results.json")
    results = None
    if done is not None and os.path.isfile(saved):
        with open(saved) as f:
            results = json.load(f)
        if results.get("steps") != done["step"]:
            results = None
    if results is None:
        try:
            results = evaluate_run(run_dir)
        except (FileNotFoundError, ImportError) as e:
            print(
                f"training is done (checkpoints in {run_dir}/checkpoints), but its evaluation cannot run: "
                f"{' '.join(str(e).split())}\nonce that is there: python -m eval.run_report {run_dir}",
                file=sys.stderr,
            )
            return
    print(summary_table(results))


if __name__ == "__main__":
    sys.exit(main())
