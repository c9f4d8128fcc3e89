"""3D rotary position embedding over (t, h, w) token grids, with per-stream offsets for the layouts.

The head dimension is split among the three axes (``t`` takes what ``h`` and ``w`` leave, as in
Wan2.1), each axis rotating its own channel pairs by ``position * theta^(-2i/d_axis)``. The layout
only moves each stream's grid: ``shared`` (all streams on one grid, told apart by the switcher),
``width`` (stream k shifted by k·W tokens along w, streams side by side) or ``time`` (shifted by k·T
tokens along t, streams one after another).
"""

from __future__ import annotations

import torch
from einops import rearrange

LAYOUTS = ("shared", "width", "time")


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels of the head dimension given to the (t, h, w) axes; each even, summing to ``head_dim``."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head dimension, got {head_dim}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def stream_positions(streams: int, grid: tuple[int, int, int], layout: str, device=None) -> torch.Tensor:
    """Integer (t, h, w) position of every token of every stream, ``[S·N, 3]``, stream-major."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    t, h, w = grid
    axes = [torch.arange(n, device=device) for n in grid]
    base = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(1, t * h * w, 3)  # [1, N, 3]
    k = torch.arange(streams, device=device)
    zero = torch.zeros_like(k)
    offsets = {
        "shared": torch.stack([zero, zero, zero], dim=-1),
        "width": torch.stack([zero, zero, k * w], dim=-1),
        "time": torch.stack([k * t, zero, zero], dim=-1),
    }[layout]  # [S, 3]
    return rearrange(base + offsets[:, None, :], "s n a -> (s n) a")


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of every channel pair's rotation, fp32 ``[tokens, head_dim / 2]``, from positions ``[tokens, 3]``."""
    angles = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        inv_freq = theta ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim)
        angles.append(positions[:, axis, None].double() * inv_freq)  # [tokens, dim / 2]
    angles = torch.cat(angles, dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of ``x [B, H, N, Dh]`` by the tables ``[N, Dh/2]``, in fp32."""
    pairs = rearrange(x.float(), "... (d two) -> ... d two", two=2)
    real, imag = pairs.unbind(-1)
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rearrange(rotated, "... d two -> ... (d two)").to(x.dtype)
