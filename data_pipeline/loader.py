"""Training batches from webdataset shards (docs/architecture.md, "Data"): shard split, shuffling, per-sample decoding
(``decode.py``: frame windows and crops, or precomputed latents and text embeddings), batching,
skipping of bad samples, and a resumable position.

Every random choice is a function of ``(seed, epoch, rank, worker, raw position)`` and never of
torch's per-worker seeds, so a loader restarted from :meth:`VideoLoader.state_dict` yields exactly
the batches the saved one would have yielded next. A restart skips the raw samples each worker had
already read before decoding anything, and it rotates the workers so that the DataLoader's
round-robin (batch ``i`` from worker ``i % W``) begins with the worker whose batch was due.
"""

from __future__ import annotations

import collections
import copy
import glob
import itertools
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import cv2
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset

from data_pipeline.decode import INTERPOLATION, BadSample, decode_sample, load_external, load_precomputed
from data_pipeline.precomputed import LatentCrop, collate_external, collate_precomputed

log = logging.getLogger(__name__)


def find_shards(root: str | os.PathLike | Sequence[str]) -> list[str]:
    """Shard paths listed by ``<root>/dataset.json`` (else the folder's ``*.tar``), or the paths given."""
    if isinstance(root, (str, os.PathLike)):
        root = os.fspath(root)
        if not os.path.isdir(root):
            shards = [root]
        elif os.path.exists(listing := os.path.join(root, "dataset.json")):
            with open(listing) as f:
                shards = [os.path.join(root, shard["name"]) for shard in json.load(f)["shards"]]
        else:
            shards = sorted(glob.glob(os.path.join(root, "*.tar")))
    else:
        shards = [os.fspath(path) for path in root]
    if not shards:
        raise ValueError(f"no shards in {root!r}: give a folder with dataset.json or .tar files, or shard paths")
    missing = [path for path in shards if not os.path.isfile(path)]
    if missing:
        raise ValueError(f"{len(missing)} shard file(s) not found, e.g. {missing[0]}")
    return shards


def _stack_rgb(clips: list[np.ndarray]) -> torch.Tensor:
    """Decoded clips (uint8 ``[T, H, W, 3]``, BGR) as one uint8 batch ``[B, 3, T, H, W]`` in RGB.

    Each frame is turned RGB as it is copied into the batch (one pass for both), in a DataLoader worker
    straight into shared memory (as ``default_collate`` does: a batch in ordinary memory would be copied
    there once more to reach the main process). The batch is a channels-last ``[B, T, H, W, 3]`` buffer
    seen as ``[B, 3, T, H, W]``: laying it out planar is left to the device, with the float conversion.
    """
    shape = clips[0].shape
    for clip in clips:
        if clip.shape != shape:
            raise ValueError(f"clips of a batch must share their shape, got {clip.shape} and {shape}")
    if torch.utils.data.get_worker_info() is not None:
        storage = torch.UntypedStorage._new_shared(len(clips) * clips[0].size)
        out = torch.empty(0, dtype=torch.uint8).set_(storage).view(len(clips), *shape)
    else:
        out = torch.empty((len(clips), *shape), dtype=torch.uint8)
    for clip, target in zip(clips, out.numpy()):
        for frame, rgb in zip(clip, target):
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
    return out.permute(0, 4, 1, 2, 3)  # [B, 3, T, H, W]


def collate(samples: list[dict], streams: Sequence[str], worker: int, counter: SkipCounter) -> dict:
    """Stack decoded (or precomputed) samples into a batch; ``_position`` tells how far ``worker`` has read.

    ``skipped`` adds to the samples' own counts what ``counter`` met since the last one was decoded,
    which is only non-zero for a worker's last batch, when bad samples end its share.
    """
    if "latent" in samples[0]:
        batch = collate_precomputed(samples, streams)
    else:
        batch = {name: _stack_rgb([s[name] for s in samples]) for name in streams}  # [B, 3, T, H, W]
    if "external" in samples[0]:
        batch["external"] = collate_external([s["external"] for s in samples])
    batch["caption"] = [s["meta"]["caption"] for s in samples]
    batch["prompts"] = {name: [s["meta"]["prompts"][name] for s in samples] for name in streams if name != "rgb"}
    batch["meta"] = [s["meta"] for s in samples]
    batch["key"] = [s["meta"]["key"] for s in samples]
    batch["skipped"] = sum(s["skipped"] for s in samples) + counter.take()
    batch["_position"] = (worker, samples[-1]["position"])
    return batch


