"""Fixtures shared across test files: one miniature training run (data and checkpoints) per session."""

import subprocess
import sys

import pytest

from mini_run import ENV, ROOT, overrides


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synth"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, data_root):
    runs = tmp_path_factory.mktemp("runs")
    result = subprocess.run([sys.executable, "train.py", *overrides(runs, data_root), "run.name=full"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "full", result
