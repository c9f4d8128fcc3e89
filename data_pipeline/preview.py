"""A contact sheet of a shard folder: one row per (sample, frame), one column per stream."""

from __future__ import annotations

import itertools
import json

import cv2
import numpy as np

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.video_io import decode_video

_HEADER = 14  # pixels of the label row


def contact_sheet(root: str, samples: int = 4, frames_per_sample: int = 2, scale: int = 2) -> np.ndarray:
    """RGB uint8 image of the first ``samples`` samples, a few frames each, every stream side by side."""
    rows, names = [], None
    all_samples = itertools.chain.from_iterable(iter_samples(path) for path in list_shards(root)[0])
    for _, members in itertools.islice(all_samples, samples):
        meta = json.loads(members["json"])
        names = names or meta["modalities"]
        videos = [decode_video(members[f"{name}.{meta['ext']}"]) for name in names]  # [T, H, W, 3] each
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
        cv2.putText(header, name, (i * column + 4, header.shape[0] - 4 * scale), cv2.FONT_HERSHEY_SIMPLEX,
                    0.35 * scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, sheet], axis=0)


def write_contact_sheet(root: str, out: str, samples: int = 4) -> None:
    if not cv2.imwrite(out, contact_sheet(root, samples)[..., ::-1]):
        raise ValueError(f"could not write {out}; use a .png or .jpg path in an existing folder")
