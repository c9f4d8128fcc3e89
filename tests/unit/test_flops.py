"""Analytic FLOPs agree with PyTorch's FLOP counter; the summary reports parameters, FLOPs and tokens."""

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.config import ModelConfig
from models.dit import UnityDiT
from models.flops import forward_flops, latent_grid, tokens_per_stream
from models.summary import main as summary_main
from models.summary import parameter_counts, summarize


# On the math backend, whose attention products are plain matmuls the counter sees. (PyTorch 2.14's
# FlopCounterMode does not count the fused CPU SDPA kernel at all, so it cannot check that backend.)
@pytest.mark.parametrize("in_context, attention", [("dual", "math"), ("caption_only", "math"), ("none", "math")])
def test_analytic_flops_match_the_flop_counter(in_context, attention):
    config = ModelConfig(in_context=in_context, attention=attention)  # the tiny defaults
    model = UnityDiT(config, in_channels=3, text_dim=config.text_dim)
    b, s, lc, lp = 2, 2, 12, 7
    x = torch.randn(b, s, 3, 8, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(
            x,
            torch.tensor([[0, 1], [0, 2]]),
            torch.rand(b, s),
            torch.randn(b, lc, config.text_dim),
            torch.ones(b, lc, dtype=torch.bool),
            torch.randn(b, s, lp, config.text_dim),
            torch.ones(b, s, lp, dtype=torch.bool),
        )
    analytic = forward_flops(config, 3, config.text_dim, (8, 32, 32), s, lc, lp)["total"]
    assert abs(counter.get_total_flops() / b / analytic - 1) < 0.05


def test_analytic_flops_of_the_wan_options_and_the_grown_paths_match_the_flop_counter():
    config = ModelConfig(
        attention="math",
        ffn_dim=300,
        time_freq_dim=64,
        qk_norm_scope="width",
        final_layer="table",
        text_pad=20,
        aux_path="copied",
        aux_in_proj=True,
        stream_gate=True,
        prediction="v",
    )
    model = UnityDiT(config, in_channels=3, text_dim=config.text_dim)
    b, s, lc, lp = 2, 2, 12, 7
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(
            torch.randn(b, s, 3, 8, 32, 32),
            torch.tensor([[0, 1], [0, 2]]),
            torch.rand(b, s),
            torch.randn(b, lc, config.text_dim),
            torch.ones(b, lc, dtype=torch.bool),
            torch.randn(b, s, lp, config.text_dim),
            torch.ones(b, s, lp, dtype=torch.bool),
        )
    analytic = forward_flops(config, 3, config.text_dim, (8, 32, 32), s, lc, lp)["total"]
    assert abs(counter.get_total_flops() / b / analytic - 1) < 0.05
    without = forward_flops(ModelConfig(ffn_dim=300), 3, config.text_dim, (8, 32, 32), s, lc, lp)["total"]
    assert analytic > 1.05 * without  # the options are counted, not ignored


def test_wan_latent_geometry():
    grid = latent_grid(33, 480, 832, (4, 8, 8))
    assert grid == (9, 60, 104)
    assert tokens_per_stream(ModelConfig(patch=[1, 2, 2]), grid) == 14_040
    assert latent_grid(16, 64, 64) == (16, 64, 64)


def test_components_partition_the_parameters():
    model = UnityDiT(ModelConfig(), in_channels=3, text_dim=128)
    counts = parameter_counts(model)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert all(n > 0 for n in counts.values())
    assert summarize(ModelConfig())["params"] == sum(p.numel() for p in model.parameters())


def test_summary_cli_json(capsys):
    summary_main(
        [
            "--config",
            "configs/model/base.yaml",
            "--frames",
            "33",
            "--height",
            "480",
            "--width",
            "832",
            "--channels",
            "16",
            "--compression",
            "4",
            "8",
            "8",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert {"params", "flops_forward", "tokens", "components"} <= set(summary)
    assert summary["tokens"] == 2 * 14_040
    assert 1.3e9 < summary["params"] < 1.5e9
    assert summary["flops_forward"] == sum(summary["flops_components"].values())


def test_summary_cli_table(capsys):
    summary_main(["--config", "configs/model/tiny.yaml"])
    out = capsys.readouterr().out
    assert "parameters" in out and "forward FLOPs / sample" in out and "512 tokens/sample" in out
