"""Sample a trained model: ``python -m unity.sample --ckpt RUN_OR_CKPT --task estimate|generate|joint ...``.

Tasks by their registry names or aliases (``unity.method.tasks``):

- ``est`` / ``estimate``: ``--video`` (an RGB video file) -> the ``--modality`` stream, or several in one pass
  (``--modality depth flow seg``), each with its raw decode (``.npy``);
- ``cond`` / ``generate``: ``--control`` (a modality video, or a raw ``.npy`` encoded through the registry) and
  ``--prompt`` -> RGB; several controls: one ``--control`` per ``--modality``, in that order, each weighed
  with ``--control-weight depth=1.5 pose=0.7`` (one more model call per step for each weight != 1);
- ``joint``: ``--prompt`` -> RGB and the modality (or every ``--modality``) together;
- ``subset``: ``--generate`` names the generated streams among rgb and ``--modality``; the others are given
  (``--video`` for rgb, ``--control`` for the given modalities in order), e.g. rgb and depth from pose;
- ``t2v``: ``--prompt`` -> RGB alone (one stream);
- ``sentence``: ``--context A A' B`` (three videos: rgb, modality, rgb; with ``--reverse`` modality,
  rgb, modality) -> B', a visual sentence (UniVid): the first pair shows the task; A and A' may be
  images (.png, .jpg), held still as the mixed image-to-video context.

Inputs are fitted to the run's clip shape (first frames, short side scaled, centre crop). Writes one
``.mp4`` per stream and ``strip.png`` (input rows, then output rows, frames left to right) per
sample into ``--out`` (default ``<run>/samples/<task>_<modalities>_seed<seed>``).
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
from unity.inference.pipeline import SamplerSettings, run_task, task_streams
from unity.method.sampler import METHODS, SCHEDULES
from unity.method.sentences import stream_names
from unity.method.tasks import TASK_WORDS, get_task


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m unity.sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    parser.add_argument("--task", required=True, choices=TASK_WORDS)
    parser.add_argument(
        "--modality",
        nargs="+",
        default=["depth"],
        choices=list(MODALITIES)[1:],
        help="the auxiliary stream, or several (cond, est, joint, subset)",
    )
    parser.add_argument("--video", help="estimate: the RGB video file")
    parser.add_argument(
        "--control",
        nargs="+",
        action="extend",
        help="generate: the modality's video, or its raw .npy; one per given --modality, in its order",
    )
    parser.add_argument(
        "--control-weight",
        nargs="+",
        default=[],
        metavar="MODALITY=W",
        help="guidance weight of a control (1 = as trained, 0 = left out, > 1 stronger), e.g. depth=1.5 pose=0.7",
    )
    parser.add_argument("--generate", nargs="+", help="subset: the generated streams, e.g. rgb depth")
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
    parser.add_argument("--schedule", default="uniform", choices=SCHEDULES, help="time grid: uniform, or Wan's")
    parser.add_argument("--negative-prompt", default="", help="caption of guidance's unconditional branch (--cfg)")
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
        task = get_task(args.task).name
        needed = {"est": "video", "cond": "control", "sentence": "context"}.get(task)
        if needed and getattr(args, needed) is None:
            raise ValueError(f"--task {args.task} needs --{needed}")
        modality = args.modality[0] if task in ("sentence", "t2v") else args.modality
        if task in ("sentence", "t2v") and len(args.modality) > 1:
            raise ValueError(f"--task {args.task} takes one --modality, got {' '.join(args.modality)}")
        names, _, generated = task_streams(task, modality, args.reverse, args.generate)
        given = [name for name, flag in zip(names[1:], generated[1:]) if not flag] if task != "sentence" else []
        if len(args.control or []) != len(given):
            raise ValueError(
                f"--control gives {len(args.control or [])} file(s) for the {len(given)} given modalities "
                f"({' '.join(given) or 'none'}) of --modality {' '.join(args.modality)}: one --control per "
                "given modality, in the order of --modality"
            )
        if task != "sentence" and not generated[0] and args.video is None:
            raise ValueError(f"--task {args.task} needs --video (the rgb stream is given)")
        weights = parse_weights(args.control_weight)
        ckpt = find_checkpoint(args.ckpt)  # before loading anything: a wrong path fails fast
        trained = load_trained(ckpt, use_ema=not args.no_ema, device=args.device)
        frames, size = trained.clip_shape
        rgb = control = context = None
        if args.video:
            rgb = np.repeat(read_input(args.video, "rgb", frames, size)[None], args.num, axis=0)
        if args.control:
            control = [
                np.repeat(read_input(path, name, frames, size)[None], args.num, axis=0)
                for path, name in zip(args.control, given)
            ]
        if args.context:
            kinds = stream_names(modality, args.reverse)[:3]
            context = np.stack([read_input(path, kind, frames, size) for path, kind in zip(args.context, kinds)])
            context = np.repeat(context[None], args.num, axis=0)  # [num, 3, T, H, W, 3]
        settings = SamplerSettings(
            steps=args.steps,
            method=args.method,
            cfg=args.cfg,
            shift=args.shift,
            schedule=args.schedule,
            negative_prompt=args.negative_prompt,
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
            modality,
            [args.prompt] * args.num,
            rgb=rgb,
            control=control,
            context=context,
            reverse=args.reverse,
            settings=settings,
            features=features,
            control_weights=weights,
            generate=args.generate,
        )
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    label = args.task if task == "t2v" else f"{args.task}_{'+'.join(args.modality)}"
    out = Path(args.out or ckpt.parent.parent / "samples" / f"{label}_seed{args.seed}")
    folders = write_outputs(out, streams, args.task, modality, args.fps, args.reverse, args.generate)
    print(f"wrote {len(folders)} sample(s) to {out} ({trained.weights} weights of {trained.checkpoint})")
    return 0


def parse_weights(items: list[str]) -> dict[str, float]:
    """``["depth=1.5", "pose=0.7"]`` -> ``{"depth": 1.5, "pose": 0.7}``; ValueError naming a malformed item."""
    weights = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"--control-weight {item!r} is not MODALITY=WEIGHT, e.g. depth=1.5") from None
    return weights


if __name__ == "__main__":
    sys.exit(main())
