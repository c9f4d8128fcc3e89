"""LoRA fine-tuning with peft (UniVid): adapters on the DiT's attention and MLP, adapter-only checkpoints, merging.

A LoRA run (``lora.enabled``) starts from ``train.init_from`` (a run or checkpoint: its EMA weights when
saved), injects ``peft`` LoRA layers into the DiT's ``lora.target_modules`` and trains only them: the
base, the text encoder included, is frozen. Its checkpoints hold the adapters alone
(``adapter.safetensors``, ``adapter_ema.safetensors``); loading one rebuilds the base from
``train.init_from`` and adds them. ``python -m unity.lora merge --ckpt RUN_OR_CKPT --out DIR`` folds
the adapters into the base weights and writes a plain run that loads without peft.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file
from torch import nn

from unity.checkpoint import state_mismatch

ADAPTER, ADAPTER_EMA = "adapter", "adapter_ema"  # checkpoint file stems of a LoRA run
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
    config = peft.LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=list(settings.target_modules))
    try:
        peft.inject_adapter_in_model(config, module.dit)
    except ValueError as e:
        raise ValueError(f"lora.target_modules {list(settings.target_modules)} match no layer of the DiT ({e})") from None
    for name, param in module.named_parameters():
        param.requires_grad_(MARK in name)
    log.info("LoRA rank %d on %s: %d trainable of %d parameters", settings.rank, list(settings.target_modules),
             sum(p.numel() for p in module.parameters() if p.requires_grad), sum(p.numel() for p in module.parameters()))


def adapter_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The LoRA entries of a state dict."""
    return {name: tensor for name, tensor in state.items() if MARK in name}


def load_adapter(module: nn.Module, path: str | Path) -> None:
    """Load adapter weights into a module that has the same LoRA layers; keys and shapes must match."""
    state = load_file(str(path))
    problems = state_mismatch(state, adapter_state(module.state_dict()))
    if problems:
        raise ValueError(f"{path} does not fit the model's LoRA layers:\n{problems}")
    module.load_state_dict(state, strict=False)


def merged_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's state dict with every LoRA layer folded into its base weight (``W + B A · alpha / r``)."""
    tuners = _peft().tuners.lora
    for layer in module.modules():
        if isinstance(layer, tuners.LoraLayer):
            layer.merge()
    return {name.replace(".base_layer.", "."): tensor for name, tensor in module.state_dict().items() if MARK not in name}


def merge(ckpt: str, out: str, use_ema: bool = True) -> Path:
    """Write the merged weights of a LoRA checkpoint as a plain run folder ``out`` (config + one checkpoint)."""
    from unity.network import load_trained

    trained = load_trained(ckpt, use_ema=use_ema, device="cpu")
    if not trained.config.lora.enabled:
        raise ValueError(f"{ckpt} is not a LoRA run (lora.enabled is false): nothing to merge")
    state = merged_state(trained.module)
    config = OmegaConf.to_container(trained.config, resolve=True)
    config["lora"]["enabled"] = False
    config["train"]["init_from"] = ""
    folder = Path(out) / "checkpoints" / Path(trained.checkpoint).name
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "state.json").write_text(json.dumps({"step": 0, "world_size": 1, "ranks": [{}], "merged_from": trained.checkpoint}))
    (Path(out) / "checkpoints" / "latest").write_text(folder.name + "\n")
    (Path(out) / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unity.lora", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merger = commands.add_parser("merge", help="fold a LoRA run's adapters into its base weights")
    merger.add_argument("--ckpt", required=True, help="the LoRA run folder or one of its checkpoints")
    merger.add_argument("--out", required=True, help="folder for the merged run (config.yaml + checkpoints/)")
    merger.add_argument("--no-ema", action="store_true", help="merge the trained adapters, not their EMA")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        folder = merge(args.ckpt, args.out, use_ema=not args.no_ema)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"wrote the merged weights to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
