"""configs/multistream.yaml trains (rgb with k = 1..3 auxiliary streams, subsets, control dropout) and the
sampler CLI generates from two weighted controls, estimates three modalities in one pass, generates rgb
with two modalities, and fills a subset; mismatched inputs are one-line errors naming both lists."""

import json
import tarfile

import numpy as np
import pytest

from data_pipeline.video_io import decode_video, encode_video, read_video_file
from unity.config import load
from unity.inference.loading import load_trained
from unity.inference.pipeline import SamplerSettings, run_task
from unity.sample import main
from unity.train.trainer import Trainer

from mini_run import overrides


@pytest.fixture(scope="module")
def multistream_run(tmp_path_factory, data_root, finished_run):  # finished_run renders the shared data first
    runs = tmp_path_factory.mktemp("multistream")
    extra = {"train.max_steps": 4, "checkpoint.save_every": 4, "train.eval_every": 4, "routing.subset_tasks": 0.5}
    config = load("configs/multistream.yaml", overrides(runs, data_root, **extra))
    trainer = Trainer(config)
    trainer.fit()
    trainer.metrics.close()
    return runs / "multistream"


@pytest.fixture(scope="module")
def clip_files(tmp_path_factory, data_root):
    """The first test clip's rgb, depth, pose and flow as mp4 files."""
    folder = tmp_path_factory.mktemp("clip")
    with tarfile.open(next((data_root / "test").glob("*.tar"))) as tar:
        members = {m.name.split(".", 1)[1]: tar.extractfile(m).read() for m in tar if m.isfile()}
    for name in ("rgb", "depth", "pose", "flow"):
        (folder / f"{name}.mp4").write_bytes(encode_video(decode_video(members[f"{name}.mkv"]), "mp4"))
    return folder


def test_several_streams_are_trained_and_validated(multistream_run):
    records = [json.loads(line) for line in (multistream_run / "metrics.jsonl").read_text().splitlines()]
    trained = {key for r in records if "loss" in r for key in r}
    assert any(key.startswith("loss/") and key.endswith(("/k2", "/k3")) for key in trained), sorted(trained)
    last = [r for r in records if "val/loss" in r][-1]
    for task in ("cond", "est", "joint"):  # the first k modalities of data.modalities, k = 2 and 3
        assert np.isfinite(last[f"val/loss/{task}/depth+flow"]) and np.isfinite(last[f"val/loss/{task}/depth+flow+seg"])
    tasks = [v for k, v in last.items() if k.startswith(("val/loss/cond/", "val/loss/est/", "val/loss/joint/"))]
    one = [
        last[k] for k in last if k.startswith(("val/loss/cond/", "val/loss/est/", "val/loss/joint/")) and "+" not in k
    ]
    assert len(tasks) == len(one) + 6
    assert last["val/loss"] == pytest.approx(np.mean(one))  # the multi-stream losses stay out of the mean


