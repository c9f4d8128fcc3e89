"""``python -m unity.checkpoint consolidate RUN_OR_CKPT``: write a sharded checkpoint's full weights offline.

A DeepSpeed run saves its sharded state at ``checkpoint.save_every`` and the full ``model.safetensors`` /
``ema.safetensors`` only at step 0, the last step and every ``checkpoint.consolidate_every`` steps. This
joins the shards of any other checkpoint (a run folder: its latest) in one CPU process, so that it can be
sampled, evaluated or used as ``train.init_from``; the folder stays resumable as it was.
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unity.checkpoint", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    joiner = commands.add_parser("consolidate", help="write the full weights and EMA of a sharded checkpoint")
    joiner.add_argument("path", metavar="RUN_OR_CKPT", help="a checkpoint folder, or a run folder (its latest)")
    joiner.add_argument("--force", action="store_true", help="write the files again even when they exist")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from unity.train.sharded import consolidate

    try:
        folder, written = consolidate(args.path, force=args.force)
    except (FileNotFoundError, ValueError, KeyError, RuntimeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    if written:
        print(f"wrote {', '.join(written)} in {folder}")
    else:
        print(f"{folder} already holds its full weights; nothing to do (--force writes them again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
