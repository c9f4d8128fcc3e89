"""Parameters by component and forward FLOPs of a configured UnityDiT, without allocating its weights.

    python -m models.summary --config configs/<x>.yaml [--frames 16 --size 64 --streams 2 --channels 3
                             --compression 1 1 1] [--height H --width W] [--json]

The model is built on the ``meta`` device, so base and large cost no memory. ``--config`` is a run
config (or a ``configs/model/*.yaml`` fragment); only its ``model:`` section is read.
"""

from __future__ import annotations

import argparse
import json
import logging

import torch
from omegaconf import OmegaConf

from .config import ModelConfig
from .dit import UnityDiT
from .flops import attention_quadratic_flops, context_length, forward_flops, latent_grid, tokens_per_stream

# Parameter-name prefix -> component; the components partition the parameters.
COMPONENTS = (
    ("switcher.time_embed.", "timestep_embedding"),
    ("switcher.modality_embed.", "modality_embedding"),
    ("switcher.modulation.", "modulation"),
    ("context.text_proj.", "text_projection"),
    ("patch_embed.", "patch_embed"),
    ("aux_patch_embed.", "patch_embed"),
    ("aux_in.", "patch_embed"),
    ("final.", "final_layer"),
    ("aux_final.", "final_layer"),
)
BLOCK_COMPONENTS = {
    "attn": "self_attn",
    "cross_attn": "cross_attn",
    "cross_norm": "cross_attn",
    "mlp": "mlp",
    "modulation": "modulation",
}
# The paper's view: cross-attention belongs both to the blocks and to the in-context learner.
GROUPS = {
    "blocks": ("self_attn", "cross_attn", "mlp"),
    "switcher": ("modulation", "modality_embedding", "timestep_embedding"),
    "in_context": ("cross_attn", "text_projection"),
    "embeddings": ("patch_embed", "final_layer"),
}


def load_model_config(path: str | None, overrides=()) -> ModelConfig:
    """The ``model:`` section of a YAML run config over the defaults, with ``key=value`` overrides."""
    config = OmegaConf.structured(ModelConfig)
    if path:
        config = OmegaConf.merge(config, OmegaConf.load(path).get("model", {}))
    config = OmegaConf.merge(config, OmegaConf.from_dotlist(list(overrides)))
    model_config = OmegaConf.to_object(config)
    model_config.validate()
    return model_config


def component_of(name: str) -> str:
    """The component a parameter name belongs to (see :data:`COMPONENTS`)."""
    if name.startswith("blocks."):
        return BLOCK_COMPONENTS[name.split(".")[2]]
    return next(component for prefix, component in COMPONENTS if name.startswith(prefix))


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per component (they sum to the total)."""
    counts = dict.fromkeys((c for members in GROUPS.values() for c in members), 0)
    for name, parameter in model.named_parameters():
        counts[component_of(name)] += parameter.numel()
    return counts


def summarize(
    config: ModelConfig,
    channels: int | None = None,
    text_dim: int | None = None,
    frames: int = 16,
    height: int = 64,
    width: int = 64,
    streams: int = 2,
    compression=(1, 1, 1),
    caption_tokens: int | None = None,
    prompt_tokens: int | None = None,
) -> dict:
    """Parameters (total, per component and group) and forward FLOPs per sample for a clip geometry.

    ``channels``: the codec's (default ``model.in_channels``, else 3, the pixel codec's).
    """
    channels = channels or config.in_channels or 3
    text_dim = text_dim or config.text_dim
    caption_tokens = caption_tokens or config.text_max_tokens
    prompt_tokens = prompt_tokens or config.text_max_tokens
    logging.getLogger("models.attention").setLevel(logging.WARNING)
    with torch.device("meta"):
        model = UnityDiT(config, channels, text_dim)
    components = parameter_counts(model)
    grid = latent_grid(frames, height, width, compression)
    flops = forward_flops(config, channels, text_dim, grid, streams, caption_tokens, prompt_tokens)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "components": components,
        "groups": {group: sum(components[c] for c in members) for group, members in GROUPS.items()},
        "flops_forward": flops["total"],
        "flops_components": {k: v for k, v in flops.items() if k != "total"},
        "tokens": streams * tokens_per_stream(config, grid),
        "tokens_per_stream": tokens_per_stream(config, grid),
        "context_tokens": context_length(config, caption_tokens, prompt_tokens),
        "attention_quadratic_flops": attention_quadratic_flops(config, grid, streams),
        "against_two_streams": {  # the pair (rgb and one modality): how cost grows with the streams
            "tokens": streams / 2,
            "flops_forward": flops["total"]
            / forward_flops(config, channels, text_dim, grid, 2, caption_tokens, prompt_tokens)["total"],
            "attention_quadratic": (streams / 2) ** 2,
        },
        "geometry": {
            "frames": frames,
            "height": height,
            "width": width,
            "streams": streams,
            "channels": channels,
            "compression": list(compression),
            "latent": list(grid),
            "patch": list(config.patch),
        },
        "model": {
            "hidden": config.hidden,
            "depth": config.depth,
            "heads": config.heads,
            "mlp_ratio": config.mlp_ratio,
            "mlp_width": config.mlp_width,
            "text_dim": text_dim,
        },
    }


def human(n: float) -> str:
    """``n`` with a k / M / G / T suffix, right-aligned."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:10.2f} {suffix}"
    return f"{n:10.0f}  "


