"""The main job: ``python train.py [--config configs/tiny.yaml] [key=value ...]``."""

from __future__ import annotations

import argparse
import sys

from unity.config import ConfigError, load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML config over the schema in unity/config.py")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    print(
        f"config {args.config} is valid (run '{config.run.name}', model {config.model.hidden}x{config.model.depth}, "
        f"engine '{config.train.engine}'), but training cannot start: this version has no trainer.\n"
        "Missing: the model (models/), the task router and flow-matching objective (unity/tasks.py, "
        "unity/flow_matching.py), the trainer, engines and checkpoints (unity/trainer.py, unity/engine.py, "
        "unity/checkpoint.py).\n"
        "Available now: `python -m data_pipeline synth|check|ingest` (see README).",
        file=sys.stderr,
    )
    return 3


if __name__ == "__main__":
    sys.exit(main())
