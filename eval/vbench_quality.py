"""VBench's aesthetic quality, imaging quality, overall consistency and AMT motion smoothness, from local files.

Each follows the VBench file named in its docstring, step for step: the same frames, torchvision's
transforms with VBench's arguments, the same normalisation and averaging. Architectures come from
open-clip-torch (CLIP ViT-L/14, ViCLIP's text tower), pyiqa (MUSIQ) and this folder (ViCLIP's video
tower in ``eval/viclip.py``, AMT-S in ``eval/amt.py``); each is sized from the file it loads.
Weights are the files VBench itself uses, found as ``eval/vbench_files.py`` says; nothing is
downloaded. Networks run in float32 (on a GPU VBench runs CLIP in float16, whose rounding its
aesthetic scores carry and these do not).
"""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from eval.amt import AMTS, interpolate_midpoint, usable, vbench_scale
from eval.vbench_files import FILES, count_blocks, find_file, fit, missing_reason, read_weights
from eval.vbench_models import WeightsError, default_device
from eval.viclip import ViCLIP, load_viclip_state

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
CLIP_SIZE = 224
AESTHETIC_BATCH = 32  # frames per CLIP forward, as VBench batches them
MUSIQ_MAX_SIDE = 512  # VBench's imaging_quality 'longer' rule: the longer side at most this
DIMENSIONS = tuple(FILES)  # aesthetic_quality, imaging_quality, overall_consistency, motion_smoothness


class Unscorable(ValueError):
    """This video cannot be scored on this dimension (too small, or no prompt)."""


# --- loading ----------------------------------------------------------------------------------------


class AestheticScorer(nn.Module):
    """CLIP image tower and the LAION linear head: ``[N, 3, 224, 224]`` -> aesthetic scores ``[N]`` (0..10)."""

    def __init__(self, visual: nn.Module, head: nn.Linear):
        super().__init__()
        self.visual, self.head = visual, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(self.visual(images).to(torch.float32), dim=-1, p=2)
        return self.head(feats).squeeze(dim=-1)


def _openai_clip_state(path: str) -> dict[str, torch.Tensor]:
    """OpenAI's CLIP file is a TorchScript archive; a plain state dict (or safetensors) works too."""
    if path.endswith((".pt", ".pth")) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            scripted = any(n.endswith("constants.pkl") for n in z.namelist())
        if scripted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    return dict(torch.jit.load(path, map_location="cpu").state_dict())
                except RuntimeError as exc:
                    raise WeightsError(f"cannot read the TorchScript archive {path}: {exc}") from exc
    return read_weights(path)


def load_aesthetic(weights_dir, device=None) -> AestheticScorer:
    """open_clip's CLIP (sized from ``ViT-L-14.pt``, QuickGELU) image tower + ``sa_0_4_vit_l_14_linear.pth``."""
    try:
        import open_clip
    except ImportError as exc:
        raise ImportError("aesthetic_quality needs open-clip-torch: pip install -e '.[vbench]'") from exc
    clip_spec, head_spec = FILES["aesthetic_quality"]
    clip_path, head_path = find_file(weights_dir, clip_spec), find_file(weights_dir, head_spec)
    state = _openai_clip_state(clip_path)
    try:  # stored partly in float16 (as OpenAI's file is), used in float32 as VBench does on the CPU
        visual = open_clip.model.build_model_from_openai_state_dict(state).float().visual
    except (KeyError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        raise WeightsError(f"{clip_path} is not an OpenAI CLIP state dict: {str(exc).splitlines()[0]}") from exc
    head_state = read_weights(head_path)
    if "weight" not in head_state or head_state["weight"].ndim != 2:
        raise WeightsError(f"{head_path} is not a linear head's state dict (weight, bias)")
    head = fit(nn.Linear(head_state["weight"].shape[1], 1), head_state, head_path, "the aesthetic head")
    return AestheticScorer(visual, head).eval().to(default_device(device))


def load_musiq(weights_dir, device=None) -> nn.Module:
    """pyiqa's MUSIQ, sized from ``musiq_spaq_ckpt-358bb6af.pth`` (VBench: ``MUSIQ(pretrained_model_path=...)``)."""
    try:
        from pyiqa.archs.musiq_arch import MUSIQ
    except ImportError as exc:
        raise ImportError("imaging_quality needs pyiqa: pip install -e '.[vbench]'") from exc
    path = find_file(weights_dir, FILES["imaging_quality"][0])
    state = read_weights(path)
    try:
        hidden = state["embedding.weight"].shape[0]
        config = dict(
            hidden_size=hidden,
            num_heads=hidden // 64,
            mlp_dim=state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0],
            num_layers=count_blocks(state, "transformer_encoder.transformer.encoderblock_"),
            num_scales=state["transformer_encoder.scaleembed_input.scale_emb"].shape[0],
            spatial_pos_grid_size=round(state["transformer_encoder.posembed_input.position_emb"].shape[1] ** 0.5),
            num_class=(state["head.weight"] if "head.weight" in state else state["head.0.weight"]).shape[0],
        )
    except KeyError as exc:
        raise WeightsError(f"{path} is not a MUSIQ state dict (no {exc})") from exc
    model = fit(MUSIQ(pretrained=False, **config), state, path, "pyiqa MUSIQ")
    return model.eval().to(default_device(device))


