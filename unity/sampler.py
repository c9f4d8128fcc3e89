"""Euler sampling of the flow-matching ODE ``dx/dt = v(x, t)`` from noise (t = 1) to data (t = 0).

Generic over the task: the streams marked in ``generate`` start as noise and are integrated; the
others are context, held at their clean values with ``t = 0`` at every step (estimation, conditional
and joint generation differ only in that mask).
"""

from __future__ import annotations

import torch

from unity.flow_matching import shift_time


def time_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """``steps + 1`` times from 1 down to 0, uniform then shifted (``shift > 1`` spends more steps near 1)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@torch.no_grad()
def sample(model, x_clean: torch.Tensor, generate: torch.Tensor, modality: torch.Tensor, caption=None,
           caption_mask=None, prompt=None, prompt_mask=None, steps: int = 20, shift: float = 1.0,
           generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Generate the streams marked in ``generate`` given the others; returns ``x [B, S, C, T, H, W]``.

    x_clean ``[B, S, C, T, H, W]``: the context streams' values (anything in generated ones);
    generate bool ``[B, S]``; modality long ``[B, S]``; caption / prompt as ``UnityDiT.forward``.
    ``noise`` (like ``x_clean``) is the starting point of the generated streams, else drawn from
    ``generator``. Each step is ``x <- x + (t_next - t) v``; with ``steps=1`` this is the one-step
    posterior-mean estimate ``x_0 = x_1 - v(x_1, 1)``.
    """
    if noise is None:
        device = generator.device if generator is not None else x_clean.device
        noise = torch.randn(x_clean.shape, generator=generator, device=device).to(x_clean)
    keep = ~generate[:, :, None, None, None, None]
    x = torch.where(keep, x_clean, noise)
    grid = time_grid(steps, shift).tolist()
    for t, t_next in zip(grid[:-1], grid[1:]):
        t_streams = generate.float() * t  # [B, S]: t on generated streams, 0 on context
        v = model(x, modality, t_streams, caption, caption_mask, prompt, prompt_mask)
        x = torch.where(keep, x_clean, x + (t_next - t) * v)
    return x
