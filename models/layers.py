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


def per_token(x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, S, N, D]`` and a per-stream ``m [B, S, D]`` or per-frame ``m [B, S, F, D]`` (N = F·n), broadcastable.

    Per frame, ``x`` is viewed as ``[B, S, F, n, D]``: tokens are in (t, h, w) raster order, so each of
    the F groups of n consecutive tokens is one frame (F = N gives one value per token).
    """
    if m.ndim == 3:
        return x, m[:, :, None]
    return x.unflatten(2, (m.shape[2], -1)), m[:, :, :, None]


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: ``x [B, S, N, D] * (1 + scale) + shift`` per stream or per frame (:func:`per_token`), in fp32."""
    grouped, shift = per_token(x.float(), shift.float())
    out = grouped * (1 + per_token(x, scale.float())[1]) + shift
    return out.reshape(x.shape).to(x.dtype)


def gated_residual(x: torch.Tensor, gate: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """``x + gate · update`` with a per-stream or per-frame gate, kept in the residual stream's dtype."""
    grouped, gate = per_token(update.float(), gate.float())
    return x + (gate * grouped).reshape(x.shape).to(x.dtype)
