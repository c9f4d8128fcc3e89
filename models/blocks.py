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


def qk_norm_layer(dim: int, enabled: bool) -> nn.Module:
    """RMSNorm over ``dim`` channels (a head's, weights shared by the heads, or the full width), or identity."""
    return RMSNorm32(dim, eps=1e-6) if enabled else nn.Identity()


class QKNorm(nn.Module):
    """QK-norm per head (``head``, after the head split) or across heads (``width``, before it: Wan's
    ``rms_norm_across_heads``), then the split of q, k, v ``[B, L, D]`` into heads ``[B, H, L, Dh]``."""

    def __init__(self, hidden: int, heads: int, enabled: bool, scope: str = "head"):
        super().__init__()
        self.heads = heads
        self.scope = scope
        dim = hidden if scope == "width" else hidden // heads
        self.q_norm = qk_norm_layer(dim, enabled)
        self.k_norm = qk_norm_layer(dim, enabled)

    def split(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
        if self.scope == "width":
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = (rearrange(x, "b n (h d) -> b h n d", h=self.heads) for x in (q, k, v))
        if self.scope == "head":
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v


class SelfAttention(QKNorm):
    """Joint self-attention over all S·N tokens of a sample, with QK-norm and 3D RoPE.

    With ``stream_gate`` the queries of gated streams (rgb) see the other streams through a per-head
    gate ``g`` that starts at zero: ``out = own + g · (joint - own)``, ``own`` being the attention within
    the query's own stream. A model grown from a single-stream one (a converted Wan) then keeps its rgb
    output exactly at the start, whatever auxiliary streams join; the price is one more attention of
    each gated stream over its own N tokens.
    """

    def __init__(
        self, hidden: int, heads: int, qk_norm: bool, attend: AttentionBackend, scope: str = "head", gate: bool = False
    ):
        super().__init__(hidden, heads, qk_norm, scope)
        self.attend = attend
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.stream_gate = nn.Parameter(torch.zeros(heads)) if gate else None

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], streams: int = 1, gated=None
    ) -> torch.Tensor:
        """``x [B, S·N, D]``, RoPE tables ``[S·N, Dh/2]``, gated bool ``[B, S]`` (stream_gate) -> ``[B, S·N, D]``."""
        q, k, v = self.split(*self.qkv(x).chunk(3, dim=-1))
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        out = self.attend(q, k, v)  # [B, H, S·N, Dh]; Ulysses' all-to-all kernel under sequence parallelism
        if self.stream_gate is not None and streams > 1 and gated is not None and bool(gated.any()):
            out = self.gate_other_streams(q, k, v, out, streams, gated)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))

    def gate_other_streams(self, q, k, v, joint, streams: int, gated: torch.Tensor) -> torch.Tensor:
        """``own + g · (joint - own)`` for the queries of gated streams; only streams gated in some sample are
        recomputed within themselves. All ``[B, H, S·N, Dh]``; gated ``[B, S]``."""
        index = gated.any(0).nonzero()[:, 0]  # [S'] streams to recompute
        per_stream = [x.unflatten(2, (streams, -1)) for x in (q, k, v, joint)]  # [B, H, S, N, Dh]
        q_s, k_s, v_s = (rearrange(x[:, :, index], "b h s n d -> (b s) h n d") for x in per_stream[:3])
        own = rearrange(self.attend(q_s, k_s, v_s), "(b s) h n d -> b h s n d", s=len(index))
        joint = per_stream[3]
        gate = self.stream_gate.to(joint.dtype)[None, :, None, None, None]  # [1, H, 1, 1, 1]
        mixed = own + gate * (joint[:, :, index] - own)
        keep = gated[:, index][:, None, :, None, None]  # [B, 1, S', 1, 1]
        joint = joint.index_copy(2, index, torch.where(keep, mixed, joint[:, :, index]))
        return joint.flatten(2, 3)


