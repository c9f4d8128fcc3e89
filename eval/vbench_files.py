"""The files VBench's model-based quality dimensions read besides the videos: weights and prompts.

Weights are the files VBench itself downloads, by the names it gives them; they are looked for in
the ``--weights`` folder and in VBench's cache layout under it (so ``--weights ~/.cache/vbench``
works), and a missing one is named with where VBench keeps it and where it comes from. Nothing here
downloads. Prompts (for overall consistency) come from a JSON file or, as in VBench's custom mode,
from the video's file name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import torch
from torch import nn

from eval.vbench_models import BACKBONES, RAFT_STEM, WEIGHT_EXTS, WeightsError, read_state_dict


@dataclass(frozen=True)
class WeightFile:
    name: str  # the file as VBench names it
    what: str  # the network it holds
    cache: str  # its folder in VBench's cache (~/.cache/vbench)
    url: str  # where VBench downloads it from (never fetched here)


FILES = {
    "aesthetic_quality": (
        WeightFile(
            "ViT-L-14.pt",
            "OpenAI CLIP ViT-L/14",
            "clip_model",
            "https://openaipublic.azureedge.net/clip/models/"
            "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        ),
        WeightFile(
            "sa_0_4_vit_l_14_linear.pth",
            "LAION aesthetic predictor (linear head)",
            "aesthetic_model/emb_reader",
            "https://raw.githubusercontent.com/LAION-AI/aesthetic-predictor/main/sa_0_4_vit_l_14_linear.pth",
        ),
    ),
    "imaging_quality": (
        WeightFile(
            "musiq_spaq_ckpt-358bb6af.pth",
            "MUSIQ (SPAQ)",
            "pyiqa_model",
            "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_spaq_ckpt-358bb6af.pth",
        ),
    ),
    "overall_consistency": (
        WeightFile(
            "ViClip-InternVid-10M-FLT.pth",
            "ViCLIP ViT-L/14 (InternVid-10M-FLT)",
            "ViCLIP",
            "https://huggingface.co/OpenGVLab/VBench_Used_Models/resolve/main/ViClip-InternVid-10M-FLT.pth",
        ),
    ),
    "motion_smoothness": (
        WeightFile("amt-s.pth", "AMT-S", "amt_model", "https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth"),
    ),
}


class MissingWeights(WeightsError):
    """A weight file is not in the ``--weights`` folder (the dimension is reported as unavailable)."""


def stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def find_file(weights_dir, spec: WeightFile) -> str:
    """``<name>`` (or its converted ``<stem>.safetensors``) in ``DIR`` or in ``DIR/<VBench cache folder>``."""
    where = f"VBench keeps it at ~/.cache/vbench/{spec.cache}/{spec.name}; on a connected machine: wget {spec.url}"
    if weights_dir is None:
        raise MissingWeights(f"needs {spec.name} ({spec.what}): pass --weights DIR holding it ({where})")
    for folder in (weights_dir, os.path.join(weights_dir, spec.cache)):
        for name in (stem(spec.name) + ".safetensors", spec.name):  # a converted copy first
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    raise MissingWeights(f"missing {spec.what} weights: put {os.path.join(weights_dir, spec.name)} ({where})")


def missing_reason(dim: str, weights_dir) -> str | None:
    """Why ``dim`` cannot be computed from ``weights_dir`` (the first missing file), or None."""
    for spec in FILES[dim]:
        try:
            find_file(weights_dir, spec)
        except MissingWeights as exc:
            return str(exc)
    return None


def read_weights(path: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """Plain weights from ``path``; a pickle holding more than weights gets a one-line way to convert it."""
    try:
        return read_state_dict(path)
    except WeightsError as exc:
        inner = f"['{key}']" if key else ""
        target = os.path.join(os.path.dirname(path), stem(os.path.basename(path))) + ".safetensors"
        convert = f"st.save_file(torch.load('{path}', weights_only=False){inner}, '{target}')"
        raise WeightsError(
            f"cannot read {path} as plain weights ({str(exc.__cause__ or exc).splitlines()[0]}); if you trust "
            f'the file, convert it once: python -c "import torch, safetensors.torch as st; {convert}"'
        ) from exc


def count_blocks(state: dict, prefix: str) -> int:
    return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})


def fit(model: nn.Module, state: dict, path: str, what: str) -> nn.Module:
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit {what}: {str(exc).splitlines()[0]}") from exc
    return model


# --- prompts and what is left out ---------------------------------------------------------------

# the eight VBench dimensions of UnityVideo's tables, in their order
PAPER_DIMENSIONS = (
    "subject_consistency",
    "background_consistency",
    "aesthetic_quality",
    "imaging_quality",
    "overall_consistency",
    "dynamic_degree",
    "temporal_flickering",
    "motion_smoothness",
)


def prompt_from_filename(path: str) -> str:
    """VBench's ``get_prompt_from_filename``: the file's stem without a trailing ``-<number>``."""
    stem = os.path.splitext(os.path.basename(path))[0]
    return re.sub(r"-\d+$", "", stem)


def read_prompts(paths, prompts_file=None) -> dict[str, str]:
    """``{path: prompt}`` from ``prompts_file`` (JSON ``{file name or stem: prompt}``), else by VBench's
    file-name rule."""
    if prompts_file is None:
        return {p: prompt_from_filename(p) for p in paths}
    try:
        with open(prompts_file) as f:
            table = json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--prompts {prompts_file}: cannot read it as JSON ({exc})") from exc
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise ValueError(f'--prompts {prompts_file}: expected a JSON object {{"video.mp4": "its prompt", ...}}')
    out, missing = {}, []
    for path in paths:
        name = os.path.basename(path)
        prompt = table.get(name, table.get(os.path.splitext(name)[0]))
        if prompt is None:
            missing.append(name)
        else:
            out[path] = prompt
    if missing:
        raise ValueError(f"--prompts {prompts_file} has no prompt for {', '.join(missing)} (keys: file names or stems)")
    return out


def not_computed(shown, weights_dir) -> list[str]:
    """A line for each of the paper's dimensions missing from ``shown``, saying which file it needs."""
    stems = {"subject_consistency": BACKBONES["dino"][0], "background_consistency": BACKBONES["clip"][0]}
    stems["dynamic_degree"] = RAFT_STEM
    lines = []
    for dim in (d for d in PAPER_DIMENSIONS if d not in shown):
        if dim in FILES:
            reason = missing_reason(dim, weights_dir) or "not requested (--dims)"
        elif dim in stems and not (
            weights_dir and any(os.path.isfile(os.path.join(weights_dir, stems[dim] + e)) for e in WEIGHT_EXTS)
        ):
            reason = f"needs {stems[dim]}.safetensors (or .pth) in --weights DIR"
        else:
            reason = "not requested (--dims)"
        lines.append(f"{dim}: not computed: {reason}")
    return lines
