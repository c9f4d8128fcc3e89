"""Fixtures shared across test files (one miniature training run per session) and the `slow` marker.

Layout: ``unit/`` (fast, in-process), ``integration/`` (end to end: training runs, CLIs, several
ranks; every test there is marked ``slow``), ``gpu/`` (marked ``gpu``: each skips without CUDA),
``helpers/`` (shared code and rank workers, not tests).
"""

import subprocess
import sys
from pathlib import Path

import pytest

from mini_run import ENV, ROOT, overrides

INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(items):
    for item in items:
        if INTEGRATION in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synth"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, data_root):
    runs = tmp_path_factory.mktemp("runs")
    result = subprocess.run(
        [sys.executable, "train.py", *overrides(runs, data_root), "run.name=full"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "full", result
