"""Ingest of real footage: fps resampling, resizing, clip cutting, shard contents, optical flow
against a known translation, skipping broken files, and the local transformers estimators."""

from __future__ import annotations

import json
import sys
import tarfile

import cv2
import numpy as np
import pytest

from data_pipeline.check import check_dataset
from data_pipeline.ingest import cut_clips, fit, ingest, key_base, resample
from data_pipeline.modalities import get
from data_pipeline.schema import validate_meta
from data_pipeline.video_io import VideoDecodeError, decode_video, video_codec

FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


def write_video(path, frames: int, shift: int = 1, size: tuple[int, int] = (48, 64), fps: float = 24.0) -> None:
    """A grey blurred-noise texture whose content moves left by ``shift`` pixels per frame."""
    h, w = size
    noise = np.random.default_rng(0).integers(0, 256, (h, w + shift * frames)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC[path.suffix]), fps, (w, h))
    assert writer.isOpened()
    for t in range(frames):
        writer.write(cv2.cvtColor(np.ascontiguousarray(texture[:, shift * t : shift * t + w]), cv2.COLOR_GRAY2BGR))
    writer.release()


def read_samples(out) -> dict[str, dict]:
    """key -> {member suffix: bytes or parsed json} over every shard under ``out``."""
    samples: dict[str, dict] = {}
    for shard in json.loads((out / "dataset.json").read_text())["shards"]:
        with tarfile.open(out / shard["name"]) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                samples.setdefault(key, {})[suffix] = json.loads(data) if suffix == "json" else data
    return samples


class FakeCapture:
    """Stands in for cv2.VideoCapture: ``n`` frames, each filled with its own index."""

    def __init__(self, n: int):
        self.n, self.index = n, -1

    def grab(self) -> bool:
        self.index += 1
        return self.index < self.n

    def retrieve(self):
        return True, np.full((2, 2, 3), self.index, np.uint8)


@pytest.mark.parametrize(
    "source_fps, fps, n, expected",
    [
        (24, 8, 10, [0, 3, 6, 9]),
        (30, 8, 16, [0, 4, 8, 11, 15]),  # nearest of 0, 3.75, 7.5, 11.25, 15 (halves round up)
        (10, 25, 3, [0, 0, 1, 1, 2, 2, 2]),  # upsampling repeats frames: 0, .4, .8, ..., 2.4
    ],
)
def test_resample_takes_nearest_source_frame(source_fps, fps, n, expected):
    picked = [(i, int(frame[0, 0, 0])) for i, frame in resample(FakeCapture(n), source_fps, fps)]
    assert [i for i, _ in picked] == expected
    assert all(i == value for i, value in picked)


def test_resample_rejects_a_video_without_frames():
    with pytest.raises(VideoDecodeError, match="no frame"):
        list(resample(FakeCapture(0), 24, 8))


@pytest.mark.parametrize("stride, starts", [(4, [0, 4, 8]), (2, [0, 2, 4, 6, 8, 10]), (6, [0, 6])])
def test_cut_clips_strides_and_drops_the_tail(stride, starts):
    items = [(10 * i, np.full((1, 1, 3), i, np.uint8)) for i in range(14)]
    clips = list(cut_clips(items, 4, stride))
    assert [start for start, _ in clips] == [10 * s for s in starts]
    for (_, clip), s in zip(clips, starts):
        assert clip.shape == (4, 1, 1, 3) and list(clip[:, 0, 0, 0]) == list(range(s, s + 4))


def test_fit_covers_then_centre_crops():
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 32:] = 255  # right half white: a centre crop keeps both halves equally
    square = fit(frame, 32, 32)
    assert square.shape == (32, 32, 3) and square.flags.c_contiguous
    assert square[:, :15].max() == 0 and square[:, 17:].min() == 255
    assert fit(frame, 24, 40).shape == (24, 40, 3)
    assert fit(frame, 96, 64).shape == (96, 64, 3)  # upscaled to cover the taller target


def test_key_base_is_sanitised_and_unique():
    taken: set[str] = set()
    assert key_base("a b/walk.v2.mp4", taken) == "a_b_walk_v2"
    assert key_base("a b/walk.v2.avi", taken) == "a_b_walk_v2_2"


