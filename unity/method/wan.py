"""Wan2.1 / Wan2.2 transformers as UnityDiT: their configs, and their weights renamed and reshaped both ways.

A Wan text-to-video transformer is a UnityDiT with one rgb stream and the Wan options of the model
config (``models/config.py``): QK-norm across heads, the table head, an explicit FFN width, prediction
of the velocity, and the text context zero-padded to 512 tokens and attended in full. Times agree:
Unity's σ ∈ [0, 1] is Wan's ``timestep / 1000`` and both predict ``v = ε − x_0``.

Two key layouts are read and written: diffusers' ``WanTransformer3DModel`` and the original Wan
repository's ``WanModel`` (whose ``norm3`` is diffusers' ``norm2``, the cross-attention norm). Every
mapping is a rename, a reshape or a concatenation, so a round trip reproduces every tensor bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from models.config import ModelConfig

DIFFUSERS, ORIGINAL = "diffusers", "original"
LAYOUTS = (DIFFUSERS, ORIGINAL)
PREFIX = "dit."  # the DiT's keys inside a run's checkpoint (unity.method.network.TrainModule)
TEXT_LENGTH = 512  # umT5 tokens Wan pads every prompt to
EPS = 1e-6  # Wan's norm epsilon, UnityDiT's everywhere
IMAGE_KEYS = ("img_emb", "image_embedder", "k_img", "v_img", "norm_k_img", "add_k_proj", "add_v_proj", "norm_added")


@dataclass(frozen=True)
class Rule:
    """One UnityDiT tensor from one or more Wan tensors (names per layout), and how."""

    unity: str
    diffusers: tuple[str, ...]
    original: tuple[str, ...]
    kind: str = "same"  # same | squeeze (drop a leading 1) | conv (Conv3d kernel <-> linear) | cat (along dim 0)

    def names(self, layout: str) -> tuple[str, ...]:
        return self.diffusers if layout == DIFFUSERS else self.original


def _linear(unity: str, diffusers: str, original: str) -> list[Rule]:
    return [Rule(f"{unity}.{p}", (f"{diffusers}.{p}",), (f"{original}.{p}",)) for p in ("weight", "bias")]


def _fused(unity: str, diffusers: tuple[str, ...], original: tuple[str, ...]) -> list[Rule]:
    return [
        Rule(f"{unity}.{p}", tuple(f"{d}.{p}" for d in diffusers), tuple(f"{o}.{p}" for o in original), "cat")
        for p in ("weight", "bias")
    ]


def rules(depth: int) -> list[Rule]:
    """Every tensor of a Wan transformer with ``depth`` blocks, in Unity's names."""
    out = [
        Rule("patch_embed.proj.weight", ("patch_embedding.weight",), ("patch_embedding.weight",), "conv"),
        Rule("patch_embed.proj.bias", ("patch_embedding.bias",), ("patch_embedding.bias",)),
        *_linear("switcher.time_embed.mlp.0", "condition_embedder.time_embedder.linear_1", "time_embedding.0"),
        *_linear("switcher.time_embed.mlp.2", "condition_embedder.time_embedder.linear_2", "time_embedding.2"),
        *_linear("switcher.modulation.1", "condition_embedder.time_proj", "time_projection.1"),
        *_linear("context.text_proj.fc1", "condition_embedder.text_embedder.linear_1", "text_embedding.0"),
        *_linear("context.text_proj.fc2", "condition_embedder.text_embedder.linear_2", "text_embedding.2"),
        *_linear("final.linear", "proj_out", "head.head"),
        Rule("final.table", ("scale_shift_table",), ("head.modulation",), "squeeze"),
    ]
    for i in range(depth):
        b = f"blocks.{i}."  # the same block prefix in all three namings
        out += [
            *_fused(
                b + "attn.qkv", tuple(f"{b}attn1.to_{x}" for x in "qkv"), tuple(f"{b}self_attn.{x}" for x in "qkv")
            ),
            Rule(b + "attn.q_norm.weight", (b + "attn1.norm_q.weight",), (b + "self_attn.norm_q.weight",)),
            Rule(b + "attn.k_norm.weight", (b + "attn1.norm_k.weight",), (b + "self_attn.norm_k.weight",)),
            *_linear(b + "attn.proj", b + "attn1.to_out.0", b + "self_attn.o"),
            *_linear(b + "cross_norm", b + "norm2", b + "norm3"),  # the swapped norms: only this one has weights
            *_linear(b + "cross_attn.q", b + "attn2.to_q", b + "cross_attn.q"),
            *_fused(
                b + "cross_attn.kv", (b + "attn2.to_k", b + "attn2.to_v"), (b + "cross_attn.k", b + "cross_attn.v")
            ),
            Rule(b + "cross_attn.q_norm.weight", (b + "attn2.norm_q.weight",), (b + "cross_attn.norm_q.weight",)),
            Rule(b + "cross_attn.k_norm.weight", (b + "attn2.norm_k.weight",), (b + "cross_attn.norm_k.weight",)),
            *_linear(b + "cross_attn.proj", b + "attn2.to_out.0", b + "cross_attn.o"),
            *_linear(b + "mlp.fc1", b + "ffn.net.0.proj", b + "ffn.0"),
            *_linear(b + "mlp.fc2", b + "ffn.net.2", b + "ffn.2"),
            Rule(b + "modulation", (b + "scale_shift_table",), (b + "modulation",), "squeeze"),
        ]
    return out


