"""Validation noise is seeded by names (clip key, task, modality, t), so "same noise" holds across variants."""

import torch

from unity.train.validation import fixed_noise


def test_a_clip_gets_the_same_noise_whatever_its_batch_and_the_other_modalities():
    shape = (3, 2, 3, 2, 4, 4)  # [B, S, C, T, H, W]
    batch = fixed_noise(0, ["a", "b", "c"], shape, "est", "depth", 0.5)
    alone = fixed_noise(0, ["b"], (1, *shape[1:]), "est", "depth", 0.5)
    assert torch.equal(batch[1], alone[0])  # position in the batch does not matter
    assert not torch.equal(batch[0], batch[1])  # clips differ
    assert not torch.equal(fixed_noise(0, ["b"], alone.shape, "est", "flow", 0.5), alone)  # so do modalities
    assert not torch.equal(fixed_noise(0, ["b"], alone.shape, "est", "depth", 0.8), alone)  # and times
    assert not torch.equal(fixed_noise(1, ["b"], alone.shape, "est", "depth", 0.5), alone)  # and run seeds
