"""Visual sentences (UniVid): four streams A, A′, B, B′ whose first pair shows the task and B′ is generated.

A sentence pairs two clips that carry the same modality: the context pair (A, A′) comes from a
partner clip and (B, B′) from the sample itself. In the forward direction the sentence estimates
the modality (A = rgb₁, A′ = m₁, B = rgb₂, B′ = m₂); reversed it generates video from the modality
(A = m₁, A′ = rgb₁, B = m₂, B′ = rgb₂). Only B′ is noised and supervised. The streams are laid out
one after another in time (RoPE layout ``time``), as UniVid concatenates a sentence's clips. In
mixed context (``train.sentence_image_context``) the example pair is one frame held still: an image
pair shows the task for a video.
"""

from __future__ import annotations

import torch

from data_pipeline.modalities import MODALITIES

LAYOUT = "time"  # RoPE layout of a sentence's four streams
SLOTS = ("A", "A_prime", "B", "B_prime")  # the streams of a sentence, as outputs are named


def partners(n: int) -> list[int]:
    """The partner of each of ``n`` samples: the next one, cyclically (a batch needs at least two)."""
    if n < 2:
        raise ValueError("a visual sentence pairs two clips: the batch needs at least 2 samples (data.batch_size)")
    return [(i + 1) % n for i in range(n)]


def stream_names(modality: str, reverse: bool) -> tuple[str, str, str, str]:
    """The stream of each sentence slot (A, A', B, B'): which of rgb and the modality it holds."""
    first, second = (modality, "rgb") if reverse else ("rgb", modality)
    return first, second, first, second


def still(video: torch.Tensor) -> torch.Tensor:
    """The first frame of ``video [C, T, H, W]`` held for all T frames: an image as a clip."""
    return video[:, :1].expand_as(video)


def sentence_streams(
    videos: dict,
    indices: list[int],
    modalities: list[str],
    reverses: list[bool],
    partner: list[int],
    images: list[bool] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x0 [G, 4, C, T, H, W]`` and ``modality [G, 4]`` for the samples ``indices`` of a batch.

    ``videos``: ``{stream: [B, C, T, H, W]}`` of the whole batch; ``partner[i]``: the clip giving
    sample ``i`` its context pair; ``images``: per sample, whether that pair is one frame held still
    (mixed context: an image pair shows the task for a video).
    """
    x0, ids = [], []
    for i, modality, reverse, image in zip(indices, modalities, reverses, images or [False] * len(indices)):
        names = stream_names(modality, reverse)
        sources = (partner[i], partner[i], i, i)
        streams = [videos[name][j] for name, j in zip(names, sources)]
        if image:
            streams[:2] = [still(video) for video in streams[:2]]
        x0.append(torch.stack(streams))
        ids.append([MODALITIES[name].index for name in names])
    device = x0[0].device
    return torch.stack(x0), torch.tensor(ids, device=device)
