"""Sampling the flow-matching ODE ``dx/dt = v(x, t)`` from noise (t = 1) to data (t = 0): Euler or Heun.

Generic over the task: the streams marked in ``generate`` start as noise and are integrated; the
others are context, held at their clean values with ``t = 0`` at every step (estimation, conditional
and joint generation differ only in that mask). Classifier-free guidance mixes the velocity given
the caption with the velocity given the empty caption (the case caption dropout trained).

Per-control weights are compositional classifier-free guidance over the given streams: for each
weighted control ``c`` with weight ``w_c``, ``v += (w_c - 1) (v - v_without_c)``, where ``v_without_c``
is the model's velocity on the same streams with ``c`` left out (the case ``routing.control_dropout``
trained). ``w_c = 1`` leaves ``v`` as it is, ``0`` removes the control's pull to first order, ``> 1``
strengthens it. Each weighted control costs one more model call per velocity, on one stream fewer.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unity.method.flow_matching import shift_time

METHODS = ("euler", "heun")
SCHEDULES = ("uniform", "wan")  # time grids of time_grid
TRAIN_TIMESTEPS = 1000  # Wan's timestep = 1000 σ; its sampler's smallest training σ is shift(1 / 1000)


def time_grid(steps: int, shift: float = 1.0, schedule: str = "uniform") -> torch.Tensor:
    """``steps + 1`` times from 1 down to 0 (float64).

    ``uniform``: uniform, then shifted (``shift > 1`` spends more steps near 1). ``wan``: the σ grid of
    Wan's sampler, diffusers' ``FlowMatchEulerDiscreteScheduler(shift=shift)`` after ``set_timesteps(steps)``:
    uniform from 1 to the smallest shifted training σ, ``shift(1 / 1000)``, shifted again, then 0.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if schedule == "wan":
        lowest = shift_time(torch.tensor(1.0 / TRAIN_TIMESTEPS, dtype=torch.float64), shift)
        sigmas = shift_time(torch.linspace(1.0, 0.0, steps, dtype=torch.float64) * (1 - lowest) + lowest, shift)
        return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])
    if schedule != "uniform":
        raise ValueError(f"unknown time schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


PER_STREAM = ("prompt", "prompt_mask")  # UnityDiT.forward keyword arguments shaped [B, S, ...]


def without_stream(inputs: dict, stream: int, streams: int) -> dict:
    """``UnityDiT.forward`` keyword arguments with stream ``stream`` of ``streams`` left out (per-stream ones)."""
    keep = [s for s in range(streams) if s != stream]
    return {k: v[:, keep] if k in PER_STREAM and v is not None else v for k, v in inputs.items()}


def guided_velocity(
    model,
    modality: torch.Tensor,
    cond: dict,
    uncond: dict | None = None,
    cfg_scale: float = 1.0,
    control_weights: dict[int, float] | None = None,
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``v(x, t_streams)``: the model given ``cond``, or ``v_u + s (v_c - v_u)`` when ``cfg_scale != 1``,
    plus ``(w - 1) (v_c - v_c without stream i)`` for each ``i: w`` of ``control_weights`` with ``w != 1``.

    ``cond`` / ``uncond`` are ``UnityDiT.forward`` keyword arguments (caption, masks, prompts);
    ``uncond`` differs from ``cond`` only in its caption, normally the empty one. ``control_weights``:
    stream index -> weight, for given (clean) streams.
    """
    if cfg_scale != 1.0 and uncond is None:
        raise ValueError("classifier-free guidance (cfg_scale != 1) needs the unconditional inputs `uncond`")
    weighted = {s: w for s, w in (control_weights or {}).items() if w != 1.0}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = model(x, modality, t, **cond)
        out = v
        if cfg_scale != 1.0:
            v_uncond = model(x, modality, t, **uncond)
            out = v_uncond + cfg_scale * (v - v_uncond)
        for stream, weight in weighted.items():
            keep = [s for s in range(x.shape[1]) if s != stream]
            v_without = model(x[:, keep], modality[:, keep], t[:, keep], **without_stream(cond, stream, x.shape[1]))
            pull = torch.zeros_like(v)  # [B, S, C, T, H, W]; nothing on the left-out stream itself
            pull[:, keep] = v[:, keep] - v_without
            out = out + (weight - 1.0) * pull
        return out

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
    control_weights: dict[int, float] | None = None,
    schedule: str = "uniform",
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
    ``control_weights``: stream index -> guidance weight of a given stream (module docstring).
    ``schedule``: the time grid, ``uniform`` or Wan's (:func:`time_grid`).
    """
    if method not in METHODS:
        raise ValueError(f"unknown sampler method {method!r}; choose one of {', '.join(METHODS)}")
    for stream in control_weights or {}:
        if not 0 <= stream < generate.shape[1] or generate[:, stream].any():
            raise ValueError(f"control weights apply to given (clean) streams; stream {stream} is not one")
    if noise is None:
        device = generator.device if generator is not None else x_clean.device
        noise = torch.randn(x_clean.shape, generator=generator, device=device).to(x_clean)
    velocity = guided_velocity(model, modality, cond, uncond, cfg_scale, control_weights)
    keep = ~generate[:, :, None, None, None, None]
    x = torch.where(keep, x_clean, noise)
    grid = time_grid(steps, shift, schedule).tolist()
    pairs = list(zip(grid[:-1], grid[1:]))
    for t, t_next in progress(pairs) if progress is not None else pairs:
        v = velocity(x, generate.float() * t)  # t on generated streams, 0 on context
        x_next = torch.where(keep, x_clean, x + (t_next - t) * v)
        if method == "heun" and t_next > 0:
            v_next = velocity(x_next, generate.float() * t_next)
            x_next = torch.where(keep, x_clean, x + (t_next - t) * 0.5 * (v + v_next))
        x = x_next
    return x
