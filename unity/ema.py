"""Exponential moving average of a model's weights, the weights sampled from after training.

The average of every trainable parameter is kept in fp32 whatever the model's dtype: with a decay
of 0.999 a step moves it by 1e-3 of the difference, far below bf16's rounding step (~0.4% of the
value), so a bf16 average would stop moving. Buffers and frozen parameters are not averaged but copied,
which makes :meth:`EMA.state_dict` a complete state dict of the model (``load_state_dict``-able).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from unity.checkpoint import state_mismatch


class EMA:
    """``ema = decay * ema + (1 - decay) * param`` after every optimizer step; ``copy_to`` puts it in a model."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.averaged: dict[str, torch.Tensor] = {}  # trainable parameters -> fp32 average (one name per tensor)
        self.copied: dict[str, torch.Tensor] = {}  # buffers and frozen parameters -> copy
        self.tied: dict[str, str] = {}  # a second name of a shared tensor -> its first name
        first: dict[int, str] = {}
        for name, tensor in model.state_dict(keep_vars=True).items():
            if id(tensor) in first:
                self.tied[name] = first[id(tensor)]
                continue
            first[id(tensor)] = name
            if isinstance(tensor, nn.Parameter) and tensor.requires_grad:
                self.averaged[name] = tensor.detach().to(torch.float32, copy=True)
            else:
                self.copied[name] = tensor.detach().clone()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (call after each optimizer step)."""
        current = model.state_dict()
        for name, average in self.averaged.items():
            average.lerp_(current[name].to(torch.float32), 1.0 - self.decay)
        for name, copy in self.copied.items():
            copy.copy_(current[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged model as a state dict with the model's keys (tied names share one tensor)."""
        state = {**self.averaged, **self.copied}
        return {**state, **{name: state[source] for name, source in self.tied.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the average from :meth:`state_dict` output (e.g. a checkpoint's ema.safetensors)."""
        problems = state_mismatch(state, self.state_dict())
        if problems:
            raise ValueError(f"the EMA state does not fit the model:\n{problems}")
        for name, tensor in {**self.averaged, **self.copied}.items():
            tensor.copy_(state[name])

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's weights with the average (cast to the model's dtypes)."""
        model.load_state_dict(self.state_dict())
