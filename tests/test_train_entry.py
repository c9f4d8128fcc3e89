"""`python train.py` validates its config and, until a trainer exists, says what is missing."""

import subprocess
import sys


def _run(*args):
    return subprocess.run([sys.executable, "train.py", *args], capture_output=True, text=True, timeout=120)


def test_train_names_what_is_missing_and_fails():
    result = _run()
    assert result.returncode != 0
    assert "configs/tiny.yaml is valid" in result.stderr
    assert "unity/trainer.py" in result.stderr


def test_train_rejects_a_bad_override_before_any_work():
    result = _run("train.max_step=3")
    assert result.returncode == 2
    assert "unknown config key 'train.max_step'" in result.stderr and "train.max_steps" in result.stderr
