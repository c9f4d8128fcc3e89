"""Folding a LoRA run's adapters into its base: a plain run folder that loads without peft."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from unity.inference.loading import load_trained
from unity.method.lora import merged_state
from unity.train.checkpoint import read_state, save_checkpoint, save_run_config


def merge(ckpt: str, out: str, use_ema: bool = True) -> Path:
    """Write the merged weights of a LoRA checkpoint as a run folder ``out`` (config + one checkpoint)."""
    trained = load_trained(ckpt, use_ema=use_ema, device="cpu")
    if not trained.config.lora.enabled:
        raise ValueError(f"{ckpt} is not a LoRA run (lora.enabled is false): nothing to merge")
    config = OmegaConf.to_container(trained.config, resolve=True)
    config["lora"]["enabled"] = False
    config["train"]["init_from"] = ""
    save_run_config(out, config)
    step = read_state(trained.checkpoint, rank=0)["step"]
    folder = save_checkpoint(out, step, merged_state(trained.module), None, {"merged_from": trained.checkpoint})
    return Path(folder)
