"""Cut real videos into shard samples (docs/architecture.md, "Data"): resample fps and size, add optical flow and the
streams of optional local estimators.

Every video file under a folder is decoded with OpenCV, resampled to the target fps by taking the
source frame nearest in time to each target frame (a constant source frame rate is assumed),
scaled to cover the target size and centre-cropped, and cut into clips of ``frames`` frames every
``stride`` frames (a shorter tail is dropped). Each clip becomes one sample: the RGB clip, its
optical flow and the output of each estimator, encoded through the modality registry. The RGB clip
goes into ``ext`` (mp4, H.264, by default); the modality streams into ``modality_ext``, lossless FFV1
mkv by default, since their colours are labels (seg, pose) or measurements (flow, depth) that a lossy
codec would blur.

A clip's caption is the text of a sidecar file next to its video, ``<name>.<ext>.txt`` or else
``<name>.txt`` (e.g. ``walk.mp4.txt`` or ``walk.txt`` for ``walk.mp4``), or empty.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from data_pipeline.card import card
from data_pipeline.estimators import load_estimators
from data_pipeline.modalities import get
from data_pipeline.schema import SCHEMA_VERSION, VIDEO_EXTS, stream_ext, stream_member, video_member
from data_pipeline.video_io import VideoDecodeError, encode_video
from data_pipeline.writer import ShardWriter

# File suffixes searched for (case-insensitive); anything OpenCV's FFmpeg backend decodes works.
VIDEO_SUFFIXES = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ts",
    ".3gp",
    ".ogv",
)


def find_videos(root: str) -> list[str]:
    """Paths of the video files under ``root``, relative to it, sorted."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"videos folder {root} does not exist")
    found = []
    for folder, _, names in os.walk(root):
        videos = [n for n in names if n.lower().endswith(VIDEO_SUFFIXES)]
        found += [os.path.relpath(os.path.join(folder, n), root) for n in videos]
    return sorted(found)


def resample(capture: cv2.VideoCapture, source_fps: float, fps: float) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(source index, BGR frame)`` for target frames k = 0, 1, ...: source frame
    round(k * source_fps / fps), the one nearest to time k / fps. Frames repeat when fps > source_fps."""
    step = source_fps / fps  # source frames per target frame
    index = k = 0
    while capture.grab():
        frame = None
        while math.floor(k * step + 0.5) == index:
            if frame is None:
                ok, frame = capture.retrieve()
                if not ok:
                    raise VideoDecodeError(f"frame {index} could not be decoded")
            yield index, frame
            k += 1
        index += 1
    if index == 0:
        raise VideoDecodeError("no frame could be decoded")


def fit(frame: np.ndarray, height: int, width: int, nearest: bool = False) -> np.ndarray:
    """Scale ``frame`` to cover ``height x width`` keeping its aspect ratio, then centre-crop to that size;
    ``nearest`` keeps colours that are labels (seg, skeleton, DensePose) unblended."""
    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    new_h, new_w = max(height, round(h * scale)), max(width, round(w * scale))
    if (new_h, new_w) != (h, w):
        interpolation = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        frame = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return np.ascontiguousarray(frame[top : top + height, left : left + width])


def cut_clips(frames: Iterable[tuple[int, np.ndarray]], length: int, stride: int) -> Iterator[tuple[int, np.ndarray]]:
    """Group ``(source index, frame)`` items into ``(source index of the first frame, clip [T, H, W, 3])``
    with a clip starting every ``stride`` items; a tail shorter than ``length`` is dropped."""
    buffer, skip = [], 0
    for item in frames:
        if skip:  # items between clips when stride > length
            skip -= 1
            continue
        buffer.append(item)
        if len(buffer) == length:
            yield buffer[0][0], np.stack([frame for _, frame in buffer])
            buffer, skip = buffer[stride:], max(stride - length, 0)


def read_caption(path: str) -> str:
    """Text of the video's sidecar caption file (``<path>.txt`` or ``<path without suffix>.txt``), or ''."""
    for sidecar in (path + ".txt", os.path.splitext(path)[0] + ".txt"):
        if os.path.isfile(sidecar):
            with open(sidecar, encoding="utf-8") as f:
                return f.read().strip()
    return ""


def key_base(relpath: str, taken: set[str]) -> str:
    """A sample-key prefix for a video: its relative path without suffix, with every character
    outside ``[A-Za-z0-9_-]`` replaced by '_', made unique among ``taken``."""
    base = re.sub(r"[^A-Za-z0-9_\-]", "_", os.path.splitext(relpath)[0])
    unique, n = base, 1
    while unique in taken:
        n += 1
        unique = f"{base}_{n}"
    taken.add(unique)
    return unique


