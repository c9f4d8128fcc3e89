"""The trained network: the DiT with its text encoder and codec, built from a config or loaded from a run.

Training builds it with :func:`build_model`; sampling and evaluation load a finished run or one of
its checkpoints with :func:`load_trained` (the EMA weights by default), rebuilding the model from
the run's ``config.yaml`` so that nothing but the run folder is needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from models.codec import Codec, build_codec
from models.config import ModelConfig
from models.dit import UnityDiT
from models.text import build_text_encoder
from unity.checkpoint import load_weights, resolve_resume
from unity.conditioning import encode_conditioning
from unity.config import load
from unity.lora import ADAPTER, ADAPTER_EMA, add_lora, load_adapter

log = logging.getLogger(__name__)


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


@dataclass
class Trained:
    """A trained model ready for inference (eval mode, no gradients needed)."""

    config: DictConfig  # the run's resolved config
    module: TrainModule
    text: nn.Module  # the text encoder (the module's own when it was trained)
    codec: Codec
    checkpoint: str  # the checkpoint folder the weights came from
    weights: str  # the weights file's stem: model, ema (adapter, adapter_ema for a LoRA run)
    device: torch.device

    @property
    def dit(self) -> UnityDiT:
        return self.module.dit

    def conditioning(self, captions: list[str], prompts: list[str], streams: int, features=None) -> dict:
        """``UnityDiT.forward`` keyword arguments for these captions (or external ``features``) and prompts."""
        return encode_conditioning(self.text, captions, prompts, streams, self.device, features)


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for ``path``: a checkpoint folder itself, or a run folder (its latest)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run or checkpoint folder")
    try:
        found = resolve_resume(path.parent, str(path))
    except FileNotFoundError:
        found = None
    if found is None or not any((Path(found) / f"{stem}.safetensors").is_file() for stem in ("model", ADAPTER)):
        raise FileNotFoundError(f"{path} is neither a run folder with checkpoints nor a checkpoint folder "
                                "holding model.safetensors (or a LoRA run's adapter.safetensors)")
    return Path(found)


def load_init(module: TrainModule, path: str | Path) -> str:
    """Load the weights of the run or checkpoint ``path`` (its EMA when saved) into ``module``; returns the file."""
    ckpt = find_checkpoint(path)
    for stem in ("ema", "model"):
        if (ckpt / f"{stem}.safetensors").is_file():
            load_weights(module, ckpt / f"{stem}.safetensors")
            return str(ckpt / f"{stem}.safetensors")
    raise FileNotFoundError(f"{ckpt} holds only LoRA adapters; start from a full checkpoint (merge it first: "
                            "python -m unity.lora merge)")


def load_trained(path: str | Path, use_ema: bool = True, device: torch.device | str | None = None,
                 overrides: list[str] | None = None) -> Trained:
    """Rebuild the model from the run's ``config.yaml`` and load a checkpoint's weights into it.

    ``path``: a run folder (its latest checkpoint) or a checkpoint folder. The EMA weights are used
    when asked and saved, else the trained ones. A LoRA run loads its base (``train.init_from``) and
    adds its adapters. A checkpoint that does not fit the config's model raises ValueError listing
    the mismatched keys.
    """
    ckpt = find_checkpoint(path)
    config_path = ckpt.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: a checkpoint is loaded with its run's config.yaml")
    config = load(str(config_path), overrides or [])
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module, text, codec = build_model(config, device)
    stems = ("model", "ema")
    if config.lora.enabled:  # the frozen base, then the run's adapters
        load_init(module, config.train.init_from)
        add_lora(module, config.lora)
        stems = (ADAPTER, ADAPTER_EMA)
    weights = stems[1] if use_ema and (ckpt / f"{stems[1]}.safetensors").is_file() else stems[0]
    (load_adapter if config.lora.enabled else load_weights)(module, ckpt / f"{weights}.safetensors")
    module.eval()
    log.info("loaded %s weights of %s", weights, ckpt)
    return Trained(config, module, module.text if module.text is not None else text, codec, str(ckpt), weights, device)
