"""Sampling the flow-matching ODE ``dx/dt = v(x, t)`` from noise (t = 1) to data (t = 0): Euler or Heun.

Generic over the task: the streams marked in ``generate`` start as noise and are integrated; the
others are context, held at their clean values with ``t = 0`` at every step (estimation, conditional
and joint generation differ only in that mask). Classifier-free guidance mixes the velocity given
the caption with the velocity given the empty caption (the case caption dropout trained).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unity.method.flow_matching import shift_time

METHODS = ("euler", "heun")


def time_grid(steps: int, shift: float = 1.0) -> torch.Tensor:
    """``steps + 1`` times from 1 down to 0, uniform then shifted (``shift > 1`` spends more steps near 1)."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


def guided_velocity(
    model, modality: torch.Tensor, cond: dict, uncond: dict | None = None, cfg_scale: float = 1.0
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``v(x, t_streams)``: the model given ``cond``, or ``v_u + s (v_c - v_u)`` when ``cfg_scale != 1``.

    ``cond`` / ``uncond`` are ``UnityDiT.forward`` keyword arguments (caption, masks, prompts);
    ``uncond`` differs from ``cond`` only in its caption, normally the empty one.
    """
    if cfg_scale != 1.0 and uncond is None:
        raise ValueError("classifier-free guidance (cfg_scale != 1) needs the unconditional inputs `uncond`")

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = model(x, modality, t, **cond)
        if cfg_scale == 1.0:
            return v
        v_uncond = model(x, modality, t, **uncond)
        return v_uncond + cfg_scale * (v - v_uncond)

    return velocity


@torch.no_grad()
def sample(
    model,
    x_clean: torch.Tensor,
    generate: torch.Tensor,
    modality: torch.Tensor,
    steps: int = 20,
    shift: float = 1.0,
    method: str = "euler",
    cfg_scale: float = 1.0,
    uncond: dict | None = None,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    progress: Callable | None = None,
    **cond,
) -> torch.Tensor:
    """Generate the streams marked in ``generate`` given the others; returns ``x [B, S, C, T, H, W]``.

    x_clean ``[B, S, C, T, H, W]``: the context streams' values (anything in generated ones);
    generate bool ``[B, S]``; modality long ``[B, S]``; ``cond``: caption / prompt keyword
    arguments as ``UnityDiT.forward`` takes them; ``uncond`` the same with the empty caption, for
    classifier-free guidance at ``cfg_scale``. ``noise`` (like ``x_clean``) is the starting point of
    the generated streams, else drawn from ``generator``.

    ``euler``: ``x <- x + (t_next - t) v(x, t)``, one model call per step; with ``steps=1`` this is
    the one-step posterior-mean estimate ``x_0 = x_1 - v(x_1, 1)``. ``heun``: the trapezoidal
    correction with ``v(x_euler, t_next)``, two calls per step but the last (at ``t_next = 0`` the
    Euler step is kept, as in EDM). ``progress`` wraps the step iterator (e.g. ``tqdm``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampler method {method!r}; choose one of {', '.join(METHODS)}")
    if noise is None:
        device = generator.device if generator is not None else x_clean.device
        noise = torch.randn(x_clean.shape, generator=generator, device=device).to(x_clean)
    velocity = guided_velocity(model, modality, cond, uncond, cfg_scale)
    keep = ~generate[:, :, None, None, None, None]
    x = torch.where(keep, x_clean, noise)
    grid = time_grid(steps, shift).tolist()
    pairs = list(zip(grid[:-1], grid[1:]))
    for t, t_next in progress(pairs) if progress is not None else pairs:
        v = velocity(x, generate.float() * t)  # t on generated streams, 0 on context
        x_next = torch.where(keep, x_clean, x + (t_next - t) * v)
        if method == "heun" and t_next > 0:
            v_next = velocity(x_next, generate.float() * t_next)
            x_next = torch.where(keep, x_clean, x + (t_next - t) * 0.5 * (v + v_next))
        x = x_next
    return x
