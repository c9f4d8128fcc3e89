"""The task router: per sample, a task (which streams are noised) and an auxiliary modality.

A task is only a choice of noised streams over ``(rgb, modality)``: ``cond`` generates rgb from a
clean modality, ``est`` estimates the modality from clean rgb, ``joint`` generates both. Draws
follow the current curriculum stage (UnityVideo §4.3.1: pixel-aligned modalities first, then all).
A visual sentence (``sentence``, UniVid) has four streams A, A′, B, B′ from two clips of the batch
(``unity.sentences``); samples of different stream counts form separate groups (``assemble_groups``),
each one model call. A run whose data has no auxiliary modality (``data.modalities=[]``) trains
text-to-video alone (``t2v``: one noised rgb stream): the RGB-only baseline of the paper's ablations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch

from data_pipeline.modalities import MODALITIES, NAMES
from models.context import pad_tokens
from unity import sentences

TASKS = ("cond", "est", "joint", "sentence")
NOISED = {"cond": (True, False), "est": (False, True), "joint": (True, True)}  # (rgb, modality)
T2V = "t2v"  # text-to-video: the only task of a run without auxiliary modalities


@dataclass(frozen=True)
class Route:
    """One sample's draw: a task in TASKS and the auxiliary modality paired with rgb."""

    task: str
    modality: str
    reverse: bool = False  # sentence only: the modality leads (A = modality, A' = rgb), so B' is video
    image_context: bool = False  # sentence only: A and A' are one frame held still (an image pair for video B)


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
    Without a curriculum: ``train.tasks`` over every available modality. Without any available
    modality every route is ``Route("t2v", "rgb")``.
    """

    def __init__(self, train, available: Sequence[str]):
        available = tuple(available)
        self.spans = []
        self.sentence_reverse = float(getattr(train, "sentence_reverse", 0.5))
        self.sentence_image = float(getattr(train, "sentence_image_context", 0.0))
        if not available:
            return
        wrong = [name for name in available if name not in NAMES[1:]]
        if wrong:
            raise ValueError(f"available modalities {wrong} are not auxiliary modalities ({', '.join(NAMES[1:])})")
        plan = [(int(stage.steps), tuple(stage.modalities), stage.tasks, f"train.curriculum[{i}]")
                for i, stage in enumerate(train.curriculum)] or [(0, (), train.tasks, "train")]
        start = 0
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
        if not self.spans:
            return Stage(0, (), {T2V: 1.0})
        return self._span(step).stage

    def draw(self, step: int, n: int, generator: torch.Generator) -> list[Route]:
        """``n`` routes for the batch at ``step``; deterministic given the generator's state."""
        if not self.spans:
            return [Route(T2V, "rgb")] * n
        span = self._span(step)
        tasks = [name for name, p in span.stage.tasks.items() if p > 0]
        task_p = torch.tensor([span.stage.tasks[name] for name in tasks], dtype=torch.float64)
        task_ix = torch.multinomial(task_p, n, replacement=True, generator=generator).tolist()
        mod_ix = torch.multinomial(torch.tensor(span.weights, dtype=torch.float64), n, replacement=True,
                                   generator=generator).tolist()
        routes = [Route(tasks[i], span.stage.modalities[j]) for i, j in zip(task_ix, mod_ix)]
        if any(route.task == "sentence" for route in routes):  # drawn only then: other runs' draws stay as they were
            reverse = (torch.rand(n, generator=generator) < self.sentence_reverse).tolist()
            routes = [Route(r.task, r.modality, r.task == "sentence" and rev) for r, rev in zip(routes, reverse)]
            if self.sentence_image > 0:
                image = (torch.rand(n, generator=generator) < self.sentence_image).tolist()
                routes = [Route(r.task, r.modality, r.reverse, r.task == "sentence" and im) for r, im in zip(routes, image)]
        return routes

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
    total = sum(probs.values())
    if min(probs.values()) < 0 or total <= 0:
        raise ValueError(f"{where}.tasks needs non-negative probabilities with a positive sum, got {probs}")
    stage = Stage(index, tuple(usable), {name: p / total for name, p in probs.items()})
    return _Span(end, stage, tuple(float(weights.get(name, 1.0)) for name in usable))


