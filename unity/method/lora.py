"""LoRA with peft (UniVid): adapters on the DiT's attention and MLP, their state, and folding them in.

A LoRA run (``lora.enabled``) starts from ``train.init_from`` (a run or checkpoint: its EMA weights when
saved), injects ``peft`` LoRA layers into the DiT's ``lora.target_modules`` and trains only them: the
base, the text encoder included, is frozen. Its checkpoints hold the adapters alone
(``unity.train.checkpoint``); ``python -m unity.lora merge`` folds them into the base weights.

The adapters are saved the way PEFT saves them (``PeftModel.save_pretrained``): a folder with
``adapter_config.json`` and ``adapter_model.safetensors`` whose keys are ``get_peft_model_state_dict``'s
(``base_model.model.<module path>.lora_A.weight``, no adapter name), relative to the DiT. PEFT's own tools
load them (``PeftModel.from_pretrained(dit, folder)``, ``set_peft_model_state_dict``); the module's own key
layout (``dit.<module path>.lora_A.default.weight``, in ``adapter.safetensors`` files) still loads too.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

MARK = "lora_"  # peft's LoRA parameter names contain lora_A / lora_B
ADAPTER_NAME = "default"  # the adapter name peft gives injected layers (in module keys, not in saved files)
PEFT_PREFIX = "base_model.model."  # what PeftModel puts before the wrapped model's keys
PEFT_WEIGHTS, PEFT_CONFIG = "adapter_model.safetensors", "adapter_config.json"  # PEFT's file names
_MODULE_PREFIX = "dit."  # the adapters sit in the DiT of the trained module
_LORA_KEY = re.compile(r"\.(lora_[A-Za-z_]+)\.")  # lora_A, lora_B, ...: in modules the adapter name follows them
_NAMED_LORA_KEY = re.compile(rf"\.(lora_[A-Za-z_]+)\.{ADAPTER_NAME}\.")

log = logging.getLogger(__name__)


def _peft():
    try:
        import peft
    except ImportError:
        raise ImportError("LoRA needs the peft package: pip install -e '.[lora]'") from None
    return peft


def lora_config(settings, **extra):
    """peft's ``LoraConfig`` for the config's ``lora`` section (``extra``: further LoraConfig fields)."""
    return _peft().LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        **extra,
    )


def add_lora(module: nn.Module, settings) -> None:
    """Inject LoRA layers into ``module.dit`` per ``settings`` (the config's ``lora`` section) and freeze the rest."""
    try:
        _peft().inject_adapter_in_model(lora_config(settings), module.dit)
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


def adapter_config(settings, base: str = "") -> dict:
    """PEFT's ``adapter_config.json`` for the config's ``lora`` section (``base``: the base run or checkpoint)."""
    config = lora_config(settings, base_model_name_or_path=base or None, inference_mode=True).to_dict()
    config["auto_mapping"] = {"base_model_class": "UnityDiT", "parent_library": "models.dit"}
    config["peft_version"] = _peft().__version__
    return {key: sorted(value) if isinstance(value, set) else value for key, value in config.items()}


def to_peft_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Module adapter keys (``dit.blocks.0.attn.qkv.lora_A.default.weight``) -> PEFT's saved keys
    (``base_model.model.blocks.0.attn.qkv.lora_A.weight``)."""
    out = {}
    for name, tensor in state.items():
        if not name.startswith(_MODULE_PREFIX):
            raise ValueError(f"adapter key {name!r} is not in the DiT ({_MODULE_PREFIX}...)")
        path = _NAMED_LORA_KEY.sub(r".\1.", name[len(_MODULE_PREFIX) :])  # the adapter name dropped
        out[PEFT_PREFIX + path] = tensor
    return out


def from_peft_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """PEFT's saved keys -> module adapter keys; a state already in the module's layout is returned as it is."""
    if not any(name.startswith(PEFT_PREFIX) for name in state):
        return state
    return {
        _MODULE_PREFIX + _LORA_KEY.sub(lambda m: f".{m.group(1)}.{ADAPTER_NAME}.", name.removeprefix(PEFT_PREFIX)): t
        for name, t in state.items()
    }


def save_peft_adapter(folder: str | Path, state: dict[str, torch.Tensor], config: dict) -> None:
    """Write ``state`` (module adapter keys) as the PEFT adapter folder ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in to_peft_layout(state).items()}
    save_file(tensors, str(folder / PEFT_WEIGHTS), metadata={"format": "pt"})
    (folder / PEFT_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
