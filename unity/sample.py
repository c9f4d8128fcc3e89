"""Sample a trained model: ``python -m unity.sample --ckpt RUN_OR_CKPT --task estimate|generate|joint ...``.

- ``estimate``: ``--video`` (an RGB video file) -> the ``--modality`` stream (and its raw decode, ``.npy``);
- ``generate``: ``--control`` (a modality video, or a raw ``.npy`` encoded through the registry) and
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

import cv2
import numpy as np

from data_pipeline.benchmark import CATEGORICAL
from data_pipeline.modalities import MODALITIES
from data_pipeline.precomputed import read_external
from data_pipeline.preview import film_strip, write_image
from data_pipeline.schema import EXTERNAL_MEMBER
from data_pipeline.video_io import VideoDecodeError, encode_video, read_video_file
from unity.pipeline import SamplerSettings, clip_shape, run_task, task_streams
from unity.sentences import stream_names
from unity.sampler import METHODS

TASKS = ("estimate", "generate", "joint", "t2v", "sentence")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def fit_clip(video: np.ndarray, frames: int, size: int, nearest: bool = False, name: str = "video") -> np.ndarray:
    """The first ``frames`` frames of ``video [T, H, W, 3]``, short side scaled to ``size``, centre-cropped square."""
    if len(video) < frames:
        raise ValueError(f"{name} has {len(video)} frames; the model needs at least {frames}")
    out = []
    for frame in video[:frames]:
        h, w = frame.shape[:2]
        scale = size / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
        interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
        top, left = (new_h - size) // 2, (new_w - size) // 2
        out.append(frame[top : top + size, left : left + size])
    return np.ascontiguousarray(np.stack(out))


def read_input(path: str, modality: str, frames: int, size: int) -> np.ndarray:
    """A video file, an image (held still), or for an auxiliary modality a raw ``.npy`` rendered by the
    registry, fitted to the clip."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    if path.endswith(".npy"):
        if modality == "rgb":
            raise ValueError(f"{path}: an RGB input must be a video file, not .npy")
        video = MODALITIES[modality].encode(np.load(path), {})
    elif path.lower().endswith(IMAGE_EXTS):  # an image: one frame held still
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{path}: not a readable image")
        video = np.repeat(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)[None], frames, axis=0)
    else:
        video = read_video_file(path)
    return fit_clip(video, frames, size, nearest=modality in CATEGORICAL, name=path)


def write_outputs(out: Path, streams: dict[str, np.ndarray], task: str, modality: str, fps: float,
                  reverse: bool = False) -> list[Path]:
    """Per sample: ``<stream>.mp4``, the raw decode of an estimated modality and ``strip.png``; returns the folders."""
    names, _, flags = task_streams(task, modality, reverse)
    generated = dict(zip(names, flags))
    folders = []
    count = len(next(iter(streams.values())))
    for i in range(count):
        folder = out if count == 1 else out / f"sample_{i:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for name in sorted(streams, key=lambda n: generated[n]):  # inputs first (stable: sentence order kept)
            video = streams[name][i]
            (folder / f"{name}.mp4").write_bytes(encode_video(video, "mp4", fps))
            rows.append((f"{'output' if generated[name] else 'input'}\n{name}", video))
        if task == "estimate" or (task == "sentence" and not reverse):
            estimate = streams[modality if task == "estimate" else "B_prime"][i]
            np.save(folder / f"{modality}.npy", MODALITIES[modality].decode(estimate))
        write_image(str(folder / "strip.png"), film_strip(rows))
        folders.append(folder)
    return folders


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m unity.sample", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    parser.add_argument("--task", required=True, choices=TASKS)
    parser.add_argument("--modality", default="depth", choices=list(MODALITIES)[1:], help="the auxiliary stream")
    parser.add_argument("--video", help="estimate: the RGB video file")
    parser.add_argument("--control", help="generate: the modality's video, or its raw .npy")
    parser.add_argument("--context", nargs=3, metavar=("A", "A_PRIME", "B"), help="sentence: the three context videos")
    parser.add_argument("--reverse", action="store_true", help="sentence: modality -> video (A, B are the modality)")
    parser.add_argument("--prompt", default="", help="the caption (generate, joint; optional for estimate)")
    parser.add_argument("--features", help="a model with text_encoder=external: safetensors holding the prompt's "
                        "external-encoder features (tensor 'features' [L, W])")
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
        needed = {"estimate": "video", "generate": "control", "sentence": "context"}.get(args.task)
        if needed and getattr(args, needed) is None:
            raise ValueError(f"--task {args.task} needs --{needed}")
        from unity.network import find_checkpoint, load_trained

        ckpt = find_checkpoint(args.ckpt)  # before loading anything: a wrong path fails fast
        trained = load_trained(ckpt, use_ema=not args.no_ema, device=args.device)
        frames, size = clip_shape(trained)
        rgb = control = context = None
        if args.video:
            rgb = np.repeat(read_input(args.video, "rgb", frames, size)[None], args.num, axis=0)
        if args.control:
            control = np.repeat(read_input(args.control, args.modality, frames, size)[None], args.num, axis=0)
        if args.context:
            kinds = stream_names(args.modality, args.reverse)[:3]
            context = np.stack([read_input(path, kind, frames, size) for path, kind in zip(args.context, kinds)])
            context = np.repeat(context[None], args.num, axis=0)  # [num, 3, T, H, W, 3]
        settings = SamplerSettings(steps=args.steps, method=args.method, cfg=args.cfg, shift=args.shift,
                                   seed=args.seed, batch_size=args.batch_size, progress=True)
        features = None
        if args.features:
            if not os.path.isfile(args.features):
                raise FileNotFoundError(f"{args.features}: no such file")
            values, mask = read_external({EXTERNAL_MEMBER: Path(args.features).read_bytes()})
            features = (values.expand(args.num, -1, -1), mask.expand(args.num, -1))
        streams = run_task(trained, args.task, args.modality, [args.prompt] * args.num, rgb=rgb, control=control,
                           context=context, reverse=args.reverse, settings=settings, features=features)
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