def ingest(
    videos: str,
    out: str,
    *,
    fps: float = 8.0,
    size: int | tuple[int, int] = 256,
    frames: int = 16,
    stride: int | None = None,
    ext: str = "mp4",
    modality_ext: str = "mkv",
    flow: str = "dis",
    depth: str | None = None,
    seg: str | None = None,
    pose: str | None = None,
    shard_size: int = 64,
    split: str = "train",
    progress: bool = True,
    license: str | None = None,
    source_url: str | None = None,
) -> dict:
    """Cut every video under ``videos`` into clips and write them as shards under ``out``.

    ``size`` is the short side (square centre crop) or ``(height, width)``; ``depth``, ``seg`` and
    ``pose`` are local model folders (see ``data_pipeline.estimators``). Videos that cannot be
    decoded are skipped with a warning. Returns the contents of ``dataset.json``, whose
    ``"videos"`` entry counts the videos found and lists those skipped or too short for a clip.
    ``license`` and ``source_url`` (of the footage) go into the dataset card with each stream's estimator.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    stride = frames if stride is None else stride
    if min(height, width, frames, stride) < 1 or not fps > 0:
        raise ValueError(f"need positive fps, size, frames and stride; got {fps}, {size}, {frames}, {stride}")
    for name, value in (("ext", ext), ("modality_ext", modality_ext)):
        if value not in VIDEO_EXTS:
            raise ValueError(f"{name} {value!r} is not one of {', '.join(VIDEO_EXTS)}")
    if "mp4" in (ext, modality_ext) and (height % 2 or width % 2):
        raise ValueError(f"mp4 (H.264, yuv420p) needs an even height and width, got {height}x{width}; change --size")
    paths = find_videos(videos)
    estimators = load_estimators(flow, depth, seg, pose)  # fails on a bad model folder before writing anything
    args = dict(
        videos=videos,
        fps=fps,
        size=[height, width],
        frames=frames,
        stride=stride,
        ext=ext,
        modality_ext=modality_ext,
        flow=flow,
        depth=depth,
        seg=seg,
        pose=pose,
        split=split,
    )
    summary = {"found": len(paths), "skipped": {}, "without_clips": []}
    taken: set[str] = set()
    made_by = {"rgb": f"the videos under {videos}, resampled and cut", **{e.modality: e.made_by for e in estimators}}
    info = {"source": "ingest", "args": args, **card(license, source_url, made_by)}
    with ShardWriter(out, prefix=split, shard_size=shard_size, info=info) as writer:
        clips = 0
        bar = tqdm(paths, desc="ingest", unit="video", disable=not progress)
        for relpath in bar:
            path = os.path.join(videos, relpath)
            base, caption, written = key_base(relpath, taken), read_caption(path), 0
            capture = cv2.VideoCapture(path)
            try:
                source_fps = _source_fps(capture, path, fps)
                picked = resample(capture, source_fps or fps, fps)
                rgb = ((i, fit(frame, height, width)[..., ::-1]) for i, frame in picked)  # BGR -> RGB [H, W, 3]
                for start, clip in cut_clips(rgb, frames, stride):
                    meta = {
                        "schema": SCHEMA_VERSION,
                        "key": f"{base}-{written:04d}",
                        "caption": caption,
                        "fps": fps,
                        "frames": frames,
                        "height": height,
                        "width": width,
                        "source": relpath.replace(os.sep, "/"),
                        "split": split,
                        "modalities": ["rgb"],
                        "ext": ext,
                        "exts": {},
                        "prompts": {},
                        "encoding": {},
                        "gt": [],
                        "clip": {"start_frame": start, "source_fps": source_fps},
                    }
                    writer.write(_sample(meta, clip, estimators, modality_ext))
                    written, clips = written + 1, clips + 1
                    bar.set_postfix(clips=clips)
                if not written:
                    warnings.warn(f"{path}: too short for a clip of {frames} frames at {fps} fps", stacklevel=2)
                    summary["without_clips"].append(relpath)
            except (VideoDecodeError, cv2.error) as e:
                warnings.warn(f"skipping video {path} after {written} clip(s): {e}", stacklevel=2)
                summary["skipped"][relpath] = str(e)
            finally:
                capture.release()
        writer.info["videos"] = summary
    return writer.dataset


def _source_fps(capture: cv2.VideoCapture, path: str, fps: float) -> float | None:
    """The opened video's frame rate, or None (with a warning) when the container does not say."""
    if not capture.isOpened():
        raise VideoDecodeError("OpenCV cannot open it")
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    if math.isfinite(source_fps) and source_fps > 0:
        return source_fps
    warnings.warn(f"{path}: unknown frame rate, assuming {fps} fps", stacklevel=3)
    return None


def _sample(meta: dict, clip: np.ndarray, estimators: list, modality_ext: str) -> dict:
    """A writer sample for one RGB clip ``[T, H, W, 3]``: run every estimator and encode every stream."""
    ext, fps = meta["ext"], meta["fps"]
    sample = {"json": meta, video_member("rgb", ext): encode_video(clip, ext, fps)}
    for estimator in estimators:
        name = estimator.modality
        raw, encoding = estimator(clip)
        if modality_ext != ext:
            meta["exts"][name] = modality_ext
        sample[stream_member(meta, name)] = encode_video(get(name).encode(raw, encoding), stream_ext(meta, name), fps)
        meta["modalities"].append(name)
        meta["prompts"][name] = get(name).prompt
        meta["encoding"][name] = encoding
    return sample
