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

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.modalities import MODALITIES
from data_pipeline.precomputed import collate_external, read_external
from data_pipeline.schema import EXTERNAL_MEMBER
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


def _samples(root: str):
    shards, _ = list_shards(root)
    if not shards:
        raise FileNotFoundError(
            f"{root} holds no shards (*.tar); build one with `python -m data_pipeline synth "
            f"--out {root} --clips N --with-gt`"
        )
    return itertools.chain.from_iterable(iter_samples(path) for path in shards)


def load_clips(root: str, limit: int | None = None, need_gt: bool = True) -> list[BenchmarkClip]:
    """Up to ``limit`` clips of the shard folder ``root``; with ``need_gt`` each must carry raw ground truth."""
    clips = []
    for key, members in itertools.islice(_samples(root), limit):
        meta = json.loads(members["json"])
        if need_gt and not meta.get("gt"):
            raise ValueError(f"{root}: sample {key} has no raw ground truth; build the split with `synth --with-gt`")
        videos = {name: decode_video(members[f"{name}.{meta['ext']}"]) for name in meta["modalities"]}
        gt = {name: np.load(io.BytesIO(members[f"{name}.npy"])) for name in meta.get("gt", [])}
        external = read_external(members) if EXTERNAL_MEMBER in members else None
        clips.append(BenchmarkClip(key, meta["caption"], meta.get("prompts", {}), meta, videos, gt, external))
    return clips


def clip_features(clips: list[BenchmarkClip]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The clips' external caption features batched (``[B, L, W]``, ``[B, L]``), or None when they have none."""
    if any(c.external is None for c in clips):
        return None
    return collate_external([c.external for c in clips])


def training_prior(root: str, modality: str, limit: int = 256) -> np.ndarray:
    """The per-pixel mean visual form uint8 ``[T, H, W, 3]`` of ``modality`` over up to ``limit`` training clips.

    Only for continuous visual forms (rgb, depth, flow): the colours of seg, pose and densepose are
    labels, and their trivial prediction is the background (an all-black video), not an average.
    """
    if modality in CATEGORICAL or modality not in MODALITIES:
        raise ValueError(
            f"no mean prior for {modality!r}; continuous modalities: "
            f"{', '.join(m for m in MODALITIES if m not in CATEGORICAL)}"
        )
    total, count = None, 0
    for _, members in itertools.islice(_samples(root), limit):
        video = decode_video(members[f"{modality}.{json.loads(members['json'])['ext']}"]).astype(np.float64)
        total = video if total is None else total + video
        count += 1
    return np.rint(total / count).astype(np.uint8)