# ---------------------------------------------------------------------------------------------
# Pipeline stages of one worker.


def _seed(*parts: int) -> int:
    """A seed mixing ``parts``, the same in every process (unlike Python's ``hash`` of strings)."""
    return int(np.random.SeedSequence(parts).generate_state(1)[0])


class SkipCounter:
    """webdataset error handler: log the problem in one line, count it, and carry on."""

    def __init__(self):
        self.count = 0

    def __call__(self, exn: Exception) -> bool:
        reason = str(exn) if isinstance(exn, BadSample) else f"{type(exn).__name__}: " + ", ".join(map(str, exn.args))
        log.warning("skipped %s", reason)
        self.count += 1
        return True

    def take(self) -> int:
        """The count since the last ``take``."""
        count, self.count = self.count, 0
        return count


def _split_by_worker(shards: Iterator[dict], worker: int, workers: int) -> Iterator[dict]:
    """``wds.split_by_worker`` for the rotated worker index a restarted loader uses."""
    yield from itertools.islice(shards, worker, None, workers)


def _number_from(raws: Iterator[dict], start: int, counter: SkipCounter) -> Iterator[dict]:
    """Number raw samples 1, 2, ... and drop the first ``start`` undecoded: a restart read them before."""
    numbered = enumerate(raws, 1)
    collections.deque(itertools.islice(numbered, start), maxlen=0)
    counter.take()  # problems met before the restart point were counted by the run that saved it
    for position, raw in numbered:
        raw["__position__"] = position
        yield raw


def worker_quota(epoch_samples: int, batch_size: int, workers: int, worker: int) -> int:
    """Samples ``worker`` gives an epoch: batch ``j`` comes from worker ``j % workers``, only the last is partial."""
    batches = -(-epoch_samples // batch_size)
    return sum(min(batch_size, epoch_samples - j * batch_size) for j in range(worker, batches, workers))


@dataclass
class Position:
    """How far an epoch has gone: per worker, the raw samples read and the samples delivered in batches."""

    epoch: int
    next_worker: int  # the worker whose batch comes next
    read: list[int]
    delivered: list[int]

    @classmethod
    def start_of(cls, epoch: int, workers: int) -> Position:
        return cls(epoch, 0, [0] * workers, [0] * workers)


@dataclass
class ShardDataset(IterableDataset):
    """One epoch of batches for this rank and DataLoader worker, from ``start`` on (see :func:`make_loader`)."""

    shards: list[str]
    streams: list[str]
    batch_size: int
    frames: int | None
    size: tuple[int, int] | None
    crop_scale: tuple[float, float]
    shuffle_buffer: int
    shardshuffle: bool
    resampled: bool
    epoch_samples: int | None
    workers: int
    seed: int
    precomputed: bool
    split_by_node: bool
    rank: int | None = None  # the rank whose random draws these are; None = the process rank
    external: bool = False  # also read each sample's external caption features
    latent_crop: LatentCrop | None = None  # the window cut from precomputed latents; None keeps them whole
    start: Position = field(init=False)

    def __post_init__(self):
        self.start = Position.start_of(0, self.workers)

    def __iter__(self) -> Iterator[dict]:
        process_rank, _, worker, _ = wds.utils.pytorch_worker_info()
        rank = process_rank if self.rank is None else self.rank
        worker = (worker + self.start.next_worker) % self.workers  # DataLoader worker 0 plays the worker due next
        epoch = self.start.epoch
        counter = SkipCounter()
        if self.resampled:
            source = [
                wds.ResampledShards(
                    self.shards, worker_seed=partial(_seed, self.seed, epoch, rank, worker), deterministic=True
                )
            ]
        else:  # the same shuffled order on every rank and worker, then a disjoint share of it
            order_seed = _seed(self.seed, epoch) if self.shardshuffle else None
            node_split = [wds.split_by_node] if self.split_by_node else []
            source = [
                wds.SimpleShardList(self.shards, seed=order_seed),
                *node_split,
                partial(_split_by_worker, worker=worker, workers=self.workers),
            ]
        stages = source + [wds.tarfile_to_samples(handler=counter)]
        if self.shuffle_buffer > 1:
            rng = random.Random(_seed(self.seed, epoch, rank, worker))
            stages.append(wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer, rng=rng))
        stages.append(partial(_number_from, start=self.start.read[worker], counter=counter))

        def decode(raw: dict) -> dict:
            rng = np.random.default_rng((self.seed, epoch, rank, worker, raw["__position__"]))
            if self.precomputed:
                sample = load_precomputed(raw, self.streams, self.latent_crop, rng)
            else:
                sample = decode_sample(raw, self.streams, self.frames, self.size, self.crop_scale, rng)
            if self.external:
                sample["external"] = load_external(raw)
            return {**sample, "position": raw["__position__"], "skipped": counter.take()}

        samples = wds.DataPipeline(*stages, wds.map(decode, handler=counter))
        if self.epoch_samples is not None:
            quota = worker_quota(self.epoch_samples, self.batch_size, self.workers, worker)
            if quota <= self.start.delivered[worker]:
                return iter(())
            samples = samples.with_epoch(quota - self.start.delivered[worker])
        batch = partial(collate, streams=self.streams, worker=worker, counter=counter)
        return iter(wds.DataPipeline(samples, wds.batched(self.batch_size, collation_fn=batch, partial=True)))


