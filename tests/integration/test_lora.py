"""LoRA fine-tuning on visual sentences from the shared miniature run: adapter-only checkpoints, a frozen
base, loading base + adapter for sampling, and merging."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from unity.config import ConfigError, load
from unity.inference.loading import load_trained
from unity.lora import main as lora_main
from unity.method.lora import from_peft_layout
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
    for stem in ("adapter", "adapter_ema"):  # PEFT adapter folders
        assert (ckpt / stem / "adapter_model.safetensors").is_file() and (ckpt / stem / "adapter_config.json").is_file()
    assert not (ckpt / "model.safetensors").exists()
    config = json.loads((ckpt / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4 and "attn.qkv" in config["target_modules"]
    adapter = load_file(str(ckpt / "adapter" / "adapter_model.safetensors"))
    assert adapter and all(name.startswith("base_model.model.blocks.") and "lora_" in name for name in adapter)
    assert "base_model.model.blocks.0.attn.qkv.lora_B.weight" in adapter  # PEFT's layout: no adapter name
    assert any(name.endswith("mlp.fc2.lora_A.weight") for name in adapter)
    assert any(t.abs().max() > 0 for name, t in adapter.items() if "lora_B" in name)  # B starts at zero: it moved

    base = load_trained(finished_run[0])
    adapted = load_trained(lora_run)
    assert adapted.weights == "adapter_ema"
    base_state = base.module.state_dict()
    for name, tensor in adapted.module.state_dict().items():  # the frozen base is the base run's EMA weights
        if "lora_" not in name:
            assert torch.equal(tensor, base_state[name.replace(".base_layer.", ".")]), name


def sentence_inputs(trained):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 3, 8, 32, 32, generator=g)
    modality, t = torch.tensor([[0, 1, 0, 1]] * 2), torch.tensor([[0.0, 0.0, 0.0, 0.7]] * 2)
    return (x, modality, t), trained.conditioning(["a", "b"], ["depth", "depth"], 4)


def test_peft_loads_the_adapters_with_its_own_tools(lora_run, finished_run):
    peft = pytest.importorskip("peft")
    folder = lora_run / "checkpoints" / "step_0000004" / "adapter_ema"
    adapted = load_trained(lora_run)
    args, cond = sentence_inputs(adapted)
    with torch.no_grad():
        expected = adapted.dit(*args, **cond, layout="time")
        wrapped = peft.PeftModel.from_pretrained(load_trained(finished_run[0]).dit, str(folder)).eval()
        assert torch.equal(wrapped(*args, **cond, layout="time"), expected)

        injected = load_trained(finished_run[0]).dit  # the lower-level route: inject, then set the state dict
        peft.inject_adapter_in_model(peft.LoraConfig.from_pretrained(str(folder)), injected)
        result = peft.set_peft_model_state_dict(injected, peft.utils.load_peft_weights(str(folder)))
        assert not [k for k in result.missing_keys if "lora_" in k] and not result.unexpected_keys
        assert torch.equal(injected.eval()(*args, **cond, layout="time"), expected)
        plain = load_trained(finished_run[0]).dit  # negative control: the base alone differs
        assert not torch.allclose(plain(*args, **cond, layout="time"), expected, atol=1e-6)


def test_checkpoints_in_the_earlier_adapter_layout_still_load(lora_run, tmp_path):
    old = tmp_path / "old_run"
    shutil.copytree(lora_run, old)
    ckpt = old / "checkpoints" / "step_0000004"
    for stem in ("adapter", "adapter_ema"):  # rewrite as before: <stem>.safetensors with the module's keys
        state = load_file(str(ckpt / stem / "adapter_model.safetensors"))
        save_file(from_peft_layout(state), str(ckpt / f"{stem}.safetensors"))
        shutil.rmtree(ckpt / stem)
    assert next(iter(load_file(str(ckpt / "adapter.safetensors")))).startswith("dit.")
    new, earlier = load_trained(lora_run), load_trained(old)
    assert earlier.weights == "adapter_ema"
    for (name, a), b in zip(new.module.state_dict().items(), earlier.module.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_merged_run_matches_base_plus_adapter_and_the_sampler_loads_both(lora_run, tmp_path, capsys):
    merged = tmp_path / "merged"
    assert lora_main(["merge", "--ckpt", str(lora_run), "--out", str(merged)]) == 0
    capsys.readouterr()
    adapted, plain = load_trained(lora_run), load_trained(merged)
    assert not plain.config.lora.enabled and plain.weights == "model"
    args, cond = sentence_inputs(adapted)
    with torch.no_grad():
        a = adapted.dit(*args, **cond, layout="time")
        b = plain.dit(*args, **cond, layout="time")
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()

    code = sample_main(
        ["--ckpt", str(lora_run), "--task", "joint", "--prompt", "x", "--steps", "1", "--out", str(tmp_path / "s")]
    )
    assert code == 0 and (tmp_path / "s" / "depth.mp4").is_file()


def test_a_lora_run_needs_a_base():
    with pytest.raises(ConfigError, match="'lora.enabled' needs 'train.init_from'"):
        load(overrides=["lora.enabled=true"])
