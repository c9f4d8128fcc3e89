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


HEADLINE_FIRST = {"depth": ("abs_rel", False), "flow": ("epe", False), "seg": ("miou", True)}
HEADLINE_FIRST.update({"pose": ("pck", True), "densepose": ("part_accuracy", True)})


def test_ground_truth_visual_forms_score_as_perfect(bench_data):
    clips = load_clips(str(bench_data / "test"))
    for modality in MODALITIES:
        truth = np.stack([c.videos[modality] for c in clips])
        for scores in (score_predictions(modality, truth, clips), score_agreement(modality, truth, truth, clips)):
            if modality == "depth":
                assert scores["abs_rel"] < 0.01 and scores["delta1"] == 1.0
            elif modality == "flow":  # read without the clip's radius, brought to pixels by the least-squares scale
                assert scores["epe"] < 0.05 and scores["fl_all"] == 0.0
            elif modality == "seg":  # read against the whole palette, not the clip's ids
                assert scores["miou"] == 1.0 and scores["map"] == 1.0
            elif modality == "densepose":
                assert scores["part_accuracy"] == 1.0 and scores["part_miou"] == 1.0
            else:  # at 32x32 people are 6-8 px tall: their skeletons are read back only in part (README, pose decode)
                assert scores["pck"] > 0.5
            assert scores["videos"] == len(clips)


def test_every_unibench_score_has_a_negative_control(bench_data):
    """Predictions that ignore their input (flat, shuffled across clips, random) score clearly worse than the truth."""
    clips = load_clips(str(bench_data / "test")) + load_clips(str(bench_data / "zeroshot"))
    rng = np.random.default_rng(0)
    for modality in MODALITIES:
        name, higher = HEADLINE_FIRST[modality]
        truth = np.stack([c.videos[modality] for c in clips])
        perfect = score_predictions(modality, truth, clips)[name]
        controls = {
            "flat": np.full_like(truth, 128),
            "black": np.zeros_like(truth),
            "shuffled": np.roll(truth, 1, axis=0),
            "random": rng.integers(0, 256, truth.shape).astype(np.uint8),
        }
        for label, videos in controls.items():
            scores = score_predictions(modality, videos, clips)
            assert "not_measurable" not in scores, (modality, label, scores)
            gap = (perfect - scores[name]) if higher else (scores[name] - perfect)
            margin = 0.2 * perfect if higher else 0.05 + perfect  # clearly worse, not within rounding
            assert gap > margin, (modality, label, scores[name], perfect)


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
            "--referee",  # the references of joint consistency from another run (here: the same one, step 12)
            str(finished_run[0]),
        ]
    )
    assert code == 0
    return out


def test_runner_writes_results_for_every_task_and_both_splits(report):
    results = json.loads((report / "results.json").read_text())
    assert set(results["splits"]) == {"test", "zeroshot"} and results["weights"] == "ema"
    assert results["settings"]["referee"].endswith("step_0000012")
    for split in results["splits"].values():
        assert split["clips"] == 2
        assert set(split["estimation"]) == {"depth", "seg", "pose"}
        depth = split["estimation"]["depth"]
        controls = {"model, another clip's estimate", "ground truth read back (ceiling)"}
        assert set(depth) == {"model", "mean training map", "rgb luminance", *controls}
        assert depth["ground truth read back (ceiling)"]["abs_rel"] < 0.01  # the ceiling is reachable
        assert depth["ground truth read back (ceiling)"]["abs_rel"] < depth["mean training map"]["abs_rel"]
        assert set(split["estimation"]["seg"]) == {"model", "background only", *controls}
        generation = split["generation"]["depth"]
        assert set(generation) == {"model", "real video", "control copied as rgb", "another clip's real video"}
        assert split["real"]["vbench"]["subject_consistency"]["value"] is None  # no --weights given
        assert split["real"]["static"]["value"] is False  # real clips move
    for split in ("test", "zeroshot"):
        for modality in ("depth", "seg", "pose"):
            assert (report / "images" / f"{split}_{modality}.png").is_file()


def test_a_barely_trained_model_wins_nothing_unflagged(report):
    """The 12-step model draws near-blank or noisy video: a near-perfect joint consistency is flagged (flat
    clips, no better than shuffled pairs, or above the real-data ceiling), and every generated set that beats
    real footage on flickering is flagged static."""
    results = json.loads((report / "results.json").read_text())
    for split in results["splits"].values():
        real = split["real"]["vbench"]["temporal_flickering"]["value"]
        generated = [split["t2v"], *(row["model"] for row in split["generation"].values()), *split["joint"].values()]
        for quality in generated:
            if quality["vbench"]["temporal_flickering"]["value"] > real:
                assert quality["static"]["value"] is True, quality["static"]
        for modality, joint in split["joint"].items():
            consistency = joint["consistency"]
            scores = consistency["model"]
            name, higher = HEADLINE_FIRST[modality]
            if "not_measurable" in scores:  # flat clips, or nothing to score (no skeleton read back): no number
                assert ("flat" in scores["not_measurable"]) == (consistency["flat_clips"] == consistency["clips"])
            elif (scores[name] > 0.99) if higher else (scores[name] < 0.01):  # near perfect: flagged
                assert consistency["above_ceiling"] or consistency["beats_shuffled"] is False, consistency


def test_report_is_one_self_contained_page_with_the_printed_tables(report):
    page = (report / "report.html").read_text()
    # per split: estimation, generation and joint generation per modality (3 x 3), text to video
    assert page.count("<table>") == 2 * (3 * 3 + 1)
    assert page.count('<svg class="chart"') > 2 * 10  # a bar chart per metric, and the training curves
    # the static flag beside every scored set: per modality 3 generation and 2 joint rows, and 2 text-to-video rows
    assert "Training curves" in page and page.count(" still)</td>") == 2 * (3 * 5 + 2)
    assert page.count("data:image/png;base64,") == 8 and 'src="http' not in page
    results = json.loads((report / "results.json").read_text())
    text = format_tables(results)
    assert "test split (2 clips): depth estimation" in text
    assert "zeroshot split (2 clips): rgb generated from seg" in text and "dynamic_degree_dis" in text


def test_not_measurable_cells_carry_their_reason(tmp_path):
    quality = {"vbench": {"temporal_flickering": {"value": 0.9}}, "static": {"value": None, "reason": "one frame"}}
    results = {
        "checkpoint": "c",
        "weights": "ema",
        "settings": {},
        "splits": {
            "test": {
                "clips": 1,
                "real": quality,
                "t2v": quality,
                "estimation": {"pose": {"model": {"not_measurable": "nothing read back"}, "other": {"pck": 0.25}}},
                "generation": {},
                "joint": {},
            }
        },
    }
    lines = format_tables(results).splitlines()
    assert lines[0] == "test split (1 clips): pose estimation" and "PCK@0.1" in lines[1]
    assert lines[3].split() == ["model", "n/a"] and lines[4].split() == ["other", "0.2500"]
    (tmp_path / "images").mkdir()
    write_report(results, tmp_path / "report.html", tmp_path / "images")
    page = (tmp_path / "report.html").read_text()
    assert 'title="nothing read back">n/a' in page and 'title="one frame">n/a' in page


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
