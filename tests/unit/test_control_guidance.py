"""Per-control weights: compositional classifier-free guidance over the given streams, on a toy model whose
velocity is a known sum of one pull per control."""

import pytest
import torch

from unity.method.sampler import sample, without_stream

B, S = 2, 4  # streams: rgb (generated), depth, pose, flow (given)
SHAPE = (B, S, 1, 1, 2, 2)  # [B, S, C, T, H, W]
GENERATE = torch.tensor([[True, False, False, False]] * B)
MODALITY = torch.tensor([[0, 1, 4, 2]] * B)
STRENGTH = {1: 1.0, 4: 10.0, 2: 100.0}  # each modality's pull


class PullModel:
    """Every generated stream's velocity is the sum of ``STRENGTH[m] · x_m`` over the given streams it sees,
    so leaving a control out removes exactly its term. Records the streams and prompt rows of each call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, modality, t, prompt=None, prompt_mask=None):
        self.calls.append((modality[0].tolist(), None if prompt is None else prompt.shape[1]))
        given = (t == 0)[:, :, None, None, None, None]
        weights = torch.tensor([[STRENGTH.get(m, 0.0) for m in row] for row in modality.tolist()], dtype=x.dtype)
        pull = (torch.where(given, x, 0.0) * weights[:, :, None, None, None, None]).sum(1, keepdim=True)
        return torch.where(given, float("nan"), pull.expand_as(x))


def run(weights, model=None):
    g = torch.Generator().manual_seed(0)
    x_clean, noise = (torch.randn(SHAPE, generator=g, dtype=torch.float64) for _ in range(2))
    model = model or PullModel()
    prompt = torch.zeros(B, S, 3, 8)
    out = sample(
        model, x_clean, GENERATE, MODALITY, steps=1, noise=noise, control_weights=weights, prompt=prompt,
        prompt_mask=prompt.bool()[..., 0],
    )  # fmt: skip
    return out, x_clean, noise, model


def test_each_control_is_weighed_by_its_own_scale():
    out, x_clean, noise, model = run({1: 1.5, 3: 0.0})  # depth (stream 1) stronger, flow (3) left out
    expected = 1.5 * 1.0 * x_clean[:, 1] + 1.0 * 10.0 * x_clean[:, 2] + 0.0 * 100.0 * x_clean[:, 3]
    assert torch.allclose(out[:, 0], noise[:, 0] - expected)  # one Euler step from t = 1 to 0: x_0 = z - v
    assert torch.equal(out[:, 1:], x_clean[:, 1:])  # the controls are held
    # one call with every stream, then one per weighted control without it (and its prompt row)
    assert model.calls == [([0, 1, 4, 2], 4), ([0, 4, 2], 3), ([0, 1, 4], 3)]


def test_weights_of_one_cost_nothing_and_change_nothing():
    plain, *_ = run(None)
    ones, _, _, model = run({1: 1.0, 2: 1.0, 3: 1.0})
    assert torch.equal(plain, ones) and len(model.calls) == 1
    zero, x_clean, noise, _ = run({1: 0.0, 2: 0.0, 3: 0.0})  # every control removed: no pull at all
    assert torch.allclose(zero[:, 0], noise[:, 0])


def test_a_weight_on_a_generated_stream_is_refused():
    with pytest.raises(ValueError, match="given \\(clean\\) streams; stream 0"):
        run({0: 2.0})
    with pytest.raises(ValueError, match="stream 7"):
        run({7: 2.0})


def test_without_stream_drops_only_per_stream_inputs():
    inputs = {
        "caption": torch.zeros(2, 5, 8),
        "prompt": torch.arange(4.0)[None, :, None].expand(2, 4, 3),
        "layout": None,
    }
    out = without_stream(inputs, 1, 4)
    assert out["caption"].shape == (2, 5, 8) and out["layout"] is None
    assert out["prompt"][0, :, 0].tolist() == [0.0, 2.0, 3.0]
