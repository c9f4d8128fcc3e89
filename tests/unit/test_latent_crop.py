"""Crops of precomputed latents: windows of latent cells on the codec's grid, the same for every stream,
random for training (from the first frame for a causal video VAE), the first frames and the centre for
validation, and a clear refusal of latents smaller than the window."""

import numpy as np
import pytest
import safetensors.torch
import torch

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.loader import make_loader
from data_pipeline.precomputed import LatentCrop
from models.config import ModelConfig
from unity.train.precompute import precompute

from shard_set import FRAMES, SIDE, write_set


def windows(crop: LatentCrop, shape, draws: int = 200) -> set[tuple[int, int, int]]:
    return {tuple(s.start for s in crop.window(shape, np.random.default_rng(i))) for i in range(draws)}


def test_training_windows_cover_every_grid_offset_and_start_at_the_first_frame_when_causal():
    shape = [4, 3, 8, 10]  # [C, T', H', W']
    causal = windows(LatentCrop((2, 4, 4)), shape)
    assert causal == {(0, top, left) for top in range(5) for left in range(7)}
    free = windows(LatentCrop((2, 4, 4), causal=False), shape)
    assert {t for t, _, _ in free} == {0, 1}  # a codec without temporal compression: any window in time


def test_validation_window_is_fixed_first_frames_and_centre():
    crop = LatentCrop((2, 4, 4), random=False, causal=False)
    assert windows(crop, [4, 3, 8, 10], draws=5) == {(0, 2, 3)}
    assert windows(crop, [4, 2, 4, 4], draws=5) == {(0, 0, 0)}  # the whole latent: nothing cut


def test_latents_smaller_than_the_window_are_refused():
    with pytest.raises(ValueError, match=r"latents \[2, 8, 8\] \(T', H', W'\) are smaller than the \[3, 4, 4\]"):
        LatentCrop((3, 4, 4)).window([4, 2, 8, 8], np.random.default_rng(0))


@pytest.fixture(scope="module")
def pixel_latents(tmp_path_factory):
    """A precomputed set of the pixel codec: its latents are the clips in [-1, 1], so a crop is checkable."""
    folder = tmp_path_factory.mktemp("crop")
    write_set(folder / "pixels", 4, 2)
    precompute(str(folder / "pixels"), str(folder / "latent"), ModelConfig(text_dim=16, text_layers=1), progress=False)
    stored = {}
    for path in list_shards(str(folder / "latent"))[0]:
        for key, members in iter_samples(path):
            stored[key] = {
                m: safetensors.torch.load(members[f"latent.{m}.safetensors"])["latent"].float()
                for m in ("rgb", "depth")
            }
    return str(folder / "latent"), stored


def test_loader_cuts_one_grid_window_per_sample_for_every_stream(pixel_latents):
    root, stored = pixel_latents
    assert stored["s000"]["rgb"].shape == (3, FRAMES, SIDE, SIDE)
    crop = LatentCrop((4, 16, 16), causal=False)
    loader = make_loader(root, ["depth"], 2, precomputed=True, latent_crop=crop, shuffle_buffer=0, seed=3)
    offsets, batches = set(), list(loader)
    for batch in batches:
        for b, key in enumerate(batch["key"]):
            window = batch["latent"]["rgb"][b]
            assert window.shape == (3, 4, 16, 16)
            found = [
                (t, y, x)
                for t in range(FRAMES - 3)
                for y in range(SIDE - 15)
                for x in range(SIDE - 15)
                if torch.equal(stored[key]["rgb"][:, t : t + 4, y : y + 16, x : x + 16], window)
            ]
            assert len(found) == 1, key  # every pixel of the set says where it is: one window fits
            t, y, x = found[0]
            assert torch.equal(batch["latent"]["depth"][b], stored[key]["depth"][:, t : t + 4, y : y + 16, x : x + 16])
            offsets.add(found[0])
    assert len(offsets) > 1  # random windows, not one fixed place
    again = make_loader(root, ["depth"], 2, precomputed=True, latent_crop=crop, shuffle_buffer=0, seed=3)
    assert all(torch.equal(a["latent"]["rgb"], b["latent"]["rgb"]) for a, b in zip(batches, again))  # seeded


def test_a_crop_without_precomputed_latents_is_refused(pixel_latents):
    with pytest.raises(ValueError, match="latent_crop applies to precomputed latents only"):
        make_loader(pixel_latents[0], ["depth"], 2, latent_crop=LatentCrop((4, 16, 16)))
