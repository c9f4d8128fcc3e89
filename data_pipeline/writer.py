"""Write samples into webdataset shards and describe the set in ``dataset.json``.

Each shard is written under a temporary name and renamed when complete, and ``dataset.json`` is
written last, so an interrupted run never leaves a shard that looks whole but is not.
"""

from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import webdataset as wds

from data_pipeline.check import list_shards
from data_pipeline.schema import SCHEMA_VERSION, expected_members, validate_meta


def npy_bytes(array: np.ndarray) -> bytes:
    """Serialise an array as the bytes of a ``.npy`` file."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def write_json_atomic(path: str, obj) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


class ShardWriter:
    """Groups samples into ``<prefix>-NNNNNN.tar`` shards of ``shard_size`` samples under ``out_dir``.

    A sample is ``{"json": dict, "<suffix>": bytes, ...}`` where each suffix is a member name after
    the key (``rgb.mkv``, ``depth.npy``); the key is ``json["key"]``.
    """

    def __init__(self, out_dir: str, prefix: str = "shard", shard_size: int = 64, info: dict | None = None):
        if shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {shard_size}")
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir, self.prefix, self.shard_size = out_dir, prefix, shard_size
        self.info = dict(info or {})
        self.shards: list[dict] = []
        self._tar = self._file = None
        self._count = 0
        self._keys: set[str] = set()
        self.dataset: dict | None = None  # the dataset.json contents once closed

    def write(self, sample: dict) -> None:
        meta = sample["json"]
        problems = validate_meta(meta)
        if problems:
            raise ValueError(f"sample {meta.get('key')!r} is not valid: " + "; ".join(problems))
        key = meta["key"]
        missing = [name for name in expected_members(meta) if name not in sample]
        if missing:
            raise ValueError(f"sample {key!r} lists members it lacks: {', '.join(missing)}")
        if key in self._keys:
            raise ValueError(f"duplicate sample key {key!r}")
        self._keys.add(key)
        if self._tar is None:
            self._open()
        record = {"__key__": key, "json": json.dumps(meta).encode()}
        record.update({name: data for name, data in sample.items() if name != "json"})
        self._tar.write(record)
        self._count += 1
        if self._count == self.shard_size:
            self._finish_shard()

    def close(self) -> dict:
        """Finish the last shard, write ``dataset.json`` and return its contents."""
        if self._tar is not None:
            self._finish_shard()
        dataset = {
            "schema": SCHEMA_VERSION,
            "shards": self.shards,
            "samples": sum(s["samples"] for s in self.shards),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **self.info,
        }
        write_json_atomic(os.path.join(self.out_dir, "dataset.json"), dataset)
        self.dataset = dataset
        return dataset

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # leave no half-written shard behind
            self._tar.close()
            os.unlink(self._tmp_path)

    def _open(self) -> None:
        self._name = f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp_path = os.path.join(self.out_dir, self._name + ".tmp")
        self._file = open(self._tmp_path, "wb")
        self._tar = wds.TarWriter(self._file, encoder=False)
        self._count = 0

    def _finish_shard(self) -> None:
        self._tar.close()  # closes the file too
        os.replace(self._tmp_path, os.path.join(self.out_dir, self._name))
        self.shards.append({"name": self._name, "samples": self._count})
        self._tar = self._file = None


def derived_set(data: str, out: str) -> tuple[list[str], int, ShardWriter]:
    """Start a new set in ``out`` made from every sample of the set ``data`` (precompute, external features).

    Returns the source's shard paths, its listed sample count and a writer with its shard prefix and
    size, whose dataset.json keeps the source's description and records ``source_data``.
    """
    if os.path.abspath(out) == os.path.abspath(data):
        raise ValueError("--out must differ from --data: the new set is written as new shards")
    if os.path.exists(os.path.join(out, "dataset.json")):
        raise FileExistsError(f"{out} already holds a dataset.json; remove the folder or choose another --out")
    paths, listed = list_shards(data)
    with open(os.path.join(data, "dataset.json")) as f:
        kept = {k: v for k, v in json.load(f).items() if k not in ("schema", "shards", "samples", "created")}
    prefix = os.path.basename(paths[0]).rsplit("-", 1)[0] if paths else "shard"
    writer = ShardWriter(out, prefix, max(listed.values(), default=64), {**kept, "source_data": os.path.abspath(data)})
    return paths, sum(listed.values()), writer