def detect_layout(keys) -> str:
    """``diffusers`` or ``original``, from a Wan checkpoint's tensor names."""
    keys = set(keys)
    if "proj_out.weight" in keys or "condition_embedder.time_proj.weight" in keys:
        return DIFFUSERS
    if "head.head.weight" in keys or "time_projection.1.weight" in keys:
        return ORIGINAL
    sample = ", ".join(sorted(keys)[:5])
    raise ValueError(f"not a Wan transformer checkpoint: neither diffusers' nor Wan's key names (first keys: {sample})")


def depth_of(keys) -> int:
    """Transformer blocks in a checkpoint, from its ``blocks.<i>.`` names."""
    blocks = {int(k.split(".")[1]) for k in keys if k.startswith("blocks.")}
    return max(blocks) + 1 if blocks else 0


def check_keys(keys, layout: str, depth: int) -> None:
    """Raise ValueError listing every Wan tensor that has no place in UnityDiT and every one missing."""
    expected = {name for rule in rules(depth) for name in rule.names(layout)}
    keys = set(keys)
    unmapped, missing = sorted(keys - expected), sorted(expected - keys)
    if not unmapped and not missing:
        return
    lines = []
    if any(part in key for key in unmapped for part in IMAGE_KEYS):
        lines.append("image-to-video checkpoints (CLIP image context, added K/V) are not supported: use T2V or TI2V")
    for label, items in (("unmapped keys", unmapped), ("missing keys", missing)):
        if items:
            lines.append(f"{label} ({len(items)}): {', '.join(items)}")
    raise ValueError("the checkpoint does not map onto UnityDiT:\n  " + "\n  ".join(lines))


def to_unity(get: Callable[[str], torch.Tensor], rule: Rule, layout: str, patch) -> torch.Tensor:
    """The Unity tensor of ``rule`` from the Wan tensors ``get(name)`` returns."""
    parts = [get(name) for name in rule.names(layout)]
    if rule.kind == "cat":
        return torch.cat(parts, dim=0)
    (x,) = parts
    if rule.kind == "squeeze":
        return x[0]
    if rule.kind == "conv":  # Conv3d kernel [D, C, pt, ph, pw] -> linear over patchify's (pt ph pw c) order
        return x.permute(0, 2, 3, 4, 1).reshape(x.shape[0], -1)
    return x


def from_unity(x: torch.Tensor, rule: Rule, layout: str, patch) -> dict[str, torch.Tensor]:
    """The Wan tensors of ``rule`` from its Unity tensor ``x`` (the inverse of :func:`to_unity`)."""
    names = rule.names(layout)
    if rule.kind == "cat":
        return dict(zip(names, x.chunk(len(names), dim=0)))
    if rule.kind == "squeeze":
        return {names[0]: x[None]}
    if rule.kind == "conv":
        channels = x.shape[1] // math.prod(patch)
        return {names[0]: x.reshape(x.shape[0], *patch, channels).permute(0, 4, 1, 2, 3)}
    return {names[0]: x}


# ---------------------------------------------------------------------------------------------- configs


def wan_shape(config: Mapping) -> dict:
    """The shape of a Wan transformer from its ``config.json`` (diffusers' or Wan's own); refuses what
    UnityDiT cannot be (image-to-video, other norms)."""
    if "num_attention_heads" in config:  # diffusers
        heads, head_dim = config["num_attention_heads"], config.get("attention_head_dim", 128)
        shape = dict(
            hidden=heads * head_dim,
            heads=heads,
            depth=config["num_layers"],
            ffn_dim=config["ffn_dim"],
            freq_dim=config.get("freq_dim", 256),
            in_channels=config.get("in_channels", 16),
            out_channels=config.get("out_channels") or config.get("in_channels", 16),
            text_dim=config.get("text_dim", 4096),
            patch=list(config.get("patch_size", (1, 2, 2))),
            eps=config.get("eps", EPS),
            rope_max_seq_len=config.get("rope_max_seq_len", 1024),
        )
        problems = {
            "qk_norm": (config.get("qk_norm", "rms_norm_across_heads"), "rms_norm_across_heads"),
            "cross_attn_norm": (config.get("cross_attn_norm", True), True),
            "image_dim": (config.get("image_dim"), None),
            "added_kv_proj_dim": (config.get("added_kv_proj_dim"), None),
            "pos_embed_seq_len": (config.get("pos_embed_seq_len"), None),
        }
    elif "dim" in config and "num_heads" in config:  # the Wan repository
        shape = dict(
            hidden=config["dim"],
            heads=config["num_heads"],
            depth=config["num_layers"],
            ffn_dim=config["ffn_dim"],
            freq_dim=config.get("freq_dim", 256),
            in_channels=config.get("in_dim", 16),
            out_channels=config.get("out_dim", 16),
            text_dim=config.get("text_dim", 4096),
            patch=list(config.get("patch_size", (1, 2, 2))),
            eps=config.get("eps", EPS),
            text_length=config.get("text_len", TEXT_LENGTH),
        )
        problems = {
            "model_type": (config.get("model_type", "t2v"), ("t2v", "ti2v")),
            "qk_norm": (config.get("qk_norm", True), True),
            "cross_attn_norm": (config.get("cross_attn_norm", True), True),
            "window_size": (list(config.get("window_size", (-1, -1))), [-1, -1]),
        }
    else:
        raise ValueError(
            "config.json is neither a diffusers WanTransformer3DModel config nor Wan's own (dim, num_heads)"
        )
    problems["eps"] = (shape["eps"], EPS)
    problems["out_channels"] = (shape["out_channels"], shape["in_channels"])
    wrong = [
        f"{key}={value!r} (supported: {allowed!r})"
        for key, (value, allowed) in problems.items()
        if (value not in allowed if isinstance(allowed, tuple) else value != allowed)
    ]
    if wrong:
        image = any(k.startswith(("model_type", "image_dim", "added_kv")) for k in wrong)
        hint = "; image-to-video models are not supported" if image else ""
        raise ValueError(f"this Wan transformer cannot be a UnityDiT: {', '.join(wrong)}{hint}")
    return shape


