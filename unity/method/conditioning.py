"""Text conditioning of a batch: caption and per-stream modality-prompt embeddings, with caption dropout."""

from __future__ import annotations

import torch


def drop_captions(captions: list[str], probability: float, generator: torch.Generator) -> list[str]:
    """Replace each caption by "" with ``probability``: the unconditional case of classifier-free guidance."""
    if probability <= 0:
        return list(captions)
    drop = torch.rand(len(captions), generator=generator) < probability
    return ["" if d else c for c, d in zip(captions, drop.tolist())]


def drop_features(
    features: tuple[torch.Tensor, torch.Tensor], captions: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """External caption features with the mask cleared where the caption was dropped ("")."""
    values, mask = features
    kept = torch.tensor([bool(c) for c in captions], device=mask.device)
    return values, mask & kept[:, None]


def encode_conditioning(
    text,
    captions: list[str],
    prompts: list[str] | list[list[str]],
    streams: int,
    device,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict:
    """Embed captions and the auxiliary streams' prompts as ``UnityDiT.forward`` keyword arguments.

    ``prompts``: one per sample, the same row for every stream (the rgb stream's is unused, since in
    the dual in-context learner rgb attends to the caption), or a list of ``streams`` per sample
    (several auxiliary streams, each with its own prompt). ``features`` (``[B, L, W]`` values and
    ``[B, L]`` mask) replace the captions for an external encoder (``text.features``). Returns caption ``[B, Lc, D]``,
    caption_mask ``[B, Lc]``, prompt ``[B, S, Lp, D]`` and prompt_mask ``[B, S, Lp]``.
    """
    if features is not None:
        caption, caption_mask = text.features(features[0].to(device), features[1].to(device))
    elif hasattr(text, "features"):
        raise ValueError(
            "this model reads captions as external-encoder features (model.text_encoder: external), "
            "and none were given: add them to the shards with `python -m data_pipeline external`"
        )
    else:
        caption, caption_mask = text(captions)
    if prompts and not isinstance(prompts[0], str):  # one prompt per stream
        if any(len(row) != streams for row in prompts):
            raise ValueError(f"per-stream prompts need {streams} per sample, got {[len(row) for row in prompts]}")
        prompt, prompt_mask = text([p for row in prompts for p in row])  # [B·S, Lp, D]
        prompt = prompt.to(device).unflatten(0, (len(prompts), streams))  # [B, S, Lp, D]
        prompt_mask = prompt_mask.to(device).unflatten(0, (len(prompts), streams))  # [B, S, Lp]
    else:
        prompt, prompt_mask = text(prompts)
        prompt = prompt.to(device).unsqueeze(1).expand(-1, streams, -1, -1)  # [B, S, Lp, D]
        prompt_mask = prompt_mask.to(device).unsqueeze(1).expand(-1, streams, -1)
    return {
        "caption": caption.to(device),
        "caption_mask": caption_mask.to(device),
        "prompt": prompt,
        "prompt_mask": prompt_mask,
    }
