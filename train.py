"""The main job: ``python train.py [--config configs/tiny.yaml] [key=value ...]``.

Runs the same way in one process and under ``deepspeed`` or ``torchrun`` (``train.engine=deepspeed``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from unity.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML config over the schema in unity/config.py")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # set by the deepspeed launcher
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from unity.trainer import train

    train(config)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
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
