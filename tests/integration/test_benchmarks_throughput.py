"""benchmarks/throughput.py: JSON keys, MFU in (0, 1), FLOPs = 3x the analytic forward, and --record."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from models.flops import forward_flops
from models.summary import load_model_config

from mini_run import ROOT

TINY = [
    "--config",
    "configs/model/tiny.yaml",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--batch",
    "2",
    "--frames",
    "4",
    "--height",
    "16",
    "--width",
    "16",
    "--gemm-size",
    "256",
    "model.depth=2",
]


@pytest.fixture(scope="module")
def throughput():
    spec = importlib.util.spec_from_file_location("throughput", Path(ROOT) / "benchmarks" / "throughput.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_json_figures_and_flops(throughput, one_thread, tmp_path):
    out = tmp_path / "result.json"
    throughput.main([*TINY, "--json", str(out)])
    result = json.loads(out.read_text())
    assert {"step_time_s", "tokens_per_s", "tflops", "mfu", "peak_mem_gb", "device", "command", "config"} <= set(result)
    assert 0 < result["mfu"] < 1 and result["step_time_s"] > 0 and result["peak_mem_gb"] > 0
    assert result["geometry"]["latent"] == [4, 16, 16] and result["geometry"]["tokens_per_sample"] == 2 * 4
    config = load_model_config("configs/model/tiny.yaml", ["depth=2"])
    forward = forward_flops(config, 3, config.text_dim, (4, 16, 16), 2, config.text_max_tokens, config.text_max_tokens)[
        "total"
    ]
    assert result["flops_per_step"] == 3 * forward * 2
    assert result["tflops"] == pytest.approx(result["flops_per_step"] / result["step_time_s"] / 1e12)
    assert "python benchmarks/throughput.py --config configs/model/tiny.yaml" in result["command"]


def test_wan_geometry_of_a_model_size_file(throughput):
    args = throughput.parser().parse_args(["--config", "configs/model/base.yaml"])
    geometry = throughput.resolve(args)["geometry"]
    assert geometry["latent"] == [9, 60, 104] and geometry["channels"] == 16 and geometry["batch"] == 1
    args = throughput.parser().parse_args(["--config", "configs/tiny.yaml"])
    geometry = throughput.resolve(args)["geometry"]  # a run config: its data section
    assert geometry["latent"] == [8, 32, 32] and geometry["channels"] == 3 and geometry["batch"] == 8


def test_record_adds_one_line(throughput, one_thread, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\n| a |\n| --- |\n{throughput.RECORD_MARKER}\n\n## Next\n")
    throughput.main([*TINY, "--steps", "1", "--record", "--results", str(results)])
    lines = results.read_text().splitlines()
    assert len(lines) == 8
    assert lines[4].startswith("| ") and "python benchmarks/throughput.py --config configs/model/tiny.yaml" in lines[4]
    assert lines[5] == throughput.RECORD_MARKER
    plain = tmp_path / "plain.md"
    plain.write_text("# Results\n")
    throughput.main([*TINY, "--steps", "1", "--record", "--results", str(plain)])
    assert len(plain.read_text().splitlines()) == 2
