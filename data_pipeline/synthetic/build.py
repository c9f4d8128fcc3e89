"""Render synthetic clips and write them as shards: the ``synth`` command."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from functools import partial

from tqdm import tqdm

from data_pipeline.card import SYNTHETIC_ESTIMATORS, SYNTHETIC_LICENSE, card
from data_pipeline.modalities import MODALITIES
from data_pipeline.schema import SCHEMA_VERSION, gt_member, video_member
from data_pipeline.synthetic import SPLITS, WORLD_VERSION, SyntheticClip, render_clip
from data_pipeline.video_io import encode_video
from data_pipeline.writer import ShardWriter, npy_bytes

EXT = "mkv"


def clip_seed(seed: int, index: int) -> int:
    """The renderer seed of clip ``index`` of a set built with ``seed``."""
    return seed * 10_000_000 + index


def raw_streams(clip: SyntheticClip) -> dict:
    """Raw ground truth of every modality, in the registry's raw forms."""
    return {
        "rgb": clip.rgb,
        "depth": clip.depth,
        "flow": clip.flow,
        "seg": clip.seg,
        "pose": clip.keypoints,
        "densepose": clip.densepose,
    }


def clip_to_sample(clip: SyntheticClip, key: str, split: str, seed: int, with_gt: bool) -> dict:
    """Encode a rendered clip into shard members ``{"json": dict, "<mod>.mkv": bytes, ...}``."""
    raw = raw_streams(clip)
    t, h, w, _ = clip.rgb.shape
    encoding, sample = {name: {} for name in MODALITIES}, {}
    encoding["pose"].update(height=h, width=w)  # the skeleton canvas cannot be inferred from keypoints
    for name, modality in MODALITIES.items():
        sample[video_member(name, EXT)] = encode_video(modality.encode(raw[name], encoding[name]), EXT, clip.fps)
    gt = {}
    if with_gt:
        gt = {name: raw[name] for name in ("depth", "flow", "seg", "pose", "densepose")}
        gt["occlusion"] = clip.occlusion
        sample.update({gt_member(name): npy_bytes(array) for name, array in gt.items()})
    sample["json"] = {
        "schema": SCHEMA_VERSION,
        "key": key,
        "caption": clip.caption,
        "fps": clip.fps,
        "frames": t,
        "height": h,
        "width": w,
        "source": "synthetic",
        "world": WORLD_VERSION,
        "split": split,
        "modalities": list(MODALITIES),
        "ext": EXT,
        "prompts": dict(clip.prompts),
        "encoding": encoding,
        "gt": list(gt),
        "seed": seed,
        "camera": {
            "motion": clip.camera_motion,
            "intrinsics": clip.intrinsics.tolist(),
            "world_to_camera": clip.world_to_camera.tolist(),
        },
        "objects": clip.objects,
        "seg_targets": [int(i) for i in clip.seg_targets],
        "scene": clip.meta,
    }
    return sample


def _render_sample(index: int, seed: int, frames: int, size: int, split: str, with_gt: bool) -> dict:
    rseed = clip_seed(seed, index)
    clip = render_clip(rseed, frames=frames, size=size, split=split)
    return clip_to_sample(clip, f"synth-{split}-{seed}-{index:06d}", split, rseed, with_gt)


def build_synthetic(
    out: str,
    clips: int,
    *,
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
    split: str = "train",
    with_gt: bool = False,
    shard_size: int = 64,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Render ``clips`` clips of ``split`` into shards under ``out``; returns ``dataset.json``."""
    if split not in SPLITS:
        raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    if clips < 1 or frames < 2 or size < 16:
        raise ValueError(f"need clips >= 1, frames >= 2 and size >= 16; got {clips}, {frames}, {size}")
    workers = max(1, min(workers or os.cpu_count() or 1, clips))
    info = {
        "source": "synthetic",
        "world": WORLD_VERSION,
        "split": split,
        "args": {"clips": clips, "frames": frames, "size": size, "seed": seed, "with_gt": with_gt},
        **card(SYNTHETIC_LICENSE, None, SYNTHETIC_ESTIMATORS),
    }
    render = partial(_render_sample, seed=seed, frames=frames, size=size, split=split, with_gt=with_gt)
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers))
            samples = pool.imap(render, range(clips), chunksize=2)
        else:
            samples = map(render, range(clips))
        writer = stack.enter_context(ShardWriter(out, prefix=split, shard_size=shard_size, info=info))
        for sample in tqdm(samples, total=clips, desc=f"synth {split}", unit="clip", disable=not progress):
            writer.write(sample)
    return writer.dataset
