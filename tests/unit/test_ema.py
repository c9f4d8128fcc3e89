"""The EMA: the update rule, fp32 averages of low-precision models, buffers, tied weights, copy_to."""

import pytest
import torch
import torch.nn as nn

from unity.train.ema import EMA


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))


def perturb(model: nn.Module) -> None:
    """Stand-in for an optimizer step plus a forward pass that moves the BatchNorm statistics."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()(torch.randn(16, 4))


def test_one_update_is_decay_times_average_plus_the_rest_times_param():
    model = small_model()
    ema = EMA(model, decay=0.9)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    perturb(model)
    ema.update(model)
    after = ema.state_dict()
    for name, param in model.named_parameters():
        torch.testing.assert_close(after[name], 0.9 * before[name] + 0.1 * param.detach())
    for name, buffer in model.named_buffers():  # running stats and the batch counter are copied, not averaged
        assert torch.equal(after[name], buffer)
    assert not torch.equal(after["1.running_mean"], before["1.running_mean"])


def test_copy_to_puts_the_average_in_a_model():
    model = small_model()
    ema = EMA(model, decay=0.5)
    for _ in range(3):
        perturb(model)
        ema.update(model)
    target = small_model()
    ema.copy_to(target)
    for name, value in target.state_dict().items():
        assert torch.equal(value, ema.state_dict()[name].to(value.dtype))
    assert not torch.equal(target[0].weight, model[0].weight)


def test_bf16_model_keeps_an_fp32_average_that_still_moves():
    model = nn.Linear(64, 64).to(torch.bfloat16)
    ema = EMA(model, decay=0.999)
    assert all(v.dtype == torch.float32 for k, v in ema.state_dict().items())
    start = ema.state_dict()["weight"].clone()
    with torch.no_grad():
        model.weight.add_(0.5)
    for _ in range(10):
        ema.update(model)
    moved = ema.state_dict()["weight"] - start
    expected = (1 - 0.999**10) * (model.weight.float() - start)  # ~1% of the gap: lost to rounding in bf16
    torch.testing.assert_close(moved, expected, rtol=1e-4, atol=1e-6)
    copy = nn.Linear(64, 64).to(torch.bfloat16)
    ema.copy_to(copy)
    assert copy.weight.dtype == torch.bfloat16


def test_frozen_parameters_are_copied_and_tied_weights_stay_tied():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # tied input / output embedding
    model[0].requires_grad_(False)
    model.add_module("head", nn.Linear(4, 4))
    ema = EMA(model, decay=0.9)
    assert list(ema.averaged) == ["head.weight", "head.bias"]
    state = ema.state_dict()
    assert state.keys() == model.state_dict().keys()
    assert state["0.weight"] is state["1.weight"]
    with torch.no_grad():
        model[0].weight.mul_(2)  # a frozen weight that changes anyway is followed exactly
    ema.update(model)
    assert torch.equal(ema.state_dict()["1.weight"], model[0].weight)


def test_load_state_dict_round_trips_and_rejects_another_model():
    model = small_model()
    ema = EMA(model, decay=0.9)
    perturb(model)
    ema.update(model)
    other = EMA(small_model(), decay=0.9)
    other.load_state_dict({k: v.clone() for k, v in ema.state_dict().items()})
    for name, value in ema.state_dict().items():
        assert torch.equal(other.state_dict()[name], value)
    wrong = EMA(nn.Sequential(nn.Linear(4, 16)), decay=0.9)
    with pytest.raises(ValueError, match=r"0\.weight: checkpoint \[8, 4\] vs model \[16, 4\]"):
        wrong.load_state_dict(ema.state_dict())


def test_decay_out_of_range():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(2, 2), decay=1.0)
