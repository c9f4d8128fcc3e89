"""Weights & Biases beside metrics.jsonl and TensorBoard, in offline mode (nothing leaves the machine)."""

import json
import sys

import pytest

from unity.train.metrics import MetricsLogger
from unity.train.trackers import WandbTracker

pytest.importorskip("wandb")


def tracker(run_dir):
    config = {"optim": {"lr": 0.001}, "run": {"name": "t"}}
    return WandbTracker(str(run_dir), "t", "unity-tests", "offline", config)


def test_metrics_reach_wandb_offline_and_a_resume_continues_the_same_run(tmp_path):
    first = tracker(tmp_path)
    logger = MetricsLogger(str(tmp_path), trackers=[first])
    for step in range(3):
        logger.log(step, {"loss": 1.0 / (step + 1), "keys": ["a", "b"], "task": "est", "skipped": False})
    assert first.run.summary["loss"] == pytest.approx(1 / 3) and first.run.summary["_step"] == 2
    assert not {"keys", "task", "skipped"} & set(dict(first.run.summary))  # scalars only
    assert first.run.config["optim"]["lr"] == 0.001
    logger.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 1, 2]  # the jsonl is kept as before
    (offline,) = (tmp_path / "wandb").glob(f"offline-run-*-{first.run.id}")
    assert (offline / f"run-{first.run.id}.wandb").stat().st_size > 0

    second = tracker(tmp_path)  # the run resumed: the same W&B run id
    assert second.run.id == first.run.id == (tmp_path / "wandb_id").read_text().strip()
    second.close()
    other = tracker(tmp_path / "other")  # negative control: another Unity run gets another W&B run
    assert other.run.id != first.run.id
    other.close()


def test_without_wandb_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ImportError, match=r"unity-video\[wandb\]"):
        tracker(tmp_path)
