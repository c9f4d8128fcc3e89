"""The text encoder a model config names: builtin, hf, precomputed or external (``models/text.py``,
``models/external.py``)."""

from __future__ import annotations

import torch

from models.config import ModelConfig
from models.external import ExternalConditioner
from models.text import BuiltinTextEncoder, PrecomputedText, TextEncoder, load_hf_text


def build_text_encoder(config: ModelConfig, device=None, dtype: torch.dtype | None = None) -> TextEncoder:
    """The encoder named by ``config.text_encoder`` on ``device``.

    ``dtype`` is the hf model's weight dtype (float32 by default); embeddings come out float32 either way.
    """
    if config.text_encoder == "builtin":
        encoder = BuiltinTextEncoder(config.text_dim, config.text_layers, config.text_max_tokens)
    elif config.text_encoder == "hf":
        encoder = load_hf_text(config.text_path, config.text_max_tokens, dtype)
    elif config.text_encoder == "precomputed":
        encoder = PrecomputedText(config.text_dim)
    elif config.text_encoder == "external":
        encoder = ExternalConditioner(
            config.external_dim,
            config.text_dim,
            config.text_layers,
            config.text_max_tokens,
            config.external_adapter,
            config.external_queries,
            config.external_layers,
        )
    else:
        raise ValueError(f"unknown text encoder {config.text_encoder!r}; choose builtin, hf, precomputed or external")
    return encoder.to(device) if device is not None else encoder
