"""Training from precomputed shards, end to end on CPU with a tiny random Wan VAE and UMT5 saved to folders:
precompute -> train (plain engine, and two DeepSpeed ZeRO-2 ranks) with the weight folders removed ->
validation losses -> (folders back) evaluation, sampling, UniBench. Also: the loss equals the one of
online encoding, and shards made by another config are refused before any work."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.tiny_pretrained import model_overrides, save_umt5, save_wan_vae
from data_pipeline.check import iter_samples, list_shards
from data_pipeline.synthetic.build import build_synthetic
from data_pipeline.video_io import read_video_file
from unity.config import load
from unity.precompute import main as precompute_main
from unity.train.precomputed_set import PrecomputedDataError, open_precomputed
from unity.train.trainer import Trainer

from mini_run import ENV, ROOT, overrides
from two_ranks import torchrun

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

FRAMES = 5  # 1 + 4k frames: the Wan VAE codes the first frame alone, then 4 per latent frame


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Pixel splits, the tiny weights and the precomputed splits (latents [4, 2, 8, 8], 16-wide text)."""
    root = tmp_path_factory.mktemp("chain")
    for split, clips in (("train", 8), ("val", 2), ("test", 2)):
        folder = str(root / "pixels" / split)
        build_synthetic(
            folder, clips, frames=FRAMES, size=32, split=split, with_gt=split == "test", shard_size=4, workers=1
        )
    save_wan_vae(root / "weights" / "vae")
    save_umt5(root / "weights" / "umt5")
    out = root / "latent"
    assert precompute_main(["--data", str(root / "pixels"), "--out", str(out), *model_overrides(root / "weights")]) == 0
    return root


def run_overrides(root, **extra) -> list[str]:
    settings = {
        "data.root": root / "latent",
        "data.frames": FRAMES,
        "data.crop_scale": "[1.0,1.0]",
        "data.synth.train_clips": 8,
        "train.max_steps": 4,
        "checkpoint.save_every": 2,
        "train.eval_every": 2,
        **extra,
    }
    return model_overrides(root / "weights") + overrides(root / "runs", root / "latent", **settings)


def train_without_weights(root, command: list[str]) -> subprocess.CompletedProcess:
    """Run ``command`` with the weight folders moved away, then put them back."""
    shutil.move(root / "weights", root / "weights.away")
    try:
        return subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    finally:
        shutil.move(root / "weights.away", root / "weights")


def val_losses(run_dir) -> dict[int, float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["val/loss"] for r in map(json.loads, lines) if "val/loss" in r}


@pytest.fixture(scope="module")
def plain_run(chain):
    result = train_without_weights(chain, [sys.executable, "train.py", *run_overrides(chain, **{"run.name": "plain"})])
    return chain / "runs" / "plain", result


def test_plain_engine_trains_and_validates_without_the_weights(plain_run):
    run_dir, result = plain_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_0000004"
    losses = val_losses(run_dir)
    assert sorted(losses) == [0, 2, 4] and all(np.isfinite(v) for v in losses.values())
    # The finished run is not failed by an evaluation that lacks the weights: it says what to put back.
    assert "training is done" in result.stderr and "its evaluation cannot run" in result.stderr
    assert f"model.codec_path '{run_dir.parent.parent / 'weights' / 'vae'}' is not a diffusers VAE" in result.stderr
    assert "model.text_path" in result.stderr and f"python -m eval.run_report {run_dir}" in result.stderr


def test_sampling_without_the_weights_says_what_it_needs(plain_run, capsys):
    from unity.sample import main as sample_main

    run_dir, _ = plain_run
    weights = run_dir.parent.parent / "weights"
    shutil.move(weights, weights.parent / "weights.away")
    try:
        assert sample_main(["--ckpt", str(run_dir), "--task", "joint", "--prompt", "a red box"]) == 2
    finally:
        shutil.move(weights.parent / "weights.away", weights)
    error = capsys.readouterr().err
    assert f"the run {run_dir} needs its pretrained parts: model.codec_path" in error and "model.text_path" in error


@pytest.mark.distributed
def test_two_deepspeed_zero2_ranks_train_without_the_weights(chain):
    args = run_overrides(
        chain, **{"run.name": "zero2", "parallel.engine": "deepspeed", "parallel.zero_stage": 2, "train.max_steps": 2}
    )
    result = train_without_weights(chain, torchrun("train.py", *args))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    run_dir = chain / "runs" / "zero2"
    assert sorted(val_losses(run_dir)) == [0, 2]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(len(r["keys"]) == 4 for r in records if "loss" in r)  # two ranks of two samples


