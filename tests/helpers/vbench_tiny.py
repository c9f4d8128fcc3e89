"""Tiny random-weight networks saved under the file names VBench uses, and test videos, for the VBench tests."""

from pathlib import Path

import cv2
import numpy as np
import torch

from eval import amt
from eval.viclip import ViCLIP


def video(t, h, w, seed=0):
    """Smooth random colour fields: a texture a network responds to, different in every frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (t, max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
    return np.stack([np.clip(cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255) for c in coarse]).astype(
        np.uint8
    )


def fp16_exact(module):
    """Round every weight to float16 and back: OpenAI's CLIP file stores them in float16, and loaders cast."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.half().float())
    return module


def save_amt(folder: Path) -> amt.AMTS:
    """A random AMT-S saved as VBench's ``amt-s.pth`` (a training checkpoint: ``state_dict`` beside other keys)."""
    torch.manual_seed(0)
    net = amt.AMTS()
    torch.save({"epoch": 1, "state_dict": net.state_dict()}, folder / "amt-s.pth")
    return net.eval()


def save_quality_weights(folder: Path) -> dict:
    """Tiny CLIP + aesthetic head, ViCLIP, AMT-S and (with pyiqa) MUSIQ, in VBench's names (MUSIQ in its cache
    layout); returns the networks as saved, by name. Needs open-clip-torch."""
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.model.CLIP(
        embed_dim=16,
        vision_cfg=open_clip.model.CLIPVisionCfg(layers=1, width=64, patch_size=32, image_size=224),
        text_cfg=open_clip.model.CLIPTextCfg(context_length=77, vocab_size=64, width=64, heads=1, layers=1),
        quick_gelu=True,
    )
    fp16_exact(clip).eval()
    torch.save(clip.state_dict(), folder / "ViT-L-14.pt")
    head = torch.nn.Linear(16, 1)
    torch.save(head.state_dict(), folder / "sa_0_4_vit_l_14_linear.pth")
    viclip = ViCLIP(
        patch_size=56,
        vision_width=64,
        vision_layers=1,
        vision_heads=1,
        embed_dim=32,
        text_width=64,
        text_layers=1,
        text_heads=1,
    )
    torch.save({"model": viclip.state_dict(), "epoch": 3}, folder / "ViClip-InternVid-10M-FLT.pth")
    out = {"dir": folder, "visual": clip.visual, "head": head, "viclip": viclip.eval(), "amt": save_amt(folder)}
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError:
        return out
    musiq = MUSIQ(pretrained=False, hidden_size=64, mlp_dim=128, num_heads=1, num_layers=1)
    (folder / "pyiqa_model").mkdir()
    torch.save(musiq.state_dict(), folder / "pyiqa_model" / "musiq_spaq_ckpt-358bb6af.pth")
    musiq.training = False  # what VBench sets
    return {**out, "musiq": musiq}
