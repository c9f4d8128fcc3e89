"""The model's typed configuration: the network, its codec and its text encoder.

This dataclass is the ``model`` section of the run config (``unity/config/schema.py``); the named sizes
live in ``configs/model/<size>.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal, get_args, get_origin, get_type_hints


@dataclass
class ModelConfig:
    # network
    hidden: int = 128  # transformer width D
    depth: int = 6  # transformer blocks
    heads: int = 4  # attention heads; hidden / heads is the head dimension
    mlp_ratio: float = 4.0  # MLP hidden width / D
    patch: list[int] = field(default_factory=lambda: [4, 8, 8])  # 3D patch (pt, ph, pw) in codec space
    num_modalities: int = 6  # rows of the modality embedding (the data registry's modalities)
    switcher: Literal["adaln", "token", "none"] = (  # modality switcher: adaln (paper), token (released code), none
        "adaln"
    )
    in_context: Literal["dual", "caption_only", "none"] = (  # dual (caption: rgb, prompt: others), caption_only, none
        "dual"
    )
    timesteps: Literal["per_stream", "shared"] = (  # modulation from each stream's own t, or one shared t
        "per_stream"
    )
    layout: Literal["shared", "width", "time"] = (  # RoPE offsets: one grid, streams side by side in width, or in time
        "shared"
    )
    attention: Literal["auto", "flash", "sdpa", "math"] = "auto"  # attention backend: auto, flash, sdpa, math
    qk_norm: bool = True  # RMS-normalise queries and keys before attention
    rope_theta: float = 10000.0  # RoPE base frequency
    prediction: Literal["x", "v"] = (  # head predicts x (clean stream) or v (velocity); returns v
        "x"
    )
    x_min_t: float = 0.05  # prediction=x: v = (x_t - x̂_0) / max(t, x_min_t), bounding the gain at low noise
    grad_checkpointing: bool = False  # recompute block activations in the backward pass to save memory
    # Wan2.1 / Wan2.2 compatibility (configs/model/wan*.yaml; defaults keep the layers above as they are)
    in_channels: int = 0  # codec channels the network takes (Wan2.1 16, Wan2.2 48); 0 = the codec's, else checked
    ffn_dim: int = 0  # MLP hidden width (Wan's ffn_dim); 0 = round(hidden * mlp_ratio)
    time_freq_dim: int = 256  # sinusoidal features of the timestep embedding (Wan's freq_dim)
    qk_norm_scope: Literal["head", "width"] = (  # QK-norm per head, or over the width before the head split (Wan)
        "head"
    )
    final_layer: Literal["adaln", "table"] = (  # adaln (Linear(SiLU(c))), or table ([2, D] table + c: Wan's head)
        "adaln"
    )
    text_pad: int = 0  # zero-pad every text context to this many tokens, all attended (Wan: 512); 0 = mask the pads
    aux_path: Literal["shared", "copied"] = (  # auxiliary patch embedding and head: rgb's, or copies of rgb's
        "shared"
    )
    aux_in_proj: bool = False  # a zero-initialised D x D map of auxiliary tokens after the patch embedding
    stream_gate: bool = False  # rgb attends to other streams through a zero-initialised per-head gate (exact at init)
    # codec
    codec: Literal["pixel", "diffusers"] = "pixel"  # pixel (uint8 -> [-1, 1]) or diffusers (a local video VAE)
    codec_path: str = ""  # local diffusers VAE folder, for codec=diffusers
    codec_batch: int = 1  # clips per VAE call (codec=diffusers): more is faster, fewer bounds memory
    # text encoder
    text_encoder: Literal["builtin", "hf", "precomputed", "external"] = (  # the text encoder (models/text_encoder.py)
        "builtin"
    )
    text_path: str = ""  # local transformers encoder folder, for text_encoder=hf
    text_dim: int = 128  # width of the text embeddings (builtin and precomputed; hf takes its model's)
    text_layers: int = 2  # transformer layers of the builtin text encoder
    text_max_tokens: int = 64  # tokens kept per caption or prompt
    # external-encoder conditioning (text_encoder=external, models/external.py)
    external_dim: int = 0  # width of the feature vectors stored in the shards (e.g. an MLLM's hidden size)
    external_adapter: Literal["linear", "queries"] = (  # linear (per token) or queries (learned queries + transformer)
        "linear"
    )
    external_queries: int = 32  # learned query tokens of the queries adapter: the context length
    external_layers: int = 2  # transformer layers of the queries adapter

    def validate(self) -> None:
        """Raise ValueError naming the first field whose value cannot work."""
        for name, allowed in choices(ModelConfig).items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"'model.{name}' is {getattr(self, name)!r}; choose one of {', '.join(map(str, allowed))}"
                )
        for name in (
            "hidden",
            "depth",
            "heads",
            "num_modalities",
            "codec_batch",
            "text_dim",
            "text_layers",
            "text_max_tokens",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"'model.{name}' must be positive, got {getattr(self, name)}")
        for name in ("in_channels", "ffn_dim", "text_pad"):
            if getattr(self, name) < 0:
                raise ValueError(f"'model.{name}' must be 0 (unset) or positive, got {getattr(self, name)}")
        if self.time_freq_dim < 2 or self.time_freq_dim % 2:
            raise ValueError(f"'model.time_freq_dim' must be a positive even number, got {self.time_freq_dim}")
        if self.text_encoder == "external" and self.external_dim < 1:
            raise ValueError(
                "'model.external_dim' must be the width of the stored external features (text_encoder=external)"
            )
        if self.hidden % self.heads:
            raise ValueError(f"'model.hidden' ({self.hidden}) must be a multiple of 'model.heads' ({self.heads})")
        if (self.hidden // self.heads) % 2:
            head_dim = self.hidden // self.heads
            raise ValueError(f"'model.hidden' / 'model.heads' (the head dimension, {head_dim}) must be even for RoPE")
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"'model.patch' must be three positive ints (pt, ph, pw), got {list(self.patch)}")

    @property
    def mlp_width(self) -> int:
        """Hidden width of each block's MLP: ``ffn_dim`` when set, else ``round(hidden * mlp_ratio)``."""
        return self.ffn_dim or round(self.hidden * self.mlp_ratio)


def choices(schema) -> dict[str, tuple]:
    """Field name -> allowed values, for the fields of a dataclass typed as ``Literal``."""
    hints = get_type_hints(schema)
    return {f.name: get_args(hints[f.name]) for f in fields(schema) if get_origin(hints[f.name]) is Literal}
