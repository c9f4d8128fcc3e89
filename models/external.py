"""External-encoder conditioning (Omni-Video): feature sequences of any width steer the DiT through an adapter.

With ``text_encoder: external`` the caption's context is a precomputed sequence of feature vectors
stored with each sample (e.g. a multimodal LLM's hidden states for the video's prompt, width
``external_dim``), mapped to ``text_dim`` by a trainable adapter; the modality prompts stay text
(the builtin byte encoder). Adapters:

- ``linear``: LayerNorm then one linear map, token for token (``[B, L, W] -> [B, L, text_dim]``);
- ``queries``: Omni-Video's vision head in small: ``external_queries`` learned query tokens and the
  projected features pass through ``external_layers`` transformer layers, and the queries' outputs
  form a fixed-length context (``[B, Q, text_dim]``) whatever the input length.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from models.text import BuiltinTextEncoder, TextBlock, TextEncoder

ADAPTERS = ("linear", "queries")


class FeatureAdapter(nn.Module):
    """``(features [B, L, W], mask [B, L]) -> (context [B, L', text_dim], mask [B, L'])``."""

    def __init__(self, width: int, text_dim: int, kind: str = "linear", queries: int = 32, layers: int = 2):
        super().__init__()
        if kind not in ADAPTERS:
            raise ValueError(f"unknown external adapter {kind!r}; choose one of {', '.join(ADAPTERS)}")
        self.width, self.kind = width, kind
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, text_dim)
        if kind == "queries":
            heads = text_dim // 64 if text_dim % 64 == 0 else 1
            self.queries = nn.Parameter(torch.randn(queries, text_dim) * 0.02)
            self.blocks = nn.ModuleList(TextBlock(text_dim, heads) for _ in range(layers))
            self.out_norm = nn.LayerNorm(text_dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim != 3 or features.shape[-1] != self.width:
            raise ValueError(
                f"external features must be [B, L, {self.width}] (model.external_dim), got {list(features.shape)}"
            )
        mask = mask.bool()
        x = self.proj(self.norm(features.float()))  # [B, L, text_dim]
        if self.kind == "linear":
            return x * mask[..., None], mask
        batch, count = x.shape[0], self.queries.shape[0]
        tokens = torch.cat([self.queries.expand(batch, -1, -1), x], dim=1)  # [B, Q + L, text_dim]
        keys = torch.cat([mask.new_ones(batch, count), mask], dim=1)  # [B, Q + L]
        for block in self.blocks:
            tokens = block(tokens, keys)
        return self.out_norm(tokens[:, :count]), mask.new_ones(batch, count)


class ExternalConditioner(TextEncoder):
    """Prompts through the builtin byte encoder, captions from external features through the adapter."""

    def __init__(
        self, width: int, dim: int, layers: int, max_tokens: int, kind: str, queries: int, adapter_layers: int
    ):
        super().__init__()
        self.dim = dim
        self.prompts = BuiltinTextEncoder(dim, layers, max_tokens)
        self.adapter = FeatureAdapter(width, dim, kind, queries, adapter_layers)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prompts(texts)

    def features(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The caption context from external features ``[B, L, W]`` (an all-False mask: the dropped caption)."""
        return self.adapter(features, mask)
