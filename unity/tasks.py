"""The task router: per sample, a task (which streams are noised) and an auxiliary modality.

A task is only a choice of noised streams over ``(rgb, modality)``: ``cond`` generates rgb from a
clean modality, ``est`` estimates the modality from clean rgb, ``joint`` generates both. Draws
follow the current curriculum stage (UnityVideo §4.3.1: pixel-aligned modalities first, then all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from data_pipeline.modalities import MODALITIES, NAMES
from models.context import pad_tokens

TASKS = ("cond", "est", "joint", "sentence")
NOISED = {"cond": (True, False), "est": (False, True), "joint": (True, True)}  # (rgb, modality)
SENTENCE_UNSUPPORTED = (
    "visual sentences need four streams (A, A', B, B') from paired clips, which the data pipeline does not "
    "provide yet; set train.tasks.sentence and every curriculum stage's tasks.sentence to 0"
)


@dataclass(frozen=True)
class Route:
    """One sample's draw: a task in TASKS and the auxiliary modality paired with rgb."""

    task: str
    modality: str


class Stage(NamedTuple):
    """A curriculum stage as the router applies it."""

    index: int  # position in train.curriculum (0 without a curriculum)
    modalities: tuple[str, ...]  # auxiliary modalities drawn from, with positive weight
    tasks: dict[str, float]  # normalised probability of every task in TASKS


@dataclass(frozen=True)
class _Span:
    end: float  # first optimizer step after the stage (inf for the last one)
    stage: Stage
    weights: tuple[float, ...]  # routing weight of each of stage.modalities


class TaskRouter:
    """Draws routes under a curriculum of stages that run in order, each for its ``steps``.

    ``train`` needs ``.tasks`` (probabilities per task), ``.modalities`` (routing weight per
    modality; a modality missing there weighs 1.0) and ``.curriculum`` (stages with ``.steps``,
    ``.modalities``, ``.tasks``), as in :class:`unity.config.TrainConfig`. A stage of 0 steps lasts
    to the end of the run, and so does the last stage whatever its steps; a stage listing no
    modalities routes all of them. ``available``: the auxiliary modalities the data provides.
    Without a curriculum: ``train.tasks`` over every available modality.
    """

    def __init__(self, train, available: Sequence[str]):
        available = tuple(available)
        wrong = [name for name in available if name not in NAMES[1:]]
        if wrong:
            raise ValueError(f"available modalities {wrong} are not auxiliary modalities ({', '.join(NAMES[1:])})")
        plan = [(int(stage.steps), tuple(stage.modalities), stage.tasks, f"train.curriculum[{i}]")
                for i, stage in enumerate(train.curriculum)] or [(0, (), train.tasks, "train")]
        self.spans, start = [], 0
        for index, (steps, listed, tasks, where) in enumerate(plan):
            if steps < 0:
                raise ValueError(f"{where}.steps must be non-negative, got {steps}")
            end = float("inf") if steps == 0 or index == len(plan) - 1 else start + steps
            self.spans.append(_build_span(index, end, listed or available, available, train.modalities, tasks, where))
            if end == float("inf"):
                break
            start = end

    def stage_at(self, step: int) -> Stage:
        """The stage in force after ``step`` optimizer steps (0-based): index, modalities, task probabilities."""
        return self._span(step).stage

    def draw(self, step: int, n: int, generator: torch.Generator) -> list[Route]:
        """``n`` routes for the batch at ``step``; deterministic given the generator's state."""
        span = self._span(step)
        tasks = [name for name, p in span.stage.tasks.items() if p > 0]
        task_p = torch.tensor([span.stage.tasks[name] for name in tasks], dtype=torch.float64)
        task_ix = torch.multinomial(task_p, n, replacement=True, generator=generator).tolist()
        mod_ix = torch.multinomial(torch.tensor(span.weights, dtype=torch.float64), n, replacement=True,
                                   generator=generator).tolist()
        return [Route(tasks[i], span.stage.modalities[j]) for i, j in zip(task_ix, mod_ix)]

    def _span(self, step: int) -> _Span:
        return next(span for span in self.spans if step < span.end)


def _build_span(index, end, listed, available, weights, tasks, where) -> _Span:
    """Check one stage against the data and the weights, and normalise its probabilities."""
    usable = [name for name in listed if name in available and weights.get(name, 1.0) > 0]
    if not usable:
        raise ValueError(
            f"{where} routes modalities {list(listed)}, none of which the data provides with a positive "
            f"train.modalities weight (available: {list(available)}, weights: {dict(weights)})"
        )
    probs = {name: float(getattr(tasks, name)) for name in TASKS}
    if probs["sentence"] > 0:
        raise NotImplementedError(f"{where}.tasks.sentence is {probs['sentence']}: {SENTENCE_UNSUPPORTED}")
    total = sum(probs.values())
    if min(probs.values()) < 0 or total <= 0:
        raise ValueError(f"{where}.tasks needs non-negative probabilities with a positive sum, got {probs}")
    stage = Stage(index, tuple(usable), {name: p / total for name, p in probs.items()})
    return _Span(end, stage, tuple(float(weights.get(name, 1.0)) for name in usable))


def assemble(batch: dict, routes: list[Route]) -> dict:
    """The two streams (rgb, routed modality) of each sample of a loader batch.

    Returns ``x0 [B, 2, C, T, H, W]`` (the videos, or the latents of a precomputed batch),
    ``modality`` long ``[B, 2]`` (registry indices), ``noised`` bool ``[B, 2]``, ``prompts``
    (each sample's prompt for its routed modality) and, for a precomputed batch, that prompt's
    embedding ``prompt [B, Lp, D]`` with ``prompt_mask`` bool ``[B, Lp]``.
    """
    if any(route.task == "sentence" for route in routes):
        raise NotImplementedError(SENTENCE_UNSUPPORTED)
    videos = batch["latent"] if "latent" in batch else batch
    rgb = videos["rgb"]  # [B, C, T, H, W]
    aux = torch.stack([videos[route.modality][i] for i, route in enumerate(routes)])  # [B, C, T, H, W]
    indices = [[MODALITIES["rgb"].index, MODALITIES[route.modality].index] for route in routes]
    out = {
        "x0": torch.stack([rgb, aux], dim=1),
        "modality": torch.tensor(indices, device=rgb.device),
        "noised": torch.tensor([NOISED[route.task] for route in routes], device=rgb.device),
        "prompts": [batch["prompts"][route.modality][i] for i, route in enumerate(routes)],
    }
    if "text" in batch:
        text = batch["text"]
        length = max(text["prompt"][route.modality].shape[1] for route in routes)
        pairs = [pad_tokens(text["prompt"][r.modality][i], text["prompt_mask"][r.modality][i], length)
                 for i, r in enumerate(routes)]
        out["prompt"] = torch.stack([p for p, _ in pairs])  # [B, Lp, D]
        out["prompt_mask"] = torch.stack([m for _, m in pairs])  # [B, Lp]
    return out
