"""Decode and validate every sample of a shard folder: the ``check`` command.

Reads the tars with nothing but ``tarfile``, OpenCV and NumPy (as any consumer of the format
could), so a passing check also shows the format is readable without this package's loader.
"""

from __future__ import annotations

import io
import json
import logging
import os
import struct
import tarfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from data_pipeline.card import card_lines
from data_pipeline.modalities import MODALITIES
from data_pipeline.schema import (
    TEXT_MEMBER,
    UNITY_CONVENTION,
    convention,
    expected_members,
    latent_member,
    stream_member,
    validate_meta,
)
from data_pipeline.video_io import decode_video

log = logging.getLogger(__name__)

# Raw ground truth arrays whose leading dimensions are [T, H, W].
_PIXEL_GT = ("depth", "flow", "occlusion", "seg", "densepose")


@dataclass
class CheckReport:
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    bad: list[tuple[str, str, str]] = field(default_factory=list)  # (shard, key, why)
    modalities: Counter = field(default_factory=Counter)
    geometry: Counter = field(default_factory=Counter)  # "TxHxW" -> samples
    splits: Counter = field(default_factory=Counter)
    card: list[str] = field(default_factory=list)  # the dataset card of dataset.json, as lines

    @property
    def ok(self) -> bool:
        return not self.bad

    def summary(self) -> str:
        lines = [
            f"shards      {self.shards}",
            f"samples     {self.samples} ({self.samples - len({(s, k) for s, k, _ in self.bad})} valid)",
            f"size        {self.bytes / 2**20:.1f} MiB",
            f"splits      {_counts(self.splits)}",
            f"geometry    {_counts(self.geometry)}",
            f"modalities  {_counts(self.modalities)}",
            *self.card,
        ]
        if self.bad:
            lines.append(f"{len(self.bad)} problem(s):")
            lines += [f"  {shard}: {key}: {why}" for shard, key, why in self.bad]
        else:
            lines.append("all samples valid")
        return "\n".join(lines)


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counter.items())) or "-"


def list_shards(root: str) -> tuple[list[str], dict[str, int]]:
    """The shard paths under ``root`` and the sample count ``dataset.json`` gives each."""
    index = os.path.join(root, "dataset.json")
    if not os.path.isfile(index):
        raise FileNotFoundError(f"{root} has no dataset.json; is it a shard folder written by `synth` or `ingest`?")
    with open(index) as f:
        listed = {s["name"]: s["samples"] for s in json.load(f)["shards"]}
    on_disk = sorted(name for name in os.listdir(root) if name.endswith(".tar"))
    return [os.path.join(root, name) for name in sorted(set(listed) | set(on_disk))], listed


class Skips:
    """What a reader of shards could not read: each problem logged once as a warning, and counted."""

    def __init__(self):
        self.entries: list[tuple[str, str]] = []  # (what was skipped, why)

    @property
    def count(self) -> int:
        return len(self.entries)

    def add(self, where: str, why: str) -> None:
        log.warning("skipped %s: %s", where, why)
        self.entries.append((where, why))


def iter_samples(path: str, skips: Skips | None = None):
    """Yield ``(key, {suffix: bytes})`` from a tar, grouping adjacent members by key (text before the first dot).

    A tar that is cut short or corrupt yields the samples before the damage; the damage (and the sample
    it cut) is one entry in ``skips`` (logged only, when None), and reading stops there.
    """
    key, members, count = None, {}, 0
    try:
        with tarfile.open(path, "r|*") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = os.path.basename(info.name)
                name_key, _, suffix = base.partition(".")
                if name_key != key and key is not None:
                    yield key, members
                    members, count = {}, count + 1
                key = name_key
                members[suffix] = tar.extractfile(info).read()
    except (tarfile.TarError, OSError, EOFError) as e:
        (skips if skips is not None else Skips()).add(
            f"the rest of {path}", f"unreadable tar after {count} sample(s): {type(e).__name__}: {e}"
        )
        return
    if key is not None:
        yield key, members


