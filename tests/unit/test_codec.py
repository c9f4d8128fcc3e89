"""Codecs: the pixel round trip, and a tiny random diffusers Wan VAE loaded from a local folder."""

import sys

import pytest
import torch

from models.codec import build_codec
from models.config import ModelConfig

LATENTS_MEAN, LATENTS_STD = [0.1, -0.2, 0.3, 0.0], [1.5, 0.5, 2.0, 1.0]


def random_video(batch=2, frames=5, height=32, width=24, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, height, width, 3), generator=g, dtype=torch.uint8)


def test_pixel_round_trip_is_exact():
    codec = build_codec(ModelConfig(codec="pixel"))
    video = random_video()
    z = codec.encode(video)
    assert z.shape == (2, 3, 5, 32, 24) == (2, *codec.latent_shape(5, 32, 24)) and z.dtype == torch.float32
    assert z.min() >= -1 and z.max() <= 1
    assert torch.equal(codec.encode_normalized(z), z)
    assert torch.equal(codec.decode(z), video)
    assert torch.equal(codec.decode(z.half()), video)  # float16 storage keeps every uint8 level


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A randomly initialised AutoencoderKLWan: 4 latent channels, 4x in space and time."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        latents_mean=LATENTS_MEAN,
        latents_std=LATENTS_STD,
    )
    folder = tmp_path_factory.mktemp("wan") / "vae"
    vae.save_pretrained(folder)
    return folder


def test_diffusers_latent_shape_agrees_with_encode(wan_folder):
    codec = build_codec(ModelConfig(codec="diffusers", codec_path=str(wan_folder)))
    assert codec.channels == 4 and (codec.temporal, codec.spatial) == (4, 4)
    for frames, height, width in ((5, 32, 24), (9, 16, 40), (1, 8, 8)):
        z = codec.encode(random_video(1, frames, height, width))
        assert z.shape[1:] == codec.latent_shape(frames, height, width), (frames, height, width)
    assert codec.latent_shape(81, 480, 832) == (4, 21, 120, 208)


def test_diffusers_latents_are_the_normalised_posterior_mean(wan_folder):
    codec = build_codec(ModelConfig(codec="diffusers", codec_path=str(wan_folder.parent)))  # the pipeline folder
    video = random_video()
    z = codec.encode(video)
    x = video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1
    with torch.no_grad():
        raw = codec.vae.encode(x).latent_dist.mean
    mean, std = torch.tensor(LATENTS_MEAN).view(1, 4, 1, 1, 1), torch.tensor(LATENTS_STD).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, (raw - mean) / std)
    assert torch.equal(codec.encode(video), z)  # deterministic
    assert torch.equal(codec.encode_normalized(x), z)


def test_diffusers_decode_returns_uint8_clips(wan_folder):
    codec = build_codec(ModelConfig(codec="diffusers", codec_path=str(wan_folder)))
    video = random_video()
    out = codec.decode(codec.encode(video))
    assert out.shape == video.shape and out.dtype == torch.uint8


def test_diffusers_codec_is_frozen(wan_folder):
    codec = build_codec(ModelConfig(codec="diffusers", codec_path=str(wan_folder)))
    codec.train()
    assert not codec.training and not codec.vae.training
    assert not any(p.requires_grad for p in codec.parameters())


def test_missing_vae_folder_says_what_to_download(tmp_path):
    for path in ("", str(tmp_path)):
        with pytest.raises(FileNotFoundError, match="Wan-AI/Wan2.1-T2V-1.3B-Diffusers' vae/.*model.codec_path"):
            build_codec(ModelConfig(codec="diffusers", codec_path=path))


def test_vae_without_latent_statistics_is_scaled_by_its_scaling_factor(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLHunyuanVideo(
        block_out_channels=(8, 8, 8),
        layers_per_block=1,
        norm_num_groups=4,
        latent_channels=4,
        down_block_types=("HunyuanVideoDownBlock3D",) * 3,
        up_block_types=("HunyuanVideoUpBlock3D",) * 3,
        spatial_compression_ratio=4,
        temporal_compression_ratio=4,
        scaling_factor=0.5,
    )
    vae.save_pretrained(tmp_path)
    codec = build_codec(ModelConfig(codec="diffusers", codec_path=str(tmp_path)))
    video = random_video(1, 5, 16, 12)
    z = codec.encode(video)
    assert z.shape[1:] == codec.latent_shape(5, 16, 12) == (4, 2, 4, 3)
    with torch.no_grad():
        raw = vae.encode(video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1).latent_dist.mean
    torch.testing.assert_close(z, raw * 0.5)


def test_missing_diffusers_says_how_to_install(wan_folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # makes `import diffusers` fail
    with pytest.raises(ImportError, match=r"pip install -e '\.\[hf\]'"):
        build_codec(ModelConfig(codec="diffusers", codec_path=str(wan_folder)))
