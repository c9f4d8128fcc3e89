"""The tasks of a trained model (``unity.method.tasks``) as functions on uint8 videos.

Each call builds the streams of a batch (``(rgb, m_1, ..., m_k)``: rgb and one or several auxiliary
modalities; rgb alone for ``t2v``, text to video; A, A', B, B' for a visual sentence), marks which are
generated, samples them (``unity.method.sampler``), with a guidance weight per given control when
asked, and decodes back to uint8 videos ``[B, T, H, W, 3]`` in each stream's visual form;
``data_pipeline.modalities`` reads the auxiliary ones back to raw estimates.
Batches are split into chunks of ``settings.batch_size``; the chunk starting at clip ``i`` draws its
noise from ``settings.seed + i``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from tqdm import tqdm

from data_pipeline.modalities import MODALITIES
from unity.inference.loading import Trained
from unity.method import sentences
from unity.method.sampler import sample
from unity.method.tasks import SUBSET, T2V, get_task, noised_streams, task_of

log = logging.getLogger(__name__)


@dataclass
class SamplerSettings:
    steps: int = 20  # ODE steps
    method: str = "euler"  # euler or heun
    cfg: float = 1.0  # classifier-free guidance scale on the caption; 1 = none
    shift: float | None = None  # time-grid shift; None = the run's training shift
    seed: int = 0  # noise seed; the chunk starting at clip i uses seed + i
    batch_size: int = 8  # clips per model call
    progress: bool = False  # a progress bar over the ODE steps of each chunk
    schedule: str = "uniform"  # time grid: uniform (then shifted) or wan (Wan's sampler, unity.method.sampler)
    negative_prompt: str = ""  # the caption of the unconditional branch of guidance (Wan uses a negative prompt)


def auxiliary(modality: str | Sequence[str]) -> tuple[str, ...]:
    """The auxiliary modalities named by ``modality`` (one name or several), checked: known, not rgb, no repeats."""
    names = (modality,) if isinstance(modality, str) else tuple(modality)
    choices = ", ".join(list(MODALITIES)[1:])
    wrong = [name for name in names if name not in MODALITIES or name == "rgb"]
    if not names or wrong:
        raise ValueError(f"unknown auxiliary modality {wrong[0] if wrong else None!r}; choose one of {choices}")
    if len(set(names)) < len(names):
        raise ValueError(f"modalities {list(names)} name one twice; each stream is a different modality")
    return names


def task_streams(
    task: str, modality: str | Sequence[str], reverse: bool = False, generate: Sequence[str] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[bool, ...]]:
    """(output names, stream modalities, generated flags) of a task's streams; ``task`` a name or alias.

    ``modality``: the auxiliary stream, or several (``cond``, ``est``, ``joint``, ``subset``: rgb and
    each of them); ``generate``: the generated streams by name, for ``subset`` (e.g. ``("rgb", "depth")``).
    """
    task = get_task(task)
    if generate is not None and task.name != SUBSET:
        raise ValueError(f"`generate` names the generated streams of task subset; task {task.name} fixes them")
    if task.name == T2V:
        return ("rgb",), ("rgb",), task.noised
    if task.name == "sentence":
        return sentences.SLOTS, sentences.stream_names(modality, reverse), task.noised
    names = ("rgb", *auxiliary(modality))
    if task.name != SUBSET:
        return names, names, noised_streams(task.name, len(names) - 1)
    if not generate or any(name not in names for name in generate):
        raise ValueError(f"task subset needs the generated streams, some of {list(names)}; got {generate}")
    flags = tuple(name in generate for name in names)
    task_of(flags)  # a valid mask: at least one stream generated
    return names, names, flags


def _given_controls(control, given: list[str], modalities: tuple[str, ...], task: str) -> dict[str, np.ndarray]:
    """``{modality: videos}`` of the given auxiliary streams: ``control`` holds one batch per given one, in order."""
    controls = [] if control is None else [control] if isinstance(control, np.ndarray) else list(control)
    if len(controls) != len(given):
        if not controls:
            raise ValueError(f"task {task} needs the control videos of {', '.join(given)}")
        raise ValueError(
            f"{len(controls)} control video batch(es) for the {len(given)} given modalities {given} (of "
            f"modalities {list(modalities)}): give one per given modality, in the order of the modalities"
        )
    return dict(zip(given, controls))


@torch.no_grad()
def run_task(
    trained: Trained,
    task: str,
    modality: str | Sequence[str],
    captions: list[str],
    rgb: np.ndarray | None = None,
    control: np.ndarray | Sequence[np.ndarray] | None = None,
    context: np.ndarray | None = None,
    reverse: bool = False,
    prompts: list[str] | dict[str, list[str]] | None = None,
    settings: SamplerSettings | None = None,
    features: tuple[torch.Tensor, torch.Tensor] | None = None,
    control_weights: dict[str, float] | None = None,
    generate: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """The task's streams by name, each uint8 ``[B, T, H, W, 3]`` (inputs included).

    ``task``: a name or alias of the registry; ``modality``: one auxiliary modality or several.
    ``est`` (``estimate``) needs ``rgb`` and adds every estimated modality (one pass for several);
    ``cond`` (``generate``) needs ``control``, the visual form of each modality (one array, or a list
    in the order of ``modality``) and adds the generated ``rgb``; ``joint`` needs only the captions
    and generates rgb and every modality; ``subset`` generates the streams named in ``generate`` from
    the others (``rgb`` when rgb is given, ``control`` for the given modalities, in order); ``t2v``
    generates ``rgb`` alone; ``sentence`` needs ``context [B, 3, T, H, W, 3]`` (A, A', B: rgb,
    modality, rgb; or with ``reverse`` modality, rgb, modality) and generates ``B_prime`` (the
    modality; with ``reverse`` the video). Inputs are at the run's clip shape. ``prompts``: each
    sample's modality prompt (a list; several modalities: ``{modality: list}``), default the registry's.
    ``control_weights``: ``{modality: weight}`` of given controls, compositional guidance
    (``unity.method.sampler``; one more model call per weighted control). ``features``: the captions'
    external features (``[B, L, W]`` values, ``[B, L]`` mask) for a model with ``text_encoder: external``.
    """
    task = get_task(task).name
    names, kinds, generated = task_streams(task, modality if task != T2V else "rgb", reverse, generate)
    n = len(captions)
    if task == "sentence":
        auxiliary(modality)
        if context is None:
            raise ValueError("task sentence needs the context videos")
        given = dict(zip(names, np.moveaxis(context, 1, 0)))
    elif task == T2V:
        given = {}
    else:
        if not generated[0] and rgb is None:
            raise ValueError(f"task {task} needs the rgb videos")
        clean = [name for name, flag in zip(names[1:], generated[1:]) if not flag]
        given = {"rgb": rgb, **_given_controls(control, clean, names[1:], task)}
    settings = settings or SamplerSettings()
    frames, size = trained.clip_shape
    blank = np.zeros((n, frames, size, size, 3), np.uint8)
    inputs = [given.get(name) if given.get(name) is not None else blank for name in names]
    for name, video in zip(names, inputs):
        if video.shape != blank.shape:
            raise ValueError(
                f"{name} videos must be uint8 {list(blank.shape)} (the run's clip shape), got {list(video.shape)}"
            )
    per_stream = _prompts(prompts, (modality,) if task == "sentence" else names[1:], n)
    weights = _control_weights(control_weights or {}, names, generated, trained)
    shift = settings.shift if settings.shift is not None else trained.shift
    layout = sentences.LAYOUT if task == "sentence" else None
    outputs = {name: [] for name in names}
    for start in range(0, n, settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        b = len(captions[chunk])
        x = torch.stack([trained.codec.encode(torch.from_numpy(v[chunk]).to(trained.device)) for v in inputs], dim=1)
        generate_mask = torch.tensor([generated] * b, device=trained.device)  # [B, S]
        ids = torch.tensor([[MODALITIES[kind].index for kind in kinds]] * b, device=trained.device)
        part = None if features is None else tuple(f[chunk] for f in features)
        cond = trained.conditioning(captions[chunk], per_stream[chunk], len(names), part)
        dropped = None if part is None else (part[0], torch.zeros_like(part[1]))  # the dropped caption
        negative = [settings.negative_prompt] * b
        uncond = trained.conditioning(negative, per_stream[chunk], len(names), dropped) if settings.cfg != 1.0 else None
        generator = torch.Generator(trained.device).manual_seed(settings.seed + start)
        bar = partial(tqdm, desc=f"{task} {start + b}/{n}", leave=False) if settings.progress else None
        result = sample(
            trained.dit,
            x,
            generate_mask,
            ids,
            steps=settings.steps,
            shift=shift,
            schedule=settings.schedule,
            method=settings.method,
            cfg_scale=settings.cfg,
            uncond=uncond,
            generator=generator,
            progress=bar,
            layout=layout,
            control_weights=weights,
            **cond,
        )
        for s, name in enumerate(names):  # [B, T, H, W, 3] each
            outputs[name].append(trained.codec.decode(result[:, s]).cpu().numpy())
    return {name: np.concatenate(videos) for name, videos in outputs.items()}


def _prompts(prompts, modalities: tuple[str, ...], n: int) -> list:
    """Each sample's prompt (no or one modality: one per sample) or its per-stream prompts (several)."""
    if not modalities:  # text to video: rgb attends to the caption alone
        return prompts or [""] * n
    if len(modalities) == 1:
        if isinstance(prompts, dict):
            prompts = prompts.get(modalities[0])
        return prompts or [MODALITIES[modalities[0]].prompt] * n
    if prompts is not None and not isinstance(prompts, dict):
        raise ValueError(
            f"prompts of several modalities {list(modalities)} are a dict modality -> list, one per sample"
        )
    table = {m: (prompts or {}).get(m) or [MODALITIES[m].prompt] * n for m in modalities}
    return [[table[m][i] for m in (modalities[0], *modalities)] for i in range(n)]  # rgb's row repeats the first


def _control_weights(
    weights: dict[str, float], names: tuple[str, ...], generated, trained: Trained
) -> dict[int, float]:
    """Stream index -> weight of each weighted control; ValueError for a stream that is not a given modality."""
    given = [name for name, flag in zip(names, generated) if not flag and name != "rgb"]
    wrong = [name for name in weights if name not in given]
    if wrong:
        raise ValueError(f"control weights name {wrong}, which are not given controls of this call (given: {given})")
    if any(w != 1.0 for w in weights.values()) and not trained.config.routing.get("control_dropout", 0.0):
        log.warning("this run trained without routing.control_dropout: per-control weights extrapolate")
    return {names.index(name): float(w) for name, w in weights.items()}
