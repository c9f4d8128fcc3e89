"""Read the latents and text embeddings that ``python -m unity.precompute`` adds to a sample (and the
external features that ``python -m data_pipeline external`` adds), and batch them.

Members (see ``schema.py``): ``latent.<mod>.safetensors`` holds ``latent`` ``[C, T', H', W']`` of the
whole stored clip; ``text.safetensors`` holds ``caption`` ``[L, D]`` + ``caption_mask`` ``[L]`` and
``prompt.<mod>`` + ``prompt_mask.<mod>`` per auxiliary modality, ``L`` varying from text to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from data_pipeline.schema import EXTERNAL_MEMBER, TEXT_MEMBER, latent_member

_HINT = "precompute the set with `python -m unity.precompute`"


def _tensors(members: dict, member: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors ``member``; ValueError when it is absent or does not load."""
    if member not in members:
        raise ValueError(f"no {member} member; {_HINT}")
    try:
        return safetensors.torch.load(members[member])
    except safetensors.SafetensorError as e:
        raise ValueError(f"{member} does not load ({e})") from None


@dataclass(frozen=True)
class LatentCrop:
    """A window of ``size`` latent cells ``(T', H', W')`` cut from a sample's latents, the same for every stream.

    Latents cannot be resized, and a window of them is the latent of a pixel window only on the codec's
    grid: in space at any cell offset (a cell is ``spatial`` pixels wide; only the VAE's padding near the
    window's edge differs), in time from the first latent frame when the codec is ``causal`` (a causal
    video VAE codes the first frame alone, and its latent prefix is the code of the clip's prefix), at any
    offset when it does not compress time. Training takes ``random`` offsets; validation the first frames
    and the centre.
    """

    size: tuple[int, int, int]
    random: bool = True
    causal: bool = True

    def window(self, shape: Sequence[int], rng: np.random.Generator | None) -> tuple[slice, slice, slice]:
        """Slices of ``(T', H', W')`` for latents of ``shape`` ``[C, T, H, W]``; ValueError when they are smaller."""
        if any(have < want for have, want in zip(shape[1:], self.size)):
            raise ValueError(f"latents {list(shape[1:])} (T', H', W') are smaller than the {list(self.size)} asked for")
        starts = []
        for axis, (have, want) in enumerate(zip(shape[1:], self.size)):
            spare = have - want
            if axis == 0 and self.causal:
                starts.append(0)
            elif self.random and rng is not None:
                starts.append(int(rng.integers(0, spare + 1)))
            else:
                starts.append(spare // 2 if axis else 0)
        return tuple(slice(start, start + want) for start, want in zip(starts, self.size))


def read_precomputed(
    members: dict,
    meta: dict,
    streams: Sequence[str],
    crop: LatentCrop | None = None,
    rng: np.random.Generator | None = None,
) -> dict:
    """``{"latent": {stream: [C, T', H', W']}, "text": {tensor name: [L, D] or [L]}}`` as float32 / bool.

    ``streams`` lists rgb first; ``crop`` cuts every stream's latents to one window (offsets from ``rng``).
    Raises ValueError naming what is missing or of the wrong shape.
    """
    if "precomputed" not in meta:
        raise ValueError(f"its json has no 'precomputed' entry; {_HINT}")
    shape = list(meta["precomputed"]["latent_shape"])
    window = (slice(None),) * 3 if crop is None else crop.window(shape, rng)
    latent = {}
    for name in streams:
        tensors = _tensors(members, latent_member(name))
        if "latent" not in tensors or list(tensors["latent"].shape) != shape:
            raise ValueError(f"{latent_member(name)} holds no 'latent' tensor of shape {shape}")
        latent[name] = tensors["latent"][:, window[0], window[1], window[2]].float()  # [C, T', H', W']
    tensors = _tensors(members, TEXT_MEMBER)
    names = ["caption", "caption_mask"] + [f"{kind}.{m}" for m in streams[1:] for kind in ("prompt", "prompt_mask")]
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ValueError(f"{TEXT_MEMBER} lacks {', '.join(missing)}")
    text = {name: tensors[name].bool() if "mask" in name else tensors[name].float() for name in names}
    return {"latent": latent, "text": text}


def read_external(members: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The caption's external features ``[L, W]`` float32 and an all-True mask ``[L]``; ValueError if absent."""
    if EXTERNAL_MEMBER not in members:
        raise ValueError(f"no {EXTERNAL_MEMBER} member; add features with `python -m data_pipeline external`")
    tensors = _tensors(members, EXTERNAL_MEMBER)
    features = tensors.get("features")
    if features is None or features.ndim != 2 or len(features) == 0:
        raise ValueError(f"{EXTERNAL_MEMBER} holds no 'features' tensor of shape [L, W] with L >= 1")
    return features.float(), torch.ones(len(features), dtype=torch.bool)


def collate_external(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`read_external` outputs -> ``features [B, L, W]``, ``mask [B, L]``, padded to the longest."""
    widths = {features.shape[1] for features, _ in pairs}
    if len(widths) > 1:
        raise ValueError(f"external features of different widths {sorted(widths)} in one batch")
    return _pad_stack([f for f, _ in pairs], [m for _, m in pairs])


def _pad_stack(embeddings: list[torch.Tensor], masks: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[L_i, D]`` embeddings and ``[L_i]`` masks -> ``[B, L, D]`` and ``[B, L]``, padded to the longest."""
    length = max(len(mask) for mask in masks)
    x = torch.stack([nn.functional.pad(e, (0, 0, 0, length - len(e))) for e in embeddings])
    return x, torch.stack([nn.functional.pad(m, (0, length - len(m)), value=False) for m in masks])


def collate_precomputed(samples: list[dict], streams: Sequence[str]) -> dict:
    """Batch :func:`read_precomputed` outputs: ``latent: {stream: [B, C, T', H', W']}`` and ``text``:
    ``caption [B, L, D]``, ``caption_mask [B, L]``, ``prompt: {mod: [B, L, D]}``, ``prompt_mask: {mod: [B, L]}``,
    each zero / False padded to its longest text in the batch."""

    def pad(name: str, mask: str) -> tuple[torch.Tensor, torch.Tensor]:
        return _pad_stack([s["text"][name] for s in samples], [s["text"][mask] for s in samples])

    latent = {name: torch.stack([s["latent"][name] for s in samples]) for name in streams}
    caption, caption_mask = pad("caption", "caption_mask")
    text = {"caption": caption, "caption_mask": caption_mask, "prompt": {}, "prompt_mask": {}}
    for name in streams[1:]:
        text["prompt"][name], text["prompt_mask"][name] = pad(f"prompt.{name}", f"prompt_mask.{name}")
    return {"latent": latent, "text": text}
