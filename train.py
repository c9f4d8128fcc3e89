"""The main job: ``python train.py [--config configs/tiny.yaml] [key=value ...]``.

Trains (``unity.train.trainer``), then hands the finished run to its evaluation (``eval.run_report``),
which writes ``<run>/eval/results.json`` and prints the table. Runs the same way in one process and
under ``deepspeed`` or ``torchrun`` (``parallel.engine=deepspeed``); the main rank evaluates.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from unity.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML config over the schema in unity/config/")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from eval.run_report import evaluate_run, summary_table
    from unity.train import distributed
    from unity.train.trainer import train

    train(config)
    if distributed.rank() == 0:
        print(summary_table(evaluate_run(os.path.join(config.run.dir, config.run.name))))
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


if __name__ == "__main__":
    sys.exit(main())
