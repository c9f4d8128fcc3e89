"""Text conditioning from embeddings stored in the shards by ``python -m unity.precompute``.

What ``encode_conditioning`` computes from strings with a frozen encoder, taken from a precomputed
batch instead (``batch["text"]``): each sample's stored caption, the stored empty caption where the
caption was dropped (classifier-free guidance), and the routed modality's stored prompt. Texts are
cut to the longest real one among them and padded with masked-out zeros, as an encoder pads a batch
of strings, so both paths give the model the same tensors (up to the storage dtype).
"""

from __future__ import annotations

import torch

from models.context import pad_tokens


def _stack(rows: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x [L_i, D], mask [L_i])`` rows with real tokens first -> ``[N, L, D]``, ``[N, L]``, L the longest real."""
    lengths = [int(mask.sum()) for _, mask in rows]
    length = max(lengths)
    pairs = [pad_tokens(x[:n], mask[:n], length) for (x, mask), n in zip(rows, lengths)]
    return torch.stack([x for x, _ in pairs]), torch.stack([m for _, m in pairs])


def stored_conditioning(
    text: dict,
    index: list[int],
    kept: list[bool],
    null: tuple[torch.Tensor, torch.Tensor],
    prompt: tuple[torch.Tensor, torch.Tensor] | None,
    streams: int,
    device,
) -> dict:
    """``UnityDiT.forward`` keyword arguments for the samples ``index`` of a precomputed batch.

    text: the batch's ``text`` (``caption [B, L, D]``, ``caption_mask [B, L]``). kept: per sample of
    ``index``, False where its caption was dropped, which then becomes ``null`` (``[L0, D]``,
    ``[L0]``: the stored empty caption). prompt: the group's routed prompts, ``[G, Lp, D]`` (one per
    sample, every stream the same row) or ``[G, S, Lp, D]`` (one per stream), with their masks; None
    gives every stream the empty text (text to video). Returns caption ``[G, Lc, D]``, caption_mask
    ``[G, Lc]``, prompt ``[G, S, Lp, D]`` and prompt_mask ``[G, S, Lp]``.
    """
    null = (null[0].float(), null[1].bool())
    rows = [(text["caption"][i], text["caption_mask"][i]) if keep else null for i, keep in zip(index, kept)]
    caption, caption_mask = _stack(rows)
    if prompt is None:
        x, mask = _stack([null] * len(index))
        x, mask = x[:, None].expand(-1, streams, -1, -1), mask[:, None].expand(-1, streams, -1)
    else:
        x, mask = prompt
        per_stream = x.ndim == 4
        flat = x.flatten(0, 1) if per_stream else x  # [G·S or G, Lp, D]
        flat_mask = mask.flatten(0, 1) if per_stream else mask
        x, mask = _stack(list(zip(flat, flat_mask)))
        if per_stream:
            x, mask = x.unflatten(0, (len(index), streams)), mask.unflatten(0, (len(index), streams))
        else:
            x, mask = x[:, None].expand(-1, streams, -1, -1), mask[:, None].expand(-1, streams, -1)
    return {
        "caption": caption.to(device),
        "caption_mask": caption_mask.to(device),
        "prompt": x.to(device),  # [G, S, Lp, D]
        "prompt_mask": mask.to(device),  # [G, S, Lp]
    }
