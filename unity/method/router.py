"""The task router: per sample, a task (``unity.method.tasks``) and an auxiliary modality.

Draws follow the current curriculum stage (UnityVideo §4.3.1: pixel-aligned modalities first, then
all). A run whose data has no auxiliary modality (``data.modalities=[]``) trains text-to-video alone
(``t2v``: one noised rgb stream): the RGB-only baseline of the paper's ablations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch

from data_pipeline.modalities import NAMES
from unity.method.tasks import ROUTED_TASKS, T2V


@dataclass(frozen=True)
class Route:
    """One sample's draw: a task of the registry and the auxiliary modality paired with rgb."""

    task: str
    modality: str
    reverse: bool = False  # sentence only: the modality leads (A = modality, A' = rgb), so B' is video
    image_context: bool = False  # sentence only: A and A' are one frame held still (an image pair for video B)


class Stage(NamedTuple):
    """A curriculum stage as the router applies it."""

    index: int  # position in routing.curriculum (0 without a curriculum)
    modalities: tuple[str, ...]  # auxiliary modalities drawn from, with positive weight
    tasks: dict[str, float]  # normalised probability of every routed task


@dataclass(frozen=True)
class _Span:
    end: float  # first optimizer step after the stage (inf for the last one)
    stage: Stage
    weights: tuple[float, ...]  # routing weight of each of stage.modalities


class TaskRouter:
    """Draws routes under a curriculum of stages that run in order, each for its ``steps``.

    ``routing`` needs ``.tasks`` (probabilities per task), ``.modalities`` (routing weight per
    modality; a modality missing there weighs 1.0) and ``.curriculum`` (stages with ``.steps``,
    ``.modalities``, ``.tasks``), as in :class:`unity.config.schema.RoutingConfig` (validated there).
    A stage of 0 steps lasts
    to the end of the run, and so does the last stage whatever its steps; a stage listing no
    modalities routes all of them. ``available``: the auxiliary modalities the data provides.
    Without a curriculum: ``routing.tasks`` over every available modality. Without any available
    modality every route is ``Route("t2v", "rgb")``.
    """

    def __init__(self, routing, available: Sequence[str]):
        available = tuple(available)
        self.spans = []
        self.sentence_reverse = float(getattr(routing, "sentence_reverse", 0.5))
        self.sentence_image = float(getattr(routing, "sentence_image_context", 0.0))
        if not available:
            return
        wrong = [name for name in available if name not in NAMES[1:]]
        if wrong:
            raise ValueError(f"available modalities {wrong} are not auxiliary modalities ({', '.join(NAMES[1:])})")
        plan = [
            (int(stage.steps), tuple(stage.modalities), stage.tasks, f"routing.curriculum[{i}]")
            for i, stage in enumerate(routing.curriculum)
        ] or [(0, (), routing.tasks, "routing")]
        start = 0
        for index, (steps, listed, tasks, where) in enumerate(plan):
            end = float("inf") if steps == 0 or index == len(plan) - 1 else start + steps
            self.spans.append(_build_span(index, end, listed or available, available, routing.modalities, tasks, where))
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
        mod_ix = torch.multinomial(
            torch.tensor(span.weights, dtype=torch.float64), n, replacement=True, generator=generator
        ).tolist()
        routes = [Route(tasks[i], span.stage.modalities[j]) for i, j in zip(task_ix, mod_ix)]
        if any(route.task == "sentence" for route in routes):  # drawn only then: other runs' draws stay as they were
            reverse = (torch.rand(n, generator=generator) < self.sentence_reverse).tolist()
            routes = [Route(r.task, r.modality, r.task == "sentence" and rev) for r, rev in zip(routes, reverse)]
            if self.sentence_image > 0:
                image = (torch.rand(n, generator=generator) < self.sentence_image).tolist()
                routes = [
                    Route(r.task, r.modality, r.reverse, r.task == "sentence" and im) for r, im in zip(routes, image)
                ]
        return routes

    def _span(self, step: int) -> _Span:
        return next(span for span in self.spans if step < span.end)


def _build_span(index, end, listed, available, weights, tasks, where) -> _Span:
    """Check one stage against the data and the weights, and normalise its probabilities."""
    usable = [name for name in listed if name in available and weights.get(name, 1.0) > 0]
    if not usable:
        raise ValueError(
            f"{where} routes modalities {list(listed)}, none of which the data provides with a positive "
            f"routing.modalities weight (available: {list(available)}, weights: {dict(weights)})"
        )
    probs = {name: float(getattr(tasks, name)) for name in ROUTED_TASKS}
    total = sum(probs.values())
    stage = Stage(index, tuple(usable), {name: p / total for name, p in probs.items()})
    return _Span(end, stage, tuple(float(weights.get(name, 1.0)) for name in usable))
