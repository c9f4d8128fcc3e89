"""Inputs and outputs of sampling: files fitted to a run's clip shape, and the videos, raw estimates and
film strips written per sample."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from data_pipeline.benchmark import CATEGORICAL
from data_pipeline.modalities import MODALITIES
from data_pipeline.preview import film_strip, write_image
from data_pipeline.video_io import encode_video, read_video_file
from unity.inference.pipeline import task_streams
from unity.method.tasks import get_task

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


def write_outputs(
    out: Path,
    streams: dict[str, np.ndarray],
    task: str,
    modality: str | Sequence[str],
    fps: float,
    reverse: bool = False,
    generate: Sequence[str] | None = None,
) -> list[Path]:
    """Per sample: ``<stream>.mp4``, the raw decode of each modality estimated from the given rgb and
    ``strip.png``; returns the folders. ``modality``, ``generate``: as ``run_task`` took them."""
    names, _, flags = task_streams(task, modality, reverse, generate)
    generated = dict(zip(names, flags))
    kind = get_task(task).name
    estimated = [name for name in names[1:] if generated[name]] if kind != "sentence" and not generated["rgb"] else []
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
        for name in estimated:  # read back from the visual form: relative disparity, flow in pixels, ids ...
            np.save(folder / f"{name}.npy", MODALITIES[name].decode(streams[name][i]))
        if kind == "sentence" and not reverse:
            np.save(folder / f"{modality}.npy", MODALITIES[modality].decode(streams["B_prime"][i]))
        write_image(str(folder / "strip.png"), film_strip(rows))
        folders.append(folder)
    return folders
