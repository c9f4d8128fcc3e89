"""``python -m unity.lora merge --ckpt RUN_OR_CKPT --out DIR``: fold a LoRA run's adapters into its base."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unity.lora", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    merger = commands.add_parser("merge", help="fold a LoRA run's adapters into its base weights")
    merger.add_argument("--ckpt", required=True, help="the LoRA run folder or one of its checkpoints")
    merger.add_argument("--out", required=True, help="folder for the merged run (config.yaml + checkpoints/)")
    merger.add_argument("--no-ema", action="store_true", help="merge the trained adapters, not their EMA")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from unity.inference.merge import merge

    try:
        folder = merge(args.ckpt, args.out, use_ema=not args.no_ema)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"wrote the merged weights to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
