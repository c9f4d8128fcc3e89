"""Transformer blocks of UnityDiT: joint self-attention, the in-context cross-attention, the MLP, the final layer."""

from __future__ import annotations

import torch
import torch.nn as nn
from einops import rearrange
from timm.layers import GELUTanh, Mlp

from .attention import AttentionBackend
from .layers import LayerNorm32, RMSNorm32, fp32_region, gated_residual, modulate
from .rope import apply_rope
from .switcher import MODULATIONS


def qk_norm_layer(head_dim: int, enabled: bool) -> nn.Module:
    """RMSNorm over each head's channels (weights shared by the heads), or identity."""
    return RMSNorm32(head_dim, eps=1e-6) if enabled else nn.Identity()


class SelfAttention(nn.Module):
    """Joint self-attention over all S·N tokens of a sample, with QK-norm and 3D RoPE."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool, attend: AttentionBackend):
        super().__init__()
        self.heads = heads
        self.attend = attend
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.q_norm = qk_norm_layer(hidden // heads, qk_norm)
        self.k_norm = qk_norm_layer(hidden // heads, qk_norm)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x [B, S·N, D]``, RoPE tables ``[S·N, Dh/2]`` -> ``[B, S·N, D]``."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        q, k = apply_rope(self.q_norm(q), *rope), apply_rope(self.k_norm(k), *rope)
        out = self.attend(q, k, v)  # [B, H, S·N, Dh]; Ulysses' all-to-all kernel under sequence parallelism
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class CrossAttention(nn.Module):
    """Each stream's tokens attend to that stream's own context (the in-context learner's branches)."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool, attend: AttentionBackend):
        super().__init__()
        self.heads = heads
        self.attend = attend
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.q_norm = qk_norm_layer(hidden // heads, qk_norm)
        self.k_norm = qk_norm_layer(hidden // heads, qk_norm)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """``x [B·S, N, D]``, ``context [B·S, L, D]``, ``context_mask [B·S, L]`` -> ``[B·S, N, D]``."""
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(context), "b l (two h d) -> two b h l d", two=2, h=self.heads)
        out = self.attend(self.q_norm(q), self.k_norm(k), v, context_mask)  # [B·S, H, N, Dh]
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class UnityBlock(nn.Module):
    """AdaLN-Zero block over ``[B, S, N, D]``: per-stream modulated self-attention and MLP, ungated cross-attention.

    The modulation of stream ``s`` is the switcher's shared ``[6, D]`` output for ``c[b, s]`` plus this
    block's learned table (Wan2.1's layout); both start at zero, so every gate is zero at init.
    """

    def __init__(
        self, hidden: int, heads: int, mlp_ratio: float, qk_norm: bool, cross_attention: bool, attend: AttentionBackend
    ):
        super().__init__()
        self.norm1 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads, qk_norm, attend)
        self.cross_norm = LayerNorm32(hidden, eps=1e-6) if cross_attention else None
        self.cross_attn = CrossAttention(hidden, heads, qk_norm, attend) if cross_attention else None
        self.norm2 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, round(hidden * mlp_ratio), act_layer=GELUTanh)
        self.modulation = nn.Parameter(torch.zeros(MODULATIONS, hidden))

    def forward(self, x, modulation, rope, context=None, context_mask=None) -> torch.Tensor:
        """``x [B, S, N, D]``, shared ``modulation [B, S, 6, D]``, context ``[B·S, L, D]`` -> ``[B, S, N, D]``."""
        streams = x.shape[1]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (modulation + self.modulation).unbind(2)

        h = rearrange(modulate(self.norm1(x), shift_msa, scale_msa), "b s n d -> b (s n) d")
        h = rearrange(self.attn(h, rope), "b (s n) d -> b s n d", s=streams)
        x = gated_residual(x, gate_msa, h)

        if self.cross_attn is not None:
            h = rearrange(self.cross_norm(x), "b s n d -> (b s) n d")
            h = rearrange(self.cross_attn(h, context, context_mask), "(b s) n d -> b s n d", s=streams)
            x = x + h.to(x.dtype)

        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return gated_residual(x, gate_mlp, h)


class FinalLayer(nn.Module):
    """Per-stream AdaLN (shift, scale from ``c[b, s]``) and a linear map back to patch values; zero at init."""

    def __init__(self, hidden: int, patch_dim: int):
        super().__init__()
        self.norm = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, patch_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x [B, S, N, D]``, ``c [B, S, D]`` -> ``[B, S, N, pt·ph·pw·C]``."""
        with fp32_region(c):
            shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
