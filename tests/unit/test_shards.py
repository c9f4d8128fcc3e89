"""Shard writing and the `check` command on hand-made samples (the synthetic set is tested end to end elsewhere)."""

import io
import json
import os
import tarfile

import numpy as np
import pytest

from data_pipeline.check import check_dataset
from data_pipeline.schema import SCHEMA_VERSION, validate_meta
from data_pipeline.video_io import encode_video
from data_pipeline.writer import ShardWriter, npy_bytes

T, H, W = 4, 16, 16


def _sample(key: str, frames: int = T, gt: bool = True) -> dict:
    meta = dict(
        schema=SCHEMA_VERSION,
        key=key,
        caption="a test clip",
        fps=8.0,
        frames=T,
        height=H,
        width=W,
        source="test",
        split="train",
        modalities=["rgb"],
        ext="mkv",
        prompts={},
        encoding={},
        gt=["depth"] if gt else [],
    )
    video = np.full((frames, H, W, 3), 7, np.uint8)
    sample = {"json": meta, "rgb.mkv": encode_video(video)}
    if gt:
        sample["depth.npy"] = npy_bytes(np.ones((T, H, W), np.float32))
    return sample


def test_writer_groups_samples_into_shards_and_indexes_them(tmp_path):
    with ShardWriter(str(tmp_path), "train", shard_size=2) as writer:
        for i in range(5):
            writer.write(_sample(f"k{i}"))
    dataset = json.loads((tmp_path / "dataset.json").read_text())
    assert [s["samples"] for s in dataset["shards"]] == [2, 2, 1]
    assert dataset["samples"] == 5 and dataset["schema"] == SCHEMA_VERSION
    assert sorted(os.listdir(tmp_path)) == ["dataset.json", "train-000000.tar", "train-000001.tar", "train-000002.tar"]
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        assert sorted(tar.getnames()) == [
            "k0.depth.npy",
            "k0.json",
            "k0.rgb.mkv",
            "k1.depth.npy",
            "k1.json",
            "k1.rgb.mkv",
        ]


def test_writer_refuses_bad_keys_duplicates_and_invalid_json(tmp_path):
    with ShardWriter(str(tmp_path), "train") as writer:
        with pytest.raises(ValueError, match="first dot"):
            writer.write(_sample("a.b"))
        writer.write(_sample("a"))
        with pytest.raises(ValueError, match="duplicate"):
            writer.write(_sample("a"))
        bad = _sample("c")
        del bad["json"]["caption"]
        with pytest.raises(ValueError, match="lacks 'caption'"):
            writer.write(bad)


def test_a_crash_leaves_no_half_written_shard(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(str(tmp_path), "train", shard_size=3) as writer:
            writer.write(_sample("k0"))
            writer.write(_sample("k1"))
            writer.write(_sample("k2"))  # completes shard 0
            writer.write(_sample("k3"))
            raise RuntimeError("crash")
    assert sorted(os.listdir(tmp_path)) == ["train-000000.tar"]


def test_validate_meta_explains_each_problem():
    meta = _sample("k")["json"]
    assert validate_meta(meta) == []
    meta.update(modalities=["depth"], ext="webm", frames=0)
    problems = " | ".join(validate_meta(meta))
    assert "rgb first" in problems and "ext 'webm'" in problems and "'frames' must be positive" in problems


def test_check_passes_a_good_set_and_names_each_bad_sample(tmp_path):
    good = tmp_path / "good"
    with ShardWriter(str(good), "train", shard_size=2) as writer:
        for i in range(3):
            writer.write(_sample(f"k{i}"))
    report = check_dataset(str(good), progress=False)
    assert report.ok and report.samples == 3 and report.geometry == {f"{T}x{H}x{W}": 3}

    bad = tmp_path / "bad"
    with ShardWriter(str(bad), "train", shard_size=10) as writer:
        writer.write(_sample("short", frames=T - 1))  # video shorter than its json says
        writer.write(_sample("fine"))
    with tarfile.open(bad / "train-000000.tar", "a") as tar:  # a sample with an undecodable video
        for name, data in (
            ("junk.json", json.dumps(_sample("junk")["json"]).encode()),
            ("junk.rgb.mkv", b"x" * 99),
            ("junk.depth.npy", npy_bytes(np.ones((T, H, W), np.float32))),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = check_dataset(str(bad), progress=False)
    problems = {(key, why.split(":")[0]) for _, key, why in report.bad}
    assert ("short", "rgb") in problems
    assert ("junk", "rgb") in problems
    assert ("-", "dataset.json lists 2 samples, the tar holds 3") in {(k, w) for _, k, w in report.bad}
    assert not any(key == "fine" for _, key, _ in report.bad)


def test_check_reports_a_truncated_tar(tmp_path):
    with ShardWriter(str(tmp_path), "train", shard_size=10) as writer:
        for i in range(4):
            writer.write(_sample(f"k{i}"))
    path = tmp_path / "train-000000.tar"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = check_dataset(str(tmp_path), progress=False)
    assert not report.ok
    assert any("unreadable tar" in why or "holds" in why for _, _, why in report.bad)