def test_with_the_weights_back_the_run_evaluates_samples_and_benches(plain_run, tmp_path, capsys):
    from eval.run_report import main as report_main
    from eval.unibench import main as unibench_main
    from unity.sample import main as sample_main

    run_dir, _ = plain_run
    root = run_dir.parent.parent
    assert report_main([str(run_dir)]) == 0
    assert "depth estimation (test split)" in capsys.readouterr().out
    shard = list_shards(str(root / "pixels" / "test"))[0][0]
    _, members = next(iter_samples(shard))
    video = tmp_path / "clip.mkv"
    video.write_bytes(members["rgb.mkv"])
    out = tmp_path / "sample"
    args = ["--ckpt", str(run_dir), "--task", "estimate", "--video", str(video), "--steps", "2", "--out", str(out)]
    assert sample_main(args) == 0
    assert read_video_file(str(out / "depth.mp4")).shape == (FRAMES, 32, 32, 3) and (out / "depth.npy").is_file()
    bench = tmp_path / "bench"
    args = ["--ckpt", str(run_dir), "--data", str(root / "latent"), "--out", str(bench), "--clips", "2"]
    assert unibench_main([*args, "--steps", "2", "--modalities", "depth"]) == 0
    assert json.loads((bench / "results.json").read_text())["splits"]["test"]["estimation"]["depth"]["model"]


def test_loss_from_precomputed_samples_equals_online_encoding(chain, tmp_path):
    """The same shards, seed and step: the latents and text from the shards (fp16, bf16) give the loss
    that encoding the decoded videos and the captions gives, to the storage's precision."""
    losses = {}
    for mode, seed in (("always", 0), ("never", 0), ("always", 1)):
        config = load(
            "configs/tiny.yaml",
            run_overrides(chain, **{"run.dir": tmp_path / mode, "run.seed": seed, "data.precomputed": mode}),
        )
        trainer = Trainer(config)
        assert (trainer.precomputed is None) == (mode == "never")
        batches = iter(trainer.loader)
        steps = []
        for _ in range(3):
            batch = next(batches)
            steps.append((batch["key"], trainer.micro_step(batch)["loss"]))
            trainer.step += 1
        losses[mode, seed] = steps
    for (keys, stored), (online_keys, online) in zip(losses["always", 0], losses["never", 0]):
        assert keys == online_keys
        assert stored == pytest.approx(online, rel=1e-3)  # measured: about 1e-5; float16's epsilon is 1e-3
    other = [loss for _, loss in losses["always", 1]]  # negative control: another seed draws other routes and noise
    assert max(abs(a - b) / b for a, b in zip(other, [loss for _, loss in losses["always", 0]])) > 0.05


def test_shards_of_another_config_are_refused_before_any_work(chain, tmp_path):
    def refused(**extra):
        config = load("configs/tiny.yaml", run_overrides(chain, **{"run.dir": tmp_path, **extra}))
        with pytest.raises(PrecomputedDataError) as error:
            open_precomputed(config)
        return str(error.value)

    why = refused(**{"model.codec": "pixel"})
    assert "codec: the shards were made with 'diffusers', the config has model.codec='pixel'" in why
    why = refused(**{"model.text_max_tokens": 32})
    assert "text token limit: the shards were made with 16, the config has model.text_max_tokens=32" in why
    why = refused(**{"model.text_path": str(tmp_path / "other")})
    assert f"text encoder folder: the shards were made with '{chain / 'weights' / 'umt5'}'" in why
    why = refused(**{"data.size": 64, "data.frames": 9})
    assert "latent shape: the shards hold latents [4, 2, 8, 8] (C, T', H', W'), smaller than the [4, 3, 16, 16]" in why
    why = refused(**{"data.precomputed": "always", "data.root": tmp_path / "pixels"})
    assert "data.precomputed=always" in why and "python -m unity.precompute" in why
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            *run_overrides(chain, **{"run.dir": tmp_path / "runs", "model.text_max_tokens": 32}),
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "text token limit" in result.stderr
    assert not (tmp_path / "runs").exists()  # nothing was made
