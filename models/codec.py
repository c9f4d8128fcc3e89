"""Codecs: map 3-channel uint8 videos to the model's space and back (docs/architecture.md, "The network").

``pixel`` scales to [-1, 1] with no compression; ``diffusers`` wraps a frozen video VAE that
``diffusers`` loads from a local folder (e.g. Wan2.1's ``AutoencoderKLWan``) and normalises its
latents per channel; ``PrecomputedLatents`` stands for a codec whose latents are stored in the
shards. Every codec works on whole clips: ``[B, T, H, W, 3]`` uint8 in, ``[B, C, T', H', W']`` float out.
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn as nn

from models.config import ModelConfig

_VAE_HINT = (
    "download e.g. Wan-AI/Wan2.1-T2V-1.3B-Diffusers' vae/ subfolder (config.json + "
    "diffusion_pytorch_model.safetensors) and set model.codec_path to it "
    "(or to a pipeline folder holding vae/)"
)


def to_unit_range(video: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, T, H, W, 3]`` -> float ``[B, 3, T, H, W]`` in [-1, 1]."""
    return video.permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float ``[B, 3, T, H, W]`` in [-1, 1] -> uint8 ``[B, T, H, W, 3]``, rounded and clamped."""
    return ((x.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()


class Codec(nn.Module):
    """A frozen map between videos and model space, compressing time by ``temporal`` and space by ``spatial``.

    With ``temporal > 1`` the codec is causal in time, as video VAEs are: the first frame is coded
    alone and each further ``temporal`` frames make one latent frame, so ``T' = 1 + (T - 1) // temporal``
    (clips of ``1 + k * temporal`` frames lose none); ``H' = H // spatial``, ``W' = W // spatial``.
    """

    channels: int
    temporal: int = 1
    spatial: int = 1

    def __init__(self):
        super().__init__()
        self.train(False)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, T, H, W, 3]`` -> float32 ``[B, C, T', H', W']``."""
        return self.encode_normalized(to_unit_range(video))

    def encode_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """float ``[B, 3, T, H, W]`` in [-1, 1] (what the loader yields) -> float32 ``[B, C, T', H', W']``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """float ``[B, C, T', H', W']`` -> uint8 ``[B, T, H, W, 3]``."""
        raise NotImplementedError

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T', H', W')`` of the latents of a ``frames x height x width`` clip."""
        t = frames if self.temporal == 1 else 1 + (frames - 1) // self.temporal
        return self.channels, t, height // self.spatial, width // self.spatial

    def train(self, mode: bool = True) -> Codec:
        """Codecs stay in eval mode: they are frozen."""
        return super().train(False)


class PixelCodec(Codec):
    """The identity codec: pixels scaled to [-1, 1], 3 channels, no compression."""

    channels = 3

    def encode_normalized(self, x: torch.Tensor) -> torch.Tensor:
        return x.float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return to_uint8(z)


class DiffusersCodec(Codec):
    """A frozen diffusers video VAE; latents are the posterior mean, normalised per channel.

    Encoding takes the posterior mean rather than a sample so that a clip always maps to the same
    latents (precomputed latents are then reproducible). Normalisation follows the VAE config:
    ``(z - latents_mean) / latents_std`` per channel when it gives them (Wan), else
    ``(z - shift_factor) * scaling_factor``. Clips go through the VAE ``chunk`` at a time
    (``model.codec_batch``) to bound memory.
    """

    def __init__(self, vae: nn.Module, chunk: int = 1):
        super().__init__()
        self.vae = vae.eval().requires_grad_(False)
        self.chunk = chunk
        config = vae.config
        self.channels = int(config.get("z_dim") or config.get("latent_channels"))
        self.temporal, self.spatial = _compression(vae)
        if config.get("latents_mean") is not None and config.get("latents_std") is not None:
            mean, std = torch.tensor(config["latents_mean"]), torch.tensor(config["latents_std"])
        else:
            scale = config.get("scaling_factor") or 1.0
            mean = torch.full((self.channels,), float(config.get("shift_factor") or 0.0))
            std = torch.full((self.channels,), 1.0 / scale)
        if mean.numel() != self.channels or std.numel() != self.channels:
            raise ValueError(
                f"the VAE config gives {mean.numel()} latent means and {std.numel()} stds "
                f"for {self.channels} latent channels"
            )
        self.register_buffer("mean", mean.view(1, -1, 1, 1, 1), persistent=False)  # [1, C, 1, 1, 1]
        self.register_buffer("std", std.view(1, -1, 1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode_normalized(to_unit_range(video.to(self.device)))  # move the uint8 clip, 4x smaller

    @torch.no_grad()
    def encode_normalized(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype)
        z = torch.cat([self.vae.encode(part).latent_dist.mode() for part in x.split(self.chunk)])
        return (z.float() - self.mean) / self.std

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = (z.to(self.device).float() * self.std + self.mean).to(self.dtype)
        return to_uint8(torch.cat([self.vae.decode(part).sample for part in z.split(self.chunk)]))


class PrecomputedLatents(Codec):
    """Stands for latents stored in the shards (``python -m unity.precompute``): carries the channels and
    compression of the codec that made them and refuses to encode or decode, which needs that codec itself.

    Training from such shards needs nothing else of the codec, so its weights need not be present.
    """

    def __init__(self, channels: int, temporal: int, spatial: int, made_by: str):
        super().__init__()
        self.channels, self.temporal, self.spatial = channels, temporal, spatial
        self.made_by = made_by  # the codec that made the latents, in words, for the error message

    def encode_normalized(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"these latents were precomputed by {self.made_by}; build that codec to encode pixels")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError(f"these latents were precomputed by {self.made_by}; build that codec to decode them")


def _compression(vae: nn.Module) -> tuple[int, int]:
    """``(temporal, spatial)`` compression of a diffusers video VAE, from its architecture."""
    config = vae.config
    if "temperal_downsample" in config:  # Wan: one 2x spatial step per level, 2x in time where flagged
        spatial = 2 ** (len(config["dim_mult"]) - 1) * (config.get("patch_size") or 1)
        return 2 ** sum(config["temperal_downsample"]), spatial
    temporal = getattr(vae, "temporal_compression_ratio", None) or config.get("temporal_compression_ratio")
    spatial = getattr(vae, "spatial_compression_ratio", None) or config.get("spatial_compression_ratio")
    if not temporal or not spatial:
        raise ValueError(
            f"cannot tell the temporal and spatial compression of {type(vae).__name__}; "
            "it does not look like a video VAE"
        )
    return int(temporal), int(spatial)


def vae_folder(path: str) -> str:
    """The VAE folder at ``path`` or its ``vae/`` subfolder; a clear error when there is none."""
    for folder in (path, os.path.join(path, "vae")):
        if path and os.path.isfile(os.path.join(folder, "config.json")):
            return folder
    raise FileNotFoundError(f"model.codec_path {path!r} is not a diffusers VAE folder: {_VAE_HINT}")


def load_vae(path: str, dtype: torch.dtype | None = None) -> nn.Module:
    """The diffusers VAE in the local folder ``path``, its class named by the config's ``_class_name``."""
    try:
        import diffusers
    except ImportError:
        raise ImportError("codec=diffusers needs the diffusers package: pip install -e '.[hf]'") from None
    folder = vae_folder(path)
    with open(os.path.join(folder, "config.json")) as f:
        name = json.load(f).get("_class_name", "")
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"{folder}/config.json names class {name!r}, which diffusers {diffusers.__version__} lacks")
    return cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype or torch.float32)


def build_codec(config: ModelConfig, device=None, dtype: torch.dtype | None = None) -> Codec:
    """The codec named by ``config.codec``, frozen, on ``device``.

    ``dtype`` is the VAE's weight dtype (float32 by default); latents come out float32 either way.
    """
    if config.codec == "pixel":
        codec = PixelCodec()
    elif config.codec == "diffusers":
        codec = DiffusersCodec(load_vae(config.codec_path, dtype), chunk=config.codec_batch)
    else:
        raise ValueError(f"unknown codec {config.codec!r}; choose pixel or diffusers")
    return codec.to(device) if device is not None else codec
