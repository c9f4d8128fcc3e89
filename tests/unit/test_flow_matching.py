"""Rectified flow over streams: noising, target, the masked loss and time sampling."""

import torch

from unity.method.flow_matching import flow_matching_loss, noise_streams, resolution_shift, sample_t, shift_time

SHAPE = (3, 2, 3, 2, 4, 4)  # [B, S, C, T, H, W]
NOISED = torch.tensor([[True, False], [False, True], [True, True]])  # cond, est, joint


def streams(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)


def test_noised_streams_interpolate_from_data_at_0_to_noise_at_1():
    x0, noise = streams()
    for value, expected in ((0.0, x0), (1.0, noise)):
        x_t, t_streams, _ = noise_streams(x0, NOISED, torch.full((3,), value), noise)
        assert torch.allclose(x_t[NOISED], expected[NOISED])
        assert torch.equal(t_streams, NOISED.float() * value)
    x_t, _, _ = noise_streams(x0, NOISED, torch.full((3,), 0.25), noise)
    assert torch.allclose(x_t[NOISED], (0.75 * x0 + 0.25 * noise)[NOISED])


def test_clean_streams_are_untouched_and_at_time_zero():
    x0, noise = streams()
    t = torch.tensor([0.3, 0.6, 0.9])
    x_t, t_streams, target = noise_streams(x0, NOISED, t, noise)
    assert torch.equal(x_t[~NOISED], x0[~NOISED])  # bit for bit
    assert torch.equal(t_streams, torch.tensor([[0.3, 0.0], [0.0, 0.6], [0.9, 0.9]]))
    assert torch.equal(target, noise - x0)


def test_per_stream_times():
    x0, noise = streams()
    t = torch.tensor([[0.2, 0.7], [0.4, 0.5], [0.1, 0.8]])
    x_t, t_streams, _ = noise_streams(x0, NOISED, t, noise)
    assert torch.equal(t_streams, torch.where(NOISED, t, 0.0))
    assert torch.allclose(x_t[2, 1], 0.2 * x0[2, 1] + 0.8 * noise[2, 1])


def test_loss_is_mse_over_noised_streams_only():
    x0, noise = streams()
    target = noise - x0
    v_pred = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    loss = flow_matching_loss(v_pred, target, NOISED)
    sq = (v_pred - target).square()
    assert loss.shape == (3,)
    assert torch.allclose(loss, torch.stack([sq[0, 0].mean(), sq[1, 1].mean(), sq[2].mean()]))

    changed = v_pred.clone()
    changed[~NOISED] = float("nan")  # a clean stream's prediction cannot reach the loss
    changed.requires_grad_(True)
    loss2 = flow_matching_loss(changed, target, NOISED)
    assert torch.equal(loss2.detach(), loss)
    loss2.sum().backward()
    assert torch.isfinite(changed.grad).all() and torch.equal(changed.grad[~NOISED], torch.zeros_like(x0[~NOISED]))


def test_loss_of_a_sample_without_noised_streams_is_zero():
    x0, noise = streams()
    loss = flow_matching_loss(noise, x0, torch.zeros(3, 2, dtype=torch.bool))
    assert torch.equal(loss, torch.zeros(3))


def test_sample_t_in_open_interval_deterministic_and_shifted_towards_noise():
    t = sample_t(20000, torch.Generator().manual_seed(0))
    assert t.shape == (20000,) and 0 < t.min() and t.max() < 1
    assert abs(t.median().item() - 0.5) < 0.02  # logit-normal(0, 1) is symmetric about 1/2
    assert torch.equal(t, sample_t(20000, torch.Generator().manual_seed(0)))
    shifted = sample_t(20000, torch.Generator().manual_seed(0), shift=3.0)
    assert 0 < shifted.min() and shifted.max() < 1
    assert (shifted >= t).all() and shifted.mean() > t.mean() + 0.1
    assert abs(shifted.median().item() - 0.75) < 0.02  # shift 3 maps 1/2 to 3/4
    wide = sample_t(20000, torch.Generator().manual_seed(0), mean=1.0, std=0.1)
    assert abs(wide.mean().item() - torch.sigmoid(torch.tensor(1.0)).item()) < 0.01


def test_shift_fixes_the_ends_and_is_monotone():
    t = torch.linspace(0, 1, 101)
    for s in (0.5, 1.0, 3.0):
        out = shift_time(t, s)
        assert out[0] == 0 and out[-1] == 1 and (out.diff() > 0).all()
    assert torch.equal(shift_time(t, 1.0), t)


def test_resolution_shift_grows_with_tokens():
    assert resolution_shift(256) == 1.0
    assert resolution_shift(1024, base_shift=1.5) == 3.0
    shifts = [resolution_shift(n) for n in (16, 64, 256, 1024, 4096)]
    assert shifts == sorted(shifts) and len(set(shifts)) == 5
