"""Precompute codec latents and text embeddings into new shards (``python -m unity.precompute``).

Every sample of ``--data`` is copied to ``--out`` with all its members and these new ones
(their format: ``data_pipeline/schema.py``):

- ``<key>.latent.<mod>.safetensors``: tensor ``latent`` ``[C, T', H', W']``, float16, the config's
  codec applied to the whole stored clip of rgb and of every modality present. Codec latents are
  normalised to about unit scale (pixel ones lie in [-1, 1]), where float16 keeps 11 significant bits
  at half the bytes; the pixel codec's uint8 levels survive it exactly.
- ``<key>.text.safetensors``: ``caption`` ``[L, D]`` + ``caption_mask`` ``[L]`` and ``prompt.<mod>`` +
  ``prompt_mask.<mod>`` per auxiliary modality, bfloat16 (transformer activations need its range),
  each cut after its last real token. A model with a fixed text length (``model.text_pad``, Wan's 512)
  zero-pads them back when it reads them, the empty caption too: Wan's own context, stored smaller.

The sample json gains a ``precomputed`` entry naming the codec (its channels and compression), the
text encoder (its width and token limit) and the latent shape; ``dataset.json`` holds the same entry
for the set, which a run checks against its config before training from the set
(``unity.train.precomputed_set``). ``null_text.safetensors`` beside the shards holds the embedding of
the empty caption (``caption``, ``caption_mask``), the unconditional context for classifier-free guidance.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import save, save_file
from tqdm import tqdm

from data_pipeline.check import Skips, iter_samples
from data_pipeline.schema import TEXT_MEMBER, latent_member, stream_member
from data_pipeline.video_io import decode_video
from data_pipeline.writer import derived_set
from models.codec import Codec, build_codec
from models.config import ModelConfig
from models.text import TextEncoder
from models.text_encoder import build_text_encoder

LATENT_DTYPE, TEXT_DTYPE = "float16", "bfloat16"  # storage dtypes, named in the json's "precomputed" entry
NULL_TEXT = "null_text.safetensors"


def encode_texts(encoder: TextEncoder, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(embedding [L_i, D], mask [L_i])`` per text, each cut after its last real token."""
    x, mask = encoder(texts)  # [B, L, D], [B, L]
    out = []
    for row, row_mask in zip(x, mask):
        length = int(row_mask.nonzero().max()) + 1 if row_mask.any() else 0
        out.append((row[:length].to("cpu", getattr(torch, TEXT_DTYPE)).contiguous(), row_mask[:length].cpu()))
    return out


def precompute_sample(members: dict[str, bytes], codec: Codec, encoder: TextEncoder, info: dict) -> dict:
    """A sample's members plus its latents and text embeddings, ready for :class:`ShardWriter`."""
    meta = json.loads(members["json"])
    names = meta["modalities"]
    videos = np.stack([decode_video(members[stream_member(meta, name)]) for name in names])  # [S,T,H,W,3]
    if videos.shape[1:4] != (meta["frames"], meta["height"], meta["width"]):
        raise ValueError(
            f"decoded streams are {videos.shape[1:4]} (T, H, W) but the json says "
            f"{(meta['frames'], meta['height'], meta['width'])}"
        )
    latents = codec.encode(torch.from_numpy(videos))  # [S, C, T', H', W']
    sample = {**members, "json": {**meta, "precomputed": {**info, "latent_shape": list(latents.shape[1:])}}}
    for name, latent in zip(names, latents):
        sample[latent_member(name)] = save({"latent": latent.to("cpu", getattr(torch, LATENT_DTYPE)).contiguous()})
    texts = encode_texts(encoder, [meta["caption"]] + [meta["prompts"][name] for name in names[1:]])
    tensors = {"caption": texts[0][0], "caption_mask": texts[0][1]}
    for name, (x, mask) in zip(names[1:], texts[1:]):
        tensors.update({f"prompt.{name}": x, f"prompt_mask.{name}": mask})
    sample[TEXT_MEMBER] = save(tensors)
    return sample


def _absolute(path: str) -> str:
    """A weights folder as an absolute path ("" stays ""): what a run compares its own folders with."""
    return os.path.abspath(path) if path else ""


def precompute(
    data: str,
    out: str,
    config: ModelConfig,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write ``data``'s samples with their latents and text embeddings as new shards in ``out``.

    A sample that cannot be read or encoded is skipped with a warning; ``dataset.json`` counts them.
    ``seed`` fixes the weights of a builtin text encoder. Returns the new ``dataset.json``.
    """
    if config.text_encoder == "precomputed":
        raise ValueError(
            "precompute needs a text encoder that reads strings: set model.text_encoder=hf "
            "(with model.text_path) or builtin"
        )
    paths, total, writer = derived_set(data, out)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    codec = build_codec(config, device, dtype)
    torch.manual_seed(seed)
    encoder = build_text_encoder(config, device, dtype).eval()
    info = {
        "codec": config.codec,
        "codec_path": _absolute(config.codec_path),
        "channels": codec.channels,
        "compression": [codec.temporal, codec.spatial],  # (time, space): what a latent cell covers in pixels
        "text_encoder": config.text_encoder,
        "text_path": _absolute(config.text_path),
        "text_dim": encoder.dim,
        "text_max_tokens": config.text_max_tokens,
        "latent_dtype": LATENT_DTYPE,
        "text_dtype": TEXT_DTYPE,
    }
    writer.info["precomputed"] = info  # gains the set's latent_shape from its first sample
    skips = Skips()
    bar = tqdm(total=total, desc="precompute", unit="clip", disable=not progress)
    with torch.no_grad(), bar, writer:
        for path in paths:
            for key, members in iter_samples(path, skips):
                try:
                    sample = precompute_sample(members, codec, encoder, info)
                    shape = sample["json"]["precomputed"]["latent_shape"]
                    if info.setdefault("latent_shape", shape) != shape:
                        raise ValueError(
                            f"latents of shape {shape}, not the set's {info['latent_shape']}: "
                            "the samples of a set are batched together"
                        )
                    writer.write(sample)
                except (ValueError, KeyError) as e:
                    skips.add(f"sample {key!r} in {path}", str(e))
                bar.update()
        [(x, mask)] = encode_texts(encoder, [""])
        save_file({"caption": x, "caption_mask": mask}, os.path.join(out, NULL_TEXT))
        writer.info.update(skipped=skips.count, null_text=NULL_TEXT)
    return writer.dataset