# ---------------------------------------------------------------------------------------------
# The loader.


def _as_is(batch: dict) -> dict:
    return batch


class VideoLoader:
    """Iterates batches one epoch per ``iter`` and keeps its :class:`Position` as batches are taken.

    A new ``iter`` continues from the current position (a run that stopped mid-epoch goes on where it
    stopped); an epoch that runs to its end moves the position to the start of the next one.
    """

    def __init__(self, dataset: ShardDataset, num_workers: int, pin_memory: bool = False):
        self.dataset, self.num_workers, self.pin_memory = dataset, num_workers, pin_memory
        self.position = Position.start_of(0, dataset.workers)

    def __iter__(self) -> Iterator[dict]:
        self.dataset.start = copy.deepcopy(self.position)  # workers fork with it at DataLoader iteration
        # Batches are already tensors; the default collate_fn (default_convert) would only walk every json.
        loader = DataLoader(
            self.dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory, collate_fn=_as_is
        )
        for batch in loader:
            worker, read = batch.pop("_position")
            self.position.read[worker] = read
            self.position.delivered[worker] += len(batch["key"])
            self.position.next_worker = (worker + 1) % self.dataset.workers
            yield batch
        self.position = Position.start_of(self.position.epoch + 1, self.dataset.workers)

    def state_dict(self) -> dict:
        """The position after the batches taken so far, as plain ints (this rank's only)."""
        return {
            **asdict(self.position),
            "workers": self.dataset.workers,
            "seed": self.dataset.seed,
            "batch_size": self.dataset.batch_size,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue from a saved position; the loader must have the same workers, seed and batch size."""
        for name in ("workers", "seed", "batch_size"):
            if state[name] != getattr(self.dataset, name):
                raise ValueError(
                    f"the saved loader position is for {name}={state[name]} but this loader has "
                    f"{name}={getattr(self.dataset, name)}, so it cannot continue from it"
                )
        self.position = Position(state["epoch"], state["next_worker"], list(state["read"]), list(state["delivered"]))


def make_loader(
    root: str | os.PathLike | Sequence[str],
    modalities: Sequence[str],
    batch_size: int,
    *,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    crop_scale: tuple[float, float] = (0.8, 1.0),
    shuffle_buffer: int = 64,
    shardshuffle: bool = True,
    resampled: bool = False,
    epoch_samples: int | None = None,
    num_workers: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
    precomputed: bool = False,
    split_by_node: bool = True,
    rank: int | None = None,
    external: bool = False,
    latent_crop: LatentCrop | None = None,
) -> VideoLoader:
    """Batches of clips for training, as dicts::

        rgb, <mod>   uint8 [B, 3, T, H, W], one per stream (a channels-last buffer; the trainer scales
                     it to [-1, 1] on its device, 4x fewer bytes to move than floats)
        caption      list[str];  prompts: {mod: list[str]};  meta: list[dict] (each sample's json)
        key          list[str]
        skipped      int: samples (and unreadable shard parts) this worker skipped since its previous batch

    or, with ``precomputed``, instead of ``rgb`` and ``<mod>``::

        latent       {stream: float32 [B, C, T', H', W']}, the codec's latents of the whole stored clip
        text         {"caption": float32 [B, L, D], "caption_mask": bool [B, L] (True on real tokens),
                      "prompt": {mod: [B, L, D]}, "prompt_mask": {mod: [B, L]}}, zero / False padded
                      to the longest text of the batch

    and, with ``external``, ``external``: ``(features float32 [B, L, W], mask bool [B, L])``, the
    captions' external-encoder features zero / False padded to the longest of the batch.

    root: a folder with ``dataset.json`` (else its ``*.tar`` files), or shard path(s).
    modalities: auxiliary streams to load besides rgb (a name in ``INTERPOLATION``); a sample
        lacking one is skipped.
    batch_size: samples per batch. Each worker forms whole batches; its last batch of an epoch may
        be partial.
    frames: a random window of this many consecutive frames, the same for every stream of a sample;
        None keeps all (clips must then share a length).
    size: output ``(height, width)`` (an int for a square). Each sample takes a random crop holding a
        ``crop_scale`` fraction of its area at that aspect, the same for every stream, and resizes it
        (nearest pixel for seg, pose, densepose; area average for the rest). None keeps the full frame.
    crop_scale: ``(low, high)`` range of the crop's area fraction, within (0, 1].
    shuffle_buffer: raw samples held for shuffling in each worker; 0 or 1 keeps shard order.
    shardshuffle: shuffle the shard order every epoch (the same order on every rank, before splitting).
    resampled: draw shards with replacement, independently per rank and worker, instead of splitting
        them (``split_by_node`` then ``split_by_worker``). Use it with ``epoch_samples`` when several
        ranks train, so that every rank gets the same number of batches.
    epoch_samples: with ``resampled``, samples per epoch on each rank, exactly:
        ``ceil(epoch_samples / batch_size)`` batches, of which only the last may be partial. None with
        ``resampled`` makes the epoch endless.
    num_workers: DataLoader worker processes (0 loads in this process). Each worker reads its own
        shards; the DataLoader takes batches from them in turn.
    seed: non-negative; with the epoch, rank, worker and position it fixes every random choice.
    pin_memory: pin batches in page-locked memory for faster copies to the GPU.
    split_by_node: without ``resampled``, give each rank its own share of the shards; False gives every
        rank the same samples (held-out data that all ranks must see, as ZeRO-3 forwards need every rank).
    precomputed: read the ``latent.<mod>.safetensors`` and ``text.safetensors`` members written by
        ``python -m unity.precompute`` instead of decoding videos; a sample lacking them is skipped.
        Latents are of the whole stored clip, so ``frames`` and ``size`` must be None (no pixel window,
        no resize), and samples must share their latent shape.
    latent_crop: with ``precomputed``, the window of latent cells cut from every sample, on the
        codec's grid (:class:`~data_pipeline.precomputed.LatentCrop`); None keeps the latents whole.
    rank: with ``resampled``, the rank whose draws this loader makes in place of the process rank:
        processes given the same rank and seed yield the same batches (the ranks of a sequence-parallel
        group, which split each sample's tokens). None takes the process rank.
    external: read the ``external.safetensors`` member written by ``python -m data_pipeline external``
        (features for ``model.text_encoder: external``); a sample lacking it is skipped.

    The epoch advances each time an iteration runs to its end. ``state_dict()`` / ``load_state_dict()``
    save and restore the position of this rank, after which the loader yields exactly the batches the
    saved one would have yielded next.
    """
    streams = list(dict.fromkeys(["rgb", *modalities]))
    unknown = [name for name in streams if name not in INTERPOLATION]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; known: {', '.join(INTERPOLATION)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be at least 1 or None, got {frames}")
    if isinstance(size, int):
        size = (size, size)
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be a positive int or (height, width), got {size}")
    if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {crop_scale}")
    if epoch_samples is not None and (not resampled or epoch_samples < 1):
        raise ValueError(f"epoch_samples needs resampled=True and a positive count, got {epoch_samples}")
    if precomputed and (frames is not None or size is not None):
        raise ValueError(
            "frames and size do not apply to precomputed latents, which cover the whole stored clip; "
            "leave them None (precompute at the wanted size, or cut a window with latent_crop)"
        )
    if latent_crop is not None and not precomputed:
        raise ValueError("latent_crop applies to precomputed latents only (precomputed=True)")
    if rank is not None and (not resampled or rank < 0):
        raise ValueError(f"rank needs resampled=True and a non-negative value, got {rank}")
    if num_workers < 0 or seed < 0:
        raise ValueError(f"num_workers and seed must be non-negative, got {num_workers} and {seed}")
    size = None if size is None else tuple(size)
    dataset = ShardDataset(
        find_shards(root),
        streams,
        batch_size,
        frames,
        size,
        tuple(crop_scale),
        shuffle_buffer,
        shardshuffle,
        resampled,
        epoch_samples,
        max(1, num_workers),
        seed,
        precomputed,
        split_by_node,
        rank,
        external,
        latent_crop,
    )
    return VideoLoader(dataset, num_workers, pin_memory)
