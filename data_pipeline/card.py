"""Dataset cards: where a set's footage came from and what made each stream, recorded in ``dataset.json``.

Every set records ``license`` (of the footage), ``source_url`` (where it came from, when given) and
``estimators`` (stream -> what produced it: the source, an exact ground truth, or an estimator model
with its architecture and name). ``python -m data_pipeline check`` prints them, and a model exported
from a run trained on the set repeats them in its model card.
"""

from __future__ import annotations

import json
import os

NOT_RECORDED = "not recorded"

SYNTHETIC_ESTIMATORS = {
    "rgb": "rendered by the synthetic world (data_pipeline.synthetic)",
    "depth": "exact ground truth (ray-cast depth)",
    "flow": "exact ground truth (3D motion of the surface point seen at each pixel)",
    "seg": "exact ground truth (instance ids of the ray hits)",
    "pose": "exact ground truth (the humanoids' joints)",
    "densepose": "exact ground truth (body-part surface coordinates)",
}
SYNTHETIC_LICENSE = "no third-party footage: rendered by Unity's synthetic world"


def card(license: str | None = None, source_url: str | None = None, estimators: dict | None = None) -> dict:
    """The card entries of ``dataset.json``."""
    return {"license": license, "source_url": source_url, "estimators": dict(estimators or {})}


def model_description(path: str) -> str:
    """A transformers model folder in words: its architecture and the name it was saved under (or the folder's)."""
    try:
        with open(os.path.join(path, "config.json")) as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    architecture = (config.get("architectures") or [config.get("model_type", "a model")])[0]
    name = config.get("_name_or_path") or os.path.basename(os.path.normpath(path))
    return f"{architecture} ({name})"


def card_lines(info: dict) -> list[str]:
    """The card of a ``dataset.json`` as lines for ``check``: licence, source URL, then what made each stream."""
    estimators = info.get("estimators") or {}
    lines = [
        f"licence     {info.get('license') or NOT_RECORDED}",
        f"source URL  {info.get('source_url') or NOT_RECORDED}",
    ]
    if not estimators:
        return [*lines, f"made by     {NOT_RECORDED}"]
    labels = ["made by"] + [""] * (len(estimators) - 1)
    return lines + [f"{label:<12}{name}: {what}" for label, (name, what) in zip(labels, estimators.items())]
