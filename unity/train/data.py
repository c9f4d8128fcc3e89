"""The run's data: synthetic splits built on first use (once per node), and the loaders over them."""

from __future__ import annotations

import json
import os
from datetime import timedelta

from data_pipeline.loader import VideoLoader, make_loader
from data_pipeline.precomputed import LatentCrop
from data_pipeline.synthetic import WORLD_VERSION
from data_pipeline.synthetic.build import build_synthetic
from unity.train import distributed
from unity.train.precomputed_set import PrecomputedSet


def split_dir(config, split: str) -> str:
    return os.path.join(config.data.root, split)


RENDER_WAIT = timedelta(hours=6)  # how long the other ranks wait for the first-use rendering


def ensure_synthetic_splits(config) -> None:
    """Render the synthetic train / val / test splits that ``data.root`` lacks; every rank waits for them.

    With several ranks the process group starts here, so that the wait is a real barrier. A
    ``data.root`` that every node sees (a shared file system) is rendered once, by rank 0; a node-local
    one once per node, by its local rank 0 (the world is seeded: every node renders the same clips).
    The test split carries raw ground truth (``--with-gt``) for evaluation.
    """
    synth = config.data.synth
    wanted = {"train": synth.train_clips, "val": synth.val_clips, "test": synth.test_clips}
    missing = [s for s in wanted if not os.path.isfile(os.path.join(split_dir(config, s), "dataset.json"))]
    for split in set(wanted) - set(missing):
        check_geometry(config, split)
    distributed.start()
    several = distributed.world_size() > 1
    if several and not distributed.shared_folder(config.data.root):
        renders = distributed.local_rank() == 0
    else:
        renders = distributed.rank() == 0
    if renders:
        for split in missing:
            build_synthetic(
                split_dir(config, split),
                wanted[split],
                frames=config.data.frames,
                size=config.data.size,
                seed=synth.seed,
                split=split,
                with_gt=split == "test",
                shard_size=synth.shard_size,
            )
    if several:
        distributed.barrier(timeout=RENDER_WAIT)


def check_geometry(config, split: str) -> None:
    """Stop when a synthetic split is from an older world or holds clips of another size than the config asks for."""
    with open(os.path.join(split_dir(config, split), "dataset.json")) as f:
        info = json.load(f)
    if info.get("source") != "synthetic":  # real footage (ingest, import): the loader fits it to the clip size
        return
    if info.get("source") == "synthetic" and info.get("world", 1) != WORLD_VERSION:
        raise ValueError(
            f"{split_dir(config, split)} was rendered by version {info.get('world', 1)} of the synthetic "
            f"world, this code renders version {WORLD_VERSION}; delete {config.data.root} to rebuild it"
        )
    args = info.get("args", {})
    found = (args.get("frames"), args.get("size"))
    if None not in found and found != (config.data.frames, config.data.size):
        raise ValueError(
            f"{split_dir(config, split)} holds {found[0]}-frame {found[1]}x{found[1]} clips but the config "
            f"asks for data.frames={config.data.frames}, data.size={config.data.size}; point data.root "
            "at another folder (it is built when absent) or change the config"
        )


def _clip_shape(config, precomputed: PrecomputedSet | None, crop: LatentCrop | None) -> dict:
    """The loader's clip arguments: a pixel window and size, or a window of precomputed latent cells."""
    if precomputed is None:
        return {"frames": config.data.frames, "size": config.data.size}
    return {"precomputed": True, "latent_crop": crop}


def train_loader(config, seed: int, rank: int | None = None, precomputed: PrecomputedSet | None = None) -> VideoLoader:
    """Endless, resampled batches of the train split (each data-parallel ``rank`` draws its own shards;
    None = the process rank); latents and text embeddings when the run trains from ``precomputed`` shards."""
    data = config.data
    return make_loader(
        split_dir(config, "train"),
        list(data.modalities),
        data.batch_size,
        **_clip_shape(config, precomputed, precomputed and precomputed.crop),
        crop_scale=tuple(data.crop_scale),
        shuffle_buffer=data.shuffle_buffer,
        resampled=True,
        num_workers=data.num_workers,
        seed=seed,
        rank=rank,
        external=config.model.text_encoder == "external",
    )


def fixed_loader(config, split: str, batch_size: int, precomputed: PrecomputedSet | None = None) -> VideoLoader:
    """One pass over a held-out split in shard order, full frames, no crop (precomputed latents: the
    first frames and the centre): the same batches every time, on every rank."""
    data = config.data
    return make_loader(
        split_dir(config, split),
        list(data.modalities),
        batch_size,
        **_clip_shape(config, precomputed, precomputed and precomputed.validation_crop()),
        crop_scale=(1.0, 1.0),
        shuffle_buffer=0,
        shardshuffle=False,
        split_by_node=False,
        external=config.model.text_encoder == "external",
    )
