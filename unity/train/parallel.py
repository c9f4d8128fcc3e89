"""Sequence parallelism in training (``parallel.sequence_parallel``): process groups and the data-parallel rank.

Design. ``parallel.sequence_parallel = P`` splits each sample's tokens over ``P`` ranks with
DeepSpeed-Ulysses. The network side is ``models/sequence_parallel.py``: rank ``r`` of a group keeps
tokens ``r·N/P … (r+1)·N/P − 1`` of every stream with their true RoPE positions, so the per-stream
modulation, cross-attention and MLP run unchanged on ``[B, S, N/P, D]``; only the joint
self-attention kernel is wrapped in ``deepspeed.sequence.layer.DistributedAttention`` (all-to-all:
scatter the heads, gather the sequence; ``model.heads`` and N must be multiples of ``P``), and the
final per-token outputs are all-gathered along N before unpatchify, with a backward that keeps the
local slice of the gradient: every rank of a group computes the same loss on the same full output,
so its parameter gradients are the part contributed by its own tokens. A group is ``P`` consecutive
ranks, so the data-parallel rank is ``rank // P`` out of ``world_size // P``; the trainer seeds the
loader and its noise / t / routing generator with it, and the ranks of a group see the same samples
and draws. DeepSpeed averages gradients over all ranks (ZeRO 0-3 reduce and partition over the whole
world); the engine scales each rank's loss by ``P`` before backward, which turns that average into
the sum of the partial gradients within each group, averaged over the data-parallel ranks: the
single-process gradient of the global batch (the sequence-parallel tests check the weights and
gradient norms against the plain engine under ZeRO 0-3). DeepSpeed's own route, passing its
``parallel_state_sp`` groups as ``mpu``, is not taken: in 0.19.8 ZeRO 0-2 honour
``sequence_parallel_size``, but ZeRO-3's default reduce-scatter path divides by the whole world,
which left every gradient exactly ``1/P`` of the single-process one, and its SP-aware alternative
(``reduce_scatter: false``) all-reduces, doubling the gradient traffic.
"""

from __future__ import annotations

import torch.distributed as dist

from unity.train import distributed


def data_parallel_rank(rank: int, world_size: int, sequence_parallel: int) -> tuple[int, int]:
    """(data-parallel rank, data-parallel size): ranks ``k·P … k·P + P − 1`` form group ``k``, one data rank."""
    return rank // sequence_parallel, world_size // sequence_parallel


def sequence_parallel_group(size: int):
    """This rank's group of ``size`` consecutive ranks (every rank must call it: it makes every group)."""
    rank, world_size = distributed.rank(), distributed.world_size()
    mine = None
    for first in range(0, world_size, size):
        group = dist.new_group(list(range(first, first + size)))
        if first <= rank < first + size:
            mine = group
    return mine
