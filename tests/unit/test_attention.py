"""Attention backends agree with the explicit reference, masks included; the backend is chosen once and logged."""

import logging
import math
import sys
import types

import pytest
import torch

from models.attention import AttentionBackend, attention
from models.config import ModelConfig
from models.dit import UnityDiT


def qkv(batch=3, heads=2, queries=5, keys=7, head_dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, heads, n, head_dim, generator=g) for n in (queries, keys, keys))


def key_mask():
    """Row 0 attends to all keys, row 1 to some, row 2 to none."""
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, [1, 4, 5]] = False
    mask[2] = False
    return mask


def max_relative_error(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def reference_softmax(q, k, v, scale):
    """softmax(q kᵀ · scale) v for one sequence, ``[N, H, Dh]`` layout (flash-attn's)."""
    weights = (torch.einsum("qhd,khd->hqk", q, k) * scale).softmax(-1)
    return torch.einsum("hqk,khd->qhd", weights, v)


def fake_flash_attn():
    """A stand-in ``flash_attn`` module with flash-attn 2's signatures, computed with plain softmax."""

    def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, deterministic=False):
        module.deterministic.append(deterministic)
        assert q.ndim == 4 and q.shape[2] == k.shape[2]  # [B, N, H, Dh]
        scale = softmax_scale or 1 / math.sqrt(q.shape[-1])
        return torch.stack([reference_softmax(*x, scale) for x in zip(q, k, v)])

    def flash_attn_varlen_func(
        q,
        k,
        v,
        cu_seqlens_q,
        cu_seqlens_k,
        max_seqlen_q,
        max_seqlen_k,
        dropout_p=0.0,
        softmax_scale=None,
        causal=False,
        deterministic=False,
    ):
        module.deterministic.append(deterministic)
        assert q.ndim == 3 and cu_seqlens_q.dtype == cu_seqlens_k.dtype == torch.int32  # [total, H, Dh]
        assert max_seqlen_k == int((cu_seqlens_k[1:] - cu_seqlens_k[:-1]).max())
        scale = softmax_scale or 1 / math.sqrt(q.shape[-1])
        out = torch.zeros_like(q)
        for i in range(len(cu_seqlens_q) - 1):
            qs, qe, ks, ke = cu_seqlens_q[i], cu_seqlens_q[i + 1], cu_seqlens_k[i], cu_seqlens_k[i + 1]
            if ke > ks:  # flash-attn leaves rows without keys at zero
                out[qs:qe] = reference_softmax(q[qs:qe], k[ks:ke], v[ks:ke], scale)
        return out

    module = types.ModuleType("flash_attn")
    module.deterministic = []  # the flag of every call: whether the deterministic backward was asked for
    module.flash_attn_func = flash_attn_func
    module.flash_attn_varlen_func = flash_attn_varlen_func
    return module


@pytest.fixture
def flash(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", fake_flash_attn())


@pytest.fixture
def no_flash(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # import raises ModuleNotFoundError


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_math(masked):
    q, k, v = qkv()
    mask = key_mask() if masked else None
    expected = attention(q, k, v, mask, "math")
    assert max_relative_error(attention(q, k, v, mask, "sdpa"), expected) <= 1e-5


def test_masked_keys_are_ignored_and_rows_without_keys_output_zero():
    q, k, v = qkv()
    mask = key_mask()
    out = attention(q, k, v, mask, "math")
    kept = mask[1]
    alone = attention(q[1:2], k[1:2, :, kept], v[1:2, :, kept], None, "math")
    assert max_relative_error(out[1:2], alone) <= 1e-6
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    assert torch.equal(attention(q, k, v, mask, "sdpa")[2], torch.zeros_like(out[2]))


@pytest.mark.parametrize("masked", [False, True])
def test_flash_layout_and_varlen_masking_match_math(flash, masked):
    q, k, v = qkv()
    mask = key_mask() if masked else None
    expected = attention(q, k, v, mask, "math")
    assert max_relative_error(attention(q, k, v, mask, "flash"), expected) <= 1e-5


@pytest.mark.parametrize("masked", [False, True])
def test_flash_asks_for_its_deterministic_backward_under_deterministic_algorithms(flash, masked):
    q, k, v = qkv()
    mask = key_mask() if masked else None
    attention(q, k, v, mask, "flash")
    torch.use_deterministic_algorithms(True)
    try:
        attention(q, k, v, mask, "flash")
    finally:
        torch.use_deterministic_algorithms(False)
    assert sys.modules["flash_attn"].deterministic == [False, True]


def test_auto_without_flash_attn_picks_sdpa_and_logs_why(no_flash, caplog):
    with caplog.at_level(logging.INFO, logger="models.attention"):
        model = UnityDiT(ModelConfig(depth=1, attention="auto"), in_channels=3, text_dim=16)
    assert model.attention_backend == "sdpa"
    assert "attention backend: sdpa (flash_attn not installed)" in caplog.text


def test_explicit_flash_without_flash_attn_is_a_clear_error(no_flash):
    with pytest.raises(RuntimeError, match="model.attention=flash but flash_attn not installed"):
        AttentionBackend("flash")


def test_auto_with_flash_attn_falls_back_to_sdpa_where_flash_cannot_run(flash):
    backend = AttentionBackend("auto")
    assert backend.name == "flash"
    q, k, v = qkv()  # CPU fp32: flash-attn cannot take these
    assert max_relative_error(backend(q, k, v, key_mask()), attention(q, k, v, key_mask(), "math")) <= 1e-5
    with pytest.raises(RuntimeError, match="flash attention needs CUDA fp16/bf16 tensors, got cpu torch.float32"):
        AttentionBackend("flash")(q, k, v)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="choose one of auto, flash, sdpa, math"):
        AttentionBackend("xformers")
