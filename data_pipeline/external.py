"""Add an external encoder's caption features to a shard set (Omni-Video style conditioning).

    python -m data_pipeline external --data DIR --features FILE.safetensors --out DIR

``FILE.safetensors`` maps each sample key to a ``[L, W]`` tensor: the features of that sample's caption
from an encoder run offline (e.g. a multimodal LLM's last hidden states), any length ``L``, one width
``W`` for the whole set. Every sample of ``--data`` is copied to ``--out`` with a new member
``<key>.external.safetensors`` (tensor ``features``, stored in the given dtype) and an ``external``
entry in its json; a sample without features is left out and counted. Train on the new set with
``model.text_encoder: external`` and ``model.external_dim: W``.
"""

from __future__ import annotations

import json

import torch
from safetensors.torch import save
from tqdm import tqdm

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.schema import EXTERNAL_MEMBER
from data_pipeline.writer import derived_set


def add_external(
    data: str, features: dict[str, torch.Tensor], out: str, source: str = "given", progress: bool = True
) -> dict:
    """Write ``data``'s samples with their ``features`` (sample key -> ``[L, W]``) as new shards in ``out``;
    ``source`` is recorded in the json. Returns the new dataset.json."""
    widths = {tuple(x.shape[1:]) for x in features.values() if x.ndim == 2 and len(x)}
    bad = [key for key, x in features.items() if x.ndim != 2 or len(x) == 0]
    if bad or len(widths) != 1:
        problem = f"{bad[0]!r} has shape {list(features[bad[0]].shape)}" if bad else f"widths {sorted(widths)}"
        raise ValueError(
            f"the {source} features must map sample keys to [L, W] tensors (L >= 1) of one width W; {problem}"
        )
    [(width,)] = widths
    info = {"dim": width, "source": source}
    paths, total, writer = derived_set(data, out)
    writer.info["external"] = info
    missing = 0
    bar = tqdm(total=total, desc="external", unit="clip", disable=not progress)
    with bar, writer:
        for path in paths:
            for key, members in iter_samples(path):
                bar.update()
                if key not in features:
                    missing += 1
                    continue
                meta = {**json.loads(members["json"]), "external": info}
                tensor = features[key].contiguous()
                writer.write({**members, "json": meta, EXTERNAL_MEMBER: save({"features": tensor})})
        writer.info["without_features"] = missing
    if writer.dataset["samples"] == 0:
        raise ValueError(
            f"no sample key of {data} has {source} features; their keys look like {next(iter(features), None)!r}"
        )
    return writer.dataset


def random_features(data: str, width: int, seed: int = 0, max_length: int = 12) -> dict[str, torch.Tensor]:
    """Random ``[L, width]`` features for every sample key of ``data`` (L from 1 to ``max_length``): a
    stand-in encoder for tests and for trying the external path without an MLLM."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for path in list_shards(data)[0]:
        for key, _ in iter_samples(path):
            length = int(torch.randint(1, max_length + 1, (), generator=generator))
            out[key] = torch.randn(length, width, generator=generator)
    return out