def assemble_groups(batch: dict, routes: list[Route]) -> list[dict]:
    """The streams of each sample of a loader batch, grouped by stream count (one model call per group).

    Every group holds ``index`` (its samples' positions in the batch), ``x0 [G, S, C, T, H, W]`` (the
    videos, or the latents of a precomputed batch), ``modality`` long ``[G, S]`` (registry indices),
    ``noised`` bool ``[G, S]``, ``prompts`` (each sample's prompt for its routed modality; "" for
    ``t2v``), ``layout`` (the RoPE layout override, ``None`` for the model's) and, for a precomputed
    batch, that prompt's embedding ``prompt [G, Lp, D]`` with ``prompt_mask`` bool ``[G, Lp]``.
    Two-stream tasks are (rgb, routed modality); a sentence is A, A', B, B' (``unity.sentences``).
    """
    videos = batch["latent"] if "latent" in batch else batch
    rgb = videos["rgb"]  # [B, C, T, H, W]
    kinds = {T2V: [], "pair": [], "sentence": []}
    for i, route in enumerate(routes):
        kinds[route.task if route.task in (T2V, "sentence") else "pair"].append(i)
    if kinds[T2V] and len(kinds[T2V]) < len(routes):
        raise ValueError("a batch cannot mix text-to-video (one stream) with two-stream tasks")
    groups = []
    if kinds[T2V]:
        n = len(routes)
        groups.append({"index": list(range(n)), "x0": rgb[:, None], "layout": None, "prompts": [""] * n,
                       "modality": torch.zeros(n, 1, dtype=torch.long, device=rgb.device),
                       "noised": torch.ones(n, 1, dtype=torch.bool, device=rgb.device)})
    if kinds["pair"]:
        index = kinds["pair"]
        aux = torch.stack([videos[routes[i].modality][i] for i in index])  # [G, C, T, H, W]
        groups.append({
            "index": index, "x0": torch.stack([rgb[index], aux], dim=1), "layout": None,
            "modality": torch.tensor([[MODALITIES["rgb"].index, MODALITIES[routes[i].modality].index] for i in index],
                                     device=rgb.device),
            "noised": torch.tensor([NOISED[routes[i].task] for i in index], device=rgb.device),
        })
    if kinds["sentence"]:
        index = kinds["sentence"]
        x0, modality = sentences.sentence_streams(videos, index, [routes[i].modality for i in index],
                                                  [routes[i].reverse for i in index], sentences.partners(len(routes)),
                                                  [routes[i].image_context for i in index])
        groups.append({"index": index, "x0": x0, "modality": modality, "layout": sentences.LAYOUT,
                       "noised": torch.tensor([sentences.NOISED] * len(index), device=rgb.device)})
    for group in groups:
        if "prompts" not in group:
            group["prompts"] = [batch["prompts"][routes[i].modality][i] for i in group["index"]]
        if "text" in batch:
            _precomputed_prompts(group, batch["text"], [routes[i] for i in group["index"]])
    return groups


def _precomputed_prompts(group: dict, text: dict, routes: list[Route]) -> None:
    """Add the routed modalities' precomputed prompt embeddings ``prompt [G, Lp, D]`` and masks ``[G, Lp]``."""
    if routes[0].task == T2V:
        return
    length = max(text["prompt"][route.modality].shape[1] for route in routes)
    pairs = [pad_tokens(text["prompt"][r.modality][i], text["prompt_mask"][r.modality][i], length)
             for i, r in zip(group["index"], routes)]
    group["prompt"] = torch.stack([p for p, _ in pairs])  # [G, Lp, D]
    group["prompt_mask"] = torch.stack([m for _, m in pairs])  # [G, Lp]


def assemble(batch: dict, routes: list[Route]) -> dict:
    """:func:`assemble_groups` for a batch whose samples all have the same number of streams."""
    groups = assemble_groups(batch, routes)
    if len(groups) != 1:
        raise ValueError("the routes need different stream counts; use assemble_groups")
    return groups[0]
