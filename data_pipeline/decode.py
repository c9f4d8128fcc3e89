"""One training sample from its raw webdataset members: check the json, decode the streams, pick one
frame window and crop for all of them, resize, scale to [-1, 1] (or read precomputed latents, text
embeddings and external features). Any problem is a :class:`BadSample` naming the key, shard and reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial

import cv2
import numpy as np
import torch

from data_pipeline.precomputed import read_external, read_precomputed
from data_pipeline.schema import validate_meta, video_member
from data_pipeline.video_io import VideoDecodeError, decode_video

# Resize filter per stream, which also names the streams a loader knows. Averaging suits smooth
# signals (colour, depth, flow); discrete encodings (segment colours, skeleton lines, DensePose
# part and surface codes) must keep their exact values, so they take the nearest pixel.
INTERPOLATION = {
    "rgb": cv2.INTER_AREA,
    "depth": cv2.INTER_AREA,
    "flow": cv2.INTER_AREA,
    "seg": cv2.INTER_NEAREST,
    "pose": cv2.INTER_NEAREST,
    "densepose": cv2.INTER_NEAREST,
}


class BadSample(ValueError):
    """A sample that cannot be used; the message names its key, its shard and the reason."""


def _crop_box(height: int, width: int, size: tuple[int, int], crop_scale, rng) -> tuple[int, int, int, int]:
    """A random ``(top, left, h, w)`` box holding a ``crop_scale`` fraction of the frame at the aspect of ``size``."""
    aspect = size[1] / size[0]  # width / height
    area = rng.uniform(*crop_scale) * height * width
    h, w = math.sqrt(area / aspect), math.sqrt(area * aspect)
    shrink = min(1.0, height / h, width / w)  # keep the box inside the frame
    h, w = max(1, round(h * shrink)), max(1, round(w * shrink))
    return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w


def _resize(clip: np.ndarray, size: tuple[int, int], interpolation: int) -> np.ndarray:
    """Resize every frame of ``[T, H, W, 3]`` to ``[T, size[0], size[1], 3]``."""
    out = np.empty((len(clip), *size, clip.shape[-1]), np.uint8)
    for frame, resized in zip(clip, out):  # straight into the output: no list of frames to stack
        cv2.resize(frame, (size[1], size[0]), dst=resized, interpolation=interpolation)
    return out


# v / 127.5 - 1 for every byte value v, computed as the loader always did; one table look-up per
# element replaces a float conversion and two arithmetic passes over the (4x larger) float clip.
_UNIT_TABLE = (torch.arange(256).float() / 127.5 - 1).numpy()


def _to_unit(clip: np.ndarray) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` to a contiguous float ``[3, T, H, W]`` in [-1, 1] (``clip / 127.5 - 1``)."""
    planar = np.ascontiguousarray(clip.transpose(3, 0, 1, 2))
    return torch.from_numpy(cv2.LUT(planar.reshape(-1, planar.shape[-1]), _UNIT_TABLE).reshape(planar.shape))


def _bad(raw: dict, reason: str) -> BadSample:
    return BadSample(f"sample {raw['__key__']!r} in {raw['__url__']}: {reason}")


def read_meta(raw: dict) -> dict:
    """The checked json of a raw webdataset sample; raises :class:`BadSample` on any problem."""
    key = raw["__key__"]
    bad = partial(_bad, raw)
    dotted = [name for name in raw if name.endswith(".json")]
    if dotted:  # "a.b.json" arrives as key "a" with member "b.json"
        raise bad(
            f"key {key + '.' + dotted[0][: -len('.json')]!r} contains a dot, and webdataset splits "
            "member names at the first dot; rename the sample"
        )
    if "json" not in raw:
        raise bad("no json member")
    meta = json.loads(raw["json"])
    problems = validate_meta(meta)
    if problems:
        raise bad("; ".join(problems))
    if meta["key"] != key:
        raise bad(f"its json names key {meta['key']!r}")
    return meta


def decode_sample(
    raw: dict,
    streams: Sequence[str],
    frames: int | None,
    size: tuple[int, int] | None,
    crop_scale,
    rng: np.random.Generator,
) -> dict:
    """Check a raw webdataset sample and turn its ``streams`` into float ``[3, T, H, W]`` in [-1, 1].

    The same frame window and crop apply to every stream. Raises :class:`BadSample` on any problem.
    """
    bad = partial(_bad, raw)
    meta = read_meta(raw)
    expected = (meta["frames"], meta["height"], meta["width"], 3)
    videos = {}
    for name in streams:
        member = video_member(name, meta["ext"])
        if member not in raw:
            raise bad(f"modality {name!r} is missing (no {member} member)")
        try:
            videos[name] = decode_video(raw[member])  # [T, H, W, 3]
        except VideoDecodeError as e:
            raise bad(f"{member} does not decode ({e})") from None
        if videos[name].shape != expected:
            raise bad(f"{name} has (frames, height, width) {videos[name].shape[:3]} but the json says {expected[:3]}")

    total, height, width = expected[:3]
    frames = frames or total
    if frames > total:
        raise bad(f"{total} frames, fewer than the {frames} requested")
    start = int(rng.integers(0, total - frames + 1))
    top, left, h, w = _crop_box(height, width, size, crop_scale, rng) if size else (0, 0, height, width)
    sample = {"meta": meta}
    for name, video in videos.items():
        clip = video[start : start + frames, top : top + h, left : left + w]  # [T, h, w, 3]
        if size:
            clip = _resize(clip, size, INTERPOLATION[name])
        sample[name] = _to_unit(clip)  # [3, T, H, W]
    return sample


def load_precomputed(raw: dict, streams: Sequence[str]) -> dict:
    """Check a raw sample and read its precomputed latents and text embeddings; raises :class:`BadSample`."""
    meta = read_meta(raw)
    try:
        return {"meta": meta, **read_precomputed(raw, meta, streams)}
    except ValueError as e:
        raise _bad(raw, str(e)) from None


def load_external(raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A raw sample's external caption features ``[L, W]`` and mask ``[L]``; raises :class:`BadSample`."""
    try:
        return read_external(raw)
    except ValueError as e:
        raise _bad(raw, str(e)) from None
