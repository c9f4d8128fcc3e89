"""UniBench-style evaluation: scoring visual forms against ground truth, the runner on the shared
miniature run (test and zero-shot splits), and the report."""

import json

import numpy as np
import pytest

from data_pipeline.benchmark import load_clips, training_prior
from data_pipeline.synthetic.build import build_synthetic
from eval.report import format_tables, write_report
from eval.scores import score_agreement, score_predictions
from eval.unibench import main

MODALITIES = ("depth", "flow", "seg", "pose", "densepose")


@pytest.fixture(scope="module")
def bench_data(data_root, finished_run):
    """The miniature run's test split, plus a zero-shot split of the same clip shape."""
    build_synthetic(str(data_root / "zeroshot"), 2, frames=8, size=32, split="zeroshot", with_gt=True, workers=1)
    return data_root


def test_ground_truth_visual_forms_score_as_perfect(bench_data):
    clips = load_clips(str(bench_data / "test"))
    for modality in MODALITIES:
        truth = np.stack([c.videos[modality] for c in clips])
        scores = score_predictions(modality, truth, clips)
        if modality == "depth":
            assert scores["abs_rel"] < 0.01 and scores["delta1"] == 1.0
        elif modality == "flow":
            assert scores["epe"] < 0.05 and scores["fl_all"] == 0.0
        elif modality == "seg":
            assert scores["miou"] == 1.0 and scores["map"] == 1.0
        elif modality == "densepose":
            assert scores["part_accuracy"] == 1.0 and scores["part_miou"] == 1.0
        else:  # at 32x32 people are 6-8 px tall: their skeletons are read back only in part (README, pose decode)
            assert scores["pck"] > 0.5
        assert scores["videos"] == len(clips)
        # a stream agrees perfectly with itself
        agreement = score_agreement(modality, truth, truth, clips)
        assert "not_measurable" not in agreement, agreement


def test_unreadable_predictions_are_not_measurable_not_zero(bench_data):
    clips = load_clips(str(bench_data / "test"))
    blank = np.zeros((len(clips), *clips[0].videos["rgb"].shape), np.uint8)
    assert "no keypoint could be read back" in score_predictions("pose", blank, clips)["not_measurable"]
    assert score_predictions("seg", blank, clips)["map"] == 0.0  # an empty segmentation is measurable: it finds nothing


def test_mean_prior_is_the_per_pixel_mean_and_refuses_categorical_modalities(bench_data):
    clips = load_clips(str(bench_data / "test"), need_gt=False)
    prior = training_prior(str(bench_data / "test"), "depth")
    mean = np.mean([c.videos["depth"].astype(float) for c in clips], axis=0)
    assert prior.dtype == np.uint8 and np.abs(prior - mean).max() <= 0.5
    with pytest.raises(ValueError, match="no mean prior for 'seg'"):
        training_prior(str(bench_data / "test"), "seg")


@pytest.fixture(scope="module")
def report(bench_data, finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("unibench")
    code = main(
        [
            "--ckpt",
            str(finished_run[0]),
            "--data",
            str(bench_data),
            "--out",
            str(out),
            "--clips",
            "2",
            "--steps",
            "2",
            "--modalities",
            "depth",
            "seg",
            "pose",
        ]
    )
    assert code == 0
    return out


def test_runner_writes_results_for_every_task_and_both_splits(report):
    results = json.loads((report / "results.json").read_text())
    assert set(results["splits"]) == {"test", "zeroshot"} and results["weights"] == "ema"
    for split in results["splits"].values():
        assert split["clips"] == 2
        assert set(split["estimation"]) == {"depth", "seg", "pose"}
        depth = split["estimation"]["depth"]
        assert set(depth) == {"model", "mean training map", "rgb luminance"}
        assert all(0 <= row["abs_rel"] for row in depth.values())
        assert set(split["estimation"]["seg"]) == {"model", "background only"}
        generation = split["generation"]["depth"]
        assert set(generation) == {"model", "real video", "control copied as rgb"}
        assert generation["real video"]["fidelity"] == depth["model"]
        assert 0 <= generation["model"]["vbench"]["temporal_flickering"]["value"] <= 1
        assert "abs_rel" in split["joint"]["depth"]["consistency"]
        assert split["vbench_real"]["subject_consistency"]["value"] is None  # no --weights given
    for split in ("test", "zeroshot"):
        for modality in ("depth", "seg", "pose"):
            assert (report / "images" / f"{split}_{modality}.png").is_file()


def test_report_is_one_self_contained_page_with_the_printed_tables(report):
    page = (report / "report.html").read_text()
    assert page.count("<table>") == 2 * (3 + 3 + 2)  # per split: estimation and generation per modality, joint, t2v
    assert page.count("data:image/png;base64,") == 8 and 'src="http' not in page
    results = json.loads((report / "results.json").read_text())
    text = format_tables(results)
    assert (
        "test split (2 clips): depth estimation" in text and "zeroshot split (2 clips): rgb generated from seg" in text
    )


def test_not_measurable_cells_carry_their_reason(tmp_path):
    results = {
        "checkpoint": "c",
        "weights": "ema",
        "settings": {},
        "splits": {
            "test": {
                "clips": 1,
                "vbench_real": {"temporal_flickering": {"value": 0.9}},
                "t2v": {"vbench": {"temporal_flickering": {"value": 0.8}}},
                "estimation": {"pose": {"model": {"not_measurable": "nothing read back"}, "other": {"pck": 0.25}}},
                "generation": {},
                "joint": {},
            }
        },
    }
    lines = format_tables(results).splitlines()
    assert lines[0] == "test split (1 clips): pose estimation"
    assert lines[2].split() == ["model", "n/a"] and lines[3].split() == ["other", "0.2500"]
    (tmp_path / "images").mkdir()
    write_report(results, tmp_path / "report.html", tmp_path / "images")
    assert 'title="nothing read back">n/a' in (tmp_path / "report.html").read_text()


def test_bad_inputs_are_one_line_errors(bench_data, finished_run, tmp_path, capsys):
    small = tmp_path / "small"
    build_synthetic(str(small / "test"), 1, frames=4, size=16, split="test", with_gt=True, workers=1)
    capsys.readouterr()  # the build's progress bar
    cases = [
        (["--data", str(tmp_path / "nope")], "no such folder"),
        (["--data", str(tmp_path)], "holds neither dataset.json"),
        (["--data", str(small)], "shape (4, 16, 16, 3) but the model was trained on 8x32x32"),
    ]
    for args, message in cases:
        code = main(["--ckpt", str(finished_run[0]), "--out", str(tmp_path / "out"), *args])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, err
