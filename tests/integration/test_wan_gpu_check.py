"""benchmarks/wan_gpu_check.py --dry-run: the GPU check's every step (build, convert, parity, DeepSpeed recipe steps)
on the CPU at tiny size, so the script is ready when a GPU is."""

import json
import subprocess
import sys

import pytest

from mini_run import ENV, ROOT

pytest.importorskip("diffusers")
pytest.importorskip("deepspeed")


def test_dry_run_converts_matches_diffusers_and_steps_the_recipe(tmp_path):
    out = tmp_path / "wan_gpu_check.json"
    command = [sys.executable, "benchmarks/wan_gpu_check.py", "--dry-run", "--steps", "2", "--json", str(out)]
    result = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["parity"]["passed"] and figures["parity"]["output"] < 1e-5  # fp32 on the CPU
    recipe = figures["recipe"]
    assert recipe["finite"] and recipe["step_s"] > 0
    low, high = recipe["group_lrs"]
    assert high / low == pytest.approx(10.0)  # the grown parameters at optim.new_param_lr_mult
