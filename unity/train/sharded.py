"""Sharded checkpoints: every rank saves what it holds; the full weights are gathered only where asked.

Gathering the full fp32 weights and their EMA on rank 0 at every save costs 8 bytes per parameter on
one host (56 GB at 7 B parameters) and the time to move them. Under DeepSpeed a checkpoint therefore
always holds the *sharded* training state, written by every rank at once with nothing gathered::

    step_XXXXXXX/engine/deepspeed/      DeepSpeed's own files: each rank's partition of the fp32 weights
                                        and of the optimizer (ZeRO 1-3), the module's states
                /ema_shards/rank_RRRRR.safetensors
                                        each rank's ZeRO-3 partition of the EMA; rank 0's file also holds
                                        the EMA tensors that are not partitioned (all of them under ZeRO 0-2)
                /state.json             ``layout``: engine, ZeRO stage, world size, weight file names

A *consolidated* checkpoint adds ``model.safetensors`` and ``ema.safetensors`` (a LoRA run's
``adapter*``), what evaluation, sampling and ``train.init_from`` read. The trainer consolidates step 0,
the last step and every ``checkpoint.consolidate_every`` steps; :func:`consolidate` writes the same files
offline in one CPU process (``python -m unity.checkpoint consolidate``): DeepSpeed's ``zero_to_fp32`` for
the weights, the EMA shards joined in rank order. A resume reads the shards, so it needs the same number
of ranks. The plain engine holds the whole state in one process: its checkpoints are always consolidated.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from unity.method.lora import adapter_state, save_peft_adapter
from unity.train import checkpoint, distributed
from unity.train.ema import EMA
from unity.train.engine import DEEPSPEED_TAG

log = logging.getLogger(__name__)

EMA_SHARDS = "ema_shards"  # sub-folder of a checkpoint holding each rank's part of the EMA
DEEPSPEED_FILES = os.path.join("engine", DEEPSPEED_TAG)  # where DeepSpeedEngine.save_state puts DeepSpeed's files


def _shard_file(ckpt: str | os.PathLike, rank: int) -> Path:
    return Path(ckpt) / EMA_SHARDS / f"rank_{rank:05d}.safetensors"


def _read_shard(path: Path, header_only: bool = False) -> dict[str, torch.Tensor] | dict[str, str]:
    """An EMA shard file's tensors (or, ``header_only``, its metadata); a missing or damaged file is an error
    naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint's EMA shards are incomplete")
    try:
        if not header_only:
            return load_file(str(path))
        with safe_open(str(path), framework="pt") as f:  # checks the header and the file's length
            return f.metadata()
    except SafetensorError as e:
        raise ValueError(f"{path} is damaged ({e}); resume from or consolidate another checkpoint") from None


def _rank_and_world() -> tuple[int, int]:
    return (distributed.rank(), distributed.world_size()) if distributed.initialized() else (0, 1)


# ---------------------------------------------------------------------------------------------- training


def save_training_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    engine,
    ema: EMA | None,
    state: dict,
    *,
    consolidate: bool,
    lora: bool = False,
    names: tuple[str, str] = checkpoint.WEIGHTS,
    keep_last: int = 3,
    adapter_config: dict | None = None,
) -> str:
    """Save the training state at ``step`` (every rank calls it); returns the checkpoint folder.

    A sharded engine writes its own files and the EMA's shards; with ``consolidate`` (and always on the
    plain engine) rank 0 also writes the full weights and EMA under ``names``. ``lora``: the weights
    file holds the adapters alone (the base is ``train.init_from``'s). ``state``: this rank's JSON state;
    the EMA's update count and the checkpoint's layout are added to it. ``adapter_config``: a LoRA run's
    PEFT config; its adapters are then saved as PEFT adapter folders.
    """
    full = consolidate or not engine.sharded
    weights = engine.state_dict_consolidated() if full else None  # a collective under ZeRO
    if weights is not None and lora:
        weights = adapter_state(weights)
    ema_full = ema.state_dict() if full and ema is not None else None  # a collective under ZeRO-3
    _, world_size = _rank_and_world()
    layout = {
        "engine": "deepspeed" if engine.sharded else "plain",
        "zero_stage": getattr(engine, "zero_stage", 0),
        "world_size": world_size,
        "names": list(names),
        "lora": lora,
        "consolidated": full,
    }
    if adapter_config is not None:  # what an offline consolidation writes the PEFT adapter folders with
        layout["adapter_config"] = adapter_config
    state = {**state, "layout": layout}
    if ema is not None:
        state["ema_updates"] = ema.updates
    sharded = engine.sharded and ema is not None
    return checkpoint.save_checkpoint(
        run_dir,
        step,
        weights,
        ema_full,
        state,
        save_engine=engine.save_state,
        names=names,
        keep_last=keep_last,
        save_shards=(lambda folder: save_ema_shards(folder, ema)) if sharded else None,
        adapter_config=adapter_config,
    )


