"""Precompute codec latents and text embeddings into new shards.

    python -m unity.precompute --data DIR --out DIR [--config configs/x.yaml] [key=value ...]

``--data`` is a shard folder (holding ``dataset.json``) or a run's data root, whose every split
folder (``train/``, ``val/``, ``test/``) is then written to the same name under ``--out``.

What is written: ``unity/train/precompute.py``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import torch
from omegaconf import OmegaConf

from unity.config import ConfigError, load
from unity.train.precompute import precompute

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m unity.precompute", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="shard folder to read (holding dataset.json), or a data root")
    parser.add_argument("--out", required=True, help="new shard folder to write")
    parser.add_argument("--config", default=None, help="YAML config; its model section names codec and text encoder")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--dtype", default="float32", choices=DTYPES, help="weights of a diffusers VAE and an hf text encoder"
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. model.codec=diffusers")
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for data, out in split_folders(args.data, args.out):
        try:
            dataset = precompute(
                data, out, OmegaConf.to_object(config.model), args.device, DTYPES[args.dtype], seed=config.run.seed
            )
        except (OSError, ImportError, ValueError) as e:  # missing weights or data, a folder in the way
            print(f"precompute: {e}", file=sys.stderr)
            return 2
        print(
            f"wrote {dataset['samples']} samples in {len(dataset['shards'])} shard(s) to {out} "
            f"({dataset['skipped']} skipped)"
        )
    return 0


def split_folders(data: str, out: str) -> list[tuple[str, str]]:
    """``[(data, out)]`` for a shard folder; for a run's data root (``train/``, ``val/``, ... each with a
    ``dataset.json``) one pair per split, so that ``--data data/synth --out data/latent`` does them all."""
    if os.path.isfile(os.path.join(data, "dataset.json")) or not os.path.isdir(data):
        return [(data, out)]
    splits = sorted(name for name in os.listdir(data) if os.path.isfile(os.path.join(data, name, "dataset.json")))
    return [(os.path.join(data, name), os.path.join(out, name)) for name in splits] or [(data, out)]


if __name__ == "__main__":
    sys.exit(main())
