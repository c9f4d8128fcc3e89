"""Small numerically careful layers: fp32 norms and AdaLN modulation that hold up under bf16 autocast."""

from __future__ import annotations

import contextlib

import torch
import torch.nn as nn
import torch.nn.functional as F


def fp32_region(x: torch.Tensor):
    """A context with autocast switched off for ``x``'s device, so the math inside stays in its own dtype."""
    if torch.amp.is_autocast_available(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in fp32 and returned in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class RMSNorm32(nn.RMSNorm):
    """RMSNorm computed in fp32 and returned in the input's dtype (QK-norm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        return F.rms_norm(x.float(), self.normalized_shape, weight, self.eps).to(x.dtype)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: ``x [B, S, N, D] * (1 + scale) + shift`` with per-stream ``shift, scale [B, S, D]``, in fp32."""
    out = x.float() * (1 + scale.float()[:, :, None]) + shift.float()[:, :, None]
    return out.to(x.dtype)


def gated_residual(x: torch.Tensor, gate: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``x + gate · update`` with a per-stream gate ``[B, S, D]``, kept in the residual stream's dtype."""
    return x + (gate.float()[:, :, None] * update.float()).to(x.dtype)
