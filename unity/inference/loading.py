"""A finished run (or one of its checkpoints) loaded for inference, rebuilt from its own ``config.yaml``.

Nothing but the run folder is needed: the config (migrated when an older version wrote it) rebuilds
the model, and a checkpoint's EMA weights are used by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf

from models.codec import Codec
from models.dit import UnityDiT
from unity.config import load_run_config
from unity.method.conditioning import encode_conditioning
from unity.method.flow_matching import training_shift
from unity.method.lora import add_lora
from unity.method.network import TrainModule, build_model, missing_pretrained
from unity.train.checkpoint import (
    ADAPTER,
    ADAPTER_EMA,
    WEIGHTS,
    find_checkpoint,
    load_adapter,
    load_init,
    load_weights,
    weights_file,
)

log = logging.getLogger(__name__)


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

    @property
    def clip_shape(self) -> tuple[int, int]:
        """(frames, size) of the clips the run trained on: what inputs are fitted to."""
        return int(self.config.data.frames), int(self.config.data.size)

    @property
    def shift(self) -> float:
        """The time shift the run trained with: the sampler's default."""
        return training_shift(self.config.flow, self.config.model, self.codec, *self.clip_shape)

    def conditioning(self, captions: list[str], prompts: list[str], streams: int, features=None) -> dict:
        """``UnityDiT.forward`` keyword arguments for these captions (or external ``features``) and prompts."""
        return encode_conditioning(self.text, captions, prompts, streams, self.device, features)


def load_trained(
    path: str | Path, use_ema: bool = True, device: torch.device | str | None = None, overrides: list[str] | None = None
) -> Trained:
    """Rebuild the model from the run's ``config.yaml`` and load a checkpoint's weights into it.

    ``path``: a run folder (its latest checkpoint) or a checkpoint folder. The EMA weights are used
    when asked and saved, else the trained ones. A LoRA run loads its base (``train.init_from``) and
    adds its adapters. A checkpoint that does not fit the config's model raises ValueError listing
    the mismatched keys; a missing codec or text encoder folder (a run trained from precomputed
    shards) raises FileNotFoundError saying what to put where.
    """
    ckpt = find_checkpoint(path)
    config_path = ckpt.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: a checkpoint is loaded with its run's config.yaml")
    config = load_run_config(str(config_path), overrides or [])
    missing = missing_pretrained(OmegaConf.to_object(config.model))
    if missing:  # a run trained from precomputed shards needs them back to see pixels or read new texts
        raise FileNotFoundError(f"the run {ckpt.parent.parent} needs its pretrained parts: " + "; ".join(missing))
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    module, text, codec = build_model(config, device)
    stems = WEIGHTS
    if config.lora.enabled:  # the frozen base, then the run's adapters
        load_init(module, config.train.init_from)
        add_lora(module, config.lora)
        stems = (ADAPTER, ADAPTER_EMA)
    weights = stems[1] if use_ema and weights_file(ckpt, stems[1]).is_file() else stems[0]
    (load_adapter if config.lora.enabled else load_weights)(module, weights_file(ckpt, weights))
    module.eval()
    log.info("loaded %s weights of %s", weights, ckpt)
    return Trained(config, module, module.text if module.text is not None else text, codec, str(ckpt), weights, device)
