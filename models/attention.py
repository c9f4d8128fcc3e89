"""Attention backends shared by self- and cross-attention: flash-attn, PyTorch SDPA and an explicit reference.

All take ``q [B, H, Nq, Dh]``, ``k, v [B, H, Nk, Dh]`` and an optional key-padding mask
``key_mask`` bool ``[B, Nk]`` (True = attend) and return ``[B, H, Nq, Dh]``. A query whose keys are
all masked gets a zero output on every backend (flash-attn's behaviour for an empty key set).
The backend is resolved once when the model is built (:class:`AttentionBackend`) and logged.
"""

from __future__ import annotations

import importlib
import logging
import math

import torch
import torch.nn.functional as F
from einops import rearrange

from .layers import fp32_region

log = logging.getLogger(__name__)

BACKENDS = ("auto", "flash", "sdpa", "math")


def math_attention(q, k, v, key_mask=None):
    """Reference: explicit softmax(q kᵀ / sqrt(Dh)) v, computed in fp32 (also under autocast)."""
    with fp32_region(q):
        scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) / math.sqrt(q.shape[-1])
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(dim=-1), v.float())
    return out.to(q.dtype)


def sdpa_attention(q, k, v, key_mask=None):
    """``torch.nn.functional.scaled_dot_product_attention`` (picks flash / cuDNN / efficient kernels on GPU)."""
    attn_mask = None if key_mask is None else key_mask[:, None, None, :]  # [B, 1, 1, Nk]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)


def flash_attention(q, k, v, key_mask=None):
    """flash-attn 2: ``flash_attn_func`` without a mask, ``flash_attn_varlen_func`` over the kept keys with one."""
    flash_attn = importlib.import_module("flash_attn")
    deterministic = torch.are_deterministic_algorithms_enabled()  # its backward otherwise sums with atomics
    batch, _, queries, _ = q.shape
    q, k, v = (rearrange(x, "b h n d -> b n h d") for x in (q, k, v))  # flash-attn layout
    if key_mask is None:
        out = flash_attn.flash_attn_func(q, k, v, deterministic=deterministic)
        return rearrange(out, "b n h d -> b h n d")
    lengths = key_mask.sum(dim=1, dtype=torch.int32)  # kept keys per row
    cu_seqlens_k = F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0))
    cu_seqlens_q = torch.arange(0, (batch + 1) * queries, queries, dtype=torch.int32, device=q.device)
    out = flash_attn.flash_attn_varlen_func(
        rearrange(q, "b n h d -> (b n) h d"),
        k[key_mask],
        v[key_mask],  # [total, H, Dh]
        cu_seqlens_q,
        cu_seqlens_k,
        queries,
        int(lengths.max()),
        deterministic=deterministic,
    )
    return rearrange(out, "(b n) h d -> b h n d", b=batch)


KERNELS = {"flash": flash_attention, "sdpa": sdpa_attention, "math": math_attention}


def attention(q, k, v, key_mask=None, backend: str = "sdpa"):
    """Attention of ``q`` over ``k, v`` with one of :data:`KERNELS`; rows without keys output zero."""
    if key_mask is None:
        return KERNELS[backend](q, k, v)
    empty = ~key_mask.any(dim=1)  # [B] rows with nothing to attend to
    out = KERNELS[backend](q, k, v, key_mask | empty[:, None])
    return out.masked_fill(empty[:, None, None, None], 0.0)


def flash_unavailable_reason() -> str | None:
    """Why flash-attn cannot be used in this environment, or None when it imports."""
    try:
        importlib.import_module("flash_attn")
    except ModuleNotFoundError:
        return "flash_attn not installed"
    except Exception as e:  # e.g. a binary built for another torch / CUDA
        return f"flash_attn does not import: {e}"
    return None


def flash_supports(x: torch.Tensor) -> bool:
    """flash-attn kernels run on CUDA tensors in fp16 or bf16 only."""
    return x.is_cuda and x.dtype in (torch.float16, torch.bfloat16)


class AttentionBackend:
    """The backend chosen once at build time from ``model.attention``; call it like :func:`attention`.

    ``auto`` picks flash-attn when it imports, else SDPA; an ``auto``-chosen flash falls back to SDPA
    for inputs flash-attn cannot take (CPU, fp32), whereas an explicit ``flash`` raises.
    """

    def __init__(self, requested: str = "auto"):
        if requested not in BACKENDS:
            raise ValueError(f"attention backend {requested!r}; choose one of {', '.join(BACKENDS)}")
        self.requested = requested
        reason = flash_unavailable_reason() if requested in ("auto", "flash") else None
        if requested == "flash" and reason:
            raise RuntimeError(f"model.attention=flash but {reason}; install the 'flash' extra or use sdpa")
        if requested == "auto":
            self.name = "sdpa" if reason else "flash"
            log.info("attention backend: %s (%s)", self.name, reason or "flash_attn available")
        else:
            self.name = requested
            log.info("attention backend: %s (requested)", self.name)

    def __call__(self, q, k, v, key_mask=None):
        backend = self.name
        if backend == "flash" and not flash_supports(q):
            if self.requested == "flash":
                raise RuntimeError(
                    f"flash attention needs CUDA fp16/bf16 tensors, got {q.device.type} {q.dtype}; "
                    "run under autocast or use model.attention=sdpa"
                )
            backend = "sdpa"
        return attention(q, k, v, key_mask, backend)

    def __repr__(self) -> str:
        return f"AttentionBackend({self.name!r}, requested={self.requested!r})"
