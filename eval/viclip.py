"""ViCLIP ViT-L/14 (InternVid, Wang et al., 2023), the video-text model of VBench's overall consistency.

No maintained library ships ViCLIP's video tower, so it is written here; its text tower is
open_clip's ``TextTransformer`` (CLIP's text transformer with a 32-token context) and its tokenizer
open_clip's ``SimpleTokenizer`` (CLIP's BPE, whose vocabulary open_clip bundles). Parameter names
follow the published ``ViClip-InternVid-10M-FLT.pth`` (``vision_encoder.*``, ``text_encoder.*``,
``temp``), so its ``model`` state dict loads strictly.

The video tower is a CLIP ViT-L/14 whose patch embedding is a 3D convolution of temporal kernel 1:
every frame is cut into patches, each patch token gets its spatial embedding and then a learnt
embedding of its frame, and one transformer attends over all patches of all frames (and one class
token) at once; the class token, normalised and projected, is the video's embedding.
"""

from __future__ import annotations

import torch
from torch import nn

from eval.vbench_models import WeightsError

CONTEXT_LENGTH = 32  # ViCLIP's text context (max_txt_l)
NUM_FRAMES = 8  # frames per video, and the length of the temporal embedding


def _open_clip():
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError("ViCLIP needs open-clip-torch: pip install -e '.[vbench]'") from exc
    return open_clip


class VideoTower(nn.Module):
    """``[B, 3, T, H, W]`` in CLIP's normalisation -> ``[B, output_dim]`` (not normalised)."""

    def __init__(
        self, image_size=224, patch_size=14, width=1024, layers=24, heads=16, output_dim=768, frames=NUM_FRAMES
    ):
        super().__init__()
        oc = _open_clip()
        scale = width**-0.5
        self.conv1 = nn.Conv3d(3, width, (1, patch_size, patch_size), (1, patch_size, patch_size), bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((image_size // patch_size) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.temporal_positional_embedding = nn.Parameter(scale * torch.randn(1, frames, width))
        self.transformer = oc.transformer.Transformer(
            width, layers, heads, act_layer=oc.transformer.QuickGELU, norm_layer=nn.LayerNorm
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.conv1(video)  # [B, D, T, h, w]
        b, d, t, h, w = x.shape
        x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, d)  # [B*T, N, D]
        cls = self.class_embedding.to(x.dtype) + torch.zeros(b * t, 1, d, dtype=x.dtype, device=x.device)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # [B*T, 1 + N, D]
        cls = x[:b, :1]  # the class token is the same for every frame: keep one per video
        x = x[:, 1:].reshape(b, t, h * w, d).transpose(1, 2)  # [B, N, T, D]
        if t == 1:
            x = x + self.temporal_positional_embedding.mean(1)
        else:
            x = x + self.temporal_positional_embedding
        x = torch.cat([cls, x.reshape(b, h * w * t, d)], dim=1)  # [B, 1 + N*T, D], patch-major, frames inside
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class ViCLIP(nn.Module):
    """ViCLIP: ``encode_video`` and ``encode_text`` give L2-normalised embeddings in one space.

    Defaults are ViCLIP-L/14 (InternVid-10M-FLT); smaller sizes are for tests.
    """

    def __init__(
        self,
        image_size=224,
        patch_size=14,
        vision_width=1024,
        vision_layers=24,
        vision_heads=16,
        embed_dim=768,
        frames=NUM_FRAMES,
        text_width=768,
        text_layers=12,
        text_heads=12,
        vocab_size=49408,
    ):
        super().__init__()
        oc = _open_clip()
        self.vision_encoder = VideoTower(
            image_size, patch_size, vision_width, vision_layers, vision_heads, embed_dim, frames
        )
        self.text_encoder = oc.transformer.TextTransformer(
            context_length=CONTEXT_LENGTH,
            vocab_size=vocab_size,
            width=text_width,
            heads=text_heads,
            layers=text_layers,
            output_dim=embed_dim,
            act_layer=oc.transformer.QuickGELU,
        )
        self.temp = nn.Parameter(torch.tensor(1 / 100.0))  # the contrastive temperature; unused at inference
        self.tokenizer = oc.tokenizer.SimpleTokenizer(context_length=CONTEXT_LENGTH)

    @property
    def num_frames(self) -> int:
        return self.vision_encoder.temporal_positional_embedding.shape[1]

    @torch.inference_mode()
    def encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, T, 3, H, W]`` (CLIP-normalised) -> ``[B, D]`` unit vectors, in float32."""
        device = self.temp.device
        feats = self.vision_encoder(video.to(device).permute(0, 2, 1, 3, 4).contiguous()).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        """Prompts -> ``[B, D]`` unit vectors; each is cut to 32 tokens (its last one the end token)."""
        feats = self.text_encoder(self.tokenizer(texts).to(self.temp.device)).float()
        return feats / feats.norm(dim=-1, keepdim=True)


def load_viclip_state(model: ViCLIP, state: dict, path: str) -> ViCLIP:
    """Load ``state`` (the checkpoint's ``model`` dict) strictly, or say which file does not fit."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit ViCLIP: {str(exc).splitlines()[0]}") from exc
    return model
