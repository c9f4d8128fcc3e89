"""The in-context learner's input: text projected to the width D and each stream's own context.

``dual`` (the paper's dual-branch cross-attention): an rgb stream attends to the caption, an
auxiliary stream to its modality prompt (e.g. "depth map, near is bright"); both branches run as one
batched cross-attention over ``[B·S, N, D]`` queries with a per-stream context ``[B·S, L, D]`` padded
to ``L = max(Lc, Lp)`` and masked. ``caption_only``: every stream attends to the caption. ``none``:
no cross-attention. The cross-attention layers themselves sit in the blocks (``blocks.CrossAttention``).

With a fixed length (``model.text_pad``, Wan's 512) every context is zeroed past its real tokens,
cut or zero-padded to that length and attended in full, with no mask: Wan's convention, where the
pads become non-zero after the text projection and take part in the attention (masking them
changes the output by O(1)).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange
from timm.layers import GELUTanh, Mlp

RGB = 0  # registry index of the rgb modality (data_pipeline.modalities)


def fixed_length(x: torch.Tensor, mask: torch.Tensor, length: int) -> torch.Tensor:
    """``x [..., L, D]`` zeroed where ``mask [..., L]`` is False, then cut or zero-padded to ``[..., length, D]``."""
    x = x * mask[..., None].to(x.dtype)
    return F.pad(x, (0, 0, 0, length - x.shape[-2])) if x.shape[-2] < length else x[..., :length, :]


def pad_tokens(x: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad ``x [..., L, D]`` and ``mask [..., L]`` with masked-out tokens up to ``length``."""
    extra = length - x.shape[-2]
    return F.pad(x, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


class InContextLearner(nn.Module):
    """Text projection (text_dim -> D, a GELU MLP as in Wan2.1 / PixArt) and per-stream context selection."""

    def __init__(self, text_dim: int, hidden: int, mode: str = "dual", length: int = 0):
        super().__init__()
        self.mode = mode
        self.length = length  # fixed context length, every token attended; 0 = real tokens only, masked
        self.text_proj = Mlp(text_dim, hidden, hidden, act_layer=GELUTanh)

    def forward(self, modality, caption, caption_mask, prompt, prompt_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """-> context ``[B·S, L, D]`` and its key mask ``[B·S, L]`` (True = real token; None at a fixed length)."""
        streams = modality.shape[1]
        if self.length:
            caption = fixed_length(caption, caption_mask.bool(), self.length)
            caption_mask = torch.ones(caption.shape[:-1], dtype=torch.bool, device=caption.device)
            if self.mode == "dual":
                prompt = fixed_length(prompt, prompt_mask.bool(), self.length)
                prompt_mask = torch.ones(prompt.shape[:-1], dtype=torch.bool, device=prompt.device)
        caption, caption_mask = self.text_proj(caption), caption_mask.bool()  # [B, Lc, D], [B, Lc]
        if self.mode == "caption_only":
            context = caption[:, None].expand(-1, streams, -1, -1)  # [B, S, Lc, D]
            mask = caption_mask[:, None].expand(-1, streams, -1)  # [B, S, Lc]
        else:
            prompt, prompt_mask = self.text_proj(prompt), prompt_mask.bool()  # [B, S, Lp, D], [B, S, Lp]
            length = max(caption.shape[1], prompt.shape[2])
            caption, caption_mask = pad_tokens(caption, caption_mask, length)
            prompt, prompt_mask = pad_tokens(prompt, prompt_mask, length)
            is_rgb = (modality == RGB)[:, :, None]  # [B, S, 1]
            context = torch.where(is_rgb[..., None], caption[:, None], prompt)  # [B, S, L, D]
            mask = torch.where(is_rgb, caption_mask[:, None], prompt_mask)  # [B, S, L]
        mask = None if self.length else rearrange(mask, "b s l -> (b s) l")
        return rearrange(context, "b s l d -> (b s) l d"), mask
