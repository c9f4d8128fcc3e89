"""Auxiliary streams grown on a converted Wan (unity.method.grow): with one rgb stream every variant is still Wan;
an auxiliary stream moves rgb unless the stream gate holds it; grown parameters train at their own LR; the rgb
path folds back to Wan."""

import pytest
import torch
from tiny_wan import TEXT_DIM, tiny_wan

from models.config import ModelConfig
from unity.inference.wan import WanCheckpoint, dit_from_wan
from unity.method.grow import grown_state, rgb_path_state
from unity.method.wan import wan_model_config
from unity.train.engine import build_optimizer

diffusers = pytest.importorskip("diffusers")

RGB, DEPTH = 0, 1
SWITCHERS = ("adaln", "token", "none")


def grown_variant(switcher: str, **extra) -> ModelConfig:
    """UnityVideo's released recipe around a switcher: dual context, width layout, copied aux path, zero input map."""
    return ModelConfig(
        switcher=switcher, in_context="dual", layout="width", aux_path="copied", aux_in_proj=True, **extra
    )


@pytest.fixture(scope="module")
def wan(tmp_path_factory):
    model = tiny_wan("t2v", seed=4)
    folder = tmp_path_factory.mktemp("wan")
    model.save_pretrained(folder)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 4, 3, 8, 12, generator=g)  # [B, S, C, T, H, W]: rgb, depth
    sigma = torch.rand(2, generator=g)
    caption = torch.randn(2, 512, TEXT_DIM, generator=g) * (torch.arange(512) < 6)[None, :, None]
    prompt = torch.randn(2, 2, 4, TEXT_DIM, generator=g)
    with torch.no_grad():
        ref = model(x[:, 0], timestep=1000 * sigma, encoder_hidden_states=caption).sample
    return folder, (x, sigma, caption, prompt), ref


def forward(dit, inputs, streams: int):
    x, sigma, caption, prompt = inputs
    b = x.shape[0]
    modality = torch.tensor([[RGB, DEPTH][:streams]] * b)
    with torch.no_grad():
        return dit(
            x[:, :streams],
            modality,
            sigma[:, None].expand(b, streams),
            caption=caption,
            caption_mask=torch.ones(b, 512, dtype=torch.bool),
            prompt=prompt[:, :streams],
            prompt_mask=torch.ones(b, streams, 4, dtype=torch.bool),
        )


def relative(out, ref):
    return ((out - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("switcher", SWITCHERS)
def test_every_grown_variant_is_still_wan_for_an_rgb_stream(wan, switcher):
    folder, inputs, ref = wan
    dit = dit_from_wan(folder, grown_variant(switcher, stream_gate=True))
    assert relative(forward(dit, inputs, 1)[:, 0], ref) <= 1e-6


@pytest.mark.parametrize("switcher", SWITCHERS)
def test_an_auxiliary_stream_moves_rgb_unless_the_stream_gate_holds_it(wan, switcher):
    folder, inputs, ref = wan
    drift = relative(forward(dit_from_wan(folder, grown_variant(switcher)), inputs, 2)[:, 0], ref)
    assert drift > 1e-3  # joint attention sees the new tokens
    gated = forward(dit_from_wan(folder, grown_variant(switcher, stream_gate=True)), inputs, 2)
    assert relative(gated[:, 0], ref) <= 1e-6


def test_grown_parameters_are_listed_and_trained_at_their_own_lr(wan):
    folder, _, _ = wan
    checkpoint = WanCheckpoint.open(folder)
    config = wan_model_config(checkpoint.shape, grown_variant("token", stream_gate=True))
    state, new = grown_state(checkpoint.unity_state(), config)
    assert new == sorted(
        ["switcher.modality_embed.weight", "aux_in.weight", "aux_in.bias"]
        + [f"aux_{n}" for n in ("patch_embed.proj.weight", "patch_embed.proj.bias", "final.linear.weight")]
        + ["aux_final.linear.bias", "aux_final.table", "blocks.0.attn.stream_gate", "blocks.1.attn.stream_gate"]
    )
    assert torch.equal(state["aux_patch_embed.proj.weight"], state["patch_embed.proj.weight"])
    assert not state["aux_in.weight"].any() and not state["switcher.modality_embed.weight"].any()
    dit = dit_from_wan(folder, grown_variant("token", stream_gate=True))

    class Optim:
        lr, weight_decay, new_param_lr_mult = 1e-5, 0.01, 10.0

    optimizer = build_optimizer(dit, Optim, new_parameters=new)
    by_id = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    params = dict(dit.named_parameters())
    assert {by_id[id(params[n])] for n in new} == {1e-4}
    assert {by_id[id(p)] for name, p in params.items() if name not in new} == {1e-5}
    with pytest.raises(ValueError, match="new parameters the model does not have: nope"):
        build_optimizer(dit, Optim, new_parameters=["nope"])


@pytest.mark.parametrize("switcher", ["adaln", "token"])
def test_a_trained_rgb_modality_embedding_folds_into_the_exported_wan(wan, switcher):
    folder, inputs, _ = wan
    dit = dit_from_wan(folder, grown_variant(switcher))
    with torch.no_grad():
        dit.switcher.modality_embed.weight.normal_(0, 0.1)  # as if trained
    config = dit.config
    state = rgb_path_state(dit.state_dict(), config)
    plain = dit_from_wan(folder)
    plain.load_state_dict(state)
    assert relative(forward(plain, inputs, 1)[:, 0], forward(dit, inputs, 1)[:, 0]) <= 1e-5
