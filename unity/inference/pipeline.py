"""The tasks of a trained model (``unity.method.tasks``) as functions on uint8 videos.

Each call builds the streams of a batch (``(rgb, modality)``; rgb alone for ``t2v``, text to video;
A, A', B, B' for a visual sentence), marks which are generated, samples
them (``unity.sampler``) and decodes back to uint8 videos ``[B, T, H, W, 3]`` in each stream's
visual form; ``data_pipeline.modalities`` reads the auxiliary ones back to raw estimates.
Batches are split into chunks of ``settings.batch_size``; the chunk starting at clip ``i`` draws its
noise from ``settings.seed + i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from data_pipeline.modalities import MODALITIES
from unity.inference.loading import Trained
from unity.method import sentences
from unity.method.sampler import sample
from unity.method.tasks import T2V, get_task


@dataclass
class SamplerSettings:
    steps: int = 20  # ODE steps
    method: str = "euler"  # euler or heun
    cfg: float = 1.0  # classifier-free guidance scale on the caption; 1 = none
    shift: float | None = None  # time-grid shift; None = the run's training shift
    seed: int = 0  # noise seed; the chunk starting at clip i uses seed + i
    batch_size: int = 8  # clips per model call
    progress: bool = False  # a progress bar over the ODE steps of each chunk


def task_streams(task: str, modality: str, reverse: bool) -> tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...]]:
    """(output names, stream modalities, generated flags) of a task's streams; ``task`` a name or alias."""
    task = get_task(task)
    if task.name == T2V:
        return ("rgb",), ("rgb",), task.noised
    if task.name == "sentence":
        return sentences.SLOTS, sentences.stream_names(modality, reverse), task.noised
    return ("rgb", modality), ("rgb", modality), task.noised


@torch.no_grad()
def run_task(
    trained: Trained,
    task: str,
    modality: str,
    captions: list[str],
    rgb: np.ndarray | None = None,
    control: np.ndarray | None = None,
    context: np.ndarray | None = None,
    reverse: bool = False,
    prompts: list[str] | None = None,
    settings: SamplerSettings | None = None,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, np.ndarray]:
    """The task's streams by name, each uint8 ``[B, T, H, W, 3]`` (inputs included).

    ``task``: a name or alias of the registry. ``est`` (``estimate``) needs ``rgb`` and adds the
    estimated ``modality``; ``cond`` (``generate``) needs ``control`` (the modality's visual form) and
    adds the generated ``rgb``; ``joint`` needs only the captions and
    generates both; ``t2v`` generates ``rgb`` alone; ``sentence`` needs ``context [B, 3, T, H, W, 3]``
    (A, A', B: rgb, modality, rgb; or with ``reverse`` modality, rgb, modality) and generates
    ``B_prime`` (the modality; with ``reverse`` the video). Inputs are at the run's clip shape.
    ``prompts``: each sample's modality prompt (default: the registry's). ``features``: the captions'
    external features (``[B, L, W]`` values, ``[B, L]`` mask) for a model with ``text_encoder: external``.
    """
    task = get_task(task).name
    if task != T2V and (modality not in MODALITIES or modality == "rgb"):
        raise ValueError(f"unknown auxiliary modality {modality!r}; choose one of {', '.join(list(MODALITIES)[1:])}")
    needed = {"est": ("rgb", rgb), "cond": ("control", control), "sentence": ("context", context)}.get(task)
    if needed is not None and needed[1] is None:
        raise ValueError(f"task {task} needs the {needed[0]} videos")
    settings = settings or SamplerSettings()
    frames, size = trained.clip_shape
    n = len(captions)
    names, kinds, generated = task_streams(task, modality, reverse)
    blank = np.zeros((n, frames, size, size, 3), np.uint8)
    given = {"rgb": rgb, modality: control} if task != "sentence" else dict(zip(names, np.moveaxis(context, 1, 0)))
    inputs = [given.get(name) if given.get(name) is not None else blank for name in names]
    for name, video in zip(names, inputs):
        if video.shape != blank.shape:
            raise ValueError(
                f"{name} videos must be uint8 {list(blank.shape)} (the run's clip shape), got {list(video.shape)}"
            )
    prompts = prompts or [MODALITIES[modality].prompt if task != T2V else ""] * n
    shift = settings.shift if settings.shift is not None else trained.shift
    layout = sentences.LAYOUT if task == "sentence" else None
    outputs = {name: [] for name in names}
    for start in range(0, n, settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        b = len(captions[chunk])
        x = torch.stack([trained.codec.encode(torch.from_numpy(v[chunk]).to(trained.device)) for v in inputs], dim=1)
        generate = torch.tensor([generated] * b, device=trained.device)  # [B, S]
        ids = torch.tensor([[MODALITIES[kind].index for kind in kinds]] * b, device=trained.device)
        part = None if features is None else tuple(f[chunk] for f in features)
        cond = trained.conditioning(captions[chunk], prompts[chunk], len(names), part)
        dropped = None if part is None else (part[0], torch.zeros_like(part[1]))  # the dropped caption
        uncond = trained.conditioning([""] * b, prompts[chunk], len(names), dropped) if settings.cfg != 1.0 else None
        generator = torch.Generator(trained.device).manual_seed(settings.seed + start)
        bar = partial(tqdm, desc=f"{task} {start + b}/{n}", leave=False) if settings.progress else None
        result = sample(
            trained.dit,
            x,
            generate,
            ids,
            steps=settings.steps,
            shift=shift,
            method=settings.method,
            cfg_scale=settings.cfg,
            uncond=uncond,
            generator=generator,
            progress=bar,
            layout=layout,
            **cond,
        )
        for s, name in enumerate(names):  # [B, T, H, W, 3] each
            outputs[name].append(trained.codec.decode(result[:, s]).cpu().numpy())
    return {name: np.concatenate(videos) for name, videos in outputs.items()}