def check_sample(key: str, members: dict[str, bytes]) -> list[str]:
    """Problems with one sample (empty when it is valid)."""
    if "json" not in members:
        return [f"no json member (members: {', '.join(sorted(members))})"]
    try:
        meta = json.loads(members["json"])
    except ValueError as e:
        return [f"json does not parse: {e}"]
    problems = validate_meta(meta)
    if problems:
        return problems
    if meta["key"] != key:
        problems.append(f"json key {meta['key']!r} differs from the member key {key!r} (a dot in the key?)")
    missing = [m for m in expected_members(meta) if m not in members]
    if missing:
        return problems + [f"missing member(s) {', '.join(missing)}"]
    shape = (meta["frames"], meta["height"], meta["width"])
    for name in meta["modalities"]:
        try:
            video = decode_video(members[stream_member(meta, name)])
        except ValueError as e:
            problems.append(f"{name}: {e}")
            continue
        if video.shape[:3] != shape:
            problems.append(f"{name}: decoded {video.shape[:3]} (T, H, W) but json says {shape}")
        elif name in MODALITIES and convention(meta, name) == UNITY_CONVENTION:  # others are not decodable
            try:
                MODALITIES[name].decode(video, dict(meta["encoding"].get(name, {})))
            except (ValueError, KeyError) as e:
                problems.append(f"{name}: visual form does not decode: {e}")
    for name in meta["gt"]:
        try:
            array = np.load(io.BytesIO(members[f"{name}.npy"]), allow_pickle=False)
        except ValueError as e:
            problems.append(f"{name}.npy: {e}")
            continue
        if name in _PIXEL_GT and array.shape[:3] != shape:
            problems.append(f"{name}.npy: shape {array.shape} does not start with {shape}")
        if name == "pose" and (array.ndim != 4 or array.shape[0] != shape[0] or array.shape[3] != 3):
            problems.append(f"pose.npy: shape {array.shape} is not [T={shape[0]}, P, K, 3]")
    if "precomputed" in meta:
        problems += check_precomputed(meta, members)
    return problems


def safetensors_header(data: bytes) -> dict:
    """The tensor table of a ``.safetensors`` file, ``{name: {"dtype", "shape", "data_offsets"}}``."""
    if len(data) < 8:
        raise ValueError("too short for a safetensors header")
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header.pop("__metadata__", None)
    end = max((info["data_offsets"][1] for info in header.values()), default=0)
    if 8 + size + end > len(data):
        raise ValueError(f"header promises {end} bytes of tensor data, the file holds {len(data) - 8 - size}")
    return header


def check_precomputed(meta: dict, members: dict[str, bytes]) -> list[str]:
    """Problems with the latents and text embeddings that a precomputed sample's json announces."""
    shape, dim = meta["precomputed"].get("latent_shape"), meta["precomputed"].get("text_dim")
    texts = ["caption"] + [f"prompt.{name}" for name in meta["modalities"][1:]]
    masks = ["caption_mask"] + [f"prompt_mask.{name}" for name in meta["modalities"][1:]]
    # member -> tensor -> shape, where "L" is a text's token count, the same for its mask
    wanted = {latent_member(name): {"latent": shape} for name in meta["modalities"]}
    wanted[TEXT_MEMBER] = {**{t: ["L", dim] for t in texts}, **{m: ["L"] for m in masks}}
    problems = []
    for member, tensors in wanted.items():
        if member not in members:
            problems.append(f"missing member {member}")
            continue
        try:
            header = safetensors_header(members[member])
        except ValueError as e:
            problems.append(f"{member}: {e}")
            continue
        for name, want in tensors.items():
            got = header.get(name, {}).get("shape")
            if got is None or len(got) != len(want) or any(w != "L" and g != w for g, w in zip(got, want)):
                problems.append(f"{member}: tensor {name!r} has shape {got}, expected {want}")
        if member == TEXT_MEMBER:
            lengths = {t: (header.get(t, {}).get("shape") or [0])[0] for t in texts + masks}
            problems += [
                f"{member}: {t!r} and {m!r} differ in length" for t, m in zip(texts, masks) if lengths[t] != lengths[m]
            ]
    return problems


def check_dataset(root: str, progress: bool = True) -> CheckReport:
    """Validate every sample of every shard under ``root`` against the schema."""
    paths, listed = list_shards(root)
    with open(os.path.join(root, "dataset.json")) as f:
        report = CheckReport(shards=len(paths), card=card_lines(json.load(f)))
    for path in tqdm(paths, desc="check", unit="shard", disable=not progress):
        shard = os.path.basename(path)
        report.bytes += os.path.getsize(path)
        count, skips = 0, Skips()
        for key, members in iter_samples(path, skips):
            count += 1
            problems = check_sample(key, members)
            report.bad += [(shard, key, why) for why in problems]
            if not problems:
                meta = json.loads(members["json"])
                report.modalities.update(meta["modalities"])
                report.geometry[f"{meta['frames']}x{meta['height']}x{meta['width']}"] += 1
                report.splits[meta["split"]] += 1
        report.bad += [(shard, "-", why) for _, why in skips.entries]
        report.samples += count
        if shard not in listed:
            report.bad.append((shard, "-", "shard is not listed in dataset.json"))
        elif listed[shard] != count:
            report.bad.append((shard, "-", f"dataset.json lists {listed[shard]} samples, the tar holds {count}"))
    return report