def restore_ema(ckpt: str | os.PathLike, ema: EMA, name: str = checkpoint.WEIGHTS[1]) -> None:
    """Load a checkpoint's EMA into ``ema``: from the shards when it has them, else from ``<name>.safetensors``;
    and its update count (a checkpoint saved before the count was kept resumes the warm-up at its step)."""
    if (Path(ckpt) / EMA_SHARDS).is_dir():
        load_ema_shards(ckpt, ema)
    else:
        ema.load_state_dict(checkpoint.load_ema(ckpt, name))
    saved = checkpoint.read_state(ckpt)
    ema.updates = saved.get("ema_updates", saved["step"])


def save_ema_shards(ckpt: str | os.PathLike, ema: EMA) -> None:
    """Write this rank's part of the EMA into ``<ckpt>/ema_shards/`` (every rank calls it).

    Rank ``r`` writes its ZeRO-3 partitions; rank 0 also the tensors nobody partitions, with the layout
    (world size, the full shapes of partitioned tensors, tied names) in its file's metadata. A rank
    that holds no partition writes nothing.
    """
    rank, world_size = _rank_and_world()
    mine = {name: t for name, t in ema.local_state().items() if rank == 0 or name in ema.partitioned}
    if not mine:
        return
    metadata = {"format": "pt", "world_size": str(world_size)}
    if rank == 0:
        partitioned = {name: [numel, list(shape)] for name, (numel, shape) in ema.partitioned.items()}
        metadata["layout"] = json.dumps({"partitioned": partitioned, "tied": ema.tied})
    path = _shard_file(ckpt, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: t.detach().cpu().contiguous() for name, t in mine.items()}, str(path), metadata=metadata)


def _layout(ckpt: str | os.PathLike) -> tuple[int, dict]:
    """(world size, layout) from rank 0's EMA shard."""
    metadata = _read_shard(_shard_file(ckpt, 0), header_only=True)
    return int(metadata["world_size"]), json.loads(metadata["layout"])


def load_ema_shards(ckpt: str | os.PathLike, ema: EMA) -> None:
    """Restore this rank's part of the EMA from :func:`save_ema_shards` files (every rank calls it)."""
    rank, world_size = _rank_and_world()
    saved_world, _ = _layout(ckpt)
    if ema.partitioned and saved_world != world_size:
        raise ValueError(
            f"{ckpt} holds the EMA in {saved_world} ZeRO-3 shards but this run has {world_size} ranks; resume "
            f"with {saved_world} ranks, or consolidate it (python -m unity.checkpoint consolidate {ckpt}) and "
            "start a new run from it with train.init_from"
        )
    state = {name: t for name, t in _read_shard(_shard_file(ckpt, 0)).items() if name not in ema.partitioned}
    if ema.partitioned:
        own = _read_shard(_shard_file(ckpt, rank))
        state.update({name: t for name, t in own.items() if name in ema.partitioned})
    ema.load_local_state(state)