def load_viclip(weights_dir, device=None) -> ViCLIP:
    """ViCLIP, sized from ``ViClip-InternVid-10M-FLT.pth`` (its ``model`` dict)."""
    path = find_file(weights_dir, FILES["overall_consistency"][0])
    state = read_weights(path, "model")
    try:
        conv = state["vision_encoder.conv1.weight"]  # [D, 3, 1, p, p]
        grid = round((state["vision_encoder.positional_embedding"].shape[0] - 1) ** 0.5)
        config = dict(
            image_size=conv.shape[-1] * grid,
            patch_size=conv.shape[-1],
            vision_width=conv.shape[0],
            vision_layers=count_blocks(state, "vision_encoder.transformer.resblocks."),
            vision_heads=conv.shape[0] // 64,
            embed_dim=state["vision_encoder.proj"].shape[1],
            frames=state["vision_encoder.temporal_positional_embedding"].shape[1],
            text_width=state["text_encoder.ln_final.weight"].shape[0],
            text_layers=count_blocks(state, "text_encoder.transformer.resblocks."),
            text_heads=state["text_encoder.ln_final.weight"].shape[0] // 64,
            vocab_size=state["text_encoder.token_embedding.weight"].shape[0],
        )
    except KeyError as exc:
        raise WeightsError(f"{path} is not a ViCLIP state dict (no {exc})") from exc
    return load_viclip_state(ViCLIP(**config), state, path).eval().to(default_device(device))


def load_amt(weights_dir, device=None) -> AMTS:
    """AMT-S with ``amt-s.pth`` (its ``state_dict``)."""
    path = find_file(weights_dir, FILES["motion_smoothness"][0])
    return fit(AMTS(), read_weights(path, "state_dict"), path, "AMT-S").eval().to(default_device(device))


LOADERS = {
    "aesthetic_quality": load_aesthetic,
    "imaging_quality": load_musiq,
    "overall_consistency": load_viclip,
    "motion_smoothness": load_amt,
}


def load_models(dims, weights_dir, device=None) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """The networks of the requested dimensions among these four, and why each missing one is missing.

    A missing file or library makes its dimension unavailable (the reason names it); a file that is
    there but unreadable or of another architecture raises WeightsError.
    """
    models, missing = {}, {}
    for dim in [d for d in DIMENSIONS if d in dims]:
        missing[dim] = missing_reason(dim, weights_dir)
        if missing[dim] is None:
            try:
                models[dim] = LOADERS[dim](weights_dir, device)
                del missing[dim]
            except ImportError as exc:
                missing[dim] = str(exc)
    return models, missing


# --- the dimensions ----------------------------------------------------------------------------------


