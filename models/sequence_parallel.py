"""Sequence parallelism for UnityDiT (DeepSpeed-Ulysses): every stream's tokens split across a process group.

Rank ``r`` of a group of ``P`` keeps tokens ``r·N/P … (r+1)·N/P − 1`` of each stream (``[B, S, N/P, D]``)
and their true RoPE positions, so the per-stream modulation, cross-attention and MLP run unchanged on
the local tokens. Only the joint self-attention communicates: DeepSpeed's ``DistributedAttention``
trades the sequence split for a head split with an all-to-all, runs the local kernel over all
``S·N`` tokens for ``H/P`` heads, and trades back. The gathered keys come in rank order rather than
stream order, which unmasked attention does not notice. The final per-token outputs are gathered
along N (:class:`GatherTokens`) before unpatchify.

Gradients: every rank of the group computes the same loss on the same full output, so the gather's
backward keeps the local slice of the output gradient, and each rank's parameter gradients are the
part contributed by its own tokens; summed over the group they are the single-process gradients.
The training engine does that sum (DeepSpeed's ``sequence_parallel_size``, see ``unity/parallel.py``).

Needs torch.distributed and ``deepspeed.comm`` initialised (``deepspeed.init_distributed``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist


class GatherTokens(torch.autograd.Function):
    """All-gather along ``dim`` in rank order; backward keeps this rank's slice of the (identical) gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, group, rank: int, size: int) -> torch.Tensor:
        ctx.dim, ctx.rank, ctx.local = dim, rank, x.shape[dim]
        parts = [torch.empty_like(x, memory_format=torch.contiguous_format) for _ in range(size)]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.narrow(ctx.dim, ctx.rank * ctx.local, ctx.local), None, None, None, None


class UlyssesAttention:
    """A joint-attention kernel over a sequence sharded across ``group``, called like ``AttentionBackend``.

    Takes this rank's ``q, k, v [B, H, L/P, Dh]`` and returns its ``[B, H, L/P, Dh]`` outputs; the
    wrapped ``attend`` sees ``[B, H/P, L, Dh]``. No key mask: the joint self-attention has none.
    """

    def __init__(self, attend: Callable, group):
        from deepspeed.sequence.layer import DistributedAttention

        self.attend = attend
        # [B, L, H, Dh] layout (batch_dim_idx=0): scatter the heads (dim 2), gather the sequence (dim 1).
        self.distributed = DistributedAttention(self.local, group, scatter_idx=2, gather_idx=1)

    def local(self, q, k, v):
        """The wrapped kernel on ``[B, L, H/P, Dh]`` tensors, as DistributedAttention hands them over."""
        return self.attend(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    def __call__(self, q, k, v, key_mask=None):
        if key_mask is not None:
            raise ValueError("sequence-parallel attention takes no key mask")
        out = self.distributed(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), batch_dim_idx=0)
        return out.transpose(1, 2)


class SequenceParallel:
    """This rank's place in a sequence-parallel group, and the group's operations on UnityDiT's tokens."""

    def __init__(self, group, heads: int):
        import deepspeed
        import deepspeed.comm

        if not deepspeed.comm.is_initialized():  # DistributedAttention communicates through deepspeed.comm
            deepspeed.init_distributed(dist_backend=dist.get_backend())
        self.group = group
        self.size = dist.get_world_size(group)
        self.rank = dist.get_rank(group)
        if heads % self.size:
            raise ValueError(
                f"sequence parallelism over {self.size} ranks needs the attention heads "
                f"(model.heads = {heads}) to be a multiple of {self.size}"
            )

    def local(self, tokens: int) -> slice:
        """This rank's share of a stream's ``tokens`` (N), which must split evenly."""
        if tokens % self.size:
            raise ValueError(
                f"sequence parallelism over {self.size} ranks needs the tokens per stream "
                f"(N = {tokens}) to be a multiple of {self.size}; change data.frames, data.size "
                "or model.patch"
            )
        share = tokens // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def attention(self, attend: Callable) -> UlyssesAttention:
        return UlyssesAttention(attend, self.group)

    def gather(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """The group's shards of ``x`` concatenated along ``dim`` (see :class:`GatherTokens`)."""
        return GatherTokens.apply(x, dim, self.group, self.rank, self.size)

    def __repr__(self) -> str:
        return f"SequenceParallel(rank={self.rank}, size={self.size})"
