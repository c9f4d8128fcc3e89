"""Analytic forward FLOPs of UnityDiT per sample, for MFU and model sizing.

Counts matrix products only (2·m·n·k each; attention as its q kᵀ and a·v products), as
``torch.utils.flop_counter`` does: patch embedding, switcher MLPs, text projection, every block's
self-attention, cross-attention (including the K/V projections of the padded per-stream context)
and MLP, and the final layer. Elementwise work (norms, RoPE, softmax, activations) is ignored.
A training step costs about 3x the forward (backward = 2x forward; 4x with grad checkpointing).
"""

from __future__ import annotations

import math

from .config import ModelConfig
from .switcher import MODULATIONS


def latent_grid(frames: int, height: int, width: int, compression=(1, 1, 1)) -> tuple[int, int, int]:
    """Codec-space (T, H, W) of a clip; time follows the causal-VAE rule T = (frames - 1) // ct + 1.

    With no temporal compression that is ``frames``; Wan2.1's VAE (4, 8, 8) maps 33x480x832 to 9x60x104.
    """
    ct, ch, cw = compression
    return (frames - 1) // ct + 1, height // ch, width // cw


def context_length(config: ModelConfig, caption_tokens: int, prompt_tokens: int) -> int:
    """Keys per stream in cross-attention: the caption, or (dual) caption and prompt padded to the longer."""
    if config.in_context == "none":
        return 0
    if config.text_pad:  # a fixed length, every token attended (Wan)
        return config.text_pad
    return caption_tokens if config.in_context == "caption_only" else max(caption_tokens, prompt_tokens)


def tokens_per_stream(config: ModelConfig, grid: tuple[int, int, int]) -> int:
    """Transformer tokens of one stream of codec-space size ``grid`` (a multiple of the patch)."""
    if any(size % p for size, p in zip(grid, config.patch)):
        raise ValueError(f"codec-space grid {tuple(grid)} is not a multiple of the patch {tuple(config.patch)}")
    return math.prod(size // p for size, p in zip(grid, config.patch))


def attention_quadratic_flops(config: ModelConfig, grid: tuple[int, int, int], streams: int) -> int:
    """FLOPs of the joint self-attention's ``q kᵀ`` and ``a v`` over all blocks: the part quadratic in tokens.

    Every stream's tokens attend to every stream's, so it grows with the square of ``streams``."""
    tokens = streams * tokens_per_stream(config, grid)
    return config.depth * 2 * (2 * tokens * config.hidden * tokens)


def forward_flops(
    config: ModelConfig,
    in_channels: int,
    text_dim: int,
    grid: tuple[int, int, int],
    streams: int = 2,
    caption_tokens: int = 64,
    prompt_tokens: int = 64,
) -> dict[str, int]:
    """Forward FLOPs of one sample by component, plus ``total``; ``grid`` is the codec-space (T, H, W)."""
    d, s = config.hidden, streams
    n = tokens_per_stream(config, grid)
    patch_dim = in_channels * math.prod(config.patch)
    mlp_hidden = config.mlp_width
    keys = context_length(config, caption_tokens, prompt_tokens)
    if config.text_pad:
        caption_tokens = prompt_tokens = config.text_pad

    def matmul(m: int, k: int, n_out: int) -> int:
        return 2 * m * k * n_out

    self_attn = matmul(s * n, d, 3 * d) + matmul(s * n, d, d) + 2 * matmul(s * n, d, s * n)
    if config.stream_gate and s > 1:  # one rgb stream's queries also attend within it
        self_attn += 2 * matmul(n, d, n)
    cross_attn = 0
    text_projection = 0
    if config.in_context != "none":
        cross_attn = 2 * matmul(s * n, d, d) + matmul(s * keys, d, 2 * d) + 2 * s * matmul(n, d, keys)
        text_tokens = caption_tokens + (s * prompt_tokens if config.in_context == "dual" else 0)
        text_projection = matmul(text_tokens, text_dim, d) + matmul(text_tokens, d, d)
    mlp = 2 * matmul(s * n, d, mlp_hidden)
    paths = 2 if config.aux_path == "copied" else 1  # both ways in and out run on every stream, then one is kept
    head_modulation = matmul(s, d, 2 * d) if config.final_layer == "adaln" else 0
    flops = {
        "patch_embed": paths * matmul(s * n, patch_dim, d) + (matmul(s * n, d, d) if config.aux_in_proj else 0),
        "switcher": matmul(s, config.time_freq_dim, d) + matmul(s, d, d) + matmul(s, d, MODULATIONS * d),
        "text_projection": text_projection,
        "self_attn": config.depth * self_attn,
        "cross_attn": config.depth * cross_attn,
        "mlp": config.depth * mlp,
        "final_layer": paths * (head_modulation + matmul(s * n, d, patch_dim)),
    }
    flops["total"] = sum(flops.values())
    return flops
