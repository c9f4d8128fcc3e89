"""The task registry: every task as the choice of which streams are noised, defined once.

Training (routing, validation, metrics), sampling, the CLIs and evaluation all name tasks from
here. A two-stream task runs on ``(rgb, modality)``; ``t2v`` on rgb alone (a run without auxiliary
modalities); ``sentence`` on the four streams A, A', B, B' of a visual sentence (``unity.method.sentences``).
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
    )
}
PAIR_TASKS = ("cond", "est", "joint")  # the UnityVideo tasks over (rgb, modality)
ROUTED_TASKS = (*PAIR_TASKS, "sentence")  # the tasks routing.tasks gives probabilities
T2V = "t2v"
_BY_WORD = {word: task for task in TASKS.values() for word in (task.name, *task.aliases)}
TASK_WORDS = tuple(_BY_WORD)  # every accepted name and alias


def get_task(word: str) -> Task:
    """The task named ``word`` (a name or an alias); ValueError listing the choices otherwise."""
    if word not in _BY_WORD:
        raise ValueError(f"unknown task {word!r}; choose one of {', '.join(TASK_WORDS)}")
    return _BY_WORD[word]
