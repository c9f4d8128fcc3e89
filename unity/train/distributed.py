"""This process's place among the ranks: rank, world size and local rank, defined once.

Before ``torch.distributed`` is initialised they come from the launcher's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, set by torchrun and deepspeed); after it, from the process group.
"""

from __future__ import annotations

import os
import uuid
from datetime import timedelta

import torch
import torch.distributed as dist


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """Global rank (0 in a single process)."""
    return dist.get_rank() if initialized() else int(os.environ.get("RANK", 0))


def world_size() -> int:
    """Number of ranks (1 in a single process)."""
    return dist.get_world_size() if initialized() else int(os.environ.get("WORLD_SIZE", 1))


def local_rank() -> int:
    """Rank on this node: the device index of this process."""
    return int(os.environ.get("LOCAL_RANK", 0))


def barrier(timeout: timedelta | None = None) -> None:
    """Wait for every rank; nothing in a single process. ``timeout``: wait that long at most (through a
    gloo group of its own), for waits longer than the process group's (e.g. data rendered meanwhile)."""
    if not initialized():
        return
    if timeout is None:
        dist.barrier()
    else:
        dist.barrier(group=dist.new_group(backend="gloo", timeout=timeout))


def start() -> None:
    """Start the default process group from the launcher's environment (nccl on GPU, gloo on CPU) when
    several ranks were launched and it is not started yet, so that collectives work before the engine
    exists (DeepSpeed then takes this group over)."""
    if initialized() or world_size() == 1:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def shared_folder(folder: str) -> bool:
    """Whether every rank sees the same ``folder`` (a shared file system) rather than one of its node's own.

    Rank 0 leaves a file with a fresh name in it and every rank looks for it; collective.
    """
    if world_size() == 1:
        return True
    name = [f".rank0-{uuid.uuid4().hex}" if rank() == 0 else None]
    dist.broadcast_object_list(name, src=0)
    probe = os.path.join(folder, name[0])
    if rank() == 0:
        os.makedirs(folder, exist_ok=True)
        open(probe, "w").close()
    dist.barrier()
    seen = [None] * world_size()
    dist.all_gather_object(seen, os.path.exists(probe))
    if rank() == 0:
        os.remove(probe)
    return all(seen)
