"""The modality-adaptive switcher: each stream's conditioning vector and its AdaLN-Zero modulation.

``c[b, s] = temb(t[b, s]) + L[modality[b, s]]``, and one MLP shared by all blocks (SiLU -> Linear(D, 6D),
Wan2.1's layout) maps it to ``(shift, scale, gate)`` for attention and MLP; every block adds its own
learned ``[6, D]`` table to that (see ``blocks.UnityBlock``). Variants, for ablations:

- ``adaln`` (the paper): the modality embedding enters ``c``, so every block's modulation switches per modality;
- ``token`` (the released UnityVideo code): ``L[m]`` is added to the stream's tokens after the patch
  embedding and ``c = temb(t)``;
- ``none``: no modality embedding anywhere.

With ``timesteps: shared`` every stream of a sample is modulated with one time, the largest of its
streams' times (that of the noised streams, the clean context streams having t = 0), as a
single-timestep DiT would see it; ``per_stream`` uses each stream's own t. A time per stream and
frame, ``t [B, S, F]`` (Wan2.2-TI2V's first latent frame clean for image-to-video), gives ``c`` and
the modulation per frame: ``[B, S, F, D]``, ``[B, S, F, 6, D]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .embed import FREQUENCY_DIM, TimestepEmbedder
from .layers import fp32_region

MODULATIONS = 6  # shift, scale, gate for attention, then for the MLP


class ModalitySwitcher(nn.Module):
    def __init__(
        self,
        hidden: int,
        num_modalities: int,
        mode: str = "adaln",
        timesteps: str = "per_stream",
        frequency_dim: int = FREQUENCY_DIM,
    ):
        super().__init__()
        self.mode = mode
        self.timesteps = timesteps
        self.time_embed = TimestepEmbedder(hidden, frequency_dim)
        self.modality_embed = nn.Embedding(num_modalities, hidden) if mode != "none" else None
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, MODULATIONS * hidden))

    def token_embedding(self, modality: torch.Tensor) -> torch.Tensor | None:
        """``[B, S, 1, D]`` to add to each stream's tokens (``token`` mode), else None."""
        return self.modality_embed(modality)[:, :, None] if self.mode == "token" else None

    def forward(self, t: torch.Tensor, modality: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``t [B, S]`` (or ``[B, S, F]``), ``modality [B, S]`` -> ``c [B, S, D]`` and the shared modulation
        ``[B, S, 6, D]`` (or ``[B, S, F, D]``, ``[B, S, F, 6, D]``), outside autocast."""
        if self.timesteps == "shared":
            t = t.amax(dim=1, keepdim=True).expand_as(t)
        with fp32_region(t):
            c = self.time_embed(t)
            if self.mode == "adaln":
                embedding = self.modality_embed(modality)  # [B, S, D]
                c = c + (embedding[:, :, None] if t.ndim == 3 else embedding)
            modulation = self.modulation(c).unflatten(-1, (MODULATIONS, -1))
        return c, modulation
