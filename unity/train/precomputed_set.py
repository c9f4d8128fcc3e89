"""Training from shards written by ``python -m unity.precompute``, without the codec's or the text encoder's weights.

A run trains from precomputed shards when ``data.precomputed`` is ``always``, or ``auto`` and the
``dataset.json`` of its train split has a ``precomputed`` entry. Then:

- the latents come from the shards; the codec is a stand-in carrying the recorded channels and
  compression (``models.codec.PrecomputedLatents``);
- a frozen text encoder (``hf``, ``precomputed``) is replaced by the stored embeddings, the stored
  empty caption standing for a dropped one; a trainable one (``builtin``, ``external``) still encodes
  the captions, as it learns;
- a crop is a window of latent cells on the codec's grid (``data_pipeline.precomputed.LatentCrop``):
  ``data.frames`` x ``data.size``² in pixels, random in space, from the first frame for a causal video
  VAE; latents are not resized, so ``data.crop_scale`` does not apply. Precompute at the training size
  to train on whole clips.

Before any work, the train and val splits must agree with the config, or the run stops naming both
sides: codec (kind and folder), text encoder (kind, folder, width, token limit), and latents at least
as large as the run's clips.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace

import torch
from safetensors.torch import load_file

from data_pipeline.precomputed import LatentCrop
from models.codec import PrecomputedLatents
from models.flops import latent_grid
from models.text import PrecomputedText

FROZEN_TEXT = ("hf", "precomputed")  # text encoders whose embeddings can be stored (the others train)
RECORDED = ("codec", "codec_path", "channels", "compression", "text_encoder", "text_path", "text_dim")
RECORDED += ("text_max_tokens", "latent_shape")  # what the set's entry must hold to be checked


class PrecomputedDataError(ValueError):
    """Precomputed shards that the run asks for but lacks, or that another config made."""


@dataclass
class PrecomputedSet:
    """A run's precomputed train and val splits: what made them, the crop, the stored empty caption."""

    info: dict  # the ``precomputed`` entry of the train split's dataset.json
    crop: LatentCrop  # the training window; validation takes :meth:`validation_crop`
    null_caption: tuple[torch.Tensor, torch.Tensor] | None  # [L0, D], [L0]; None when the text is encoded

    @property
    def stored_text(self) -> bool:
        """Whether the run takes its text embeddings from the shards (a frozen text encoder)."""
        return self.null_caption is not None

    def validation_crop(self) -> LatentCrop:
        return replace(self.crop, random=False)

    def stand_ins(self) -> tuple[PrecomputedLatents, PrecomputedText | None]:
        """The codec (and, for stored text, the text encoder) to build the network with instead of loading them."""
        info = self.info
        made_by = f"codec={info['codec']}" + (f" from {info['codec_path']}" if info["codec_path"] else "")
        codec = PrecomputedLatents(info["channels"], *info["compression"], made_by=made_by)
        return codec, (PrecomputedText(info["text_dim"]) if self.stored_text else None)


