"""`python train.py` on two DeepSpeed ZeRO-2 ranks, killed with SIGKILL mid-way and started again with
train.resume=auto: every step's loss and samples, and the final EMA weights, equal those of a run that was
never interrupted."""

import json
import signal
import subprocess
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from mini_run import ENV, ROOT, overrides
from two_ranks import torchrun

pytestmark = pytest.mark.distributed


def steps(run_dir) -> dict[int, dict]:
    """The last training record of every step (a resumed run rewrites the steps after its checkpoint)."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in records if "loss" in r}


def saved_step(run_dir) -> int:
    latest = run_dir / "checkpoints" / "latest"
    return int(latest.read_text().strip().split("_")[1]) if latest.exists() else 0


def test_resume_after_sigkill_repeats_the_uninterrupted_run(tmp_path, data_root, finished_run):
    settings = {"parallel.engine": "deepspeed", "parallel.zero_stage": 2, "train.max_steps": 4}
    settings.update({"checkpoint.save_every": 2, "train.eval_every": 4, "eval.clips": 1, "eval.steps": 1})
    args = overrides(tmp_path, data_root, **settings)

    def launch(name: str) -> subprocess.Popen:
        command = torchrun("train.py", *args, f"run.name={name}")
        with open(tmp_path / f"{name}.log", "a") as log:  # a file, not a pipe: nothing blocks the ranks
            return subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT)

    def output(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()[-4000:]

    reference = launch("reference")
    killed = launch("killed")
    deadline = time.time() + 600
    while saved_step(tmp_path / "killed") < 2 and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    launcher = psutil.Process(killed.pid)  # the ranks run in sessions of their own: kill the whole tree
    for process in [*launcher.children(recursive=True), launcher]:
        process.send_signal(signal.SIGKILL)  # no clean-up of any kind
    killed.wait()
    assert 2 <= saved_step(tmp_path / "killed") < 4
    assert reference.wait(timeout=600) == 0, output("reference")
    resumed = launch("killed")  # train.resume=auto
    assert resumed.wait(timeout=600) == 0, output("killed")
    assert "resumed from" in output("killed")
    want, got = steps(tmp_path / "reference"), steps(tmp_path / "killed")
    assert sorted(got) == list(range(1, 5))
    for step in range(1, 5):
        assert got[step]["keys"] == want[step]["keys"], step
        assert got[step]["loss"] == want[step]["loss"], step
    final = "checkpoints/step_0000004/ema.safetensors"
    ema, reference_ema = load_file(tmp_path / "killed" / final), load_file(tmp_path / "reference" / final)
    assert ema.keys() == reference_ema.keys()
    assert all(torch.equal(ema[name], reference_ema[name]) for name in ema), "the EMA differs after the resume"
