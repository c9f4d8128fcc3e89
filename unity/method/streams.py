"""A batch's streams per routed sample, grouped by stream count (one model call per group), and their encoding.

The UnityVideo tasks run on (rgb, routed modalities): a pair, or k auxiliary streams; a sentence is A, A',
B, B' (``unity.method.sentences``).
"""

from __future__ import annotations

import torch

from data_pipeline.modalities import MODALITIES
from models.context import pad_tokens
from unity.method import sentences
from unity.method.router import Route
from unity.method.tasks import T2V, TASKS


def pixels_to_unit(video: torch.Tensor) -> torch.Tensor:
    """Loader pixels (uint8, any layout) as contiguous float32 ``v / 127.5 - 1`` in [-1, 1]; floats pass as they are.

    Called on the device: the loader ships uint8, a quarter of the bytes of the floats.
    """
    if video.dtype != torch.uint8:
        return video
    return (video.float() / 127.5 - 1).contiguous()


def encode_streams(codec, x0: torch.Tensor, device) -> torch.Tensor:
    """Videos ``[B, S, C, T, H, W]`` (uint8 from the loader, or pixels in [-1, 1]) -> the codec's normalised
    space, stream by stream, converted to float on ``device``."""
    streams = [pixels_to_unit(x0[:, s].to(device, non_blocking=True)) for s in range(x0.shape[1])]
    return torch.stack([codec.encode_normalized(video) for video in streams], dim=1)


def assemble_groups(batch: dict, routes: list[Route]) -> list[dict]:
    """The streams of each sample of a loader batch, grouped by stream count (one model call per group).

    Every group holds ``index`` (its samples' positions in the batch), ``x0 [G, S, C, T, H, W]`` (the
    videos, or the latents of a precomputed batch), ``modality`` long ``[G, S]`` (registry indices),
    ``noised`` bool ``[G, S]``, ``prompts`` (each sample's prompt for its routed modality; "" for
    ``t2v``), ``layout`` (the RoPE layout override, ``None`` for the model's) and, for a precomputed
    batch, that prompt's embedding ``prompt [G, Lp, D]`` with ``prompt_mask`` bool ``[G, Lp]``.
    A sample of rgb and k >= 2 auxiliary streams has one prompt per stream: ``prompts`` holds a list
    per sample (rgb's entry repeats the first modality's; rgb attends to the caption) and a precomputed
    batch gives ``prompt [G, S, Lp, D]``, ``prompt_mask [G, S, Lp]``. UnityVideo-task routes are
    (rgb, routed modalities), grouped by their count; a sentence is A, A', B, B' (``unity.method.sentences``).
    """
    videos = batch["latent"] if "latent" in batch else batch
    rgb = videos["rgb"]  # [B, C, T, H, W]
    kinds = {T2V: [], "sentence": []}
    by_count = {}  # auxiliary streams -> samples
    for i, route in enumerate(routes):
        if route.task in kinds:
            kinds[route.task].append(i)
        else:
            by_count.setdefault(len(route.modalities), []).append(i)
    groups = []
    if kinds[T2V]:
        index = kinds[T2V]
        groups.append(
            {
                "index": index,
                "x0": rgb[index][:, None],
                "layout": None,
                "prompts": [""] * len(index),
                "modality": torch.zeros(len(index), 1, dtype=torch.long, device=rgb.device),
                "noised": torch.ones(len(index), 1, dtype=torch.bool, device=rgb.device),
            }
        )
    for count, index in sorted(by_count.items()):
        names = [("rgb", *routes[i].modalities) for i in index]
        aux = [torch.stack([videos[row[s]][i] for i, row in zip(index, names)]) for s in range(1, count + 1)]
        group = {
            "index": index,
            "x0": torch.stack([rgb[index], *aux], dim=1),  # [G, 1 + k, C, T, H, W]
            "layout": None,
            "modality": torch.tensor([[MODALITIES[m].index for m in row] for row in names], device=rgb.device),
            "noised": torch.tensor([routes[i].noised for i in index], device=rgb.device),
        }
        if count > 1:  # one prompt per stream
            group["prompts"] = [[batch["prompts"][m][i] for m in (row[1], *row[1:])] for i, row in zip(index, names)]
        groups.append(group)
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
    """Add the routed modalities' precomputed prompt embeddings ``prompt [G, Lp, D]`` and masks ``[G, Lp]``
    (``[G, S, Lp, D]``, ``[G, S, Lp]`` for samples of several auxiliary streams)."""
    if routes[0].task == T2V:
        return
    if len(routes[0].modalities) > 1 and routes[0].task != "sentence":
        streams = [(r.modality, *r.modalities) for r in routes]  # rgb's row repeats the first modality's
        length = max(text["prompt"][m].shape[1] for row in streams for m in row)
        rows = [
            [pad_tokens(text["prompt"][m][i], text["prompt_mask"][m][i], length) for m in row]
            for i, row in zip(group["index"], streams)
        ]
        group["prompt"] = torch.stack([torch.stack([p for p, _ in row]) for row in rows])  # [G, S, Lp, D]
        group["prompt_mask"] = torch.stack([torch.stack([m for _, m in row]) for row in rows])  # [G, S, Lp]
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
        if any(route.task == T2V for route in routes):
            raise ValueError("a batch cannot mix text-to-video (one stream) with other stream counts in one call")
        raise ValueError("the routes need different stream counts; use assemble_groups")
    return groups[0]