def test_ingest_cuts_clips_into_valid_samples(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "walk.mp4", 40)  # 24 fps -> 8 fps: source frames 0, 3, ..., 39 = 14 frames
    write_video(videos / "sub" / "pan.avi", 20)  # 7 frames at 8 fps
    (videos / "walk.txt").write_text("a textured wall slides left\n")
    out = tmp_path / "out"
    dataset = ingest(str(videos), str(out), fps=8, size=32, frames=4, stride=2, ext="mp4", shard_size=4, progress=False)

    samples = read_samples(out)
    walk = [f"walk-{i:04d}" for i in range(6)]  # clips start at resampled frames 0, 2, ..., 10
    pan = ["sub_pan-0000", "sub_pan-0001"]  # starts 0 and 2 of 7 frames
    assert sorted(samples) == sorted(walk + pan)
    assert dataset["samples"] == 8 and len(dataset["shards"]) == 2
    assert dataset["source"] == "ingest" and dataset["args"]["stride"] == 2
    assert dataset["videos"] == {"found": 2, "skipped": {}, "without_clips": []}
    for key, sample in samples.items():
        meta = sample["json"]
        assert validate_meta(meta) == [] and meta["key"] == key
        assert meta["modalities"] == ["rgb", "flow"] and meta["gt"] == [] and meta["ext"] == "mp4"
        assert meta["exts"] == {"flow": "mkv"}  # modality streams stay lossless beside an mp4 RGB clip
        assert set(sample) == {"json", "rgb.mp4", "flow.mkv"}
        assert video_codec(sample["rgb.mp4"]) == ("h264", "yuv420p")
        assert video_codec(sample["flow.mkv"])[0] == "ffv1"
        assert decode_video(sample["rgb.mp4"]).shape == (4, 32, 32, 3)
        assert decode_video(sample["flow.mkv"]).shape == (4, 32, 32, 3)
        assert meta["clip"]["source_fps"] == 24.0
    assert samples["walk-0003"]["json"]["clip"]["start_frame"] == 18  # resampled frame 6 = source frame 18
    assert samples["walk-0000"]["json"]["caption"] == "a textured wall slides left"
    assert samples["walk-0000"]["json"]["source"] == "walk.mp4"
    assert samples["sub_pan-0000"]["json"]["caption"] == ""
    assert samples["sub_pan-0000"]["json"]["source"] == "sub/pan.avi"


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_stored_flow_matches_the_translation(tmp_path, method):
    write_video(tmp_path / "videos" / "slide.avi", 36, shift=1)  # 1 px per source frame, leftwards
    out = tmp_path / "out"
    ingest(str(tmp_path / "videos"), str(out), fps=8, size=48, frames=6, ext="mkv", flow=method, progress=False)
    samples = read_samples(out)
    assert sorted(samples) == ["slide-0000", "slide-0001"]  # 12 frames at 8 fps
    for sample in samples.values():
        meta = sample["json"]
        assert meta["encoding"]["flow"]["method"] == method
        flow = get("flow").decode(decode_video(sample["flow.mkv"]), meta["encoding"]["flow"])  # [T, H, W, 2]
        interior = flow[:-1, 8:-8, 8:-8]
        error = np.hypot(interior[..., 0] + 3.0, interior[..., 1])  # 3 source frames apart: (-3, 0) px
        assert np.median(error) < 0.1 and np.mean(error < 0.2) > 0.95
        assert np.abs(flow[-1]).max() < 0.05  # the last frame has no successor


def test_broken_and_short_videos_are_reported_not_fatal(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "good.mp4", 24)
    write_video(videos / "short.mp4", 6)  # 2 frames at 8 fps: no clip of 4
    (videos / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(4096))
    (videos / "notes.md").write_text("not a video")
    with pytest.warns(UserWarning) as caught:
        dataset = ingest(str(videos), str(tmp_path / "out"), fps=8, size=32, frames=4, progress=False)
    messages = [str(w.message) for w in caught]
    assert any("skipping video" in m and "broken.mp4" in m for m in messages)
    assert any("short.mp4: too short" in m for m in messages)
    assert dataset["samples"] == 2
    assert dataset["videos"]["found"] == 3
    assert list(dataset["videos"]["skipped"]) == ["broken.mp4"]
    assert dataset["videos"]["without_clips"] == ["short.mp4"]


