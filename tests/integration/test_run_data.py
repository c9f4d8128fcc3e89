"""The run's synthetic splits: reused only when rendered by this world at the configured clip size."""

import json

import pytest

from data_pipeline.synthetic import WORLD_VERSION
from unity.config import load
from unity.train.data import check_geometry


def write_split(root, world, frames=8, size=32):
    (root / "train").mkdir(parents=True, exist_ok=True)
    info = {"source": "synthetic", "world": world, "split": "train", "args": {"frames": frames, "size": size}}
    (root / "train" / "dataset.json").write_text(json.dumps(info))


def test_a_split_of_this_world_and_size_is_reused(tmp_path):
    write_split(tmp_path, WORLD_VERSION)
    check_geometry(load("configs/tiny.yaml", [f"data.root={tmp_path}"]), "train")


def test_a_split_from_an_older_world_names_both_versions_and_the_fix(tmp_path):
    write_split(tmp_path, WORLD_VERSION - 1)
    with pytest.raises(ValueError, match=f"version {WORLD_VERSION - 1} .* version {WORLD_VERSION}; delete {tmp_path}"):
        check_geometry(load("configs/tiny.yaml", [f"data.root={tmp_path}"]), "train")


def test_a_split_of_another_clip_size_is_refused(tmp_path):
    write_split(tmp_path, WORLD_VERSION, frames=16, size=64)
    with pytest.raises(ValueError, match="16-frame 64x64 clips but the config asks for data.frames=8, data.size=32"):
        check_geometry(load("configs/tiny.yaml", [f"data.root={tmp_path}"]), "train")
