"""UnityDiT: AdaLN-Zero init, the switcher and in-context variants, layouts, gradients, precision and shapes."""

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from models.config import ModelConfig
from models.dit import UnityDiT
from models.summary import summarize
from unity.config import load

RGB, DEPTH, FLOW = 0, 1, 2
TEXT_DIM = 16
SMALL = dict(
    hidden=32, depth=2, heads=2, patch=[2, 4, 4], attention="math", prediction="v"
)  # head dim 16; raw head output


def build(seed=0, perturb=True, **overrides) -> UnityDiT:
    """A small model; ``perturb`` adds noise to every weight so zero-initialised paths show up in the output."""
    torch.manual_seed(seed)
    model = UnityDiT(ModelConfig(**{**SMALL, **overrides}), in_channels=3, text_dim=TEXT_DIM)
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model


def inputs(modality=((RGB, DEPTH),), t=None, frames=4, size=8, caption_tokens=5, prompt_tokens=3, seed=0):
    """Random inputs for ``modality [B, S]``; stream 1 of sample 0 has two padded prompt tokens."""
    g = torch.Generator().manual_seed(seed)
    modality = torch.tensor(modality)
    b, s = modality.shape
    prompt_mask = torch.ones(b, s, prompt_tokens, dtype=torch.bool)
    prompt_mask[0, -1, -2:] = False
    return dict(
        x=torch.randn(b, s, 3, frames, size, size, generator=g),
        modality=modality,
        t=torch.rand(b, s, generator=g) if t is None else torch.tensor(t),
        caption=torch.randn(b, caption_tokens, TEXT_DIM, generator=g),
        caption_mask=torch.ones(b, caption_tokens, dtype=torch.bool),
        prompt=torch.randn(b, s, prompt_tokens, TEXT_DIM, generator=g),
        prompt_mask=prompt_mask,
    )


def close(a, b):
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_head_output_is_exactly_zero_at_init():
    """At init every gate is zero, so the head predicts exactly zero: with the default ``prediction: x`` that is
    x̂_0 = 0 and the returned velocity is exactly ``x_t / max(t, x_min_t)``; with ``prediction: v`` it is 0."""
    assert ModelConfig().prediction == "x"
    args = inputs(t=[[0.0, 0.6]])  # a clean stream (divided by x_min_t) and a noised one
    model = build(perturb=False, prediction=ModelConfig().prediction)
    out = model(**args)
    t = torch.tensor([max(0.0, model.config.x_min_t), 0.6])[None, :, None, None, None, None]
    assert out.shape == (1, 2, 3, 4, 8, 8) and torch.equal(out, args["x"] / t)
    assert not torch.equal(build(perturb=True)(**args), out)  # the control: trained weights do not give it
    velocity = build(perturb=False, prediction="v")(**args)
    assert torch.equal(velocity, torch.zeros_like(velocity))
    assert all(torch.equal(b.modulation, torch.zeros_like(b.modulation)) for b in model.blocks)


def test_x_prediction_returns_the_velocity_of_the_predicted_clean_stream():
    args = inputs(t=[[0.0, 0.5]])  # a clean stream (t = 0, divided by x_min_t) and a noised one
    head = build(prediction="v")(**args)  # the same weights: the output head's raw prediction
    out = build(prediction="x", x_min_t=0.05)(**args)
    t = torch.tensor([0.05, 0.5])[None, :, None, None, None, None]
    assert torch.allclose(out, (args["x"] - head) / t, rtol=1e-5, atol=1e-5)
    at_init = build(perturb=False, prediction="x")(**args)  # x̂_0 = 0 at init, so v = x_t / t
    assert torch.allclose(at_init, args["x"] / t)


@pytest.mark.parametrize("switcher, changes", [("none", False), ("adaln", True), ("token", True)])
def test_modality_id_reaches_the_output_only_through_the_switcher(switcher, changes):
    model = build(switcher=switcher)
    depth, flow = inputs(), inputs()
    flow["modality"] = torch.tensor([[RGB, FLOW]])  # both auxiliary: same context under dual
    assert close(model(**depth), model(**flow)) != changes


def test_shared_layout_is_symmetric_in_its_streams():
    model = build(layout="shared")
    same = inputs(modality=((DEPTH, DEPTH),), t=[[0.3, 0.3]])
    for key in ("x", "prompt", "prompt_mask"):
        same[key][:, 1] = same[key][:, 0]
    out = model(**same)
    assert close(out[:, 0], out[:, 1])

    two = inputs(modality=((RGB, DEPTH),), t=[[0.0, 0.7]])
    swapped = {k: v.flip(1) if k in ("x", "modality", "t", "prompt", "prompt_mask") else v for k, v in two.items()}
    assert close(model(**swapped), model(**two).flip(1))


@pytest.mark.parametrize("layout", ["width", "time"])
def test_width_and_time_layouts_offset_the_streams(layout):
    shared, offset = build(layout="shared"), build(layout=layout)
    offset.load_state_dict(shared.state_dict())
    same = inputs(modality=((DEPTH, DEPTH),), t=[[0.3, 0.3]])
    for key in ("x", "prompt", "prompt_mask"):
        same[key][:, 1] = same[key][:, 0]
    out = offset(**same)
    assert not close(out, shared(**same))
    assert not close(out[:, 0], out[:, 1])  # identical streams now sit at different positions


