"""The task router: per sample, a task (``unity.method.tasks``) and its auxiliary modalities.

Draws follow the current curriculum stage (UnityVideo §4.3.1: pixel-aligned modalities first, then
all). A sample holds rgb and k auxiliary streams, k drawn from ``routing.aux_streams`` (k = 1, the
paper's pair, by default) and the k modalities without replacement by their routing weights; with
``routing.subset_tasks`` a sample of k >= 2 noises another subset of its streams, and with
``routing.control_dropout`` each clean auxiliary stream is left out (what per-control guidance
removes at sampling). A run whose data has no auxiliary modality (``data.modalities=[]``) trains
text-to-video alone (``t2v``: one noised rgb stream): the RGB-only baseline of the paper's ablations.
Each extra draw happens only when its knob is on, so runs without them route exactly as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from data_pipeline.modalities import NAMES
from unity.method.tasks import PAIR_TASKS, ROUTED_TASKS, SUBSET, T2V, TASKS, noised_streams, subset_masks, task_of


@dataclass(frozen=True)
class Route:
    """One sample's draw: a task of the registry and the auxiliary modalities beside rgb."""

    task: str
    modality: str  # the (first) auxiliary modality; "rgb" for t2v
    reverse: bool = False  # sentence only: the modality leads (A = modality, A' = rgb), so B' is video
    image_context: bool = False  # sentence only: A and A' are one frame held still (an image pair for video B)
    extra: tuple[str, ...] = ()  # further auxiliary modalities: the streams are (rgb, modality, *extra)
    mask: tuple[bool, ...] = ()  # subset task only: per stream of (rgb, modality, *extra), whether it is noised

    @property
    def modalities(self) -> tuple[str, ...]:
        """The auxiliary streams beside rgb, in stream order (none for t2v)."""
        return () if self.task == T2V else (self.modality, *self.extra)

    @property
    def noised(self) -> tuple[bool, ...]:
        """Per stream, whether this route noises it (a sentence's A, A', B, B'; else rgb and the modalities)."""
        if self.mask:
            return self.mask
        if self.task in PAIR_TASKS:
            return noised_streams(self.task, len(self.modalities))
        return TASKS[self.task].noised

    @property
    def label(self) -> str:
        """The route's streams in metric names: the modality, ``depth+pose`` for several, ``rgb`` for t2v."""
        return "+".join(self.modalities) or "rgb"

    @property
    def metric_label(self) -> str:
        """Its name in training metrics: the label for one modality, ``k2``, ``k3`` ... for k of them (any ones)."""
        return self.label if len(self.modalities) < 2 else f"k{len(self.modalities)}"


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
    aux_streams: tuple[float, ...] = (1.0,)  # weight of k = 1, 2, ... auxiliary streams, as many k as the stage fills


