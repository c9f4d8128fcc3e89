"""The task registry: every task as the choice of which streams are noised, defined once.

Training (routing, validation, metrics), sampling, the CLIs and evaluation all name tasks from
here. The UnityVideo tasks run on ``(rgb, m_1, ..., m_k)``: rgb and k auxiliary streams (k = 1 is
the paper's pair) and keep their meaning at any k: ``cond`` all controls -> rgb, ``est`` rgb -> every
modality, ``joint`` text -> everything. ``subset`` is any other non-empty set of noised streams
(k >= 2, e.g. rgb and depth from pose), carried by the route. ``t2v`` runs on rgb alone; ``sentence``
on the four streams A, A', B, B' of a visual sentence (``unity.method.sentences``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    name: str  # the name used in configs, metrics and on the command line
    noised: tuple[bool, ...]  # per stream: generated (noised) or given (clean)
    description: str  # what it computes, in the paper's notation
    aliases: tuple[str, ...] = ()  # other accepted words (older command-line names)


TASKS = {
    task.name: task
    for task in (
        Task("cond", (True, False), "conditional generation u(V_r | V_m, C): rgb from a clean modality", ("generate",)),
        Task("est", (False, True), "estimation u(V_m | V_r): the modality from clean rgb", ("estimate",)),
        Task("joint", (True, True), "joint generation u(V_r, V_m | C): rgb and the modality from text"),
        Task("t2v", (True,), "text to video: rgb alone (a run without auxiliary modalities)"),
        Task("sentence", (False, False, False, True), "visual sentence (A, A', B, B'): B' from the example pair"),
        Task("subset", (), "any other non-empty set of noised streams over (rgb, m_1, ..., m_k), k >= 2"),
    )
}
PAIR_TASKS = ("cond", "est", "joint")  # the UnityVideo tasks over (rgb, modality)
ROUTED_TASKS = (*PAIR_TASKS, "sentence")  # the tasks routing.tasks gives probabilities
T2V = "t2v"
SUBSET = "subset"
_BY_WORD = {word: task for task in TASKS.values() for word in (task.name, *task.aliases)}
TASK_WORDS = tuple(_BY_WORD)  # every accepted name and alias


def get_task(word: str) -> Task:
    """The task named ``word`` (a name or an alias); ValueError listing the choices otherwise."""
    if word not in _BY_WORD:
        raise ValueError(f"unknown task {word!r}; choose one of {', '.join(TASK_WORDS)}")
    return _BY_WORD[word]


def noised_streams(word: str, aux: int) -> tuple[bool, ...]:
    """Per stream of ``(rgb, m_1, ..., m_aux)``, whether ``word``'s task noises it (a UnityVideo task at any k)."""
    task = get_task(word)
    if task.name not in PAIR_TASKS:
        raise ValueError(
            f"task {task.name} has a fixed arrangement of streams; rgb with {aux} modalities needs one of "
            f"{', '.join(PAIR_TASKS)}"
        )
    rgb, modality = task.noised
    return (rgb, *(modality,) * aux)


def task_of(noised: tuple[bool, ...]) -> str:
    """The task name of a noised mask over ``(rgb, m_1, ..., m_k)``: t2v, cond, est, joint, else subset."""
    rgb, aux = noised[0], noised[1:]
    if not any(noised):
        raise ValueError("a task noises at least one stream; this mask noises none")
    if not aux:
        return T2V
    if all(aux) or not any(aux):
        return "joint" if rgb and all(aux) else ("cond" if rgb else "est")
    return SUBSET


def subset_masks(aux: int) -> list[tuple[bool, ...]]:
    """Every noised mask over ``(rgb, m_1, ..., m_aux)`` that :func:`task_of` calls ``subset`` (none for aux < 2)."""
    masks = [tuple(bool(bits >> s & 1) for s in range(aux + 1)) for bits in range(1, 2 ** (aux + 1))]
    return [mask for mask in masks if task_of(mask) == SUBSET]
