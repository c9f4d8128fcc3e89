"""The `synth` and `check` commands end to end, and the shards read back as docs/architecture.md ("Data") says:
with nothing but tarfile, OpenCV and NumPy."""

import io
import json
import subprocess
import sys
import tarfile

import cv2
import numpy as np
import pytest
import torch

from data_pipeline.loader import make_loader
from data_pipeline.modalities import MODALITIES, get
from data_pipeline.synthetic import render_clip
from data_pipeline.synthetic.build import build_synthetic, clip_seed

FRAMES, SIZE, CLIPS = 6, 32, 5


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "data_pipeline", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    result = _cli(
        "synth",
        "--out",
        str(out),
        "--clips",
        str(CLIPS),
        "--frames",
        str(FRAMES),
        "--size",
        str(SIZE),
        "--with-gt",
        "--shard-size",
        "2",
        "--workers",
        "2",
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {CLIPS} samples in 3 shard(s)" in result.stdout
    assert "synth train" in result.stderr  # the progress bar
    return out


def _read_plain(path):
    """Samples of one shard using only tarfile, OpenCV and NumPy: {key: {suffix: bytes}}."""
    samples = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            key, _, suffix = member.name.partition(".")
            samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def _decode_plain(data, tmp_path):
    path = tmp_path / "clip.mkv"
    path.write_bytes(data)
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            return np.stack(frames)
        frames.append(frame[..., ::-1])


def test_dataset_json_describes_the_shards(synth_dir):
    dataset = json.loads((synth_dir / "dataset.json").read_text())
    assert dataset["samples"] == CLIPS and [s["samples"] for s in dataset["shards"]] == [2, 2, 1]
    assert dataset["source"] == "synthetic" and dataset["args"]["frames"] == FRAMES and dataset["schema"] == 1


def test_check_passes_and_summarises(synth_dir):
    result = _cli("check", str(synth_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all samples valid" in result.stdout and f"{FRAMES}x{SIZE}x{SIZE} {CLIPS}" in result.stdout
    assert "licence     no third-party footage" in result.stdout  # the dataset card
    assert "depth: exact ground truth (ray-cast depth)" in result.stdout


def test_shards_read_with_plain_tools_match_the_renderer(synth_dir, tmp_path):
    samples = _read_plain(synth_dir / "train-000000.tar")
    key = "synth-train-0-000000"
    members = samples[key]
    meta = json.loads(members["json"])
    expected = {"json"} | {f"{m}.mkv" for m in MODALITIES} | {f"{g}.npy" for g in meta["gt"]}
    assert set(members) == expected
    assert meta["frames"] == FRAMES and meta["height"] == meta["width"] == SIZE
    assert meta["seg_targets"] and meta["prompts"]["seg"].startswith("segment")

    clip = render_clip(clip_seed(0, 0), frames=FRAMES, size=SIZE)
    assert meta["caption"] == clip.caption
    np.testing.assert_array_equal(_decode_plain(members["rgb.mkv"], tmp_path), clip.rgb)  # lossless
    np.testing.assert_array_equal(np.load(io.BytesIO(members["depth.npy"])), clip.depth)
    np.testing.assert_array_equal(np.load(io.BytesIO(members["occlusion.npy"])), clip.occlusion)
    np.testing.assert_allclose(np.array(meta["camera"]["intrinsics"]), clip.intrinsics)

    # The visual forms decode, with the stored encoding parameters, back to the raw ground truth.
    depth = get("depth").decode(_decode_plain(members["depth.mkv"], tmp_path), meta["encoding"]["depth"])
    assert np.abs(depth / clip.depth - 1).max() <= 0.01
    flow = get("flow").decode(_decode_plain(members["flow.mkv"], tmp_path), meta["encoding"]["flow"])
    assert np.hypot(*(flow - clip.flow).transpose(3, 0, 1, 2)).max() <= 0.02 * meta["encoding"]["flow"]["max_radius"]
    seg = get("seg").decode(_decode_plain(members["seg.mkv"], tmp_path), meta["encoding"]["seg"])
    np.testing.assert_array_equal(seg, clip.seg)
    iuv = get("densepose").decode(_decode_plain(members["densepose.mkv"], tmp_path), meta["encoding"]["densepose"])
    np.testing.assert_array_equal(iuv[..., 0], clip.densepose[..., 0])


def test_same_seed_same_set_and_zeroshot_targets_objects(tmp_path):
    a = build_synthetic(str(tmp_path / "a"), 2, frames=3, size=24, seed=7, workers=1, progress=False)
    b = build_synthetic(str(tmp_path / "b"), 2, frames=3, size=24, seed=7, workers=1, progress=False)
    assert a["samples"] == b["samples"] == 2
    first, second = (_read_plain(tmp_path / name / "train-000000.tar") for name in "ab")
    assert first.keys() == second.keys()
    for key, members in first.items():  # Matroska headers carry a random id, so compare contents
        for suffix, data in members.items():
            if suffix.endswith(".mkv"):
                np.testing.assert_array_equal(
                    _decode_plain(data, tmp_path), _decode_plain(second[key][suffix], tmp_path)
                )
            else:
                assert data == second[key][suffix], suffix

    build_synthetic(str(tmp_path / "z"), 4, frames=3, size=24, split="zeroshot", workers=1, progress=False)
    for members in _read_plain(tmp_path / "z" / "zeroshot-000000.tar").values():
        meta = json.loads(members["json"])
        targets = [o for o in meta["objects"] if o["id"] in meta["seg_targets"]]
        assert meta["split"] == "zeroshot" and targets
        assert all(o["category"] != "person" for o in targets)
        assert "person" not in meta["prompts"]["seg"]


def test_loader_batches_synthetic_shards(synth_dir):
    loader = make_loader(str(synth_dir), ["depth", "seg"], batch_size=2, frames=4, size=24, seed=1)
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == CLIPS and all(b["skipped"] == 0 for b in batches)
    batch = batches[0]
    assert batch["rgb"].shape == batch["depth"].shape == (2, 3, 4, 24, 24)
    assert batch["rgb"].dtype == torch.uint8 and batch["rgb"].float().std() > 10  # pixels, not a blank
    assert batch["prompts"]["seg"][0].startswith("segment") and batch["caption"][0]


def test_synth_refuses_bad_arguments(tmp_path):
    result = _cli("synth", "--out", str(tmp_path), "--clips", "0")
    assert result.returncode == 2 and "need clips >= 1" in result.stderr
    result = _cli("check", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "no dataset.json" in result.stderr


def test_preview_writes_a_contact_sheet(synth_dir, tmp_path):
    out = tmp_path / "sheet.png"
    result = _cli("preview", str(synth_dir), "--out", str(out), "--samples", "2")
    assert result.returncode == 0, result.stderr
    sheet = cv2.imread(str(out))
    assert sheet.shape[1] == 2 * SIZE * len(MODALITIES)  # streams side by side at scale 2
    assert sheet.shape[0] > 2 * 2 * 2 * SIZE  # 2 samples x 2 frames, plus the label row
