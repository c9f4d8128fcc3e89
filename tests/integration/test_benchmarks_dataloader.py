"""benchmarks/dataloader.py on tiny clips: the JSON it writes, positive rates, raw decoding side by side with
each worker count, the GPU-demand arithmetic and the node extrapolation from the most workers measured."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from models.config import ModelConfig
from models.flops import forward_flops

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("dataloader-bench")
    command = [
        sys.executable,
        "benchmarks/dataloader.py",
        "--clips",
        "4",
        "--frames",
        "4",
        "--size",
        "32",
        "--workers",
        "0",
        "2",
        "--batches",
        "2",
        "--batch-size",
        "2",
        "--rounds",
        "1",
        "--build-workers",
        "1",
        "--model-config",
        "configs/model/tiny.yaml",
        "--channels",
        "3",
        "--compression",
        "1",
        "1",
        "1",
        "--keep",
        str(out / "shards"),
        "--json",
        str(out / "result.json"),
    ]
    run = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "GPU demand" in run.stdout and "vs raw" in run.stdout
    with open(out / "result.json") as f:
        return json.load(f)


def test_every_variant_is_measured_with_positive_rates(result):
    rows = {(r["format"], r["streams"], r["variant"], r["workers"]) for r in result["results"]}
    assert rows == {
        (ext, streams, variant, workers)
        for ext in ("mkv", "mp4")
        for streams in ("all", "rgb")
        for variant, workers in (("raw", None), ("raw", 2), ("loader", 0), ("loader", 2))
    }
    by = {(r["format"], r["streams"], r["variant"], r["workers"]): r for r in result["results"]}
    for r in result["results"]:
        assert r["clips_per_s"] > 0 and r["per_worker_clips_per_s"] > 0 and r["cpu_ms_per_clip"] > 0
        assert r["vs_raw"] > 0 and len(r["rounds"]) == 1
        assert len(r["stream_names"]) == (6 if r["streams"] == "all" else 1) and r["stream_names"][0] == "rgb"
        assert r["per_worker_clips_per_s"] == pytest.approx(r["clips_per_s"] / max(1, r["workers"] or 1))
        if r["variant"] == "raw":
            assert r["vs_raw"] == 1
        else:  # against raw decoding in as many processes as workers, measured in the same rounds
            raw = by[(r["format"], r["streams"], "raw", 2 if r["workers"] == 2 else None)]
            assert r["vs_raw"] == pytest.approx(r["clips_per_s"] / raw["clips_per_s"])
    assert result["clip"] == {"frames": 4, "height": 32, "width": 32} and result["clips_per_run"] == 4
    assert result["node"]["scale_workers"] == 2  # the per-worker rate with the most workers
    assert {row["streams"] for row in result["node"]["rows"]} == {"all", "rgb"}
    for row in result["node"]["rows"]:
        loader = by[(row["format"], row["streams"], "loader", 2)]
        assert row["per_worker_clips_per_s"] == loader["per_worker_clips_per_s"] and row["vs_gpu_demand"] > 0


def test_gpu_demand_matches_a_hand_computation(result):
    tiny = OmegaConf.load(os.path.join(ROOT, "configs/model/tiny.yaml")).model
    config = ModelConfig(**OmegaConf.to_container(tiny))
    # 4x32x32 pixels, no compression, patch 4x8x8 -> 1x4x4 = 16 tokens per stream; text 64 tokens
    forward = forward_flops(config, 3, 128, (4, 32, 32), 2, 64, 64)["total"]
    per_gpu = 989e12 * 0.5 / (3 * forward)
    gpu = result["gpu"]
    assert gpu["tokens_per_stream"] == 16 and gpu["latent_grid"] == [4, 32, 32]
    assert gpu["forward_flops"] == forward
    assert gpu["samples_per_s_per_gpu"] == pytest.approx(per_gpu)
    assert gpu["samples_per_s_per_node"] == pytest.approx(8 * per_gpu)
    for row in result["node"]["rows"]:
        assert row["node_clips_per_s"] == pytest.approx(96 * row["per_worker_clips_per_s"])
        assert row["vs_gpu_demand"] == pytest.approx(row["node_clips_per_s"] / (8 * per_gpu))
