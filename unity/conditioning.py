"""Text conditioning of a batch: caption and per-stream modality-prompt embeddings, with caption dropout."""

from __future__ import annotations

import torch


def drop_captions(captions: list[str], probability: float, generator: torch.Generator) -> list[str]:
    """Replace each caption by "" with ``probability``: the unconditional case of classifier-free guidance."""
    if probability <= 0:
        return list(captions)
    drop = torch.rand(len(captions), generator=generator) < probability
    return ["" if d else c for c, d in zip(captions, drop.tolist())]


def encode_conditioning(text, captions: list[str], prompts: list[str], streams: int, device) -> dict:
    """Embed captions and the auxiliary streams' prompts as ``UnityDiT.forward`` keyword arguments.

    Every stream gets the same prompt row; the rgb stream's is unused, since in the dual in-context
    learner rgb attends to the caption. Returns caption ``[B, Lc, D]``, caption_mask ``[B, Lc]``,
    prompt ``[B, S, Lp, D]`` and prompt_mask ``[B, S, Lp]``.
    """
    caption, caption_mask = text(captions)
    prompt, prompt_mask = text(prompts)
    return {
        "caption": caption.to(device),
        "caption_mask": caption_mask.to(device),
        "prompt": prompt.to(device).unsqueeze(1).expand(-1, streams, -1, -1),  # [B, S, Lp, D]
        "prompt_mask": prompt_mask.to(device).unsqueeze(1).expand(-1, streams, -1),
    }
