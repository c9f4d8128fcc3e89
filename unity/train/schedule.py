"""The learning-rate schedule: linear warmup to the peak, then constant or cosine down to a floor.

The schedule is a multiplier of ``optim.lr`` indexed by the optimizer step (0-based), applied with
``LambdaLR`` so that its position is part of the optimizer state that a checkpoint restores.
"""

from __future__ import annotations

import math
from functools import partial

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def lr_factor(step: int, *, warmup_steps: int, max_steps: int, schedule: str, min_lr_ratio: float) -> float:
    """Multiplier of the peak LR at optimizer step ``step``.

    Warmup rises linearly over ``warmup_steps`` steps and reaches the peak on the last of them
    (step 0 runs at ``1 / warmup_steps``, never at zero). After it, ``constant`` holds the peak and
    ``cosine`` decays to ``min_lr_ratio`` on the run's last step (``max_steps - 1``) and stays there.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps - 1))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown LR schedule {schedule!r}; choose constant or cosine")


def build_scheduler(optimizer: Optimizer, schedule, max_steps: int) -> LambdaLR:
    """``LambdaLR`` over ``optimizer`` following the ``schedule`` section over a run of ``max_steps``."""
    factor = partial(
        lr_factor,
        warmup_steps=schedule.warmup_steps,
        max_steps=max_steps,
        schedule=schedule.kind,
        min_lr_ratio=schedule.min_lr_ratio,
    )
    return LambdaLR(optimizer, factor)
