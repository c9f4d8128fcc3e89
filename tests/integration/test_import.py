"""`python -m data_pipeline import` on lists the test writes: UnityVideo's metadata.csv and a VideoX-Fun JSON
list become shards that `check` accepts and that train; streams are stored losslessly with their visual
convention; missing and undecodable files are reported and skipped."""

import csv
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from data_pipeline.__main__ import main
from data_pipeline.check import check_dataset
from data_pipeline.import_list import read_frames
from data_pipeline.modalities import MODALITIES
from data_pipeline.video_io import decode_video, encode_video, video_codec

from mini_run import ENV, ROOT, overrides

COLUMNS = ["video", "prompt", "depth", "densepose", "raft", "segmentation", "skeleton"]
PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200]], np.uint8)


def moving_clip(frames, seed, height=40, width=48):
    """A smooth clip whose content moves: uint8 [T, H, W, 3]."""
    y, x = np.mgrid[0:height, 0:width]
    phase = np.random.default_rng(seed).uniform(0, 6)
    clip = [np.stack([x * 5 + 9 * t, y * 6, 128 + 100 * np.sin(x / 7 + t / 3 + phase)], -1) for t in range(frames)]
    return np.clip(clip, 0, 255).astype(np.uint8)


def label_clip(frames, height=40, width=48):
    """A segmentation-like clip of palette colours (labels): uint8 [T, H, W, 3]."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([PALETTE[((x + 3 * t) // 12 + y // 20) % len(PALETTE)] for t in range(frames)])


def write(path, clip, ext="mkv", fps=8.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_video(clip, ext, fps))
    return path


def read_shards(root):
    samples = {}
    for shard in sorted(root.glob("*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


@pytest.fixture(scope="module")
def unityvideo_list(tmp_path_factory):
    """A metadata.csv in UnityVideo's layout: three good rows (one with a missing skeleton video, one with an
    undecodable densepose video), a row whose RGB video is missing; relative and absolute paths."""
    root = tmp_path_factory.mktemp("openuni")
    rows = []
    for i in range(3):
        row = {"video": f"rgb/clip{i}.mp4", "prompt": f"clip {i} slides", "depth": f"depth/clip{i}.mkv"}
        write(root / row["video"], moving_clip(16, i), "mp4")
        write(root / row["depth"], moving_clip(16, 10 + i)[..., ::-1].copy())
        row["raft"] = str(write(root / f"raft/clip{i}.mkv", moving_clip(16, 20 + i)))  # absolute
        row["segmentation"] = f"segmentation/clip{i}.mkv"
        write(root / row["segmentation"], label_clip(16))
        row["densepose"] = f"densepose/clip{i}.mkv"
        if i == 2:  # a file that is not a video
            (root / row["densepose"]).write_bytes(b"not a video" * 40)
        else:
            write(root / row["densepose"], label_clip(16))
        row["skeleton"] = f"skeleton/clip{i}.mkv" if i != 1 else "skeleton/gone.mkv"
        if i != 1:
            write(root / row["skeleton"], label_clip(16))
        rows.append(row)
    rows.append({"video": "rgb/gone.mp4", "prompt": "lost", **{c: "" for c in COLUMNS[2:]}})
    with open(root / "metadata.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def imported(unityvideo_list, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "train"
    with pytest.warns(UserWarning, match="missing"):
        code = main(["import", "--csv", str(unityvideo_list / "metadata.csv"), "--out", str(out), "--size", "32",
                     "--frames", "8", "--license", "CC-BY-4.0"])  # fmt: skip
    assert code == 0
    return out


def test_the_unityvideo_list_becomes_valid_shards(imported):
    info = json.loads((imported / "dataset.json").read_text())
    assert info["source"] == "import" and info["samples"] == 6  # 3 rows x 2 clips of 8 frames; the lost row skipped
    report = info["import"]
    assert report["rows"] == 4 and report["samples"] == 6
    assert any("gone.mp4" in m and "row skipped" in m for m in report["missing"])
    assert any("skeleton" in m and "gone.mkv" in m for m in report["missing"])
    assert [p.endswith("densepose/clip2.mkv") for p in report["undecodable"]] == [True]
    assert info["args"]["columns"]["raft"] == "flow" and info["license"] == "CC-BY-4.0"
    assert "RAFT" in info["estimators"]["flow"]  # the card says what made each stream
    summary = check_dataset(str(imported), progress=False).summary()
    assert "all samples valid" in summary and "licence     CC-BY-4.0" in summary, summary


def test_streams_are_lossless_with_their_conventions(imported, unityvideo_list):
    samples = read_shards(imported)
    meta = json.loads(samples["rgb_clip0-0000"]["json"])
    assert meta["modalities"] == ["rgb", "depth", "flow", "seg", "pose", "densepose"]
    assert meta["caption"] == "clip 0 slides" and meta["ext"] == "mp4"
    assert meta["encoding"]["flow"] == {"convention": "raft-colour-wheel", "column": "raft"}
    assert meta["encoding"]["depth"]["convention"] == "unityvideo-depth"
    assert json.loads(samples["rgb_clip1-0000"]["json"])["modalities"] == ["rgb", "depth", "flow", "seg", "densepose"]
    assert "densepose" not in json.loads(samples["rgb_clip2-0000"]["json"])["modalities"]
    assert video_codec(samples["rgb_clip0-0000"]["rgb.mp4"]) == ("h264", "yuv420p")
    for name in ("depth", "flow", "seg", "pose"):
        assert video_codec(samples["rgb_clip0-0000"][f"{name}.mkv"])[0] == "ffv1"
    # the depth stream is the source's frames fitted to 32x32, exactly: stored losslessly
    expected, _ = read_frames(str(unityvideo_list / "depth" / "clip0.mkv"), 8.0, 32, 32, nearest=False)
    np.testing.assert_array_equal(decode_video(samples["rgb_clip0-0001"]["depth.mkv"]), expected[8:16])
    # label colours are resized nearest-neighbour and kept exactly: no blended colour appears
    seg = decode_video(samples["rgb_clip0-0000"]["seg.mkv"]).reshape(-1, 3)
    assert {tuple(c) for c in np.unique(seg, axis=0)} <= {tuple(c) for c in PALETTE}
    rgb = decode_video(samples["rgb_clip0-0000"]["rgb.mp4"]).reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) > 50  # negative control: the lossy, interpolated RGB has many colours


def test_the_imported_shards_train(imported, tmp_path):
    extra = {
        "data.root": imported.parent,
        "data.modalities": "[depth,flow]",
        "routing.modalities": "{depth: 1.0, flow: 1.0}",
        "train.max_steps": 2,
        "checkpoint.save_every": 2,
        "train.eval_every": 2,
        "data.synth.val_clips": 2,
        "data.synth.test_clips": 2,
    }
    args = [sys.executable, "train.py", *overrides(tmp_path, imported.parent, **extra), "run.name=imported"]
    result = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "imported" / "checkpoints" / "step_0000002" / "model.safetensors").is_file()
    text = (tmp_path / "imported" / "metrics.jsonl").read_text()
    assert "rgb_clip" in text  # the steps drew the imported samples


def test_a_videox_fun_json_list_needs_its_control_modality(tmp_path, capsys):
    write(tmp_path / "a.mp4", moving_clip(8, 0), "mp4")
    write(tmp_path / "a_depth.mkv", moving_clip(8, 1))
    rows = [{"file_path": "a.mp4", "control_file_path": "a_depth.mkv", "text": "a box", "type": "video"}]
    (tmp_path / "list.json").write_text(json.dumps(rows))
    command = ["import", "--json", str(tmp_path / "list.json"), "--out", str(tmp_path / "out"), "--size", "32"]
    assert main([*command, "--frames", "8"]) == 2
    assert "--map control_file_path=<modality>" in capsys.readouterr().err
    assert main([*command, "--frames", "8", "--map", "control_file_path=depth", "--convention", "depth=unity"]) == 0
    (sample,) = read_shards(tmp_path / "out").values()
    meta = json.loads(sample["json"])
    assert meta["modalities"] == ["rgb", "depth"] and meta["caption"] == "a box"
    assert meta["encoding"]["depth"] == {"convention": "unity", "column": "control_file_path"}  # decoded by check
    assert check_dataset(str(tmp_path / "out"), progress=False).ok
    assert main([*command, "--frames", "8", "--map", "control_file_path=normals"]) == 2
    assert "COLUMN=MODALITY" in capsys.readouterr().err
    elsewhere = ["--root", str(tmp_path / "nowhere"), "--map", "control_file_path=depth"]
    assert main([*command, "--frames", "8", *elsewhere]) == 2  # every path wrong: an error, not an empty set
    err = capsys.readouterr().err
    assert "no RGB video of" in err and "set --root" in err
    assert MODALITIES["depth"].decode(decode_video(sample["depth.mkv"])).shape == (8, 32, 32)
