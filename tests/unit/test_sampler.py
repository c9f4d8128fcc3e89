"""The Euler and Heun samplers and classifier-free guidance on toy models whose velocity field is known
exactly, and on a small UnityDiT."""

import pytest
import torch

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.method.sampler import sample, time_grid

SHAPE = (2, 2, 3, 2, 4, 4)  # [B, S, C, T, H, W]
GENERATE = torch.tensor([[False, True], [True, False]])  # estimate stream 1 of sample 0, generate stream 0 of sample 1
MODALITY = torch.tensor([[0, 1], [0, 2]])


class CopyModel:
    """Data concentrated at the other stream's value ``y``: the exact velocity is ``(x_t - y) / t``.

    Rectified-flow paths to a point are straight, so Euler recovers ``y`` with any number of steps.
    Every call is recorded; context streams get a velocity of NaN, which must never reach them.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, x, modality, t, *text):
        self.calls.append((x.clone(), t.clone()))
        y = x.flip(1)  # [B, S, ...]: each stream's partner
        tb = t[:, :, None, None, None, None]
        return torch.where(tb > 0, (x - y) / tb, float("nan"))


class GaussianModel:
    """Exact velocity ``E[ε - x0 | x_t]`` for data ``x0 ~ N(mu, sigma²)`` in every element.

    Its ODE maps the noise ``z`` to ``mu + sigma z`` at t = 0; its value at t = 1 is ``z - mu``.
    """

    def __init__(self, mu=0.7, sigma=0.3):
        self.mu, self.sigma = mu, sigma

    def __call__(self, x, modality, t, *text):
        t = t[:, :, None, None, None, None]
        var = (1 - t) ** 2 * self.sigma**2 + t**2  # variance of x_t
        centred = x - (1 - t) * self.mu
        x0_mean = self.mu + (1 - t) * self.sigma**2 * centred / var
        return t * centred / var - x0_mean


def clean_and_noise(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g, dtype=torch.float64), torch.randn(SHAPE, generator=g, dtype=torch.float64)


def test_time_grid_runs_from_noise_to_data_and_shift_spends_steps_near_noise():
    grid = time_grid(4)
    assert torch.allclose(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64))
    shifted = time_grid(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0 and (shifted.diff() < 0).all() and (shifted >= grid).all()
    with pytest.raises(ValueError, match="at least 1"):
        time_grid(0)


@pytest.mark.parametrize("steps, shift", [(1, 1.0), (7, 1.0), (7, 3.0)])
def test_point_data_is_recovered_and_context_streams_are_held(steps, shift):
    x_clean, noise = clean_and_noise()
    model = CopyModel()
    x = sample(model, x_clean, GENERATE, MODALITY, steps=steps, shift=shift, noise=noise)
    assert torch.equal(x[~GENERATE], x_clean[~GENERATE])  # bit for bit
    assert torch.allclose(x[0, 1], x_clean[0, 0]) and torch.allclose(x[1, 0], x_clean[1, 1])

    grid = time_grid(steps, shift)
    assert len(model.calls) == steps
    assert torch.equal(model.calls[0][0][GENERATE], noise[GENERATE])  # starts at pure noise
    for (x_in, t), t_now in zip(model.calls, grid[:-1]):
        assert torch.equal(x_in[~GENERATE], x_clean[~GENERATE])
        assert torch.equal(t[~GENERATE], torch.zeros(2)) and torch.allclose(t[GENERATE], t_now.float().expand(2))


def test_euler_converges_to_the_exact_ode_solution_for_gaussian_data():
    x_clean, z = clean_and_noise()
    model = GaussianModel()
    exact = model.mu + model.sigma * z
    errors = [
        (sample(model, x_clean, GENERATE, MODALITY, steps=n, noise=z) - exact)[GENERATE].abs().max().item()
        for n in (4, 32, 256)
    ]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-2
    assert errors[1] / errors[2] > 6  # first order: 8 times the steps, about an eighth of the error
    shifted = sample(model, x_clean, GENERATE, MODALITY, steps=256, shift=3.0, noise=z)
    assert torch.allclose(shifted[GENERATE], exact[GENERATE], atol=2e-2)


def test_one_step_is_the_posterior_mean():
    x_clean, z = clean_and_noise()
    model = GaussianModel()
    x = sample(model, x_clean, GENERATE, MODALITY, steps=1, noise=z)
    ones = GENERATE.double()
    assert torch.allclose(x[GENERATE], (z - model(z, MODALITY, ones))[GENERATE])  # x_1 - v(x_1, 1)
    assert torch.allclose(x[GENERATE], torch.full_like(x[GENERATE], model.mu))  # E[x0 | x_1] = mu


def test_noise_comes_from_the_generator():
    x_clean, _ = clean_and_noise()
    x_clean = x_clean.float()
    runs = [
        sample(GaussianModel(), x_clean, GENERATE, MODALITY, steps=3, generator=torch.Generator().manual_seed(s))
        for s in (5, 5, 6)
    ]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_samples_with_a_small_unity_dit():
    torch.manual_seed(0)
    config = ModelConfig(hidden=32, depth=1, heads=2, patch=[1, 2, 2], attention="math", in_context="caption_only")
    model = UnityDiT(config, in_channels=3, text_dim=8).eval()
    x_clean = torch.randn(SHAPE)
    caption, caption_mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    x = sample(
        model,
        x_clean,
        GENERATE,
        MODALITY,
        steps=2,
        generator=torch.Generator().manual_seed(0),
        caption=caption,
        caption_mask=caption_mask,
    )
    assert x.shape == SHAPE and torch.isfinite(x).all()
    assert torch.equal(x[~GENERATE], x_clean[~GENERATE])


def test_heun_is_second_order_and_beats_euler_at_equal_model_calls():
    x_clean, z = clean_and_noise()
    model = GaussianModel()
    exact = model.mu + model.sigma * z

    def error(steps, method):
        x = sample(model, x_clean, GENERATE, MODALITY, steps=steps, method=method, noise=z)
        return (x - exact)[GENERATE].abs().max().item()

    assert error(8, "heun") / error(32, "heun") > 12  # second order: 4 times the steps, ~1/16 of the error
    assert error(8, "heun") < error(15, "euler")  # 15 model calls each (Heun's last step is a plain Euler step)
    x = sample(CopyModel(), x_clean, GENERATE, MODALITY, steps=3, method="heun", noise=z)
    assert torch.equal(x[~GENERATE], x_clean[~GENERATE])
    with pytest.raises(ValueError, match="unknown sampler method 'rk4'"):
        sample(model, x_clean, GENERATE, MODALITY, method="rk4")


class CaptionModel:
    """A constant velocity equal to the caption tensor: guidance acts on it linearly."""

    def __call__(self, x, modality, t, caption):
        return torch.full_like(x, 1.0) * caption


def test_classifier_free_guidance_extrapolates_from_the_unconditional_velocity():
    x_clean, z = clean_and_noise()
    cond, uncond = {"caption": torch.tensor(2.0)}, {"caption": torch.tensor(0.5)}
    # One Euler step from t = 1 to 0 subtracts the guided velocity v_u + s (v_c - v_u) from the noise.
    for scale in (1.0, 3.0):
        x = sample(
            CaptionModel(), x_clean, GENERATE, MODALITY, steps=1, noise=z, cfg_scale=scale, uncond=uncond, **cond
        )
        guided = 0.5 + scale * (2.0 - 0.5)
        assert torch.allclose(x[GENERATE], z[GENERATE] - guided)
    with pytest.raises(ValueError, match="needs the unconditional inputs"):
        sample(CaptionModel(), x_clean, GENERATE, MODALITY, cfg_scale=2.0, **cond)
