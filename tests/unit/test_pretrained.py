"""Saving and loading the Hugging Face way: UnityDiT.save_pretrained / from_pretrained, and a UnityPipeline
with a diffusers VAE and a transformers text encoder saved to one folder and loaded back from it alone."""

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from benchmarks.tiny_pretrained import model_overrides, save_umt5, save_wan_vae
from models import ModelConfig, UnityDiT
from unity.config import load
from unity.inference.loading import Trained
from unity.inference.unity_pipeline import UnityPipeline
from unity.method.network import build_model


def inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, model.in_channels, 2, 16, 16, generator=g)  # [B, S, C, T, H, W]
    modality, t = torch.tensor([[0, 1]]), torch.tensor([[0.0, 0.7]])
    caption, prompt = torch.randn(1, 5, model.text_dim, generator=g), torch.randn(1, 2, 3, model.text_dim, generator=g)
    return x, modality, t, caption, torch.ones(1, 5, dtype=torch.bool), prompt, torch.ones(1, 2, 3, dtype=torch.bool)


def test_dit_round_trip_gives_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    model = UnityDiT(ModelConfig(hidden=32, depth=2, heads=2, patch=[1, 8, 8]), in_channels=3, text_dim=16)
    for p in model.parameters():  # the zero-initialised gates would make every output equal
        p.data.normal_(0, 0.05)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["in_channels"] == 3 and saved["text_dim"] == 16 and saved["config"]["patch"] == [1, 8, 8]
    loaded = UnityDiT.from_pretrained(tmp_path)
    assert not loaded.training and loaded.config == model.config
    with torch.no_grad():
        expected = model.eval()(*inputs(model))
        assert torch.equal(loaded(*inputs(loaded)), expected)
        other = UnityDiT(ModelConfig(hidden=32, depth=2, heads=2, patch=[1, 8, 8]), 3, 16).eval()
        assert not torch.equal(other(*inputs(other)), expected)  # negative control: fresh weights differ


def test_dit_loading_is_strict_and_local(tmp_path):
    UnityDiT(ModelConfig(hidden=32, depth=1, heads=2), 3, 16).save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("final.")}, str(tmp_path / "model.safetensors"))
    with pytest.raises(RuntimeError, match="final"):
        UnityDiT.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"cut short")
    with pytest.raises(ValueError, match="model.safetensors is damaged"):
        UnityDiT.from_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="hf download"):
        UnityDiT.from_pretrained(tmp_path / "missing")


def test_pipeline_with_pretrained_parts_loads_from_its_folder_alone(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    save_wan_vae(tmp_path / "weights" / "vae")
    save_umt5(tmp_path / "weights" / "umt5")
    overrides = [*model_overrides(tmp_path / "weights"), "model.hidden=32", "model.depth=1", "model.heads=2"]
    config = load(None, [*overrides, "data.frames=5", "data.size=16", "eval.steps=2"])
    module, text, codec = build_model(config, "cpu")
    for p in module.dit.parameters():
        p.data.normal_(0, 0.05)
    pipe = UnityPipeline.from_trained(Trained(config, module.eval(), text, codec, "memory", "ema", torch.device("cpu")))
    clip = np.random.default_rng(0).integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)  # fitted to 5 x 16 x 16
    expected = pipe(task="estimate", video=clip, modality="depth", prompt="a red box")

    pipe.save_pretrained(tmp_path / "pipe")
    shutil.rmtree(tmp_path / "weights")  # the folder must stand alone
    assert (tmp_path / "pipe" / "vae" / "config.json").is_file()
    assert (tmp_path / "pipe" / "text_encoder" / "config.json").is_file()
    assert (tmp_path / "pipe" / "tokenizer" / "tokenizer.json").is_file()
    loaded = UnityPipeline.from_pretrained(tmp_path / "pipe", device="cpu")
    out = loaded(task="estimate", video=clip, modality="depth", prompt="a red box")
    assert out.generated == ["depth"] and out.frames.shape == (1, 5, 16, 16, 3) and out.estimate.shape == (1, 5, 16, 16)
    np.testing.assert_array_equal(out.videos["depth"], expected.videos["depth"])
    np.testing.assert_array_equal(out.videos["rgb"], expected.videos["rgb"])
    other = loaded(task="estimate", video=clip, modality="depth", prompt="a red box", seed=1)
    assert not np.array_equal(other.videos["depth"], expected.videos["depth"])  # negative control: other noise