def format_table(summary: dict) -> str:
    """The summary as readable text: parameters by group and component, then FLOPs and tokens."""
    lines = [f"{'parameters':<24}{human(summary['params'])}"]
    for group, members in GROUPS.items():
        lines.append(f"  {group:<22}{human(summary['groups'][group])}")
        lines += [f"    {m:<20}{human(summary['components'][m])}" for m in members]
    lines.append("  (cross_attn is counted in both blocks and in_context)")
    g = summary["geometry"]
    lines.append(
        f"clip {g['frames']}x{g['height']}x{g['width']} x{g['streams']} streams, latent {g['latent']}, "
        f"patch {g['patch']}: {summary['tokens_per_stream']} tokens/stream, {summary['tokens']} tokens/sample, "
        f"{summary['context_tokens']} context tokens/stream"
    )
    lines.append(f"{'forward FLOPs / sample':<24}{human(summary['flops_forward'])}")
    lines += [f"  {k:<22}{human(v)}" for k, v in summary["flops_components"].items()]
    quadratic = summary["attention_quadratic_flops"]
    lines.append(
        f"  {'self_attn q·kᵀ, a·v':<22}{human(quadratic)}  ({quadratic / summary['flops_forward']:.1%} of the "
        "forward: quadratic in the tokens of all streams)"
    )
    growth = summary["against_two_streams"]
    lines.append(
        f"against 2 streams (rgb and one modality): tokens x{growth['tokens']:.2f}, forward FLOPs "
        f"x{growth['flops_forward']:.2f}, quadratic attention term x{growth['attention_quadratic']:.2f}"
    )
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=None, help="YAML run config; its model: section is used")
    parser.add_argument("--frames", type=int, default=16, help="clip frames (before codec compression)")
    parser.add_argument("--size", type=int, default=64, help="square frame size, pixels")
    parser.add_argument("--height", type=int, default=None, help="frame height, pixels (overrides --size)")
    parser.add_argument("--width", type=int, default=None, help="frame width, pixels (overrides --size)")
    parser.add_argument("--streams", type=int, default=2, help="streams per sample: rgb and k auxiliary ones (k + 1)")
    parser.add_argument(
        "--channels", type=int, default=None, help="codec channels (default model.in_channels, else 3 for pixels)"
    )
    parser.add_argument("--compression", type=int, nargs=3, default=[1, 1, 1], metavar=("T", "H", "W"))
    parser.add_argument("--text-dim", type=int, default=None, help="text embedding width (default model.text_dim)")
    parser.add_argument("--caption-tokens", type=int, default=None, help="default model.text_max_tokens")
    parser.add_argument("--prompt-tokens", type=int, default=None, help="default model.text_max_tokens")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("overrides", nargs="*", help="model key=value overrides, e.g. depth=12")
    args = parser.parse_args(argv)

    summary = summarize(
        load_model_config(args.config, args.overrides),
        args.channels,
        args.text_dim,
        args.frames,
        args.height or args.size,
        args.width or args.size,
        args.streams,
        tuple(args.compression),
        args.caption_tokens,
        args.prompt_tokens,
    )
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return summary


if __name__ == "__main__":
    main()
