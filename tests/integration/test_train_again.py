"""What a user does after a run: start `python train.py` again on the finished run (it says so and
prints its results; a higher train.max_steps continues it), and train on a split with a truncated shard
(skipped and reported, and the run succeeds, its evaluation included)."""

import json
import shutil
import subprocess
import sys

from mini_run import ENV, ROOT, overrides


def train(tmp_path, data, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", *overrides(tmp_path, data), "run.name=full", *extra]
    return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_a_finished_run_started_again_says_it_is_complete_and_a_higher_max_steps_continues_it(
    tmp_path, finished_run, data_root
):
    shutil.copytree(finished_run[0], tmp_path / "full")
    before = (tmp_path / "full" / "metrics.jsonl").read_text()
    again = train(tmp_path, data_root)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is complete: its latest checkpoint is at step 12 (train.max_steps=12)" in again.stdout
    assert "raise train.max_steps to continue it" in again.stdout
    table = finished_run[1].stdout[finished_run[1].stdout.index("depth estimation") :]
    assert table.strip() in again.stdout  # the results, read back rather than evaluated again
    assert (tmp_path / "full" / "metrics.jsonl").read_text() == before  # nothing trained or rewritten

    longer = train(tmp_path, data_root, "train.max_steps=14")
    assert longer.returncode == 0, longer.stderr[-3000:]
    assert "resumed from" in longer.stderr and "at step 12" in longer.stderr
    assert (tmp_path / "full" / "checkpoints" / "latest").read_text().strip() == "step_0000014"
    assert "validation flow-matching loss" in longer.stdout and "at step 14" in longer.stdout
    assert json.loads((tmp_path / "full" / "eval" / "results.json").read_text())["steps"] == 14


def test_a_truncated_training_shard_is_skipped_and_reported_and_the_run_succeeds(tmp_path, finished_run, data_root):
    data = tmp_path / "data"
    shutil.copytree(data_root, data)
    shard = data / "train" / "train-000000.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    result = train(tmp_path, data)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "depth estimation (test split)" in result.stdout
    results = json.loads((tmp_path / "full" / "eval" / "results.json").read_text())
    assert results["skipped_training"] >= 1 and results["skipped_evaluation"] == 1  # the mean map read it too
    assert (
        f"skipped: {results['skipped_training']} damaged sample(s) or shard part(s) in training, 1 in" in result.stdout
    )
    assert "unreadable tar" in result.stderr or "ReadError" in result.stderr  # the warnings name it
