"""The network of a run: the DiT with its text encoder and codec, built from the config.

Training builds it with :func:`build_model`; inference rebuilds it the same way from a run's saved
config (``unity.inference.loading``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from models.codec import Codec, build_codec, vae_folder
from models.config import ModelConfig
from models.dit import UnityDiT
from models.text import hf_folders
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


def missing_pretrained(model_config: ModelConfig) -> list[str]:
    """What the frozen pretrained parts the config names lack on disk, each saying what to download and
    where to put it; empty when they are all there (or the config names none)."""
    checks = []
    if model_config.codec == "diffusers":
        checks.append(lambda: vae_folder(model_config.codec_path))
    if model_config.text_encoder == "hf":
        checks.append(lambda: hf_folders(model_config.text_path))
    problems = []
    for check in checks:
        try:
            check()
        except FileNotFoundError as e:
            problems.append(str(e))
    return problems


def build_model(
    config: DictConfig, device, codec: Codec | None = None, text: nn.Module | None = None
) -> tuple[TrainModule, nn.Module, Codec]:
    """(trained module, text encoder, codec). Frozen parts (codec, an hf text encoder) stay outside the module.

    ``codec`` and ``text`` replace the ones the config names (stand-ins for precomputed shards, whose
    weights then need not exist). Loading frozen weights leaves the global RNG as it found it, so a
    run's initial weights are the same whether its frozen parts are loaded or stood in for.
    """
    model_config: ModelConfig = OmegaConf.to_object(config.model)
    with torch.random.fork_rng(devices=[]):
        codec = codec if codec is not None else build_codec(model_config, device)
        if text is None and model_config.text_encoder == "hf":
            text = build_text_encoder(model_config, device)
    text = text if text is not None else build_text_encoder(model_config, device)  # random init: seeded by the run
    if model_config.in_channels and model_config.in_channels != codec.channels:
        raise ValueError(
            f"the network takes {model_config.in_channels}-channel latents (model.in_channels) but the codec gives "
            f"{codec.channels}: point model.codec_path at the VAE the weights were trained with"
        )
    dit = UnityDiT(model_config, codec.channels, text.dim)
    trainable_text = text if any(p.requires_grad for p in text.parameters()) else None
    return TrainModule(dit, trainable_text).to(device), text, codec
