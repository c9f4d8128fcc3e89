"""Growing auxiliary streams on a single-stream (Wan) network the UnityVideo way, and taking them off again.

The released UnityVideo code extends a pretrained Wan so that nothing it knows is disturbed at the
start: auxiliary streams enter through copies of the rgb patch embedding and output head
(``model.aux_path: copied``) and a zero-initialised input map (``model.aux_in_proj``), modality
embeddings start at zero, and every parameter created this way is trained at ``optim.lr ×
optim.new_param_lr_mult`` (released: 10×). With one rgb stream the grown network then equals the
original exactly, whatever the switcher. With an auxiliary stream present the rgb tokens also attend
to the new ones, which moves the rgb output; ``model.stream_gate`` starts that at exactly zero.
"""

from __future__ import annotations

import torch

from models.config import ModelConfig

RGB = 0  # registry index of the rgb modality (data_pipeline.modalities)
COPIED = ("patch_embed.", "final.")  # the rgb path's parts an auxiliary path copies (aux_ + name)


def grown_state(state: dict[str, torch.Tensor], config: ModelConfig) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The UnityDiT state of ``config`` from a single-stream one, and the names of the parameters it created.

    ``state``: the rgb path's tensors (a converted Wan). Created: the modality embedding (zeros, unless
    ``switcher: none``), the auxiliary patch embedding and head (copies, ``aux_path: copied``), the
    auxiliary input map (zeros, ``aux_in_proj``) and the per-head stream gates (zeros, ``stream_gate``).
    """
    reference = state["patch_embed.proj.weight"]
    zeros = dict(dtype=reference.dtype, device=reference.device)
    new: dict[str, torch.Tensor] = {}
    if config.switcher != "none":
        new["switcher.modality_embed.weight"] = torch.zeros(config.num_modalities, config.hidden, **zeros)
    if config.aux_path == "copied":
        new.update({f"aux_{name}": x for name, x in state.items() if name.startswith(COPIED)})
    if config.aux_in_proj:
        new["aux_in.weight"] = torch.zeros(config.hidden, config.hidden, **zeros)
        new["aux_in.bias"] = torch.zeros(config.hidden, **zeros)
    if config.stream_gate:
        new.update({f"blocks.{i}.attn.stream_gate": torch.zeros(config.heads, **zeros) for i in range(config.depth)})
    return {**state, **new}, sorted(new)


def rgb_path_state(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """The tensors of the network an rgb stream alone goes through: the auxiliary parts dropped and the
    rgb modality embedding folded into a bias (``adaln``: the time embedding's last layer, so that it
    reaches ``c``; ``token``: the patch embedding). Exact when that embedding is zero, as grown."""
    dropped = ("aux_", "switcher.modality_embed.")
    out = {name: x for name, x in state.items() if not name.startswith(dropped) and not name.endswith("stream_gate")}
    if config.switcher != "none":
        rgb = state["switcher.modality_embed.weight"][RGB]
        target = "switcher.time_embed.mlp.2.bias" if config.switcher == "adaln" else "patch_embed.proj.bias"
        if bool(rgb.any()):
            out[target] = (out[target].float() + rgb.float()).to(out[target].dtype)
    return out
