"""One training sample from its raw webdataset members: check the json, pick one frame window and crop for
all streams, decode each stream's window straight into a uint8 clip resized at decode (or read precomputed
latents, text embeddings and external features). Any problem is a :class:`BadSample` naming the key,
shard and reason. Pixels stay uint8 up to the device, where ``unity.method.streams`` scales them to
[-1, 1]: a float clip would be 4x the bytes to convert, batch, pass between processes and copy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import partial

import cv2
import numpy as np
import torch

from data_pipeline.precomputed import LatentCrop, read_external, read_precomputed
from data_pipeline.schema import stream_member, validate_meta
from data_pipeline.video_io import VideoDecodeError, VideoReader

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
    """Check a raw webdataset sample and decode its ``streams`` into uint8 ``[T, H, W, 3]`` clips in the
    decoder's BGR order (``collate`` turns them RGB while it copies them into the batch).

    The same frame window and crop apply to every stream; each stream's window is cropped and resized
    frame by frame as it is decoded. Raises :class:`BadSample` on any problem.
    """
    bad = partial(_bad, raw)
    meta = read_meta(raw)
    expected = (meta["frames"], meta["height"], meta["width"])
    readers = {}
    try:
        for name in streams:
            member = stream_member(meta, name)
            if member not in raw:
                raise bad(f"modality {name!r} is missing (no {member} member)")
            try:
                readers[name] = VideoReader(raw[member])
            except VideoDecodeError as e:
                raise bad(f"{member} does not decode ({e})") from None
            found = readers[name].shape
            if found != expected and (found[0] is not None or found[1:] != expected[1:]):
                raise bad(f"{name} has (frames, height, width) {found} but the json says {expected}")

        total, height, width = expected
        frames = frames or total
        if frames > total:
            raise bad(f"{total} frames, fewer than the {frames} requested")
        start = int(rng.integers(0, total - frames + 1))
        box = _crop_box(height, width, size, crop_scale, rng) if size else None
        sample = {"meta": meta}
        for name, reader in readers.items():
            try:
                sample[name] = reader.read_bgr(start, frames, box, size, INTERPOLATION[name])  # [T, H, W, 3]
            except VideoDecodeError as e:
                raise bad(f"{stream_member(meta, name)} does not decode ({e})") from None
        return sample
    finally:
        for reader in readers.values():
            reader.close()


def load_precomputed(
    raw: dict, streams: Sequence[str], crop: LatentCrop | None = None, rng: np.random.Generator | None = None
) -> dict:
    """Check a raw sample and read its precomputed latents (cut to ``crop``) and text embeddings; raises
    :class:`BadSample`."""
    meta = read_meta(raw)
    try:
        return {"meta": meta, **read_precomputed(raw, meta, streams, crop, rng)}
    except ValueError as e:
        raise _bad(raw, str(e)) from None


def load_external(raw: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """A raw sample's external caption features ``[L, W]`` and mask ``[L]``; raises :class:`BadSample`."""
    try:
        return read_external(raw)
    except ValueError as e:
        raise _bad(raw, str(e)) from None
