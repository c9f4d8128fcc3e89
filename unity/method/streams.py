"""A batch's streams per routed sample, grouped by stream count (one model call per group), and their encoding.

Two-stream tasks are (rgb, routed modality); a sentence is A, A', B, B' (``unity.method.sentences``).
"""

from __future__ import annotations

import torch

from data_pipeline.modalities import MODALITIES
from models.context import pad_tokens
from unity.method import sentences
from unity.method.router import Route
from unity.method.tasks import T2V, TASKS


def encode_streams(codec, x0: torch.Tensor, device) -> torch.Tensor:
    """Videos ``[B, S, C, T, H, W]`` (pixels in [-1, 1]) -> the codec's normalised space, stream by stream."""
    return torch.stack([codec.encode_normalized(x0[:, s].to(device)) for s in range(x0.shape[1])], dim=1)


def assemble_groups(batch: dict, routes: list[Route]) -> list[dict]:
    """The streams of each sample of a loader batch, grouped by stream count (one model call per group).

    Every group holds ``index`` (its samples' positions in the batch), ``x0 [G, S, C, T, H, W]`` (the
    videos, or the latents of a precomputed batch), ``modality`` long ``[G, S]`` (registry indices),
    ``noised`` bool ``[G, S]``, ``prompts`` (each sample's prompt for its routed modality; "" for
    ``t2v``), ``layout`` (the RoPE layout override, ``None`` for the model's) and, for a precomputed
    batch, that prompt's embedding ``prompt [G, Lp, D]`` with ``prompt_mask`` bool ``[G, Lp]``.
    Two-stream tasks are (rgb, routed modality); a sentence is A, A', B, B' (``unity.method.sentences``).
    """
    videos = batch["latent"] if "latent" in batch else batch
    rgb = videos["rgb"]  # [B, C, T, H, W]
    kinds = {T2V: [], "pair": [], "sentence": []}
    for i, route in enumerate(routes):
        kinds[route.task if route.task in (T2V, "sentence") else "pair"].append(i)
    if kinds[T2V] and len(kinds[T2V]) < len(routes):
        raise ValueError("a batch cannot mix text-to-video (one stream) with two-stream tasks")
    groups = []
    if kinds[T2V]:
        n = len(routes)
        groups.append(
            {
                "index": list(range(n)),
                "x0": rgb[:, None],
                "layout": None,
                "prompts": [""] * n,
                "modality": torch.zeros(n, 1, dtype=torch.long, device=rgb.device),
                "noised": torch.ones(n, 1, dtype=torch.bool, device=rgb.device),
            }
        )
    if kinds["pair"]:
        index = kinds["pair"]
        aux = torch.stack([videos[routes[i].modality][i] for i in index])  # [G, C, T, H, W]
        groups.append(
            {
                "index": index,
                "x0": torch.stack([rgb[index], aux], dim=1),
                "layout": None,
                "modality": torch.tensor(
                    [[MODALITIES["rgb"].index, MODALITIES[routes[i].modality].index] for i in index], device=rgb.device
                ),
                "noised": torch.tensor([TASKS[routes[i].task].noised for i in index], device=rgb.device),
            }
        )
    if kinds["sentence"]:
        index = kinds["sentence"]
        x0, modality = sentences.sentence_streams(
            videos,
            index,
            [routes[i].modality for i in index],
            [routes[i].reverse for i in index],
            sentences.partners(len(routes)),
            [routes[i].image_context for i in index],
        )
        groups.append(
            {
                "index": index,
                "x0": x0,
                "modality": modality,
                "layout": sentences.LAYOUT,
                "noised": torch.tensor([TASKS["sentence"].noised] * len(index), device=rgb.device),
            }
        )
    for group in groups:
        if "prompts" not in group:
            group["prompts"] = [batch["prompts"][routes[i].modality][i] for i in group["index"]]
        if "text" in batch:
            _precomputed_prompts(group, batch["text"], [routes[i] for i in group["index"]])
    return groups


def _precomputed_prompts(group: dict, text: dict, routes: list[Route]) -> None:
    """Add the routed modalities' precomputed prompt embeddings ``prompt [G, Lp, D]`` and masks ``[G, Lp]``."""
    if routes[0].task == T2V:
        return
    length = max(text["prompt"][route.modality].shape[1] for route in routes)
    pairs = [
        pad_tokens(text["prompt"][r.modality][i], text["prompt_mask"][r.modality][i], length)
        for i, r in zip(group["index"], routes)
    ]
    group["prompt"] = torch.stack([p for p, _ in pairs])  # [G, Lp, D]
    group["prompt_mask"] = torch.stack([m for _, m in pairs])  # [G, Lp]


def assemble(batch: dict, routes: list[Route]) -> dict:
    """:func:`assemble_groups` for a batch whose samples all have the same number of streams."""
    groups = assemble_groups(batch, routes)
    if len(groups) != 1:
        raise ValueError("the routes need different stream counts; use assemble_groups")
    return groups[0]
