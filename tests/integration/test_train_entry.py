"""`python train.py` rejects a bad config before any work."""

import subprocess
import sys


def test_train_rejects_a_bad_override_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "train.max_step=3", f"run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown config key 'train.max_step'" in result.stderr and "train.max_steps" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was created
