"""Rectified flow over streams: time sampling, per-stream noising and the masked velocity loss.

A noised stream is ``x_t = (1 - t) x_0 + t ε`` and the model predicts its velocity
``v = dx_t/dt = ε - x_0``. A clean (context) stream keeps ``x_0`` exactly and carries ``t = 0``;
the loss only sees the noised streams. ``t = 1`` is pure noise.
"""

from __future__ import annotations

import math

import torch

from models.flops import tokens_per_stream

T_EPS = 1e-5  # sampled times lie in [T_EPS, 1 - T_EPS]: strictly inside (0, 1) in float32


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """``t -> s t / (1 + (s - 1) t)``: fixes 0 and 1; ``s > 1`` moves every time towards 1 (noisier)."""
    return shift * t / (1 + (shift - 1) * t)


def sample_t(
    n: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0, shift: float = 1.0
) -> torch.Tensor:
    """``n`` training times in (0, 1): logit-normal ``sigmoid(N(mean, std²))`` then shifted (SD3).

    Drawn on the generator's device in float32.
    """
    u = torch.randn(n, generator=generator, device=generator.device) * std + mean
    return shift_time(torch.sigmoid(u), shift).clamp(T_EPS, 1 - T_EPS)


def resolution_shift(tokens_per_stream: int, base_tokens: int = 256, base_shift: float = 1.0) -> float:
    """SD3's resolution-dependent shift: ``base_shift · sqrt(tokens / base_tokens)``.

    More tokens carry more redundant signal, so the same noise level destroys less of the content;
    the shift, growing with the square root of the token count, moves training times towards the
    noisier end (SD3 §5.3.2, with token counts standing in for pixel counts).
    """
    return base_shift * math.sqrt(tokens_per_stream / base_tokens)


def training_shift(flow, model_config, codec, frames: int, size: int) -> float:
    """The time shift a run trains (and by default samples) with: ``flow.t_shift``, or under
    ``flow.t_shift_mode=resolution`` the shift of its tokens per stream (clips of ``frames`` x ``size``²)."""
    if flow.t_shift_mode == "fixed":
        return float(flow.t_shift)
    _, t, h, w = codec.latent_shape(frames, size, size)
    return resolution_shift(tokens_per_stream(model_config, (t, h, w)))


def noise_streams(x0: torch.Tensor, noised: torch.Tensor, t: torch.Tensor, noise: torch.Tensor):
    """Noise the streams marked in ``noised``; the others stay clean.

    x0, noise ``[B, S, C, T, H, W]``; noised bool ``[B, S]``; t ``[B]`` (one time per sample) or
    ``[B, S]`` (one per stream). Returns ``x_t`` (clean streams equal ``x0`` exactly), the model's
    per-stream times ``[B, S]`` (``t`` where noised, 0 where clean) and the target ``v = noise - x0``.
    """
    if t.ndim == 1:
        t = t[:, None].expand_as(noised)
    t_streams = torch.where(noised, t, torch.zeros_like(t))  # [B, S]
    tb = t_streams[:, :, None, None, None, None].to(x0.dtype)
    mask = noised[:, :, None, None, None, None]
    x_t = torch.where(mask, (1 - tb) * x0 + tb * noise, x0)
    return x_t, t_streams, noise - x0


def flow_matching_loss(v_pred: torch.Tensor, target: torch.Tensor, noised: torch.Tensor) -> torch.Tensor:
    """Per-sample MSE ``[B]`` over the elements of the noised streams only, in float32.

    Clean streams are masked out with ``where`` (not a multiply), so even a non-finite prediction
    on a context stream leaves the loss and its gradient untouched. A sample without noised streams
    has loss 0.
    """
    mask = noised[:, :, None, None, None, None]
    diff = torch.where(mask, v_pred.float() - target.float(), 0.0)  # masked first: no NaN reaches backward
    err = diff.square().flatten(2).mean(2)  # [B, S]
    return err.sum(1) / noised.sum(1).clamp(min=1)
