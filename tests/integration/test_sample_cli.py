"""`python -m unity.sample` on the shared miniature run: every task writes its videos and strip;
bad inputs are one-line errors."""

import io
import shutil
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from data_pipeline.modalities import MODALITIES
from data_pipeline.video_io import decode_video, encode_video, read_video_file, video_codec
from unity.inference.media import fit_clip
from unity.sample import main


@pytest.fixture(scope="module")
def test_clip(data_root, finished_run):
    """The first test clip: its rgb frames and raw depth (metres)."""
    with tarfile.open(next((data_root / "test").glob("*.tar"))) as tar:
        members = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    return decode_video(members["rgb.mkv"]), np.load(io.BytesIO(members["depth.npy"]))


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_estimate_from_a_larger_mp4_writes_videos_raw_estimate_and_strip(tmp_path, finished_run, test_clip, capsys):
    rgb, _ = test_clip
    larger = np.stack([cv2.resize(f, (48, 40)) for f in rgb])  # fitted back to 32x32 by the CLI
    video = tmp_path / "in.mp4"
    video.write_bytes(encode_video(larger, "mp4"))
    code, out, err = run(
        capsys,
        "--ckpt",
        str(finished_run[0]),
        "--task",
        "estimate",
        "--video",
        str(video),
        "--steps",
        "2",
        "--out",
        str(tmp_path / "est"),
    )
    assert code == 0, err
    assert "wrote 1 sample(s)" in out and "ema weights" in out
    assert read_video_file(str(tmp_path / "est" / "depth.mp4")).shape == (8, 32, 32, 3)
    assert read_video_file(str(tmp_path / "est" / "rgb.mp4")).shape == (8, 32, 32, 3)
    for name in ("depth", "rgb"):  # H.264 in yuv420p: what browsers play
        assert video_codec((tmp_path / "est" / f"{name}.mp4").read_bytes()) == ("h264", "yuv420p")
    assert np.load(tmp_path / "est" / "depth.npy").shape == (8, 32, 32)  # relative disparity
    strip = cv2.imread(str(tmp_path / "est" / "strip.png"))
    assert strip.shape[0] > 2 * 96 and strip.shape[1] > 8 * 96  # two rows (input rgb, output depth), 8 frames


def test_generate_from_raw_npy_and_joint_with_several_samples(tmp_path, finished_run, test_clip, capsys):
    _, depth = test_clip
    np.save(tmp_path / "depth.npy", depth)
    code, _, err = run(
        capsys,
        "--ckpt",
        str(finished_run[0]),
        "--task",
        "generate",
        "--control",
        str(tmp_path / "depth.npy"),
        "--prompt",
        "a person walking",
        "--steps",
        "2",
        "--cfg",
        "3",
        "--method",
        "heun",
        "--out",
        str(tmp_path / "gen"),
    )
    assert code == 0, err
    control = read_video_file(str(tmp_path / "gen" / "depth.mp4"))
    assert np.abs(control.astype(int) - MODALITIES["depth"].encode(depth, {}).astype(int)).mean() < 3  # mp4 is lossy
    code, _, err = run(
        capsys,
        "--ckpt",
        str(finished_run[0]),
        "--task",
        "joint",
        "--prompt",
        "two boxes",
        "--modality",
        "flow",
        "--num",
        "2",
        "--steps",
        "2",
        "--out",
        str(tmp_path / "joint"),
    )
    assert code == 0, err
    first, second = (read_video_file(str(tmp_path / "joint" / f"sample_00{i}" / "rgb.mp4")) for i in (0, 1))
    assert first.shape == (8, 32, 32, 3) and not np.array_equal(first, second)  # different noise per sample
    assert (tmp_path / "joint" / "sample_001" / "flow.mp4").is_file()


def test_a_sentence_takes_three_context_clips(tmp_path, finished_run, data_root, capsys):
    with tarfile.open(sorted((data_root / "test").glob("*.tar"))[0]) as tar:
        videos = {m.name: tar.extractfile(m).read() for m in tar if m.name.endswith((".rgb.mkv", ".depth.mkv"))}
    names = sorted(videos)  # two clips: depth, rgb of each
    for name in names:
        (tmp_path / name).write_bytes(videos[name])
    first_depth, first_rgb, second_depth, second_rgb = (str(tmp_path / n) for n in names[:4])
    code, _, err = run(
        capsys,
        "--ckpt",
        str(finished_run[0]),
        "--task",
        "sentence",
        "--context",
        first_rgb,
        first_depth,
        second_rgb,
        "--steps",
        "2",
        "--out",
        str(tmp_path / "sentence"),
    )
    assert code == 0, err
    for name in ("A", "A_prime", "B", "B_prime"):
        assert read_video_file(str(tmp_path / "sentence" / f"{name}.mp4")).shape == (8, 32, 32, 3)
    assert np.load(tmp_path / "sentence" / "depth.npy").shape == (8, 32, 32)  # B' read back as disparity

    # mixed context: an image pair (first frames as PNGs) shows the task for the video B
    images = []
    for path in (first_rgb, first_depth):
        images.append(str(tmp_path / (Path(path).stem + ".png")))
        cv2.imwrite(images[-1], read_video_file(path)[0, ..., ::-1])
    code, _, err = run(
        capsys,
        "--ckpt",
        str(finished_run[0]),
        "--task",
        "sentence",
        "--context",
        *images,
        second_rgb,
        "--steps",
        "1",
        "--out",
        str(tmp_path / "image_context"),
    )
    assert code == 0, err
    a = read_video_file(str(tmp_path / "image_context" / "A.mp4"))
    assert np.abs(a[0].astype(int) - a[-1]).mean() < 3  # the image held still (up to mp4 coding)


def test_bad_inputs_are_one_line_errors(tmp_path, finished_run, capsys):
    ckpt = str(finished_run[0])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video" * 100)
    cases = [
        (["--ckpt", str(tmp_path / "nope"), "--task", "joint"], "no such run or checkpoint folder"),
        (["--ckpt", ckpt, "--task", "estimate"], "--task estimate needs --video"),
        (["--ckpt", ckpt, "--task", "estimate", "--video", str(tmp_path / "missing.mp4")], "missing.mp4: no such file"),
        (["--ckpt", ckpt, "--task", "estimate", "--video", str(garbage)], "no frame could be decoded"),
        (["--ckpt", ckpt, "--task", "sentence"], "--task sentence needs --context"),
    ]
    other = tmp_path / "other"  # the same checkpoints under a config of a wider model
    shutil.copytree(finished_run[0] / "checkpoints", other / "checkpoints")
    config = (finished_run[0] / "config.yaml").read_text().replace("hidden: 128", "hidden: 64")
    assert "hidden: 64" in config
    (other / "config.yaml").write_text(config)
    cases.append((["--ckpt", str(other), "--task", "joint"], "does not fit"))
    for args, message in cases:
        code, _, err = run(capsys, *args)
        assert code == 2 and message in err, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: "), err


def test_fit_clip_takes_the_first_frames_and_crops_the_centre():
    video = np.zeros((10, 20, 40, 3), np.uint8)
    video[:, :, 10:30] = 200  # the centre square of each frame
    fitted = fit_clip(video, 4, 10, nearest=True)
    assert fitted.shape == (4, 10, 10, 3) and (fitted == 200).all()
    with pytest.raises(ValueError, match="has 10 frames; the model needs at least 16"):
        fit_clip(video, 16, 10)
