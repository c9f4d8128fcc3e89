"""The shard sample format (docs/architecture.md, "Data"): member names, the sample json and its validation.

One sample is a group of tar members sharing a key without dots::

    <key>.json              metadata (see ``REQUIRED_FIELDS``)
    <key>.<mod>.<ext>       visual form of each modality present (``rgb`` always)
    <key>.<name>.npy        optional raw ground truth (``GT_NAMES``)

and, in sets written by ``python -m unity.precompute`` (whose json then has a ``precomputed`` entry)::

    <key>.latent.<mod>.safetensors   tensor ``latent`` [C, T', H', W']: the codec's latents of each stream
    <key>.text.safetensors           tensors ``caption`` [L, D], ``caption_mask`` [L], and per auxiliary
                                     modality ``prompt.<mod>`` [L, D], ``prompt_mask.<mod>`` [L]

and, in sets written by ``python -m data_pipeline external`` (whose json then has an ``external`` entry)::

    <key>.external.safetensors       tensor ``features`` [L, W]: an external encoder's features of the
                                     caption (e.g. a multimodal LLM's hidden states), any length L
"""

from __future__ import annotations

import re

from data_pipeline.modalities import MODALITIES

SCHEMA_VERSION = 1
VIDEO_EXTS = ("mkv", "mp4")
# Raw ground-truth arrays a sample may carry: the modalities' raw forms plus the flow occlusion mask.
GT_NAMES = ("depth", "flow", "occlusion", "seg", "pose", "densepose")
TEXT_MEMBER = "text.safetensors"  # precomputed text embeddings of a sample
EXTERNAL_MEMBER = "external.safetensors"  # external-encoder features of a sample's caption
_KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")

# field -> (type, meaning)
REQUIRED_FIELDS = {
    "schema": (int, "schema version of this sample"),
    "key": (str, "the sample key (no dots)"),
    "caption": (str, "what the rgb clip shows"),
    "fps": ((int, float), "frames per second of the clip"),
    "frames": (int, "frames in every stream"),
    "height": (int, "frame height in pixels"),
    "width": (int, "frame width in pixels"),
    "source": (str, "where the clip came from (synthetic, or the ingested file)"),
    "split": (str, "train, val, test or zeroshot"),
    "modalities": (list, "visual forms present, rgb first"),
    "ext": (str, "container of the visual forms: mkv (lossless FFV1) or mp4 (H.264); `exts` may override per stream"),
    "prompts": (dict, "modality -> modality prompt for each auxiliary stream"),
    "encoding": (dict, "modality -> parameters that decode its visual form"),
    "gt": (list, "raw ground-truth arrays stored as <key>.<name>.npy"),
}


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot name a webdataset sample, or None if it can."""
    if _KEY_PATTERN.match(key):
        return None
    return (
        f"sample key {key!r} must use only letters, digits, '_' and '-' "
        "(webdataset splits member names at the first dot)"
    )


def video_member(modality: str, ext: str) -> str:
    return f"{modality}.{ext}"


def stream_ext(meta: dict, modality: str) -> str:
    """Container of one stream: the optional ``exts`` entry of the json for it, else the sample's ``ext``.

    Real footage keeps its RGB in mp4 while its modality streams stay lossless in mkv (``exts``).
    """
    return meta.get("exts", {}).get(modality, meta["ext"])


UNITY_CONVENTION = "unity"  # a stream in Unity's own visual form (data_pipeline/modalities.py): it decodes


def convention(meta: dict, modality: str) -> str:
    """The visual convention of a stream: ``unity`` (the registry's encode / decode) unless its encoding names
    another (an imported rendering, e.g. ``raft-colour-wheel``), which is learned but not decoded for metrics."""
    return meta.get("encoding", {}).get(modality, {}).get("convention", UNITY_CONVENTION)


def stream_member(meta: dict, modality: str) -> str:
    """Member suffix (after ``<key>.``) of one stream's visual form, e.g. ``depth.mkv``."""
    return video_member(modality, stream_ext(meta, modality))


def gt_member(name: str) -> str:
    return f"{name}.npy"


def latent_member(modality: str) -> str:
    return f"latent.{modality}.safetensors"


def validate_meta(meta: dict) -> list[str]:
    """Problems with a sample's json, as readable sentences (empty when valid)."""
    problems = []
    for field, (kind, meaning) in REQUIRED_FIELDS.items():
        if field not in meta:
            problems.append(f"json lacks '{field}' ({meaning})")
        elif not isinstance(meta[field], kind):
            problems.append(f"json '{field}' should be {kind}, got {type(meta[field]).__name__}")
    if problems:
        return problems
    if meta["schema"] != SCHEMA_VERSION:
        problems.append(f"schema version {meta['schema']} but this reader knows {SCHEMA_VERSION}")
    if meta["ext"] not in VIDEO_EXTS:
        problems.append(f"ext {meta['ext']!r} is not one of {VIDEO_EXTS}")
    exts = meta.get("exts", {})
    if not isinstance(exts, dict) or any(ext not in VIDEO_EXTS for ext in exts.values()):
        problems.append(f"exts must map modalities to one of {VIDEO_EXTS}, got {exts!r}")
        return problems
    if key_problem(meta["key"]):
        problems.append(key_problem(meta["key"]))
    if not meta["modalities"] or meta["modalities"][0] != "rgb":
        problems.append("modalities must list rgb first")
    unknown = [name for name in meta["modalities"] if name not in MODALITIES]
    if unknown:
        problems.append(f"unknown modalities {unknown}; known: {', '.join(MODALITIES)}")
    for name in meta["modalities"][1:]:
        if name not in meta["prompts"]:
            problems.append(f"no prompt for modality {name!r}")
    for name in meta["gt"]:
        if name not in GT_NAMES:
            problems.append(f"unknown ground-truth array {name!r}; known: {', '.join(GT_NAMES)}")
    for dim in ("frames", "height", "width"):
        if meta[dim] <= 0:
            problems.append(f"'{dim}' must be positive, got {meta[dim]}")
    return problems


def expected_members(meta: dict) -> list[str]:
    """Member suffixes (after ``<key>.``) that a valid sample with this json must have."""
    names = ["json"] + [stream_member(meta, m) for m in meta["modalities"]]
    return names + [gt_member(n) for n in meta["gt"]]
