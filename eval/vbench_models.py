"""The networks behind the model-based VBench dimensions, loaded from local files only.

Expected files in the ``--weights`` folder (each may end in ``.safetensors``, ``.pth``, ``.pt`` or
``.bin``; a plain state dict, or one under a ``state_dict`` / ``model`` key):

=========================  ================================================  ==========================
file                       network                                           dimension
=========================  ================================================  ==========================
``dino_vitb16.*``          timm ``vit_base_patch16_224.dino`` (DINO ViT-B/16)  subject_consistency
``clip_vitb32.*``          timm ``vit_base_patch32_clip_quickgelu_224.openai`` background_consistency
                           (OpenAI CLIP ViT-B/32 image tower, QuickGELU, 512-d)
``raft_large.*``           torchvision ``raft_large``                        dynamic_degree
=========================  ================================================  ==========================

timm's ViT checkpoint filter runs on the loaded dict, so DINO's own ``dino_vitbase16_pretrain.pth``
(what VBench loads) and an OpenAI CLIP state dict (``visual.*`` keys) load as well. For RAFT use
``Raft_Large_Weights.C_T_V1``: torchvision's port of ``raft-things.pth``, the checkpoint VBench uses.
Nothing here downloads; torchvision is imported only for the RAFT backend.

What VBench runs, and what is matched here (``vbench/utils.py``, ``subject_consistency.py``,
``background_consistency.py``; DINO's ``vision_transformer.py``):

- frames are resized with ``antialias=False`` (VBench's transforms since late 2024), which differs
  from an antialiased resize whenever a frame is scaled down;
- OpenAI's CLIP uses QuickGELU (``x * sigmoid(1.702 x)``), hence timm's ``quickgelu`` variant: the
  plain ``vit_base_patch32_clip_224`` uses exact GELU and gives other features from the same weights;
- DINO runs at the frame's own aspect ratio and interpolates its position embeddings with its own
  ``interpolate_pos_encoding`` (bicubic with ``scale_factor=(n + 0.1) / 14``, ``dino_pos_embed``),
  not timm's resampler; on non-square frames the two differ (``DinoFeatures`` runs DINO's forward).
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_EXTS = (".safetensors", ".pth", ".pt", ".bin")

# kind -> (file stem, timm architecture, name in messages)
BACKBONES = {
    "dino": ("dino_vitb16", "vit_base_patch16_224.dino", "DINO ViT-B/16"),
    "clip": ("clip_vitb32", "vit_base_patch32_clip_quickgelu_224.openai", "CLIP ViT-B/32"),
}
RAFT_STEM = "raft_large"

# VBench's transforms (vbench/utils.py dino_transform / clip_transform)
DINO_MEAN, DINO_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
INPUT_SIZE = 224
RAFT_ITERS = 20  # VBench: self.model(image1, image2, iters=20, test_mode=True)
RAFT_MIN_SIZE = 128  # torchvision's RAFT refuses padded inputs under 128 px (its 4-level correlation pyramid)


class WeightsError(FileNotFoundError):
    """A local weight file is missing, unreadable, or does not fit its architecture."""


def default_device(device=None) -> torch.device:
    return torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))


def _save_hint(stem: str, build: str) -> str:
    return (
        f'on a connected machine run: python -c "import safetensors.torch as st, {build.split(".")[0]}; '
        f"st.save_file({build}.state_dict(), '{stem}.safetensors')\""
    )


def has_weights(weights_dir, stem: str) -> bool:
    """Whether ``weights_dir`` holds ``stem.<ext>`` in one of ``WEIGHT_EXTS``."""
    if weights_dir is None:
        return False
    return any(os.path.isfile(os.path.join(weights_dir, stem + ext)) for ext in WEIGHT_EXTS)


def find_weight_file(weights_dir, stem: str, what: str, build: str) -> str:
    """The path of ``weights_dir/stem.<ext>``, or a one-line WeightsError saying what to put where."""
    if weights_dir is None:
        raise WeightsError(
            f"{what} needs local weights: pass --weights DIR holding {stem}.safetensors; " + _save_hint(stem, build)
        )
    for ext in WEIGHT_EXTS:
        path = os.path.join(weights_dir, stem + ext)
        if os.path.isfile(path):
            return path
    raise WeightsError(
        f"missing {what} weights: put {os.path.join(weights_dir, stem)}.safetensors "
        f"(or .pth); " + _save_hint(stem, build)
    )


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors or torch file, with ``state_dict``/``model`` wrappers and ``module.`` removed."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which one
        raise WeightsError(f"cannot read weights {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}


def _load_into(model: nn.Module, path: str) -> nn.Module:
    state = read_state_dict(path)
    from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

    if isinstance(model, VisionTransformer):  # original DINO / OpenAI CLIP key layouts, pos-embed resizing
        state = checkpoint_filter_fn(state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise WeightsError(f"{path} does not fit {type(model).__name__}: {first}") from exc
    return model


def dino_pos_embed(pos_embed: torch.Tensor, height: int, width: int, patch: int) -> torch.Tensor:
    """DINO's ``interpolate_pos_encoding`` for an image of ``height x width`` pixels: ``pos_embed [1, 1 + N, D]``.

    As DINO does: unchanged when the image is square with the trained number of patches; otherwise
    the ``n x n`` grid (``n = sqrt(N)``) is resized bicubically with ``scale_factor=((rows + 0.1) / n,
    (cols + 0.1) / n)``, ``rows, cols = height // patch, width // patch`` (the 0.1 keeps the output size
    from rounding down). PyTorch places the samples by that factor, not by ``rows / n``, so the result
    is not timm's ``resample_abs_pos_embed`` to ``(rows, cols)``.
    """
    count, dim = pos_embed.shape[1] - 1, pos_embed.shape[-1]
    rows, cols = height // patch, width // patch
    if rows * cols == count and height == width:
        return pos_embed
    side = math.sqrt(count)
    grid = pos_embed[:, 1:].reshape(1, int(side), int(side), dim).permute(0, 3, 1, 2)  # [1, D, n, n]
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side), mode="bicubic")
    if grid.shape[-2:] != (rows, cols):
        raise ValueError(f"position grid {tuple(grid.shape[-2:])} does not fit {rows}x{cols} patches")
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)


class DinoFeatures(nn.Module):
    """A timm DINO ViT run the way DINO's own forward runs it: the [CLS] feature ``[N, D]`` of ``[N, 3, H, W]``.

    Patch embedding by the strided convolution (which drops the pixels beyond the last whole patch),
    the [CLS] token, ``dino_pos_embed`` for the frame's size, the blocks and the final norm.
    """

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        vit = self.vit
        patch = vit.patch_embed.patch_size[0]
        tokens = vit.patch_embed.norm(vit.patch_embed.proj(images).flatten(2).transpose(1, 2))  # [N, L, D]
        tokens = torch.cat([vit.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)  # [N, 1 + L, D]
        tokens = vit.pos_drop(tokens + dino_pos_embed(vit.pos_embed, *images.shape[-2:], patch))
        return vit.norm(vit.blocks(vit.norm_pre(tokens)))[:, 0]


def load_backbone(kind: str, weights_dir=None, model: nn.Module | None = None, device=None) -> nn.Module:
    """The ``dino`` or ``clip`` feature extractor in eval mode on ``device``.

    ``model=None`` builds the timm architecture and loads ``weights_dir/<stem>.*`` into it. A given
    ``model`` (any module mapping ``[N, 3, H, W]`` to ``[N, D]``) replaces the architecture: with
    ``weights_dir`` the same file is loaded into it, without it the module is used as it is. A timm
    ViT for ``dino`` is wrapped in ``DinoFeatures``, so it sees frames at their own aspect ratio with
    DINO's position-embedding interpolation.
    """
    stem, arch, what = BACKBONES[kind]
    build = f"timm.create_model('{arch}', pretrained=True)"
    if model is None:
        path = find_weight_file(weights_dir, stem, what, build)
        import timm

        model = _load_into(timm.create_model(arch, pretrained=False), path)
    elif weights_dir is not None:
        model = _load_into(model, find_weight_file(weights_dir, stem, what, build))
    from timm.models.vision_transformer import VisionTransformer

    if kind == "dino" and isinstance(model, VisionTransformer):
        model = DinoFeatures(model)
    return model.eval().to(default_device(device))


def _to_tensor(frames) -> torch.Tensor:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()  # [T, 3, H, W], 0..255


def _resize_short(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """torchvision ``Resize(size, antialias=False)`` on a float tensor: short side to ``size``, long side truncated.

    ``antialias=False`` as VBench's transforms: a downscaled frame is sampled, not low-pass filtered.
    """
    h, w = x.shape[-2:]
    short, long = min(h, w), max(h, w)
    new_short, new_long = size, int(size * long / short)
    new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
    if (new_h, new_w) == (h, w):
        return x
    return F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=False)


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def preprocess_dino(frames) -> torch.Tensor:
    """VBench's ``dino_transform(224)``: bilinear resize of the short side to 224 without antialiasing (no crop),
    /255, ImageNet mean/std."""
    return _normalize(_resize_short(_to_tensor(frames), INPUT_SIZE, "bilinear") / 255.0, DINO_MEAN, DINO_STD)


def preprocess_clip(frames) -> torch.Tensor:
    """VBench's ``clip_transform(224)``: bicubic short side to 224 without antialiasing, centre crop 224, /255,
    CLIP mean/std."""
    x = _resize_short(_to_tensor(frames), INPUT_SIZE, "bicubic")
    h, w = x.shape[-2:]
    top, left = int(round((h - INPUT_SIZE) / 2.0)), int(round((w - INPUT_SIZE) / 2.0))
    x = x[..., top : top + INPUT_SIZE, left : left + INPUT_SIZE]
    return _normalize(x / 255.0, CLIP_MEAN, CLIP_STD)


@torch.inference_mode()
def extract_features(model: nn.Module, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """``model`` on ``images`` ``[T, 3, H, W]`` in batches; features ``[T, D]`` in float32 on the CPU.

    A timm ViT sees its input cut to whole patches at the bottom and right, which is what the strided
    patch convolution of the original DINO does with the rest (timm would refuse it).
    """
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    if patch is not None:
        ph, pw = (patch, patch) if isinstance(patch, int) else patch
        images = images[..., : images.shape[-2] // ph * ph, : images.shape[-1] // pw * pw]
    device = next(model.parameters(), torch.empty(0)).device  # a module without parameters runs on the CPU
    out = [model(images[i : i + batch].to(device)).float().cpu() for i in range(0, len(images), batch)]
    feats = torch.cat(out)
    if feats.ndim != 2:
        raise ValueError(f"the feature extractor must return [N, D], got {tuple(feats.shape)}")
    return feats


def load_raft(weights_dir, device=None) -> nn.Module:
    """torchvision's RAFT-Large with ``weights_dir/raft_large.*``; torchvision is imported here, not before."""
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError as exc:
        raise ImportError(
            "the RAFT flow backend needs torchvision matching your torch "
            "(pip install -e '.[vbench]'); or use --flow opencv"
        ) from exc
    build = "torchvision.models.optical_flow.raft_large(weights='C_T_V1')"
    path = find_weight_file(weights_dir, RAFT_STEM, "RAFT-Large (torchvision)", build)
    model = raft_large(weights=None, progress=False)
    try:
        model.load_state_dict(read_state_dict(path), strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit torchvision raft_large: {str(exc).splitlines()[0]}") from exc
    return model.eval().to(default_device(device))


@torch.inference_mode()
def raft_flow(model: nn.Module, frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
    """Flow ``[H', W', 2]`` from ``frame0`` to ``frame1`` on RAFT's padded grid, as VBench scores it.

    VBench pads with RAFT's ``InputPadder`` (replicate, up to a multiple of 8, split evenly with the
    odd pixel last) and scores the flow of the padded frames. The original RAFT maps 0..255 to
    [-1, 1] itself; torchvision's expects that already done.
    """
    device = next(model.parameters()).device
    x = _to_tensor(np.stack([frame0, frame1])).to(device)
    h, w = x.shape[-2:]
    ph, pw = (((h // 8) + 1) * 8 - h) % 8, (((w // 8) + 1) * 8 - w) % 8
    x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2], mode="replicate")
    x = 2.0 * (x / 255.0) - 1.0
    flow = model(x[:1], x[1:], num_flow_updates=RAFT_ITERS)[-1]  # [1, 2, H', W']
    return flow[0].permute(1, 2, 0).float().cpu().numpy()
