"""LoRA fine-tuning on visual sentences from the shared miniature run: adapter-only checkpoints, a frozen
base, loading base + adapter for sampling, and merging."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from unity.config import ConfigError, load
from unity.inference.loading import load_trained
from unity.lora import main as lora_main
from unity.sample import main as sample_main

from mini_run import ENV, ROOT, overrides


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, data_root, finished_run):
    runs = tmp_path_factory.mktemp("lora")
    extra = {
        "lora.enabled": "true",
        "lora.rank": 4,
        "train.init_from": str(finished_run[0]),
        "train.max_steps": 4,
        "checkpoint.save_every": 2,
        "train.eval_every": 2,
        "routing.tasks.sentence": 1,
        "routing.tasks.cond": 0,
        "routing.tasks.est": 0,
        "routing.tasks.joint": 0,
        "data.modalities": "[depth]",
        "optim.lr": 1e-2,
    }
    result = subprocess.run(
        [sys.executable, "train.py", *overrides(runs, data_root, **extra), "run.name=lora"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return runs / "lora"


def test_only_the_adapters_are_trained_and_saved(lora_run, finished_run):
    ckpt = lora_run / "checkpoints" / "step_0000004"
    assert (ckpt / "adapter.safetensors").is_file() and (ckpt / "adapter_ema.safetensors").is_file()
    assert not (ckpt / "model.safetensors").exists()
    adapter = load_file(str(ckpt / "adapter.safetensors"))
    assert adapter and all("lora_" in name for name in adapter)
    assert any(name.endswith("attn.qkv.lora_B.default.weight") for name in adapter)
    assert any(name.endswith("mlp.fc2.lora_A.default.weight") for name in adapter)
    assert any(t.abs().max() > 0 for name, t in adapter.items() if "lora_B" in name)  # B starts at zero: it moved

    base = load_trained(finished_run[0])
    adapted = load_trained(lora_run)
    assert adapted.weights == "adapter_ema"
    base_state = base.module.state_dict()
    for name, tensor in adapted.module.state_dict().items():  # the frozen base is the base run's EMA weights
        if "lora_" not in name:
            assert torch.equal(tensor, base_state[name.replace(".base_layer.", ".")]), name


def test_the_merged_run_matches_base_plus_adapter_and_the_sampler_loads_both(lora_run, tmp_path, capsys):
    merged = tmp_path / "merged"
    assert lora_main(["merge", "--ckpt", str(lora_run), "--out", str(merged)]) == 0
    capsys.readouterr()
    adapted, plain = load_trained(lora_run), load_trained(merged)
    assert not plain.config.lora.enabled and plain.weights == "model"
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 32, 32, generator=g)
    modality, t = torch.tensor([[0, 1, 0, 1]] * 2), torch.tensor([[0.0, 0.0, 0.0, 0.7]] * 2)
    cond = adapted.conditioning(["a", "b"], ["depth", "depth"], 4)
    with torch.no_grad():
        a = adapted.dit(x, modality, t, **cond, layout="time")
        b = plain.dit(x, modality, t, **cond, layout="time")
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()

    code = sample_main(
        ["--ckpt", str(lora_run), "--task", "joint", "--prompt", "x", "--steps", "1", "--out", str(tmp_path / "s")]
    )
    assert code == 0 and (tmp_path / "s" / "depth.mp4").is_file()


def test_a_lora_run_needs_a_base():
    with pytest.raises(ConfigError, match="'lora.enabled' needs 'train.init_from'"):
        load(overrides=["lora.enabled=true"])