@pytest.mark.parametrize("switcher", ["adaln", "token", "none"])
def test_joint_loss_reaches_every_parameter(switcher):
    model = build(switcher=switcher, num_modalities=6)
    batch = inputs(modality=((RGB, DEPTH), (FLOW, 3), (4, 5)), t=[[0.2, 0.9], [0.5, 0.4], [0.7, 0.1]])
    model(**batch).square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


@pytest.mark.parametrize(
    "switcher, in_context, timesteps, layout",
    list(
        itertools.product(
            ["adaln", "token", "none"],
            ["dual", "caption_only", "none"],
            ["per_stream", "shared"],
            ["shared", "width", "time"],
        )
    ),
)
def test_every_variant_builds_and_trains(switcher, in_context, timesteps, layout):
    model = build(switcher=switcher, in_context=in_context, timesteps=timesteps, layout=layout, depth=1)
    batch = inputs()
    if in_context != "dual":
        batch.update(prompt=None, prompt_mask=None)
    if in_context == "none":
        batch.update(caption=None, caption_mask=None)
    out = model(**batch)
    out.square().mean().backward()
    assert out.shape == batch["x"].shape and torch.isfinite(out).all()


def test_dual_context_caption_for_rgb_prompt_for_the_others():
    model = build(in_context="dual")
    base = inputs(modality=((RGB, DEPTH),))
    rgb_prompt, aux_prompt = inputs(modality=((RGB, DEPTH),)), inputs(modality=((RGB, DEPTH),))
    rgb_prompt["prompt"][:, 0] += 1.0
    aux_prompt["prompt"][:, 1] += 1.0
    assert close(model(**rgb_prompt), model(**base))  # the rgb stream reads the caption, not its prompt
    assert not close(model(**aux_prompt), model(**base))
    caption_only = build(in_context="caption_only")
    assert close(caption_only(**aux_prompt), caption_only(**base))


def test_shared_timesteps_modulate_every_stream_with_the_noised_time():
    per_stream, shared = build(timesteps="per_stream"), build(timesteps="shared")
    clean, nudged = inputs(t=[[0.0, 0.6]]), inputs(t=[[0.1, 0.6]])  # the clean stream's t moves, the max does not
    assert close(shared(**clean), shared(**nudged))
    assert not close(per_stream(**clean), per_stream(**nudged))


def test_empty_context_gives_a_finite_output():
    batch = inputs()
    batch["caption_mask"][:] = False  # e.g. a dropped caption with no tokens left
    assert torch.isfinite(build()(**batch)).all()


def test_grad_checkpointing_gives_the_same_grads():
    grads = []
    for checkpointing in (False, True):
        model = build(grad_checkpointing=checkpointing)
        model(**inputs()).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-7) for n in grads[0])


@pytest.mark.parametrize("attention", ["math", "sdpa"])
def test_bf16_autocast_forward_is_close_to_fp32(attention):
    model = build(attention=attention)
    batch = inputs()
    reference = model(**batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert ((out - reference).norm() / reference.norm()).item() < 0.05


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(x=torch.zeros(1, 2, 3, 4, 8)), r"x must be \[B, S, C=3, T, H, W\], got \(1, 2, 3, 4, 8\)"),
        (dict(x=torch.zeros(1, 2, 3, 5, 8, 8)), r"T, H, W must be multiples of the patch \(2, 4, 4\)"),
        (dict(modality=torch.zeros(2, 2, dtype=torch.long)), r"modality must have shape \[1, 2\], got \(2, 2\)"),
        (dict(caption=torch.zeros(1, 5, 8)), r"caption must have shape \[1, 5, 16\], got \(1, 5, 8\)"),
        (dict(prompt=torch.zeros(1, 3, 3, TEXT_DIM)), r"prompt must have shape \[1, 2, 3, 16\], got \(1, 3, 3, 16\)"),
        (dict(prompt_mask=None), r"prompt_mask must have shape \[1, 2, 3\], got None"),
    ],
)
def test_bad_shapes_name_the_expected_shape(change, message):
    with pytest.raises(ValueError, match=message):
        build(perturb=False)(**{**inputs(), **change})


def test_tiny_config_forward_backward_at_the_cpu_default_size():
    config = OmegaConf.to_object(load("configs/model/tiny.yaml").model)
    model = UnityDiT(config, in_channels=3, text_dim=config.text_dim)
    b, s, length = 2, 2, config.text_max_tokens
    x = torch.randn(b, s, 3, 16, 64, 64)
    out = model(
        x,
        torch.tensor([[RGB, DEPTH], [RGB, FLOW]]),
        torch.rand(b, s),
        torch.randn(b, length, config.text_dim),
        torch.ones(b, length, dtype=torch.bool),
        torch.randn(b, s, length, config.text_dim),
        torch.ones(b, s, length, dtype=torch.bool),
    )
    out.square().mean().backward()
    assert out.shape == x.shape


def test_tiny_yaml_matches_the_dataclass_defaults():
    assert OmegaConf.to_object(load("configs/model/tiny.yaml").model) == ModelConfig()


@pytest.mark.parametrize(
    "size, low, high", [("tiny", 1e6, 5e6), ("small", 100e6, 160e6), ("base", 1.3e9, 1.5e9), ("large", 4.5e9, 5.5e9)]
)
def test_model_sizes_load_and_have_their_parameter_counts(size, low, high):
    config = OmegaConf.to_object(load(f"configs/model/{size}.yaml").model)
    assert low < summarize(config, channels=3 if size == "tiny" else 16)["params"] < high
