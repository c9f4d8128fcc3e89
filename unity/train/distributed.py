"""This process's place among the ranks: rank, world size and local rank, defined once.

Before ``torch.distributed`` is initialised they come from the launcher's environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, set by torchrun and deepspeed); after it, from the process group.
"""

from __future__ import annotations

import os

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


def barrier() -> None:
    """Wait for every rank; nothing in a single process."""
    if initialized():
        dist.barrier()