def wan_model_config(shape: Mapping, variant: ModelConfig | None = None) -> ModelConfig:
    """A model config that is the Wan transformer of ``shape`` (:func:`wan_shape`).

    ``variant`` keeps its choice of switcher, in-context mode, layout, timesteps, auxiliary path,
    codec and text encoder (default: plain Wan, ``switcher: none``, ``in_context: caption_only``); the
    network's shape and every Wan option are taken from ``shape``.
    """
    if variant is None:
        variant = ModelConfig(switcher="none", in_context="caption_only")
    if variant.in_context == "none":
        raise ValueError("model.in_context=none has no cross-attention, which Wan has: use caption_only or dual")
    config = replace(
        variant,
        hidden=shape["hidden"],
        depth=shape["depth"],
        heads=shape["heads"],
        mlp_ratio=shape["ffn_dim"] / shape["hidden"],
        ffn_dim=shape["ffn_dim"],
        patch=list(shape["patch"]),
        time_freq_dim=shape["freq_dim"],
        in_channels=shape["in_channels"],
        text_dim=shape["text_dim"],
        qk_norm=True,
        qk_norm_scope="width",
        final_layer="table",
        prediction="v",
        rope_theta=10000.0,
        text_pad=shape.get("text_length", TEXT_LENGTH),
        text_max_tokens=max(variant.text_max_tokens, shape.get("text_length", TEXT_LENGTH)),
    )
    config.validate()
    return config


def not_wan(config: ModelConfig) -> list[str]:
    """The options that keep a model's rgb path from being a Wan transformer; empty when it is one."""
    wanted = {
        "qk_norm": True,
        "qk_norm_scope": "width",
        "final_layer": "table",
        "prediction": "v",
        "rope_theta": 10000.0,
    }
    problems = [
        f"model.{k} is {getattr(config, k)!r} (Wan: {v!r})" for k, v in wanted.items() if getattr(config, k) != v
    ]
    if config.in_context == "none":
        problems.append("model.in_context is 'none' (Wan has cross-attention: caption_only or dual)")
    if config.text_encoder in ("builtin", "external"):
        problems.append(f"model.text_encoder is {config.text_encoder!r} (Wan reads umT5 embeddings: hf or precomputed)")
    if config.text_pad == 0:
        problems.append("model.text_pad is 0, masking the padded text (Wan attends to 512 zero-padded tokens)")
    return problems


def diffusers_config(config: ModelConfig, in_channels: int, text_dim: int, rope_max_seq_len: int = 1024) -> dict:
    """``config.json`` of the ``WanTransformer3DModel`` that the rgb path of ``config`` is."""
    return {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(config.patch),
        "num_attention_heads": config.heads,
        "attention_head_dim": config.hidden // config.heads,
        "in_channels": in_channels,
        "out_channels": in_channels,
        "text_dim": text_dim,
        "freq_dim": config.time_freq_dim,
        "ffn_dim": config.mlp_width,
        "num_layers": config.depth,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": EPS,
        "image_dim": None,
        "added_kv_proj_dim": None,
        "rope_max_seq_len": rope_max_seq_len,
        "pos_embed_seq_len": None,
    }


def original_config(config: ModelConfig, in_channels: int, text_dim: int) -> dict:
    """``config.json`` of the Wan repository's ``WanModel`` that the rgb path of ``config`` is."""
    return {
        "_class_name": "WanModel",
        "model_type": "t2v" if in_channels == 16 else "ti2v",
        "patch_size": list(config.patch),
        "text_len": config.text_pad,
        "in_dim": in_channels,
        "dim": config.hidden,
        "ffn_dim": config.mlp_width,
        "freq_dim": config.time_freq_dim,
        "text_dim": text_dim,
        "out_dim": in_channels,
        "num_heads": config.heads,
        "num_layers": config.depth,
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": EPS,
    }