def join_ema_shards(ckpt: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full EMA state dict (model keys, fp32 averages) from a checkpoint's shards, in one process."""
    world_size, layout = _layout(ckpt)
    ranks = range(world_size) if layout["partitioned"] else [0]
    files = [_read_shard(_shard_file(ckpt, rank)) for rank in ranks]
    state = {name: t for name, t in files[0].items() if name not in layout["partitioned"]}
    for name, (numel, shape) in layout["partitioned"].items():
        # A ZeRO-3 tensor is flattened, padded to a multiple of the world size and cut in rank order.
        state[name] = torch.cat([shard[name] for shard in files])[:numel].view(shape)
    for name, source in layout["tied"].items():
        state[name] = state[source]
    return state


# ---------------------------------------------------------------------------------------------- offline


def deepspeed_weights(ckpt: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The full fp32 weights (and buffers) of a checkpoint's DeepSpeed files, on CPU, without a process group."""
    folder = Path(ckpt) / DEEPSPEED_FILES
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: {ckpt} holds no DeepSpeed state to consolidate")
    if glob.glob(str(folder / "*zero_pp_rank_*_optim_states.pt")):  # ZeRO 1-3 keep fp32 partitions there
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(folder.parent), tag=folder.name)
    else:  # ZeRO 0 in fp32: every rank's module is whole, and rank 0's states file holds it
        states = folder / "mp_rank_00_model_states.pt"
        if not states.is_file():
            raise FileNotFoundError(f"{states} is missing: the checkpoint's DeepSpeed files are incomplete")
        state = torch.load(states, map_location="cpu", weights_only=False)["module"]
    return {
        name: t.detach().to("cpu", torch.float32 if t.is_floating_point() else t.dtype) for name, t in state.items()
    }


def _save_atomically(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """``save_file`` to a temporary name, flushed, then renamed: a crash leaves no partial file under ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    save_file(checkpoint._for_safetensors(tensors), str(tmp), metadata={"format": "pt"})
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def consolidate(path: str | os.PathLike, force: bool = False) -> tuple[Path, list[str]]:
    """Write the full weights and EMA of a sharded checkpoint (or a run's latest) into its folder.

    Returns the checkpoint folder and the files written (none when it was consolidated already, unless
    ``force``). Runs in one CPU process; peak memory is about twice the full fp32 weights.
    """
    path = Path(path)
    found = checkpoint.resolve_resume(path.parent, str(path)) if path.exists() else None
    if found is None:
        raise FileNotFoundError(f"{path}: no such run or checkpoint folder")
    ckpt = Path(found)
    layout = checkpoint.read_state(ckpt, rank=0).get("layout", {})
    names = layout.get("names", list(checkpoint.WEIGHTS))
    if layout.get("engine", "plain") == "plain" or not (Path(ckpt) / DEEPSPEED_FILES).is_dir():
        if checkpoint.weights_file(ckpt, names[0]).is_file():
            return ckpt, []
        raise FileNotFoundError(f"{ckpt} holds neither {names[0]}.safetensors nor DeepSpeed files to consolidate")
    has_ema = (ckpt / EMA_SHARDS).is_dir()
    stems = names if has_ema else names[:1]
    if all(checkpoint.weights_file(ckpt, stem).is_file() for stem in stems) and not force:
        return ckpt, []
    if has_ema:  # every shard there and readable before anything is written
        world_size, layout_of_ema = _layout(ckpt)
        for rank in range(world_size) if layout_of_ema["partitioned"] else [0]:
            _read_shard(_shard_file(ckpt, rank), header_only=True)
    weights = deepspeed_weights(ckpt)
    if layout.get("lora"):
        weights = adapter_state(weights)
    written = [_write_weights(ckpt, names[0], weights, layout.get("adapter_config"))]
    del weights
    if has_ema:
        written.append(_write_weights(ckpt, names[1], join_ema_shards(ckpt), layout.get("adapter_config")))
    log.info("consolidated %s: %s", ckpt, ", ".join(written))
    return ckpt, written


def _write_weights(ckpt: Path, stem: str, tensors: dict[str, torch.Tensor], adapter_config: dict | None) -> str:
    """Write ``<stem>.safetensors``, or a LoRA run's PEFT adapter folder ``<stem>/``, atomically; returns its name."""
    if adapter_config is None:
        _save_atomically(tensors, ckpt / f"{stem}.safetensors")
        return f"{stem}.safetensors"
    tmp, final = ckpt / f"{stem}.tmp", ckpt / stem
    shutil.rmtree(tmp, ignore_errors=True)
    save_peft_adapter(tmp, tensors, adapter_config)
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return f"{stem}/"
