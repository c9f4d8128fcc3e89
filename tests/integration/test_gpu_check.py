"""benchmarks/gpu_check.sh --dry-run: every step of the GPU check runs on the CPU with a tiny model, within
its time limit, and leaves the log, the summary, the pytest report, the RESULTS.md rows and one JSON per
benchmark; a budget too small for a step skips it and says so; --only reruns the chosen checks."""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from mini_run import ENV, ROOT

BENCHMARKS = ("a5", "a4", "a0", "wan")
WAN = Path(ROOT) / "configs" / "model" / "wan2.1-t2v-1.3b.yaml"


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {
        **ENV,
        "PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "helpers")]),
    }
    command = ["bash", "benchmarks/gpu_check.sh", "--dry-run", "--wheels", "none", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_dry_run_runs_every_step_and_writes_every_result(tmp_path):
    out = tmp_path / "out"
    result = gpu_check("--out", str(out))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert (out / "gpu_check.log").read_text() == result.stdout  # the whole output, in the log too
    summary = json.loads((out / "summary.json").read_text())
    steps = {s["step"]: s for s in summary["steps"]}
    assert list(steps) == ["wheels", "environment", "pytest", *BENCHMARKS]
    assert steps["wheels"]["status"] == steps["a5"]["status"] == "skipped"  # a dry run compiles nothing
    ran = ["environment", "pytest", "a4", "a0"] + (["wan"] if WAN.is_file() else [])
    for name in ran:
        assert steps[name]["status"] == "ok", steps[name]
        assert 0 <= steps[name]["seconds"] <= steps[name]["limit_s"] <= 150
    assert summary["elapsed_s"] <= summary["budget_s"] == 480
    assert summary["environment"]["cuda_available"] is False

    suite = ET.parse(out / "pytest.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) >= 40 and suite.get("skipped") == suite.get("tests")  # no GPU: all skipped
    rows = (out / "rows.md").read_text().splitlines()
    assert len(rows) == len(ran) - 2
    assert all("python benchmarks/throughput.py --config configs/model/" in row for row in rows)
    for name in ran[2:]:
        figures = json.loads((out / f"{name}.json").read_text())
        assert figures["device"].startswith("CPU") and figures["geometry"]["latent"] == [2, 2, 2]
        assert figures["ckpt_blocks"] == 2 and 0 < figures["mfu"] < 1
        assert figures["sdpa_backend"] == (None if name == "a0" else "cudnn")
        assert steps[name]["result"]["mfu"] == figures["mfu"]


def test_a_budget_too_small_skips_the_remaining_steps(tmp_path):
    result = gpu_check("--out", str(tmp_path), "--budget", "10")
    assert result.returncode == 1, result.stdout[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {s["step"]: s["status"] for s in summary["steps"]} == {"wheels": "skipped", "environment": "skipped"}
    assert re.search(r"=== environment: skipped, [0-5]s left of the 10s budget", result.stdout)
    assert "gpu_check: stopped, the machine cannot run the checks" in result.stdout


def test_only_reruns_the_chosen_checks(tmp_path):
    result = gpu_check("--out", str(tmp_path), "--only", "a0")
    assert result.returncode == 0, result.stdout[-4000:]
    steps = {s["step"]: s for s in json.loads((tmp_path / "summary.json").read_text())["steps"]}
    assert steps["environment"]["status"] == steps["a0"]["status"] == "ok"
    assert all(steps[name]["note"] == "not in --only a0" for name in ("pytest", "a4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a0.json", "gpu_check.log", "rows.md", "summary.json"]


def test_bad_arguments_say_what_is_wrong(tmp_path):
    def run(*args):
        return subprocess.run(["bash", "benchmarks/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True)

    result = run("--wheels", str(tmp_path / "absent"))
    assert result.returncode == 2 and "python benchmarks/gpu_wheels.py download --dir" in result.stderr
    result = run("--budget", "8m")
    assert result.returncode == 2 and "--budget takes whole seconds" in result.stderr
    result = run("--only", "pytest,a9")
    assert result.returncode == 2 and "--only takes pytest, a5, a4, a0, wan; got a9" in result.stderr
