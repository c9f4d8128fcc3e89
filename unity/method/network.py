"""The network of a run: the DiT with its text encoder and codec, built from the config.

Training builds it with :func:`build_model`; inference rebuilds it the same way from a run's saved
config (``unity.inference.loading``).
"""

from __future__ import annotations

import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from models.codec import Codec, build_codec
from models.config import ModelConfig
from models.dit import UnityDiT
from models.text_encoder import build_text_encoder
from unity.method.conditioning import encode_conditioning


class TrainModule(nn.Module):
    """What the engine trains and checkpoints: the DiT and, when it is trainable, the text encoder.

    The training forward goes through this module (called via the engine), so that under ZeRO-3
    DeepSpeed gathers every parameter it uses. With a frozen text encoder the caller passes the
    embeddings instead of the texts.
    """

    def __init__(self, dit: UnityDiT, text: nn.Module | None):
        super().__init__()
        self.dit = dit
        self.text = text

    def forward(self, x, modality, t, captions=None, prompts=None, layout=None, features=None, **embeddings):
        if self.text is not None:
            embeddings = encode_conditioning(self.text, captions, prompts, x.shape[1], x.device, features)
        return self.dit(x, modality, t, **embeddings, layout=layout)


def build_model(config: DictConfig, device) -> tuple[TrainModule, nn.Module, Codec]:
    """(trained module, text encoder, codec). Frozen parts (codec, an hf text encoder) stay outside the module."""
    model_config: ModelConfig = OmegaConf.to_object(config.model)
    codec = build_codec(model_config, device)
    text = build_text_encoder(model_config, device)
    dit = UnityDiT(model_config, codec.channels, text.dim)
    trainable_text = text if any(p.requires_grad for p in text.parameters()) else None
    return TrainModule(dit, trainable_text).to(device), text, codec