class TaskRouter:
    """Draws routes under a curriculum of stages that run in order, each for its ``steps``.

    ``routing`` needs ``.tasks`` (probabilities per task), ``.modalities`` (routing weight per
    modality; a modality missing there weighs 1.0) and ``.curriculum`` (stages with ``.steps``,
    ``.modalities``, ``.tasks``), as in :class:`unity.config.schema.RoutingConfig` (validated there).
    A stage of 0 steps lasts
    to the end of the run, and so does the last stage whatever its steps; a stage listing no
    modalities routes all of them. ``available``: the auxiliary modalities the data provides.
    Without a curriculum: ``routing.tasks`` over every available modality. Without any available
    modality every route is ``Route("t2v", "rgb")``. Optional: ``.aux_streams`` (weights of k = 1, 2, ...;
    a stage with fewer modalities routes the k it can fill), ``.subset_tasks``, ``.control_dropout``.
    """

    def __init__(self, routing, available: Sequence[str]):
        available = tuple(available)
        self.spans = []
        self.sentence_reverse = float(getattr(routing, "sentence_reverse", 0.5))
        self.sentence_image = float(getattr(routing, "sentence_image_context", 0.0))
        self.aux_streams = tuple(float(w) for w in getattr(routing, "aux_streams", (1.0,)))
        self.subset_tasks = float(getattr(routing, "subset_tasks", 0.0))
        self.control_dropout = float(getattr(routing, "control_dropout", 0.0))
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
            span = _build_span(index, end, listed or available, available, routing.modalities, tasks, where)
            fits = self.aux_streams[: len(span.stage.modalities)]
            if sum(fits) <= 0:
                raise ValueError(
                    f"{where} routes {len(span.stage.modalities)} modalities, fewer than any k that "
                    f"routing.aux_streams ({list(self.aux_streams)}) weighs"
                )
            self.spans.append(replace(span, aux_streams=fits))
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
        if any(w > 0 for w in span.aux_streams[1:]):
            routes = self._add_streams(routes, span, generator)
        if self.subset_tasks > 0:
            routes = self._draw_subsets(routes, generator)
        if self.control_dropout > 0:
            routes = self._drop_controls(routes, generator)
        return routes

    def _add_streams(self, routes: list[Route], span: _Span, generator: torch.Generator) -> list[Route]:
        """Draw k per sample and give the UnityVideo-task routes k - 1 more modalities, weighted, without repeats."""
        ks = torch.multinomial(
            torch.tensor(span.aux_streams, dtype=torch.float64), len(routes), True, generator=generator
        )
        out = []
        for route, k in zip(routes, (ks + 1).tolist()):
            if k > 1 and route.task in PAIR_TASKS:
                modalities = span.stage.modalities
                weights = torch.tensor([0.0 if m == route.modality else w for m, w in zip(modalities, span.weights)])
                picks = torch.multinomial(weights.double(), k - 1, replacement=False, generator=generator).tolist()
                route = replace(route, extra=tuple(modalities[j] for j in picks))
            out.append(route)
        return out

    def _draw_subsets(self, routes: list[Route], generator: torch.Generator) -> list[Route]:
        """With probability ``routing.subset_tasks``, a route of k >= 2 noises a uniformly drawn other subset."""
        chosen = (torch.rand(len(routes), generator=generator) < self.subset_tasks).tolist()
        out = []
        for route, subset in zip(routes, chosen):
            if subset and route.task in PAIR_TASKS and len(route.modalities) >= 2:
                masks = subset_masks(len(route.modalities))
                pick = int(torch.randint(len(masks), (1,), generator=generator))
                route = replace(route, task=SUBSET, mask=masks[pick])
            out.append(route)
        return out

    def _drop_controls(self, routes: list[Route], generator: torch.Generator) -> list[Route]:
        """Leave each clean auxiliary stream out with probability ``routing.control_dropout``: the sample then
        has fewer streams (rgb alone, t2v, when its only control goes), as sampling without that control."""
        out = []
        for route in routes:
            if route.task not in (*PAIR_TASKS, SUBSET):
                out.append(route)
                continue
            noised = route.noised
            drop = (torch.rand(len(route.modalities), generator=generator) < self.control_dropout).tolist()
            kept = [s for s in range(1, len(noised)) if noised[s] or not drop[s - 1]]
            if len(kept) < len(route.modalities):
                route = _with_streams(route, kept)
            out.append(route)
        return out

    def _span(self, step: int) -> _Span:
        return next(span for span in self.spans if step < span.end)


def _with_streams(route: Route, kept: list[int]) -> Route:
    """``route`` reduced to rgb and its auxiliary streams ``kept`` (stream indices >= 1), its task renamed to fit."""
    modalities = [route.modalities[s - 1] for s in kept]
    if not modalities:
        return Route(T2V, "rgb")
    mask = (route.noised[0], *(route.noised[s] for s in kept))
    task = task_of(mask)
    return Route(task, modalities[0], extra=tuple(modalities[1:]), mask=mask if task == SUBSET else ())


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