def _frames(frames) -> torch.Tensor:
    """RGB uint8 ``[T, H, W, 3]`` -> uint8 tensor ``[T, 3, H, W]``."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)


def clip_transform(x: torch.Tensor) -> torch.Tensor:
    """vbench/utils.py ``clip_transform(224)``: bicubic short side to 224 (no antialias), centre crop 224,
    /255, CLIP mean and std.

    On a uint8 tensor torchvision rounds and clamps the resized frames back to uint8 (overall
    consistency reads frames that way); on a float tensor they stay float (aesthetic quality).
    """
    import torchvision.transforms.functional as TF

    x = TF.resize(x, [CLIP_SIZE], interpolation=TF.InterpolationMode.BICUBIC, antialias=False)
    x = TF.center_crop(x, [CLIP_SIZE, CLIP_SIZE]).float().div(255.0)
    return TF.normalize(x, CLIP_MEAN, CLIP_STD)


@torch.inference_mode()
def aesthetic_quality(frames, scorer: AestheticScorer) -> float:
    """vbench/aesthetic_quality.py: the mean over all frames of the LAION aesthetic score / 10.

    Frames are read as float (VBench's ``load_video``), ``clip_transform``-ed in batches of 32; each
    CLIP embedding is L2-normalised before the linear head.
    """
    x = _frames(frames).float()
    device = next(scorer.parameters()).device
    scores = [scorer(clip_transform(x[i : i + AESTHETIC_BATCH]).to(device)) for i in range(0, len(x), AESTHETIC_BATCH)]
    return float(torch.mean(torch.cat(scores) / 10, dim=0).item())


def musiq_resize(x: torch.Tensor) -> torch.Tensor:
    """vbench/imaging_quality.py ``transform(images, 'longer')``: the longer side to at most 512 px, /255.

    ``scale = 512 / max(H, W)``; the size is ``(int(scale H), int(scale W))``, bilinear, no antialias.
    """
    import torchvision.transforms.functional as TF

    h, w = x.shape[-2:]
    if max(h, w) > MUSIQ_MAX_SIDE:
        scale = MUSIQ_MAX_SIDE / max(h, w)
        x = TF.resize(x, [int(scale * h), int(scale * w)], antialias=False)
    return x / 255.0


@torch.inference_mode()
def imaging_quality(frames, musiq: nn.Module) -> float:
    """vbench/imaging_quality.py: MUSIQ's score of every frame (resized by ``musiq_resize``), averaged, / 100."""
    x = musiq_resize(_frames(frames).float())
    device = next(musiq.parameters()).device
    total = sum(float(musiq(x[i].unsqueeze(0).to(device))) for i in range(len(x)))
    return total / len(x) / 100.0


def middle_frame_indices(num_frames: int, length: int) -> list[int]:
    """vbench/utils.py ``get_frame_indices(n, length, sample='middle')``: the middle of n equal segments.

    Segment bounds are ``int(linspace(0, length, n + 1))``; each index is ``(start + end - 1) // 2``;
    a video shorter than ``n`` frames repeats its last index.
    """
    count = min(num_frames, length)
    bounds = np.linspace(start=0, stop=length, num=count + 1).astype(int)
    indices = [int((bounds[i] + bounds[i + 1] - 1) // 2) for i in range(count)]
    return indices + [indices[-1]] * (num_frames - len(indices))


def overall_consistency(frames, prompt: str, viclip: ViCLIP) -> float:
    """vbench/overall_consistency.py: ViCLIP's cosine similarity of the video and its prompt.

    Eight frames at the middles of eight equal segments (``middle_frame_indices``), read as uint8
    and ``clip_transform``-ed; video and text embeddings are L2-normalised; the score is their dot product.
    """
    if not prompt or not str(prompt).strip():
        raise Unscorable("needs the video's prompt: a caption, or --prompts FILE")
    x = _frames(frames)
    x = clip_transform(x[middle_frame_indices(viclip.num_frames, len(x))])
    video = viclip.encode_video(x.unsqueeze(0))  # [1, D]
    text = viclip.encode_text([str(prompt)])  # [1, D]
    return float((video @ text.T)[0, 0].cpu())


def amt_interpolator(model: AMTS):
    """``interpolate(frame0, frame1) -> frame``: AMT-S at t = 0.5 as vbench/motion_smoothness.py runs it.

    Use with ``eval.vbench.motion_smoothness`` (VBench's even/odd scheme). The working scale is VBench's
    (1 on the CPU); frames too small for it are refused (VBench's AMT returns NaNs there).
    """
    device = next(model.parameters()).device
    memory = torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None

    def interpolate(frame0: np.ndarray, frame1: np.ndarray) -> np.ndarray:
        h, w = frame0.shape[:2]
        scale = vbench_scale(h, w, memory)
        if not usable(h, w, scale):
            raise Unscorable(
                f"AMT-S needs frames of at least 113 px a side (128 once padded, at VBench's working scale "
                f"{scale:.2f}), got {h}x{w}; motion_smoothness_linear_proxy scores smaller videos"
            )
        return interpolate_midpoint(model, frame0, frame1, scale)

    return interpolate


BACKENDS = {
    "aesthetic_quality": "clip-vitl14 + laion-aesthetic",
    "imaging_quality": "musiq-spaq",
    "overall_consistency": "viclip-l14",
    "motion_smoothness": "amt-s",
}


def evaluate(dim: str, frames, model=None, weights_dir=None, prompt=None, device=None, smoothness=None) -> dict:
    """One video's ``{"value", "backend"}`` on ``dim`` (one of these four), loading its network when not given.

    ``smoothness(frames, interpolate)`` is VBench's even/odd scheme (``eval.vbench.motion_smoothness``).
    Raises MissingWeights when a file is not there and Unscorable when the video cannot be scored (or
    the network's library is not installed).
    """
    if model is None:
        try:
            model = LOADERS[dim](weights_dir, device)
        except ImportError as exc:  # its library is not installed: this dimension only is unavailable
            raise Unscorable(str(exc)) from exc
    if dim == "aesthetic_quality":
        value = aesthetic_quality(frames, model)
    elif dim == "imaging_quality":
        value = imaging_quality(frames, model)
    elif dim == "overall_consistency":
        return {"value": overall_consistency(frames, prompt, model), "backend": BACKENDS[dim], "prompt": prompt}
    else:
        value = smoothness(frames, amt_interpolator(model))
    return {"value": value, "backend": BACKENDS[dim]}
