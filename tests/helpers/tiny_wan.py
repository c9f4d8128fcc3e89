"""Tiny random Wan transformers (diffusers' ``WanTransformer3DModel``), every parameter moved off its init.

Perturbing every tensor (norm gains away from one, biases away from zero, the tables) means that no
wrong mapping can hide behind a tensor that happens to be zero or one. Folders are written as a user
downloads them: diffusers' layout (``save_pretrained``), or the Wan repository's (its key names and
``config.json``, written with diffusers' own converter run backwards and checked against it).
"""

import json

import torch

SHAPES = {  # diffusers config arguments of the test shapes
    "t2v": dict(num_attention_heads=2, attention_head_dim=12, in_channels=4, ffn_dim=40, num_layers=2),
    "ti2v": dict(num_attention_heads=2, attention_head_dim=16, in_channels=48, ffn_dim=24, num_layers=1),
    "patch2": dict(num_attention_heads=3, attention_head_dim=12, in_channels=8, ffn_dim=20, num_layers=2),
}
PATCHES = {"t2v": (1, 2, 2), "ti2v": (1, 2, 2), "patch2": (2, 2, 2)}
TEXT_DIM = 16


def tiny_wan(kind: str = "t2v", seed: int = 0, text_dim: int = TEXT_DIM):
    """A perturbed random ``WanTransformer3DModel`` of one of :data:`SHAPES`, in eval mode."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    shape = SHAPES[kind]
    model = WanTransformer3DModel(
        patch_size=PATCHES[kind],
        out_channels=shape["in_channels"],
        text_dim=text_dim,
        freq_dim=32,
        **shape,
    )
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def save_diffusers(model, folder, **kwargs) -> None:
    model.save_pretrained(folder, **kwargs)


def original_state(model) -> dict[str, torch.Tensor]:
    """The model's tensors under the Wan repository's names (the inverse of diffusers' renaming)."""
    from unity.method.wan import DIFFUSERS, ORIGINAL, rules

    names = {
        d: o for rule in rules(model.config.num_layers) for d, o in zip(rule.names(DIFFUSERS), rule.names(ORIGINAL))
    }
    return {names[name]: x.detach().clone() for name, x in model.state_dict().items()}


def save_original(model, folder, dtype=None) -> None:
    """The Wan repository's checkpoint folder: its ``config.json`` and ``diffusion_pytorch_model.safetensors``."""
    from safetensors.torch import save_file

    c = model.config
    config = {
        "_class_name": "WanModel",
        "model_type": "t2v",
        "patch_size": list(c.patch_size),
        "text_len": 512,
        "in_dim": c.in_channels,
        "dim": c.num_attention_heads * c.attention_head_dim,
        "ffn_dim": c.ffn_dim,
        "freq_dim": c.freq_dim,
        "text_dim": c.text_dim,
        "out_dim": c.out_channels,
        "num_heads": c.num_attention_heads,
        "num_layers": c.num_layers,
        "window_size": [-1, -1],
        "qk_norm": True,
        "cross_attn_norm": True,
        "eps": 1e-6,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    state = {k: v.to(dtype or v.dtype).contiguous() for k, v in original_state(model).items()}
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
