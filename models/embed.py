"""Embeddings in and out of the token space: 3D patches and flow-matching times."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange

FREQUENCY_DIM = 256  # sinusoidal features of the timestep embedding


def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """``[B, S, C, T, H, W]`` -> ``[B, S, N, pt·ph·pw·C]``, tokens in (t, h, w) raster order."""
    pt, ph, pw = patch
    return rearrange(x, "b s c (t pt) (h ph) (w pw) -> b s (t h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def unpatchify(x: torch.Tensor, patch: tuple[int, int, int], grid: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: ``[B, S, N, pt·ph·pw·C]`` -> ``[B, S, C, T, H, W]``."""
    (pt, ph, pw), (t, h, w) = patch, grid
    return rearrange(x, "b s (t h w) (pt ph pw c) -> b s c (t pt) (h ph) (w pw)", t=t, h=h, w=w, pt=pt, ph=ph, pw=pw)


class PatchEmbed(nn.Module):
    """Non-overlapping 3D patches of each stream, flattened and projected to the width D."""

    def __init__(self, in_channels: int, patch: tuple[int, int, int], hidden: int):
        super().__init__()
        self.patch = tuple(patch)
        self.proj = nn.Linear(in_channels * math.prod(patch), hidden)

    def forward(self, x: torch.Tensor, tokens: slice = slice(None)) -> torch.Tensor:
        """``[B, S, C, T, H, W]`` -> ``[B, S, N, D]``, or only each stream's ``tokens`` (a sequence-parallel share)."""
        return self.proj(patchify(x, self.patch)[:, :, tokens])


class TimestepEmbedder(nn.Module):
    """Flow-matching time t in [0, 1] -> sinusoidal features of 1000·t -> MLP, as DiT's timestep embedder."""

    def __init__(self, hidden: int, frequency_dim: int = FREQUENCY_DIM, max_period: float = 10000.0):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def sinusoid(self, t: torch.Tensor) -> torch.Tensor:
        """``[...]`` -> fp32 ``[..., frequency_dim]`` (cos half then sin half)."""
        half = self.frequency_dim // 2
        freqs = torch.exp(-math.log(self.max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        angles = 1000.0 * t.float()[..., None] * freqs
        return torch.cat([angles.cos(), angles.sin()], dim=-1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.sinusoid(t).to(self.mlp[0].weight.dtype))
