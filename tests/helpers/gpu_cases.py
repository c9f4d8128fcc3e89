"""Small UnityDiT cases shared by the GPU tests (``tests/gpu``) and their DeepSpeed worker.

A UnityDiT starts with every gate and its output head at zero, so its output would not depend on
attention at all: :func:`small_dit` randomises those parameters, so that every block, both
attention kernels and the text path change the output. :func:`dit_inputs` builds one batch of two
streams with the text either fully kept or padded (masked), and :func:`relative_error` is the
measure every comparison uses: ``||a - b|| / ||b||`` over whole tensors.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.method.flow_matching import flow_matching_loss, noise_streams

BF16_TOLERANCE = 2e-2  # relative error allowed between a bf16-autocast and an fp32 computation
TEXT_DIM = 32


def small_config(**changes) -> ModelConfig:
    """Two blocks of width 128, two heads of 64 channels (what every attention kernel takes), 1x2x2 patches."""
    values = dict(hidden=128, depth=2, heads=2, mlp_ratio=2.0, patch=[1, 2, 2], text_dim=TEXT_DIM, text_max_tokens=16)
    return ModelConfig(**{**values, **changes})


@torch.no_grad()
def randomize_zero_parameters(model: nn.Module, seed: int = 0) -> None:
    """Give every all-zero parameter (AdaLN-Zero gates, the output head) random values.

    The blocks' modulation tables get N(0, 0.5²), so gates are of order one; other zero matrices get
    N(0, 1 / fan_in) like a fresh linear layer; zero vectors N(0, 0.1²).
    """
    g = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if param.count_nonzero() > 0:
            continue
        if name.endswith("modulation"):
            std = 0.5
        elif param.ndim == 2:
            std = 1 / math.sqrt(param.shape[1])
        else:
            std = 0.1
        param.copy_(torch.randn(param.shape, generator=g) * std)


def small_dit(config: ModelConfig | None = None, seed: int = 0) -> UnityDiT:
    """A :func:`small_config` UnityDiT on the CPU, every parameter random (see :func:`randomize_zero_parameters`)."""
    torch.manual_seed(seed)
    model = UnityDiT(config or small_config(), in_channels=3, text_dim=TEXT_DIM)
    randomize_zero_parameters(model, seed)
    return model


def dit_inputs(config: ModelConfig, masked: bool, device="cpu", seed: int = 0, grid=(2, 8, 8)) -> dict:
    """One batch of 2 samples x 2 streams (rgb + depth) on a latent ``grid`` of tokens, with its loss target.

    Returns ``UnityDiT.forward``'s arguments (``x [2, 2, 3, T, H, W]``, modality, t, caption [2, L, 32],
    caption_mask, prompt [2, 2, L, 32], prompt_mask) and ``noised`` / ``target`` for the loss. With
    ``masked`` the second sample's caption keeps 2 of its tokens and each stream's prompt 1 to 4;
    otherwise every text token is kept.
    """
    g = torch.Generator().manual_seed(seed)
    batch, streams, length = 2, 2, config.text_max_tokens
    shape = (batch, streams, 3, *(n * p for n, p in zip(grid, config.patch)))
    x0, noise = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
    noised = torch.tensor([[False, True], [True, True]])  # estimation, then joint generation
    t = torch.rand(batch, streams, generator=g).clamp(0.1, 0.9)
    x_t, t_streams, target = noise_streams(x0, noised, t, noise)
    caption_mask = torch.ones(batch, length, dtype=torch.bool)
    prompt_mask = torch.ones(batch, streams, length, dtype=torch.bool)
    if masked:
        caption_mask[1, 2:] = False
        for s, kept in enumerate((1, 3, 2, 4)):
            prompt_mask.view(-1, length)[s, kept:] = False
    tensors = dict(
        x=x_t,
        modality=torch.tensor([[0, 1], [0, 1]]),  # rgb, depth
        t=t_streams,
        caption=torch.randn(batch, length, TEXT_DIM, generator=g),
        caption_mask=caption_mask,
        prompt=torch.randn(batch, streams, length, TEXT_DIM, generator=g),
        prompt_mask=prompt_mask,
        noised=noised,
        target=target,
    )
    return {k: v.to(device) for k, v in tensors.items()}


def forward_args(inputs: dict) -> dict:
    """The keyword arguments of ``UnityDiT.forward`` among :func:`dit_inputs`' tensors."""
    return {k: v for k, v in inputs.items() if k not in ("noised", "target")}


def dit_loss(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(velocity, mean flow-matching loss) of ``model`` on :func:`dit_inputs`' batch."""
    v = model(**forward_args(inputs))
    return v, flow_matching_loss(v, inputs["target"], inputs["noised"]).mean()


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64 (0 when both are zero)."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    scale = b.norm().item()
    return (a - b).norm().item() / scale if scale > 0 else (a - b).norm().item()


def gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter's gradient by name, as fp32 CPU copies (zeros where none was computed)."""
    return {
        name: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().float().cpu()
        for name, p in model.named_parameters()
    }
