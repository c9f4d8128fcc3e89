"""Benchmark clips straight from a shard folder: every stream's visual form, the raw ground truth, the metadata.

Evaluation needs whole clips with their exact ground truth (``synth --with-gt``), not training
batches, so this reads the tars directly (``data_pipeline.check``), keeps the stored clip shape,
and computes the trivial prior the benchmarks compare against: the mean visual form over training
clips.
"""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import dataclass

import numpy as np
import torch

from data_pipeline.check import Skips, iter_samples, list_shards
from data_pipeline.modalities import MODALITIES
from data_pipeline.precomputed import collate_external, read_external
from data_pipeline.schema import EXTERNAL_MEMBER, stream_member
from data_pipeline.video_io import decode_video

CATEGORICAL = ("seg", "pose", "densepose")  # visual forms whose colours are labels: never averaged or blended


@dataclass
class BenchmarkClip:
    key: str
    caption: str
    prompts: dict[str, str]  # per auxiliary modality
    meta: dict  # the sample json (encoding parameters under meta["encoding"][modality])
    videos: dict[str, np.ndarray]  # visual forms uint8 [T, H, W, 3], rgb included
    gt: dict[str, np.ndarray]  # raw ground truth by name (depth, flow, occlusion, seg, pose, densepose)
    external: tuple[torch.Tensor, torch.Tensor] | None = None  # the caption's external features [L, W], mask [L]

    def encoding(self, modality: str) -> dict:
        """The parameters ``decode`` needs for this clip's ``modality`` (a copy)."""
        return dict(self.meta.get("encoding", {}).get(modality, {}))


def _samples(root: str, skips: Skips):
    shards, _ = list_shards(root)
    if not shards:
        raise FileNotFoundError(
            f"{root} holds no shards (*.tar); build one with `python -m data_pipeline synth "
            f"--out {root} --clips N --with-gt`"
        )
    return itertools.chain.from_iterable(iter_samples(path, skips) for path in shards)


class NoGroundTruth(ValueError):
    """A clip without the raw ground truth evaluation needs: the split was built without it."""


def _readable(root: str, skips: Skips, read):
    """``read(key, members)`` of every sample of ``root`` it can read; damaged samples go to ``skips``."""
    for key, members in _samples(root, skips):
        try:
            yield read(key, members)
        except NoGroundTruth:
            raise
        except (KeyError, ValueError, OSError) as e:  # a missing member, an undecodable video or array
            skips.add(f"sample {key!r} of {root}", f"{type(e).__name__}: {e}")


def load_clips(
    root: str, limit: int | None = None, need_gt: bool = True, skips: Skips | None = None
) -> list[BenchmarkClip]:
    """Up to ``limit`` clips of the shard folder ``root``; with ``need_gt`` each must carry raw ground truth.

    Damaged shards and samples are left out and counted in ``skips``.
    """

    def read(key: str, members: dict) -> BenchmarkClip:
        meta = json.loads(members["json"])
        if need_gt and not meta.get("gt"):
            raise NoGroundTruth(f"{root}: sample {key} has no raw ground truth; build the split with `synth --with-gt`")
        videos = {name: decode_video(members[stream_member(meta, name)]) for name in meta["modalities"]}
        gt = {name: np.load(io.BytesIO(members[f"{name}.npy"])) for name in meta.get("gt", [])}
        external = read_external(members) if EXTERNAL_MEMBER in members else None
        return BenchmarkClip(key, meta["caption"], meta.get("prompts", {}), meta, videos, gt, external)

    return list(itertools.islice(_readable(root, Skips() if skips is None else skips, read), limit))


def clip_features(clips: list[BenchmarkClip]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The clips' external caption features batched (``[B, L, W]``, ``[B, L]``), or None when they have none."""
    if any(c.external is None for c in clips):
        return None
    return collate_external([c.external for c in clips])


def training_prior(root: str, modality: str, limit: int = 256, skips: Skips | None = None) -> np.ndarray:
    """The per-pixel mean visual form uint8 ``[T, H, W, 3]`` of ``modality`` over up to ``limit`` training clips.

    Only for continuous visual forms (rgb, depth, flow): the colours of seg, pose and densepose are
    labels, and their trivial prediction is the background (an all-black video), not an average.
    Damaged shards and samples are left out and counted in ``skips``.
    """
    if modality in CATEGORICAL or modality not in MODALITIES:
        raise ValueError(
            f"no mean prior for {modality!r}; continuous modalities: "
            f"{', '.join(m for m in MODALITIES if m not in CATEGORICAL)}"
        )

    def read(_, members: dict) -> np.ndarray:
        return decode_video(members[stream_member(json.loads(members["json"]), modality)])

    total, count = None, 0
    for video in itertools.islice(_readable(root, Skips() if skips is None else skips, read), limit):
        total = video.astype(np.float64) if total is None else total + video
        count += 1
    if count == 0:
        raise ValueError(f"{root}: no readable {modality} clip to average (see the warnings above)")
    return np.rint(total / count).astype(np.uint8)
