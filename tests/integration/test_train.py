"""`python train.py` end to end on a miniature synthetic world: outputs, exact resume after SIGKILL,
non-finite losses, and the same script on two DeepSpeed ranks (ZeRO-2 and ZeRO-3)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from data_pipeline.benchmark import load_clips, training_prior
from data_pipeline.modalities import MODALITIES
from eval.metrics.depth import depth_metrics
from unity.config import load
from unity.method.network import build_model
from unity.train.checkpoint import load_weights
from unity.train.trainer import Trainer

from mini_run import ENV, ROOT, overrides
from two_ranks import free_port


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def tensorboard_scalars(run_dir, tag):
    """``[(step, value)]`` of a tag as TensorBoard shows it (its reader applies purges), from every event file."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def step_records(run_dir):
    """The last training record of every step (a resumed run rewrites the steps after its checkpoint)."""
    return {r["step"]: r for r in records(run_dir) if "loss" in r}


def test_run_writes_checkpoints_metrics_and_results(finished_run):
    run_dir, result = finished_run
    assert "depth estimation (test split)" in result.stdout and "mean training disparity map" in result.stdout
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    # eval/run_report.py's figures are the run's: the validation losses it recorded, and a baseline recomputed here
    validation = [r["val/loss"] for r in records(run_dir) if "val/loss" in r]
    assert results["steps"] == 12 and results["val_loss_first"] == validation[0]
    assert results["val_loss_last"] == validation[-1] < 0.8 * validation[0]
    config = load(str(run_dir / "config.yaml"))
    clips = load_clips(os.path.join(config.data.root, "test"), config.eval.clips)
    prior = MODALITIES["depth"].decode(training_prior(os.path.join(config.data.root, "train"), "depth"))
    baseline = [depth_metrics(prior, clip.gt["depth"]) for clip in clips]
    assert results["baseline_mean.depth.abs_rel"] == pytest.approx(np.mean([b["abs_rel"] for b in baseline]), 1e-9)
    # the trained and the step-0 weights were both evaluated, and predict differently
    assert results["step0.depth.abs_rel"] != results["depth.abs_rel"]
    assert 0 < results["depth.delta1"] <= 1 and results["depth.abs_rel"] > 0
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_0000012"
    for name in ("model.safetensors", "ema.safetensors", "state.json"):
        assert (run_dir / "checkpoints" / "step_0000012" / name).is_file()
    assert (run_dir / "config.yaml").is_file() and any((run_dir / "tb").iterdir())
    steps = step_records(run_dir)
    assert sorted(steps) == list(range(1, 13))
    assert all(len(r["keys"]) == 2 and r["samples_per_s"] > 0 and 0 < r["mfu"] < 1 for r in steps.values())
    assert any(k.startswith("val/loss/est/") for r in records(run_dir) for k in r)


def test_checkpoint_loads_into_a_fresh_model_and_refuses_another_shape(finished_run):
    run_dir, _ = finished_run
    config = load(str(run_dir / "config.yaml"))
    module, _, _ = build_model(config, torch.device("cpu"))
    load_weights(module, str(run_dir / "checkpoints" / "step_0000012" / "model.safetensors"))
    wider = load(str(run_dir / "config.yaml"), ["model.hidden=64"])
    other, _, _ = build_model(wider, torch.device("cpu"))
    with pytest.raises(ValueError, match="dit.*checkpoint \\[.*\\] vs model \\["):
        load_weights(other, str(run_dir / "checkpoints" / "step_0000012" / "model.safetensors"))


