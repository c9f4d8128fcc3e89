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


def test_warmup_decay_follows_diffusers_formula_and_is_capped():
    ema = EMA(nn.Linear(2, 2), decay=0.999, warmup=True, power=2 / 3, inv_gamma=1.0)
    decays = []
    for _ in range(5):
        decays.append(ema.current_decay())
        ema.update(nn.Linear(2, 2))
    # diffusers' EMAModel.get_decay for optimization steps 1..5: 0, then 1 - (1 + step) ** -power
    assert decays == pytest.approx([0.0] + [1 - (1 + n) ** (-2 / 3) for n in range(1, 5)])
    ema.updates = 10**6
    assert ema.current_decay() == 0.999  # the cap: the configured decay
    assert EMA(nn.Linear(2, 2), decay=0.9).current_decay() == 0.9  # no warm-up: the decay from the start


def test_warmup_forgets_the_initial_weights_where_a_fixed_decay_does_not():
    """After 1,000 updates a fixed 0.999 still holds 0.999^1000 = 37% of the random initialisation."""
    start = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        start.weight.fill_(1.0)
    trained = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        trained.weight.fill_(0.0)  # every step's weights are 0: what remains of 1 is the initialisation's share
    fixed, warm = EMA(start, decay=0.999), EMA(start, decay=0.999, warmup=True)
    for _ in range(1000):
        fixed.update(trained)
        warm.update(trained)
    assert fixed.state_dict()["weight"].item() == pytest.approx(0.999**1000, rel=1e-3)  # 0.368
    assert warm.state_dict()["weight"].item() == 0.0  # the first update copies the weights


def test_warmup_position_and_average_resume_exactly():
    model = small_model()
    ema = EMA(model, decay=0.99, warmup=True, power=0.75)
    for _ in range(3):
        perturb(model)
        ema.update(model)
    resumed = EMA(small_model(), decay=0.99, warmup=True, power=0.75)
    resumed.load_state_dict({k: v.clone() for k, v in ema.state_dict().items()})
    resumed.updates = ema.updates  # what restore_ema does from the checkpoint's state.json
    for _ in range(3):
        perturb(model)
        ema.update(model)
        resumed.update(model)
    for name, value in ema.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value)
    fresh = EMA(small_model(), decay=0.99, warmup=True, power=0.75)  # the count lost: the decays differ
    fresh.load_state_dict({k: v.clone() for k, v in ema.state_dict().items()})
    perturb(model)
    ema.update(model)
    fresh.update(model)
    assert not torch.equal(fresh.state_dict()["0.weight"], ema.state_dict()["0.weight"])
