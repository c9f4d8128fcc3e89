"""Sample a trained model: ``python -m unity.sample --ckpt RUN_OR_CKPT --task estimate|generate|joint ...``.

Tasks by their registry names or aliases (``unity.method.tasks``):

- ``est`` / ``estimate``: ``--video`` (an RGB video file) -> the ``--modality`` stream (and its raw decode, ``.npy``);
- ``cond`` / ``generate``: ``--control`` (a modality video, or a raw ``.npy`` encoded through the registry) and
  ``--prompt`` -> RGB;
- ``joint``: ``--prompt`` -> RGB and the modality together;
- ``t2v``: ``--prompt`` -> RGB alone (one stream);
- ``sentence``: ``--context A A' B`` (three videos: rgb, modality, rgb; with ``--reverse`` modality,
  rgb, modality) -> B', a visual sentence (UniVid): the first pair shows the task; A and A' may be
  images (.png, .jpg), held still as the mixed image-to-video context.

Inputs are fitted to the run's clip shape (first frames, short side scaled, centre crop). Writes one
``.mp4`` per stream and ``strip.png`` (input rows, then output rows, frames left to right) per
sample into ``--out`` (default ``<run>/samples/<task>_<modality>_seed<seed>``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import numpy as np

from data_pipeline.modalities import MODALITIES
from data_pipeline.precomputed import read_external
from data_pipeline.schema import EXTERNAL_MEMBER
from data_pipeline.video_io import VideoDecodeError
from unity.inference.loading import find_checkpoint, load_trained
from unity.inference.media import read_input, write_outputs
from unity.inference.pipeline import SamplerSettings, run_task
from unity.method.sampler import METHODS
from unity.method.sentences import stream_names
from unity.method.tasks import TASK_WORDS, get_task


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m unity.sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    parser.add_argument("--task", required=True, choices=TASK_WORDS)
    parser.add_argument("--modality", default="depth", choices=list(MODALITIES)[1:], help="the auxiliary stream")
    parser.add_argument("--video", help="estimate: the RGB video file")
    parser.add_argument("--control", help="generate: the modality's video, or its raw .npy")
    parser.add_argument("--context", nargs=3, metavar=("A", "A_PRIME", "B"), help="sentence: the three context videos")
    parser.add_argument("--reverse", action="store_true", help="sentence: modality -> video (A, B are the modality)")
    parser.add_argument("--prompt", default="", help="the caption (generate, joint; optional for estimate)")
    parser.add_argument(
        "--features",
        help="a model with text_encoder=external: safetensors holding the prompt's "
        "external-encoder features (tensor 'features' [L, W])",
    )
    parser.add_argument("--num", type=int, default=1, help="samples per input, each with its own noise")
    parser.add_argument("--steps", type=int, default=20, help="ODE steps")
    parser.add_argument("--method", default="euler", choices=METHODS)
    parser.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale; 1 = none")
    parser.add_argument("--shift", type=float, default=None, help="time-grid shift (default: the run's training shift)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="clips per model call")
    parser.add_argument("--no-ema", action="store_true", help="use the trained weights, not their EMA")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
    parser.add_argument("--out", default=None, help="output folder")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.num < 1:
            raise ValueError(f"--num must be at least 1, got {args.num}")
        needed = {"est": "video", "cond": "control", "sentence": "context"}.get(get_task(args.task).name)
        if needed and getattr(args, needed) is None:
            raise ValueError(f"--task {args.task} needs --{needed}")
        ckpt = find_checkpoint(args.ckpt)  # before loading anything: a wrong path fails fast
        trained = load_trained(ckpt, use_ema=not args.no_ema, device=args.device)
        frames, size = trained.clip_shape
        rgb = control = context = None
        if args.video:
            rgb = np.repeat(read_input(args.video, "rgb", frames, size)[None], args.num, axis=0)
        if args.control:
            control = np.repeat(read_input(args.control, args.modality, frames, size)[None], args.num, axis=0)
        if args.context:
            kinds = stream_names(args.modality, args.reverse)[:3]
            context = np.stack([read_input(path, kind, frames, size) for path, kind in zip(args.context, kinds)])
            context = np.repeat(context[None], args.num, axis=0)  # [num, 3, T, H, W, 3]
        settings = SamplerSettings(
            steps=args.steps,
            method=args.method,
            cfg=args.cfg,
            shift=args.shift,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=True,
        )
        features = None
        if args.features:
            if not os.path.isfile(args.features):
                raise FileNotFoundError(f"{args.features}: no such file")
            values, mask = read_external({EXTERNAL_MEMBER: Path(args.features).read_bytes()})
            features = (values.expand(args.num, -1, -1), mask.expand(args.num, -1))
        streams = run_task(
            trained,
            args.task,
            args.modality,
            [args.prompt] * args.num,
            rgb=rgb,
            control=control,
            context=context,
            reverse=args.reverse,
            settings=settings,
            features=features,
        )
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    label = args.task if args.task == "t2v" else f"{args.task}_{args.modality}"
    out = Path(args.out or ckpt.parent.parent / "samples" / f"{label}_seed{args.seed}")
    folders = write_outputs(out, streams, args.task, args.modality, args.fps, args.reverse)
    print(f"wrote {len(folders)} sample(s) to {out} ({trained.weights} weights of {trained.checkpoint})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
