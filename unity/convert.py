"""Convert runs to pipeline folders, and Wan2.1 / Wan2.2 transformers to Unity runs and back.

    python -m unity.convert export --ckpt RUN_OR_CKPT --out DIR [--no-ema] [--license apache-2.0]
    python -m unity.convert wan --src PATH --out DIR [--config configs/wan2.1_unity.yaml]
                                [--modalities depth flow ...] [key=value ...]
    python -m unity.convert export-wan --ckpt RUN_OR_CKPT --out DIR [--layout diffusers|original]
                                       [--no-ema] [--dtype bfloat16]

``export``: a trained run as a pipeline folder with its model card, which
``UnityPipeline.from_pretrained`` loads (``unity.inference.export``).

``wan``: ``PATH`` is a diffusers transformer folder (``config.json`` + safetensors, sharded with an
index or not; a pipeline folder's ``transformer/``) or a Wan repository checkpoint folder; ``DIR``
becomes a run folder that ``train.init_from=DIR``, ``python -m unity.sample --ckpt DIR`` and
``load_trained`` take. ``--config`` is the run config the weights are for: its model section
chooses the variant (switcher, in-context learner, layout, auxiliary path); the shape is Wan's.
Without it the run is plain Wan (text to video; set ``model.codec_path`` and ``model.text_path``).

``export-wan``: the rgb path of a run as a Wan transformer folder (``WanTransformer3DModel.from_pretrained``
loads the diffusers layout, and so ``WanPipeline``). In Python: ``from unity.convert import dit_from_wan``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from unity.config import ConfigError, load
from unity.inference.wan import PLAIN_WAN, convert_wan, dit_from_wan, export_wan
from unity.method.wan import LAYOUTS

__all__ = ["dit_from_wan", "convert_wan", "export_wan", "main"]

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m unity.convert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    pipeline = commands.add_parser("export", help="a run -> a UnityPipeline folder with its model card")
    pipeline.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    pipeline.add_argument("--out", required=True, help="the pipeline folder to write (an earlier export is replaced)")
    pipeline.add_argument("--no-ema", action="store_true", help="the trained weights, not their EMA")
    pipeline.add_argument("--license", default=None, help="licence of the exported weights (default: the code's)")
    to_unity = commands.add_parser("wan", help="a Wan transformer folder -> a Unity run folder")
    to_unity.add_argument("--src", required=True, help="Wan transformer folder (diffusers or Wan's own layout)")
    to_unity.add_argument("--out", required=True, help="the run folder to write")
    to_unity.add_argument("--config", default=None, help="the run config the weights are for (default: plain Wan)")
    to_unity.add_argument("--modalities", nargs="*", default=None, help="data.modalities of the run")
    to_unity.add_argument("overrides", nargs="*", help="key=value config overrides, e.g. model.codec_path=DIR")
    to_wan = commands.add_parser("export-wan", help="a Unity run's rgb path -> a Wan transformer folder")
    to_wan.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    to_wan.add_argument("--out", required=True, help="the Wan transformer folder to write")
    to_wan.add_argument("--layout", default="diffusers", choices=LAYOUTS, help="key names: diffusers' or Wan's own")
    to_wan.add_argument("--no-ema", action="store_true", help="the trained weights, not their EMA")
    to_wan.add_argument("--dtype", default=None, choices=DTYPES, help="cast the weights (default: as stored)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "export":
            from unity.inference.export import LICENSE, export

            folder = export(args.ckpt, args.out, use_ema=not args.no_ema, license=args.license or LICENSE)
            print(f"wrote the pipeline folder {folder}")
        elif args.command == "wan":
            config = load(args.config, (list(args.overrides) if args.config else [*PLAIN_WAN, *args.overrides]))
            folder = convert_wan(args.src, args.out, config, args.modalities)
            print(f"wrote {folder} (train.init_from={args.out})")
        else:
            dtype = DTYPES[args.dtype] if args.dtype else None
            folder = export_wan(args.ckpt, args.out, args.layout, use_ema=not args.no_ema, dtype=dtype)
            print(f"wrote the Wan transformer ({args.layout} layout) to {folder}")
    except (FileNotFoundError, FileExistsError, ValueError, ImportError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