def run(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_generate_from_two_weighted_controls(tmp_path, multistream_run, clip_files, capsys):
    code, out, err = run(
        capsys,
        *("--ckpt", str(multistream_run), "--task", "generate", "--prompt", "a person walking"),
        *("--control", str(clip_files / "depth.mp4"), "--control", str(clip_files / "pose.mp4")),
        *("--modality", "depth", "pose", "--control-weight", "depth=1.5", "pose=0.7", "--steps", "2"),
        *("--out", str(tmp_path / "gen")),
    )
    assert code == 0, err
    for name in ("rgb", "depth", "pose"):
        assert read_video_file(str(tmp_path / "gen" / f"{name}.mp4")).shape == (8, 32, 32, 3)


def test_estimate_three_modalities_in_one_pass_and_joint_with_two(tmp_path, multistream_run, clip_files, capsys):
    code, _, err = run(
        capsys,
        *("--ckpt", str(multistream_run), "--task", "estimate", "--video", str(clip_files / "rgb.mp4")),
        *("--modality", "depth", "flow", "seg", "--steps", "1", "--out", str(tmp_path / "est")),
    )
    assert code == 0, err
    assert np.load(tmp_path / "est" / "depth.npy").shape == (8, 32, 32)
    assert np.load(tmp_path / "est" / "flow.npy").shape == (8, 32, 32, 2)
    assert np.load(tmp_path / "est" / "seg.npy").shape == (8, 32, 32)
    code, _, err = run(
        capsys,
        *("--ckpt", str(multistream_run), "--task", "joint", "--modality", "depth", "flow", "--steps", "1"),
    )
    assert code == 0, err
    folder = multistream_run / "samples" / "joint_depth+flow_seed0"
    assert all((folder / f"{name}.mp4").is_file() for name in ("rgb", "depth", "flow"))
    code, _, err = run(  # a subset: rgb and depth generated from pose
        capsys,
        *("--ckpt", str(multistream_run), "--task", "subset", "--generate", "rgb", "depth"),
        *("--modality", "depth", "pose", "--control", str(clip_files / "pose.mp4"), "--steps", "1"),
        *("--out", str(tmp_path / "subset")),
    )
    assert code == 0, err
    assert (tmp_path / "subset" / "rgb.mp4").is_file() and not (tmp_path / "subset" / "depth.npy").exists()


def test_one_pass_estimates_equal_their_streams_read_back(multistream_run, clip_files):
    """run_task with a list of modalities returns every stream, inputs untouched (up to the codec)."""
    trained = load_trained(multistream_run)
    rgb = read_video_file(str(clip_files / "rgb.mp4"))[None]
    out = run_task(trained, "est", ["depth", "flow"], [""], rgb=rgb, settings=SamplerSettings(steps=1))
    assert set(out) == {"rgb", "depth", "flow"} and np.array_equal(out["rgb"], rgb)
    with pytest.raises(ValueError, match=r"1 control video batch\(es\) for the 2 given modalities \['depth', 'pose'\]"):
        run_task(trained, "cond", ["depth", "pose"], [""], control=[rgb])
    with pytest.raises(ValueError, match=r"control weights name \['flow'\]"):
        run_task(trained, "cond", "depth", [""], control=rgb, control_weights={"flow": 2.0})


def test_mismatched_lists_are_one_line_errors(multistream_run, clip_files, capsys):
    ckpt, depth = str(multistream_run), str(clip_files / "depth.mp4")
    cases = [
        (
            ["--task", "generate", "--control", depth, "--modality", "depth", "pose"],
            "--control gives 1 file(s) for the 2 given modalities (depth pose) of --modality depth pose",
        ),
        (["--task", "generate", "--control", depth, "--control-weight", "depth:2"], "is not MODALITY=WEIGHT"),
        (["--task", "joint", "--modality", "depth", "depth"], "name one twice"),
        (["--task", "subset", "--modality", "depth", "pose", "--generate", "flow"], "some of ['rgb', 'depth', 'pose']"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "--ckpt", ckpt, *args)
        assert code == 2 and message in err, (args, err)
        assert err.count("\n") == 1 and err.startswith("error: "), err


def test_control_weights_change_the_generated_video(multistream_run, clip_files):
    trained = load_trained(multistream_run)
    controls = [read_video_file(str(clip_files / f"{m}.mp4"))[None] for m in ("depth", "pose")]
    settings = SamplerSettings(steps=2)
    plain = run_task(trained, "cond", ["depth", "pose"], ["walk"], control=controls, settings=settings)["rgb"]
    same = run_task(
        trained,
        "cond",
        ["depth", "pose"],
        ["walk"],
        control=controls,
        settings=settings,
        control_weights={"depth": 1.0},
    )["rgb"]
    weighed = run_task(
        trained,
        "cond",
        ["depth", "pose"],
        ["walk"],
        control=controls,
        settings=settings,
        control_weights={"depth": 3.0},
    )["rgb"]
    assert np.array_equal(plain, same) and not np.array_equal(plain, weighed)


def test_unibench_reports_multi_control_and_multi_estimation(tmp_path, multistream_run, data_root, capsys):
    from eval.unibench import main as unibench

    code = unibench(
        [
            *("--ckpt", str(multistream_run), "--data", str(data_root / "test"), "--out", str(tmp_path)),
            *("--clips", "2", "--steps", "1", "--modalities", "--control-weight", "depth=2"),
        ]
    )  # a run routing k >= 2: the multi-stream tables by default, without any pair table
    out = capsys.readouterr().out
    assert code == 0
    split = json.loads((tmp_path / "results.json").read_text())["splits"]["test"]
    control = split["multi_control"]
    assert control["modalities"] == ["depth", "pose"]
    labels = [
        "depth",
        "pose",
        "depth+pose",
        "depth+pose (depth=2)",
        "real video (ceiling)",
        "another clip's real video",
    ]
    assert list(control["rows"]) == labels
    assert all(set(row["fidelity"]) == {"depth", "pose"} for row in control["rows"].values())
    assert control["rows"]["depth+pose"]["seconds_per_clip"] > 0
    estimation = split["multi_estimation"]
    assert estimation["modalities"] == ["depth", "flow", "seg"]
    for way in ("one pass", "one at a time"):
        assert estimation[way]["seconds_per_clip"] > 0 and "abs_rel" in estimation[way]["scores"]["depth"]
    assert "rgb generated from several controls" in out and "estimated in one pass vs one at a time" in out
    assert (tmp_path / "images" / "test_multi_control.png").is_file()
    assert (tmp_path / "images" / "test_multi_estimation.png").is_file()


def test_the_comparison_table_gives_mean_and_spread_over_seeds():
    import importlib.util
    from argparse import Namespace
    from pathlib import Path

    from mini_run import ROOT

    spec = importlib.util.spec_from_file_location("multistream_bench", Path(ROOT) / "benchmarks" / "multistream.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = Namespace(estimate=["depth"], controls=["depth", "seg"])

    def split(abs_rel):
        scores = {"depth": {"abs_rel": abs_rel}, "seg": {"miou": 0.5}}
        way = {"scores": scores, "seconds_per_clip": 1.0}
        rows = {name: {"fidelity": scores} for name in ("depth", "seg", "depth+seg", "another clip's real video")}
        return {"multi_estimation": {"one pass": way, "one at a time": way}, "multi_control": {"rows": rows}}

    rows = [{"variant": v, "seed": s, **bench.figures(split(a), args)} for v, s, a in [("a", 0, 0.2), ("a", 1, 0.4)]]
    text = bench.table(rows)
    assert "| depth abs_rel, one pass ↓ | 0.3000 ± 0.1000 |" in text
    assert "| seg fidelity miou, from depth+seg ↑ | 0.5000 ± 0.0000 |" in text
    assert "| CPU s / step ↓ | n/a |" in text
