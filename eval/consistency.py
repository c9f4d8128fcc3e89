"""Cross-stream consistency of joint generation, defined so that degenerate outputs cannot win it.

Joint generation draws rgb and a modality together from a caption; consistency asks whether the
generated modality agrees with the modality the model estimates from the generated rgb. The scores
align the prediction to the reference per clip (depth: scale and shift; flow: scale), and alignment
to a reference without structure is meaningless: any prediction fits a flat map perfectly, so a
model that draws flat videos would score best. Hence:

- a clip counts only when the generated rgb, the generated modality and the estimate all have
  structure: the standard deviation of their pixel values over the clip is at least ``FLAT_STD``
  grey levels (of 255); the others are counted as ``flat_clips`` and shown beside the score, and
  when no clip is left the score is not measurable;
- a negative control, ``shuffled pairs``: each generated modality against the estimate from *another*
  clip's generated rgb (the next one, over the same clips). Agreement that is no better than this
  says nothing about the two streams belonging together (both may just follow the training prior);
- the same measure on real data (the ground-truth modality against the estimate from the real rgb,
  ``real``) is the ceiling. A model that scores above it (``above_ceiling``) agrees with itself more
  than its estimator agrees with real scenes: typically both tasks copy the rgb into the modality, and
  an estimator that is part of the model is not independent of its generator. The flag says so;
  ``eval.unibench --referee RUN`` estimates the references with another model instead.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.benchmark import BenchmarkClip
from eval.scores import HEADLINE, not_measurable, score_agreement

FLAT_STD = 2.0  # grey levels of 255: a clip whose pixel values vary less than this has no structure


def is_flat(video: np.ndarray) -> bool:
    """Whether a uint8 video ``[T, H, W, 3]`` is (almost) one colour: std over all its values < ``FLAT_STD``."""
    return float(np.asarray(video, np.float64).std()) < FLAT_STD


def beats(scores: dict, control: dict, modality: str) -> bool | None:
    """Whether ``scores`` is better than ``control`` on the modality's first headline metric (None: not comparable)."""
    name, higher = HEADLINE[modality][0]
    if name not in scores or name not in control:
        return None
    return bool(scores[name] > control[name]) if higher else bool(scores[name] < control[name])


def _structured(generated: np.ndarray, estimated: np.ndarray, rgb: np.ndarray) -> list[int]:
    """Indices of the clips whose rgb, modality and estimate all have structure."""
    return [i for i in range(len(rgb)) if not (is_flat(rgb[i]) or is_flat(generated[i]) or is_flat(estimated[i]))]


def _flat_reason() -> dict:
    return not_measurable(
        f"every clip is flat (pixel std < {FLAT_STD:g} grey levels in the rgb, the modality or the estimate)"
    )


def joint_consistency(
    modality: str,
    generated: np.ndarray,
    estimated: np.ndarray,
    rgb: np.ndarray,
    clips: list[BenchmarkClip],
    real: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict:
    """Consistency of jointly generated ``generated [N, T, H, W, 3]`` with ``estimated`` (from the generated ``rgb``).

    ``real``: ``(ground-truth modality, its estimate from the real rgb, the real rgb)``, scored the same
    way as the ceiling. Returns ``{"model", "shuffled pairs", "real video": scores, "flat_clips",
    "real_flat_clips", "clips", "beats_shuffled", "above_ceiling"}``, the scores over the clips with structure only
    (``not_measurable`` when none or, for the shuffled control, fewer than two are left).
    """
    keep = _structured(generated, estimated, rgb)
    out = {"flat_clips": len(clips) - len(keep), "clips": len(clips), "flat_std": FLAT_STD}
    if not keep:
        out.update({"model": _flat_reason(), "shuffled pairs": _flat_reason(), "beats_shuffled": None})
    else:
        subset = [clips[i] for i in keep]
        out["model"] = score_agreement(modality, generated[keep], estimated[keep], subset)
        if len(keep) < 2:
            out["shuffled pairs"] = not_measurable("fewer than two clips with structure to pair across")
        else:
            other = np.roll(np.asarray(keep), -1)  # clip i against the estimate of the next kept clip
            out["shuffled pairs"] = score_agreement(modality, generated[keep], estimated[other], subset)
        out["beats_shuffled"] = beats(out["model"], out["shuffled pairs"], modality)
    if real is not None:
        truth, real_estimated, real_rgb = real
        kept = _structured(truth, real_estimated, real_rgb)
        out["real_flat_clips"] = len(clips) - len(kept)
        subset = [clips[i] for i in kept]
        out["real video"] = (
            score_agreement(modality, truth[kept], real_estimated[kept], subset) if kept else _flat_reason()
        )
        out["above_ceiling"] = beats(out["model"], out["real video"], modality) if keep else None
    return out