def test_missing_model_folder_is_a_clear_error(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", 12)
    videos, out, nowhere = str(tmp_path / "videos"), str(tmp_path / "out"), str(tmp_path / "nowhere")
    for flag in ("depth", "seg"):
        with pytest.raises(FileNotFoundError, match=f"{flag} .*nowhere.*config.json"):
            ingest(videos, out, progress=False, **{flag: nowhere})
    with pytest.raises(FileNotFoundError, match="detector/"):
        ingest(videos, out, pose=str(tmp_path), progress=False)
    assert not (tmp_path / "out" / "dataset.json").exists()


def test_estimators_without_transformers_say_how_to_install_it(tmp_path, monkeypatch):
    write_video(tmp_path / "videos" / "a.mp4", 12)
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "preprocessor_config.json", "model.safetensors"):
        (model / name).write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)  # makes `import transformers` fail
    with pytest.raises(ImportError, match=r"pip install -e '\.\[hf\]'"):
        ingest(str(tmp_path / "videos"), str(tmp_path / "out"), depth=str(model), progress=False)


# ------------------------------------------------------------------------ transformers estimators


def save_tiny_dpt(path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.DPTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=32,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 8, 8, 8],
        reassemble_factors=[4, 2, 1, 0.5],
        fusion_hidden_size=8,
        head_hidden_size=8,
    )
    transformers.DPTForDepthEstimation(config).save_pretrained(path)
    transformers.DPTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def save_tiny_segformer(path) -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 2],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=5,
    )
    transformers.SegformerForSemanticSegmentation(config).save_pretrained(path)
    transformers.SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def save_tiny_mask2former(path) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("scipy")  # Mask2Former builds its training loss, which needs scipy
    backbone = transformers.SwinConfig(
        image_size=32,
        patch_size=4,
        embed_dim=32,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=2,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = transformers.Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=32,
        dim_feedforward=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        num_queries=5,
        num_labels=3,
    )
    transformers.Mask2FormerForUniversalSegmentation(config).save_pretrained(path)
    transformers.Mask2FormerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)


