"""LoRA on a converted Wan (UniVid's recipe: rank 16 on attention q/k/v/o and the FFN): the adapters start as
the identity, train alone, and fold back into weights that are still a Wan transformer."""

import pytest
import torch
from tiny_wan import TEXT_DIM, tiny_wan

from unity.config.schema import LORA_TARGETS, LoraSettings
from unity.inference.wan import dit_from_wan
from unity.method.lora import add_lora, merged_state
from unity.method.network import TrainModule

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")


def test_lora_on_wan_attention_and_ffn_trains_alone_and_merges_into_a_wan_transformer(tmp_path):
    model = tiny_wan("t2v", seed=5)
    model.save_pretrained(tmp_path / "wan")
    module = TrainModule(dit_from_wan(tmp_path / "wan"), None)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 1, 4, 3, 8, 12, generator=g), torch.rand(1, 1, generator=g)
    text = {"caption": torch.randn(1, 5, TEXT_DIM, generator=g), "caption_mask": torch.ones(1, 5, dtype=torch.bool)}
    modality = torch.zeros(1, 1, dtype=torch.long)
    with torch.no_grad():
        before = module(x, modality, t, **text)
    add_lora(module, LoraSettings(enabled=True, rank=16, alpha=16.0, target_modules=list(LORA_TARGETS)))
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    layers = {name.split(".lora_")[0] for name in trainable}
    assert len(layers) == 7 * 2  # q/k/v (fused), o, cross q, cross k/v, cross o, FFN in and out, in both blocks
    with torch.no_grad():
        assert torch.equal(module(x, modality, t, **text), before)  # B starts at zero
    optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=0.5)
    module(x, modality, t, **text).square().mean().backward()
    optimizer.step()
    with torch.no_grad():
        tuned = module(x, modality, t, **text)
    assert not torch.allclose(tuned, before)
    merged = {name.removeprefix("dit."): x for name, x in merged_state(module).items()}
    plain = dit_from_wan(tmp_path / "wan")
    plain.load_state_dict(merged)
    with torch.no_grad():
        assert torch.allclose(plain(x, modality, t, **text), tuned, atol=1e-5)
