"""Pictures of clips: a contact sheet of a shard folder (one row per (sample, frame), one column per
stream) and a film strip of labelled videos (one row per video, its frames side by side)."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.schema import stream_member
from data_pipeline.video_io import decode_video

_HEADER = 14  # pixels of the label row
_LABEL = 96  # pixels of a film strip's label column, before scaling


def contact_sheet(root: str, samples: int = 4, frames_per_sample: int = 2, scale: int = 2) -> np.ndarray:
    """RGB uint8 image of the first ``samples`` samples, a few frames each, every stream side by side."""
    rows, names = [], None
    all_samples = itertools.chain.from_iterable(iter_samples(path) for path in list_shards(root)[0])
    for _, members in itertools.islice(all_samples, samples):
        meta = json.loads(members["json"])
        names = names or meta["modalities"]
        videos = [decode_video(members[stream_member(meta, name)]) for name in names]  # [T, H, W, 3] each
        # Evenly spaced frames short of the last, whose forward flow is zero by convention.
        for t in np.linspace(0, meta["frames"], frames_per_sample + 1)[:-1].astype(int):
            rows.append(np.concatenate([video[t] for video in videos], axis=1))
    if not rows:
        raise ValueError(f"{root} holds no samples to preview")
    sheet = np.concatenate(rows, axis=0)
    sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    header = np.full((_HEADER * scale, sheet.shape[1], 3), 255, np.uint8)
    column = sheet.shape[1] // len(names)
    for i, name in enumerate(names):
        cv2.putText(
            header,
            name,
            (i * column + 4, header.shape[0] - 4 * scale),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.35 * scale,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return np.concatenate([header, sheet], axis=0)


def write_contact_sheet(root: str, out: str, samples: int = 4) -> None:
    write_image(out, contact_sheet(root, samples))


def film_strip(rows: list[tuple[str, np.ndarray]], scale: int | None = None) -> np.ndarray:
    """RGB uint8 image: one row per ``(label, video uint8 [T, H, W, 3])``, frames left to right.

    Videos may differ in frame count; short rows are padded white. ``scale`` (nearest-neighbour)
    defaults to enough to make frames at least 96 pixels tall.
    """
    if not rows:
        raise ValueError("a film strip needs at least one row")
    height = max(video.shape[1] for _, video in rows)
    scale = scale or max(1, -(-96 // height))
    width = max(video.shape[0] * video.shape[2] for _, video in rows)
    lines = []
    for label, video in rows:
        line = np.full((height, width, 3), 255, np.uint8)
        frames = np.concatenate(list(video), axis=1)  # [H, T·W, 3]
        line[: frames.shape[0], : frames.shape[1]] = frames
        line = cv2.resize(line, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tag = np.full((line.shape[0], _LABEL, 3), 255, np.uint8)
        for k, word in enumerate(label.split("\n")):
            cv2.putText(tag, word, (4, 14 + 14 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        lines.append(np.concatenate([tag, line], axis=1))
        lines.append(np.full((2, lines[-1].shape[1], 3), 255, np.uint8))  # a gap between rows
    return np.concatenate(lines[:-1], axis=0)


def write_image(path: str, image: np.ndarray) -> None:
    """Write an RGB uint8 image (PNG or JPEG by the extension)."""
    if not cv2.imwrite(path, np.ascontiguousarray(image[..., ::-1])):
        raise ValueError(f"could not write {path}; use a .png or .jpg path in an existing folder")
