"""Exponential moving average of a model's weights, the weights sampled from after training.

The average of every trainable parameter is kept in fp32 whatever the model's dtype: with a decay
of 0.999 a step moves it by 1e-3 of the difference, far below bf16's rounding step (~0.4% of the
value), so a bf16 average would stop moving. Buffers and frozen parameters are not averaged but copied,
which makes :meth:`EMA.state_dict` a complete state dict of the model (``load_state_dict``-able).

With warm-up (``ema.warmup``, as diffusers' ``EMAModel`` and timm's ``ModelEmaV3`` do) the decay of
update ``n`` (0-based) is ``1 - (1 + n / inv_gamma) ** -power``, capped at ``decay``: the first update
copies the weights and the average forgets the random initialisation within a few hundred updates,
where a fixed 0.999 still holds 37% of it after 1,000. ``updates`` counts the updates made; a resumed
run restores it with the weights, so the decays continue exactly.

Under DeepSpeed ZeRO-3 a parameter lives as one flat shard per rank (``param.ds_tensor``); the
average then covers this rank's shard only, so it costs 1/world_size of the model per rank, and
:meth:`EMA.state_dict` gathers the shards into full tensors (a collective: every rank calls it).
"""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
import torch.nn as nn

from unity.train import distributed
from unity.train.checkpoint import state_mismatch


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """What this rank holds of a tensor: its ZeRO-3 shard when partitioned, else the tensor."""
    return tensor.ds_tensor if hasattr(tensor, "ds_tensor") else tensor


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimizer step; ``copy_to`` puts it in a model.

    With ``trainable_only`` frozen parameters and buffers are left out (a LoRA fine-tune averages its
    adapters, not a second copy of the frozen base), and the state dict holds the averages alone.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float,
        trainable_only: bool = False,
        warmup: bool = False,
        power: float = 2 / 3,
        inv_gamma: float = 1.0,
    ):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if warmup and (power <= 0 or inv_gamma <= 0):
            raise ValueError(f"EMA warm-up needs a positive power and inv_gamma, got {power} and {inv_gamma}")
        self.decay, self.warmup, self.power, self.inv_gamma = decay, warmup, power, inv_gamma
        self.updates = 0  # updates made: the warm-up's position, saved in checkpoints
        self.averaged: dict[str, torch.Tensor] = {}  # trainable parameters -> fp32 average (one name per tensor)
        self.copied: dict[str, torch.Tensor] = {}  # buffers and frozen parameters -> copy
        self.tied: dict[str, str] = {}  # a second name of a shared tensor -> its first name
        self.partitioned: dict[str, tuple[int, torch.Size]] = {}  # ZeRO-3 name -> (full numel, full shape)
        first: dict[int, str] = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            if id(tensor) in first:
                self.tied[name] = first[id(tensor)]
                continue
            first[id(tensor)] = name
            if hasattr(tensor, "ds_tensor"):
                self.partitioned[name] = (tensor.ds_numel, tensor.ds_shape)
            if isinstance(tensor, nn.Parameter) and tensor.requires_grad:
                self.averaged[name] = _local(tensor).detach().to(torch.float32, copy=True)
            elif not trainable_only:
                self.copied[name] = _local(tensor).detach().clone()

    def current_decay(self) -> float:
        """The decay the next update uses: ``decay``, or during warm-up the smaller warm-up value."""
        if not self.warmup:
            return self.decay
        return min(self.decay, 1.0 - (1.0 + self.updates / self.inv_gamma) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (call after each optimizer step)."""
        weight = 1.0 - self.current_decay()
        sources = {name: local for name, local, _ in self._targets(model)}
        for name, average in self.averaged.items():
            average.lerp_(sources[name].detach().to(torch.float32), weight)
        for name, copy in self.copied.items():
            copy.copy_(sources[name])
        self.updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model as a state dict with the model's keys (tied names share one tensor)."""
        state = {name: self._full(name, value) for name, value in {**self.averaged, **self.copied}.items()}
        return {**state, **{name: state[source] for name, source in self.tied.items() if source in state}}

    def local_state(self) -> dict[str, torch.Tensor]:
        """What this rank holds of the average, by name: its ZeRO-3 shard (flat, zero-padded) of a partitioned
        tensor, the whole of any other (one name per tensor). Nothing is gathered: a sharded checkpoint saves this."""
        return {**self.averaged, **self.copied}

    @torch.no_grad()
    def load_local_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`local_state` output saved by the same rank of a run partitioned the same way."""
        problems = state_mismatch(state, self.local_state())
        if problems:
            raise ValueError(f"the EMA shard does not fit this rank's part of the model:\n{problems}")
        for name, tensor in self.local_state().items():
            tensor.copy_(state[name])

    def _full(self, name: str, local: torch.Tensor) -> torch.Tensor:
        """The whole tensor: this rank's value, or the ZeRO-3 shards of every rank joined in rank order."""
        if name not in self.partitioned:
            return local
        numel, shape = self.partitioned[name]
        shards = [torch.empty_like(local) for _ in range(distributed.world_size())]
        dist.all_gather(shards, local.contiguous())
        return torch.cat(shards)[:numel].view(shape).cpu()

    def _shard(self, name: str, full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """This rank's part of a whole tensor, laid out as ``like`` (its ZeRO-3 shard, zero-padded at the end)."""
        if name not in self.partitioned:
            return full
        size = like.numel()
        piece = full.reshape(-1)[size * distributed.rank() :][:size]
        return torch.cat([piece.to(like), like.new_zeros(size - piece.numel())])

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the average from :meth:`state_dict` output (e.g. a checkpoint's ema.safetensors)."""
        problems = state_mismatch(state, self.state_dict())
        if problems:
            raise ValueError(f"the EMA state does not fit the model:\n{problems}")
        for name, tensor in {**self.averaged, **self.copied}.items():
            tensor.copy_(self._shard(name, state[name], tensor))

    def _targets(self, model: nn.Module):
        """``(name, local tensor, whole tensor or None)``: under ZeRO-3 the shard and, when the rank holds the
        parameter whole right now (DeepSpeed's persistent small parameters, or one still gathered after a
        forward), its full data too, which DeepSpeed uses instead of the shard until it releases it."""
        current = model.state_dict(keep_vars=True)
        for name in (*self.averaged, *self.copied):
            tensor = current[name]
            whole = name in self.partitioned and tensor.numel() == self.partitioned[name][0]
            yield name, _local(tensor), tensor.data if whole else None

    @torch.no_grad()
    def _write(self, model: nn.Module, values: dict[str, torch.Tensor]) -> None:
        """Put ``values`` (this rank's part of each tensor) into the model, whole copies included
        (collective under ZeRO-3)."""
        for name, local, whole in self._targets(model):
            local.copy_(values[name])
            if whole is not None:
                whole.copy_(self._full(name, values[name]).view_as(whole))

    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights (this rank's shards under ZeRO-3) with the average, in the model's dtypes."""
        self._write(model, {**self.averaged, **self.copied})

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """Run the block with the averaged weights in ``model``, then put its own weights back.

        The model's parts are restored from the saved shards, and any parameter the block left
        gathered whole is rebuilt from them too, so no averaged value survives the block.
        """
        saved = {name: local.detach().clone() for name, local, _ in self._targets(model)}
        self.copy_to(model)
        try:
            yield model
        finally:
            self._write(model, saved)
