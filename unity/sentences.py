"""Visual sentences (UniVid): four streams A, A′, B, B′ whose first pair shows the task and B′ is generated.

A sentence pairs two clips that carry the same modality: the context pair (A, A′) comes from a
partner clip and (B, B′) from the sample itself. In the forward direction the sentence estimates
the modality (A = rgb₁, A′ = m₁, B = rgb₂, B′ = m₂); reversed it generates video from the modality
(A = m₁, A′ = rgb₁, B = m₂, B′ = rgb₂). Only B′ is noised and supervised. The streams are laid out
one after another in time (RoPE layout ``time``), as UniVid concatenates a sentence's clips.
"""

from __future__ import annotations

import torch

from data_pipeline.modalities import MODALITIES

LAYOUT = "time"  # RoPE layout of a sentence's four streams
NOISED = (False, False, False, True)  # A, A', B, B'


def partners(n: int) -> list[int]:
    """The partner of each of ``n`` samples: the next one, cyclically (a batch needs at least two)."""
    if n < 2:
        raise ValueError("a visual sentence pairs two clips: the batch needs at least 2 samples (data.batch_size)")
    return [(i + 1) % n for i in range(n)]


def stream_names(modality: str, reverse: bool) -> tuple[str, str, str, str]:
    """The stream of each sentence slot (A, A', B, B'): which of rgb and the modality it holds."""
    first, second = (modality, "rgb") if reverse else ("rgb", modality)
    return first, second, first, second


def sentence_streams(videos: dict, indices: list[int], modalities: list[str], reverses: list[bool],
                     partner: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``x0 [G, 4, C, T, H, W]`` and ``modality [G, 4]`` for the samples ``indices`` of a batch.

    ``videos``: ``{stream: [B, C, T, H, W]}`` of the whole batch; ``partner[i]``: the clip giving
    sample ``i`` its context pair.
    """
    x0, ids = [], []
    for i, modality, reverse in zip(indices, modalities, reverses):
        names = stream_names(modality, reverse)
        sources = (partner[i], partner[i], i, i)
        x0.append(torch.stack([videos[name][j] for name, j in zip(names, sources)]))
        ids.append([MODALITIES[name].index for name in names])
    device = x0[0].device
    return torch.stack(x0), torch.tensor(ids, device=device)