class CrossAttention(QKNorm):
    """Each stream's tokens attend to that stream's own context (the in-context learner's branches)."""

    def __init__(self, hidden: int, heads: int, qk_norm: bool, attend: AttentionBackend, scope: str = "head"):
        super().__init__(hidden, heads, qk_norm, scope)
        self.attend = attend
        self.q = nn.Linear(hidden, hidden)
        self.kv = nn.Linear(hidden, 2 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor | None) -> torch.Tensor:
        """``x [B·S, N, D]``, ``context [B·S, L, D]``, ``context_mask [B·S, L]`` or None -> ``[B·S, N, D]``."""
        q, k, v = self.split(self.q(x), *self.kv(context).chunk(2, dim=-1))
        out = self.attend(q, k, v, context_mask)  # [B·S, H, N, Dh]
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class UnityBlock(nn.Module):
    """AdaLN-Zero block over ``[B, S, N, D]``: per-stream modulated self-attention and MLP, ungated cross-attention.

    The modulation of stream ``s`` is the switcher's shared ``[6, D]`` output for ``c[b, s]`` (or one per
    frame, ``[F, 6, D]``) plus this block's learned table (Wan2.1's layout); both start at zero, so every
    gate is zero at init.
    """

    def __init__(
        self,
        hidden: int,
        heads: int,
        mlp_width: int,
        qk_norm: bool,
        cross_attention: bool,
        attend: AttentionBackend,
        qk_norm_scope: str = "head",
        stream_gate: bool = False,
    ):
        super().__init__()
        self.norm1 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(hidden, heads, qk_norm, attend, qk_norm_scope, stream_gate)
        self.cross_norm = LayerNorm32(hidden, eps=1e-6) if cross_attention else None
        self.cross_attn = CrossAttention(hidden, heads, qk_norm, attend, qk_norm_scope) if cross_attention else None
        self.norm2 = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden, mlp_width, act_layer=GELUTanh)
        self.modulation = nn.Parameter(torch.zeros(MODULATIONS, hidden))

    def forward(self, x, modulation, rope, context=None, context_mask=None, gated=None) -> torch.Tensor:
        """``x [B, S, N, D]``, shared ``modulation [B, S, 6, D]`` (or ``[B, S, F, 6, D]``), context
        ``[B·S, L, D]``, gated bool ``[B, S]`` (streams whose view of the others is gated) -> ``[B, S, N, D]``."""
        streams = x.shape[1]
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (modulation + self.modulation).unbind(-2)

        h = rearrange(modulate(self.norm1(x), shift_msa, scale_msa), "b s n d -> b (s n) d")
        h = rearrange(self.attn(h, rope, streams, gated), "b (s n) d -> b s n d", s=streams)
        x = gated_residual(x, gate_msa, h)

        if self.cross_attn is not None:
            h = rearrange(self.cross_norm(x), "b s n d -> (b s) n d")
            h = rearrange(self.cross_attn(h, context, context_mask), "(b s) n d -> b s n d", s=streams)
            x = x + h.to(x.dtype)

        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return gated_residual(x, gate_mlp, h)


class FinalLayer(nn.Module):
    """Per-stream AdaLN and a linear map back to patch values; zero at init.

    ``adaln``: ``(shift, scale) = Linear(SiLU(c))``; ``table`` (Wan's head): ``(shift, scale) = table + c``
    with a learned ``[2, D]`` table. ``c`` is per stream ``[B, S, D]`` or per frame ``[B, S, F, D]``.
    """

    def __init__(self, hidden: int, patch_dim: int, mode: str = "adaln"):
        super().__init__()
        self.norm = LayerNorm32(hidden, elementwise_affine=False, eps=1e-6)
        if mode == "table":
            self.table = nn.Parameter(torch.zeros(2, hidden))
        else:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, patch_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x [B, S, N, D]``, ``c [B, S, D]`` or ``[B, S, F, D]`` -> ``[B, S, N, pt·ph·pw·C]``."""
        with fp32_region(c):
            if hasattr(self, "table"):
                shift, scale = (self.table.float() + c.float().unsqueeze(-2)).unbind(-2)
            else:
                shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))