def save_tiny_pose(path) -> None:
    """A random RT-DETR whose class bias makes every query a person, and a random VitPose."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    backbone = transformers.RTDetrResNetConfig(
        embedding_size=8,
        hidden_sizes=[8, 16, 32, 64],
        depths=[1, 1, 1, 1],
        layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )
    config = transformers.RTDetrConfig(
        backbone_config=backbone,
        encoder_in_channels=[16, 32, 64],
        d_model=32,
        encoder_hidden_dim=32,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        decoder_in_channels=[32, 32, 32],
        num_queries=4,
        num_denoising=0,
        num_labels=1,
        id2label={0: "person"},
        label2id={"person": 0},
    )
    detector = transformers.RTDetrForObjectDetection(config)
    with torch.no_grad():
        for name, parameter in detector.named_parameters():
            if name.endswith(("enc_score_head.bias", "class_embed.0.bias")):
                parameter.fill_(6.0)
    detector.save_pretrained(path / "detector")
    transformers.RTDetrImageProcessor(size={"height": 64, "width": 64}).save_pretrained(path / "detector")
    backbone = transformers.VitPoseBackboneConfig(
        image_size=[32, 24],
        patch_size=[8, 8],
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        out_indices=[1],
    )
    config = transformers.VitPoseConfig(backbone_config=backbone, num_labels=17)
    transformers.VitPoseForPoseEstimation(config).save_pretrained(path / "vitpose")
    transformers.VitPoseImageProcessor(size={"height": 32, "width": 24}).save_pretrained(path / "vitpose")


def ingest_one_clip(tmp_path, **estimators):
    """Ingest one 12-frame video as a single 4-frame clip with the given estimator folders."""
    write_video(tmp_path / "videos" / "a.mp4", 12)
    out = tmp_path / "out"
    ingest(str(tmp_path / "videos"), str(out), fps=8, size=32, frames=4, ext="mkv", progress=False, **estimators)
    (sample,) = read_samples(out).values()
    return sample, sample["json"]


def test_depth_estimator_adds_a_relative_depth_stream(tmp_path):
    save_tiny_dpt(tmp_path / "dpt")
    sample, meta = ingest_one_clip(tmp_path, depth=str(tmp_path / "dpt"))
    assert validate_meta(meta) == [] and meta["modalities"] == ["rgb", "depth", "flow"]
    assert meta["encoding"]["depth"]["relative"] is True and meta["encoding"]["depth"]["model"] == "dpt"
    depth = get("depth").decode(decode_video(sample["depth.mkv"]), meta["encoding"]["depth"])
    assert depth.shape == (4, 32, 32) and np.isfinite(depth).all() and (depth >= 0).all()
    made_by = json.loads((tmp_path / "out" / "dataset.json").read_text())["estimators"]
    assert made_by["depth"] == "transformers depth estimation: DPTForDepthEstimation (dpt)"  # the dataset card


@pytest.mark.parametrize("save, kind", [(save_tiny_segformer, "semantic"), (save_tiny_mask2former, "panoptic")])
def test_seg_estimator_adds_a_seg_stream(tmp_path, save, kind):
    save(tmp_path / "seg")
    sample, meta = ingest_one_clip(tmp_path, seg=str(tmp_path / "seg"))
    assert validate_meta(meta) == [] and meta["modalities"] == ["rgb", "flow", "seg"]
    assert meta["encoding"]["seg"]["kind"] == kind
    ids = get("seg").decode(decode_video(sample["seg.mkv"]), meta["encoding"]["seg"])
    assert ids.shape == (4, 32, 32)
    assert set(np.unique(ids)) <= {0, *meta["encoding"]["seg"]["ids"]}
    if kind == "semantic":  # class c -> id c + 1 for the 5 classes, no background
        assert 1 <= ids.min() and ids.max() <= 5


def test_a_model_of_the_wrong_kind_is_a_clear_error(tmp_path):
    save_tiny_segformer(tmp_path / "segformer")
    write_video(tmp_path / "videos" / "a.mp4", 12)
    with pytest.raises(ValueError, match="'segformer' model cannot do depth-estimation"):
        ingest(str(tmp_path / "videos"), str(tmp_path / "out"), depth=str(tmp_path / "segformer"), progress=False)


def test_pose_estimator_adds_a_pose_stream(tmp_path):
    save_tiny_pose(tmp_path / "pose")
    sample, meta = ingest_one_clip(tmp_path, pose=str(tmp_path / "pose"))
    assert validate_meta(meta) == [] and meta["modalities"] == ["rgb", "flow", "pose"]
    assert 1 <= meta["encoding"]["pose"]["persons"] <= 4  # every query is a confident person
    made_by = json.loads((tmp_path / "out" / "dataset.json").read_text())["estimators"]["pose"]
    assert "VitPoseForPoseEstimation" in made_by and made_by.startswith("persons by ")
    assert decode_video(sample["pose.mkv"]).shape == (4, 32, 32, 3)


def test_coco_keypoints_map_to_the_skeleton():
    from data_pipeline.estimators import coco_to_joints
    from data_pipeline.skeleton import JOINT_INDEX

    xy = np.arange(34, dtype=np.float32).reshape(17, 2)
    scores = np.ones(17)
    scores[[1, 2, 3, 4, 12]] = 0.0  # only the nose of the face; right hip hidden
    joints = coco_to_joints(xy, scores)
    assert joints.shape == (15, 3)
    assert list(joints[JOINT_INDEX["head"]]) == [0.0, 1.0, 1.0]  # the nose alone
    assert list(joints[JOINT_INDEX["neck"]]) == [11.0, 12.0, 1.0]  # mean of shoulders 5 and 6
    assert list(joints[JOINT_INDEX["left_ankle"]]) == [30.0, 31.0, 1.0]
    assert joints[JOINT_INDEX["right_hip"], 2] == 0 and joints[JOINT_INDEX["pelvis"], 2] == 0


def test_the_dataset_card_records_licence_source_and_estimators_and_check_prints_them(tmp_path):
    write_video(tmp_path / "videos" / "a.mp4", 12)
    out = tmp_path / "out"
    url = "https://example.org/walks"
    ingest(str(tmp_path / "videos"), str(out), size=32, frames=4, license="CC-BY-4.0", source_url=url, progress=False)
    info = json.loads((out / "dataset.json").read_text())
    assert info["license"] == "CC-BY-4.0" and info["source_url"] == url
    assert set(info["estimators"]) == {"rgb", "flow"} and info["estimators"]["flow"].startswith("OpenCV")
    summary = check_dataset(str(out), progress=False).summary()
    assert "licence     CC-BY-4.0" in summary and f"source URL  {url}" in summary and "flow: OpenCV" in summary

    ingest(str(tmp_path / "videos"), str(tmp_path / "bare"), size=32, frames=4, progress=False)  # none given
    assert "licence     not recorded" in check_dataset(str(tmp_path / "bare"), progress=False).summary()
