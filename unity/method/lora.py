"""LoRA with peft (UniVid): adapters on the DiT's attention and MLP, their state, and folding them in.

A LoRA run (``lora.enabled``) starts from ``train.init_from`` (a run or checkpoint: its EMA weights when
saved), injects ``peft`` LoRA layers into the DiT's ``lora.target_modules`` and trains only them: the
base, the text encoder included, is frozen. Its checkpoints hold the adapters alone
(``unity.train.checkpoint``); ``python -m unity.lora merge`` folds them into the base weights.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

MARK = "lora_"  # peft's LoRA parameter names contain lora_A / lora_B

log = logging.getLogger(__name__)


def _peft():
    try:
        import peft
    except ImportError:
        raise ImportError("LoRA needs the peft package: pip install -e '.[lora]'") from None
    return peft


def add_lora(module: nn.Module, settings) -> None:
    """Inject LoRA layers into ``module.dit`` per ``settings`` (the config's ``lora`` section) and freeze the rest."""
    peft = _peft()
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
    )
    try:
        peft.inject_adapter_in_model(config, module.dit)
    except ValueError as e:
        raise ValueError(
            f"lora.target_modules {list(settings.target_modules)} match no layer of the DiT ({e})"
        ) from None
    for name, param in module.named_parameters():
        param.requires_grad_(MARK in name)
    log.info(
        "LoRA rank %d on %s: %d trainable of %d parameters",
        settings.rank,
        list(settings.target_modules),
        sum(p.numel() for p in module.parameters() if p.requires_grad),
        sum(p.numel() for p in module.parameters()),
    )


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LoRA entries of a state dict."""
    return {name: tensor for name, tensor in state.items() if MARK in name}


def merged_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict with every LoRA layer folded into its base weight (``W + B A · alpha / r``)."""
    tuners = _peft().tuners.lora
    for layer in module.modules():
        if isinstance(layer, tuners.LoraLayer):
            layer.merge()
    return {
        name.replace(".base_layer.", "."): tensor for name, tensor in module.state_dict().items() if MARK not in name
    }