def test_resume_after_sigkill_repeats_the_uninterrupted_run_exactly(tmp_path, finished_run, data_root):
    reference = step_records(finished_run[0])
    args = [sys.executable, "train.py", *overrides(tmp_path, data_root), "run.name=killed"]
    latest = tmp_path / "killed" / "checkpoints" / "latest"
    process = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300

    def saved_step():  # the step_0000000 checkpoint comes first: wait for a trained one
        return int(latest.read_text().strip().split("_")[1]) if latest.exists() else 0

    while saved_step() < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # no clean-up of any kind
    process.wait()
    assert 3 <= int(latest.read_text().strip().split("_")[1]) < 12
    result = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)  # resume=auto
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr
    logged = [r["step"] for r in records(tmp_path / "killed") if "loss" in r]
    assert logged == list(range(1, 13))  # the records after the checkpoint were dropped, then redone once
    steps = step_records(tmp_path / "killed")
    for step in range(1, 13):  # the same losses and samples as the run that was never interrupted
        assert steps[step]["loss"] == reference[step]["loss"], step
        assert steps[step]["keys"] == reference[step]["keys"], step
    # TensorBoard shows each step once (the events logged after the checkpoint before the kill are purged)
    assert tensorboard_scalars(tmp_path / "killed", "loss") == tensorboard_scalars(finished_run[0], "loss")
    # and the EMA, warm-up position included, continued exactly
    last = "checkpoints/step_0000012/ema.safetensors"
    resumed_ema, reference_ema = load_file(tmp_path / "killed" / last), load_file(finished_run[0] / last)
    assert all(torch.equal(resumed_ema[name], reference_ema[name]) for name in reference_ema)


def test_non_finite_losses_stop_the_run_with_a_checkpoint(tmp_path, data_root):
    config = load("configs/tiny.yaml", overrides(tmp_path, data_root, **{"train.max_bad_steps": 3, "ema.decay": 0}))
    trainer = Trainer(config)
    dit_forward = trainer.engine.model.dit.forward
    trainer.engine.model.dit.forward = lambda *a, **k: dit_forward(*a, **k) * float("nan")
    with pytest.raises(RuntimeError, match="3 steps in a row had a non-finite loss"):
        trainer.fit()
    assert (tmp_path / "tiny" / "checkpoints" / "latest").read_text().strip() == "step_0000003"
    assert step_records(tmp_path / "tiny")[3]["bad_steps_in_row"] == 3


@pytest.mark.distributed
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_two_ranks(tmp_path, data_root, finished_run, stage):
    launcher = shutil.which("deepspeed", path=os.path.dirname(sys.executable))
    args = [
        launcher,
        "--num_gpus",
        "2",
        "--master_port",
        str(free_port()),
        "train.py",
        *overrides(
            tmp_path,
            data_root,
            **{
                "parallel.engine": "deepspeed",
                "parallel.zero_stage": stage,
                "train.max_steps": 3,
                "checkpoint.save_every": 2,
            },
        ),
    ]
    result = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run_dir = tmp_path / "tiny"
    for record in step_records(run_dir).values():  # rank 0's keys, then rank 1's
        rank0, rank1 = record["keys"][:2], record["keys"][2:]
        assert len(rank1) == 2 and not set(rank0) & set(rank1)
    # Step 2 is a sharded save (no full weights); step 0 and the last step are consolidated.
    checkpoints = run_dir / "checkpoints"
    assert not (checkpoints / "step_0000002" / "model.safetensors").exists()
    assert (checkpoints / "step_0000002" / "ema_shards").is_dir()
    for step in ("step_0000000", "step_0000003"):
        assert all((checkpoints / step / f"{stem}.safetensors").is_file() for stem in ("model", "ema"))

    # The consolidated safetensors give a single-process model the engine's validation losses.
    config = load(str(run_dir / "config.yaml"), ["parallel.engine=plain", f"run.dir={tmp_path / 'single'}"])
    trainer = Trainer(config)
    load_weights(trainer.engine.model, str(run_dir / "checkpoints" / "step_0000003" / "model.safetensors"))
    engine_losses = [r for r in records(run_dir) if r["step"] == 3 and "val/loss" in r][-1]
    single = trainer.validate()
    assert single["val/loss"] == pytest.approx(engine_losses["val/loss"], rel=1e-4)