def _entry(root: str, split: str) -> dict | None:
    """The ``precomputed`` entry of ``<root>/<split>/dataset.json``; None when absent (or no such split)."""
    path = os.path.join(root, split, "dataset.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("precomputed")


def _precompute_hint(root: str) -> str:
    return (
        f"write them with `python -m unity.precompute --data <folder of the pixel splits> --out {root} "
        "model.codec=... model.text_encoder=...` (the run's model keys)"
    )


def open_precomputed(config) -> PrecomputedSet | None:
    """The run's precomputed splits, checked against its config; None when it trains from pixels.

    Raises :class:`PrecomputedDataError` before any work when the config asks for precomputed data that is not there,
    or when the splits were made by another codec, text encoder or at a smaller size.
    """
    root, mode, model = config.data.root, config.data.precomputed, config.model
    train = None if mode == "never" else _entry(root, "train")
    if train is None:
        if mode == "always" or model.text_encoder == "precomputed":
            why = "data.precomputed=always" if mode == "always" else "model.text_encoder=precomputed"
            raise PrecomputedDataError(
                f"{why}, but {os.path.join(root, 'train')} holds no shards written by unity.precompute "
                f"(data.precomputed={mode}); {_precompute_hint(root)}"
            )
        return None
    for split in ("train", "val"):
        entry = _entry(root, split)
        if entry is None:
            raise PrecomputedDataError(
                f"{os.path.join(root, 'train')} holds precomputed shards but {os.path.join(root, split)} does "
                f"not: validation reads the same kind of data; {_precompute_hint(root)}"
            )
        problems = mismatches(config, entry)
        if problems:
            raise PrecomputedDataError(
                f"the precomputed shards in {os.path.join(root, split)} do not fit this run's config:\n  "
                + "\n  ".join(problems)
                + "\nrun with the config they were made with, or precompute them again with this one"
            )
    temporal = train["compression"][0]
    crop = LatentCrop(run_grid(config, train), random=True, causal=temporal > 1)
    null = None
    if model.text_encoder in FROZEN_TEXT:
        tensors = load_file(os.path.join(root, "train", train.get("null_text", "null_text.safetensors")))
        null = (tensors["caption"].float(), tensors["caption_mask"].bool())
    return PrecomputedSet(train, crop, null)


def run_grid(config, entry: dict) -> tuple[int, int, int]:
    """The run's clip (``data.frames`` x ``data.size``²) in latent cells of the codec that made ``entry``."""
    temporal, spatial = entry["compression"]
    size = config.data.size
    return latent_grid(config.data.frames, size, size, (temporal, spatial, spatial))


def _same_path(recorded: str, configured: str) -> bool:
    return recorded == (os.path.abspath(configured) if configured else "")


def mismatches(config, entry: dict) -> list[str]:
    """What in a split's ``precomputed`` entry disagrees with the run's config, each naming both sides."""
    missing = [key for key in RECORDED if key not in entry]
    if missing:
        return [
            f"its dataset.json lacks {', '.join(missing)}: it was written by an older unity.precompute; "
            "precompute the set again"
        ]
    model, data = config.model, config.data
    problems = []

    def differ(what: str, theirs, key: str, ours) -> None:
        problems.append(f"{what}: the shards were made with {theirs!r}, the config has {key}={ours!r}")

    if entry["codec"] != model.codec:
        differ("codec", entry["codec"], "model.codec", model.codec)
    elif model.codec == "diffusers" and not _same_path(entry["codec_path"], model.codec_path):
        differ("codec folder", entry["codec_path"], "model.codec_path", model.codec_path)
    temporal, spatial = entry["compression"]
    if (data.frames - 1) % temporal:
        problems.append(
            f"data.frames={data.frames} is not 1 + a multiple of the codec's temporal compression {temporal}: "
            f"its latents cover {1 + (data.frames - 1) // temporal * temporal} of them"
        )
    if data.size % spatial:
        problems.append(
            f"data.size={data.size} is not a multiple of the codec's spatial compression {spatial}: "
            "latents are cut on its grid"
        )
    grid, stored = run_grid(config, entry), entry["latent_shape"]
    if any(have < want for have, want in zip(stored[1:], grid)):
        problems.append(
            f"latent shape: the shards hold latents {stored} (C, T', H', W'), smaller than the "
            f"{[stored[0], *grid]} of data.frames={data.frames}, data.size={data.size}"
        )
    if model.text_encoder in FROZEN_TEXT:
        if model.text_encoder == "hf" and entry["text_encoder"] != "hf":
            differ("text encoder", entry["text_encoder"], "model.text_encoder", model.text_encoder)
        elif model.text_encoder == "hf" and not _same_path(entry["text_path"], model.text_path):
            differ("text encoder folder", entry["text_path"], "model.text_path", model.text_path)
        if model.text_encoder == "precomputed" and entry["text_dim"] != model.text_dim:
            differ("text width", entry["text_dim"], "model.text_dim", model.text_dim)
        if entry["text_max_tokens"] != model.text_max_tokens:
            differ("text token limit", entry["text_max_tokens"], "model.text_max_tokens", model.text_max_tokens)
    return problems
