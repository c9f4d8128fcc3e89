"""Score predicted visual forms of a modality against raw ground truth, over a set of clips.

A prediction is what the model writes: the modality's uint8 visual form. It is read back through
the registry with the clip's own encoding parameters (the depth range is left out: depth is scored
as relative disparity, aligned per clip), so a flow estimate is scaled by the clip's stored max
radius, a segmentation is snapped to the clip's instance colours and a skeleton is read with the
clip's person count. The metric of each modality is in ``eval.metrics``; what cannot be read back
is reported as not measurable with the reason, never as a number.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.benchmark import BenchmarkClip
from data_pipeline.modalities import MODALITIES
from eval.metrics import densepose_metrics, depth_metrics, flow_metrics, mask_map, mean_over_videos, miou, pck

HEADLINE = {  # the metrics shown in tables, with whether higher is better
    "depth": (("abs_rel", False), ("delta1", True)),
    "flow": (("epe", False), ("fl_all", False)),
    "seg": (("miou", True), ("map", True), ("map50", True)),
    "pose": (("pck", True),),
    "densepose": (("part_accuracy", True), ("part_miou", True)),
}


def read_back(modality: str, video: np.ndarray, clip: BenchmarkClip) -> np.ndarray:
    """The raw estimate in a predicted visual form ``video`` of ``clip``'s ``modality``."""
    meta = None if modality == "depth" else clip.encoding(modality)
    return MODALITIES[modality].decode(video, meta)


def not_measurable(reason: str) -> dict:
    return {"not_measurable": reason}


def _instances(ids: np.ndarray, score: float | None = None) -> list[dict]:
    """One track per non-zero id of ``ids [T, H, W]`` (a prediction when ``score`` is given)."""
    tracks = []
    for i in np.unique(ids):
        if i != 0:
            tracks.append({"mask": ids == i, "category": 1, **({"score": score} if score is not None else {})})
    return tracks


def score_estimates(modality: str, estimates: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Metrics of raw ``estimates`` against raw ``references`` (ground truth), one pair per clip.

    depth: AbsRel, δ1, RMSE (relative disparity vs metres, aligned per clip); flow: EPE, Fl-all
    over all frames but the last (whose forward flow is zero by convention); seg: mIoU over one
    confusion matrix of instance ids and mask mAP with every instance one "target" category (the
    model gives no confidence, so every mask scores 1); pose: PCK@0.1; densepose: part accuracy,
    part mIoU and uv error. Clips without anything to score (no body, no visible joint) are left
    out and counted in ``skipped``.
    """
    if modality == "depth":
        return {
            **mean_over_videos([depth_metrics(e, r) for e, r in zip(estimates, references)]),
            "videos": len(estimates),
        }
    if modality == "flow":
        return {
            **mean_over_videos([flow_metrics(e[:-1], r[:-1]) for e, r in zip(estimates, references)]),
            "videos": len(estimates),
        }
    if modality == "seg":
        ids = [np.asarray(e, np.int64) for e in estimates]
        gts = [np.asarray(r, np.int64) for r in references]
        maps = mask_map([_instances(e, 1.0) for e in ids], [_instances(r) for r in gts])
        return {"miou": miou(ids, gts), **maps, "videos": len(ids)}
    scorer, has_target = {
        "pose": (lambda e, r: {"pck": pck(e, r)}, lambda r: (r[..., 2] > 0).any()),
        "densepose": (densepose_metrics, lambda r: (np.rint(r[..., 0]) > 0).any()),
    }[modality]
    pairs = [(e, r) for e, r in zip(estimates, references) if has_target(r)]
    if not pairs:
        return not_measurable(f"no clip has a {modality} target in its ground truth")
    if modality == "pose" and not any((e[..., 2] > 0).any() for e, _ in pairs):
        return not_measurable("no keypoint could be read back from the predicted skeleton renderings")
    results = [scorer(e, r) for e, r in pairs]
    keys = [k for k in results[0] if all(r[k] is not None for r in results)]
    return {
        **{k: float(np.mean([r[k] for r in results])) for k in keys},
        "videos": len(pairs),
        "skipped": len(estimates) - len(pairs),
    }


def score_predictions(modality: str, videos: np.ndarray, clips: list[BenchmarkClip]) -> dict:
    """Metrics of predicted visual forms ``videos [N, T, H, W, 3]`` against the clips' raw ground truth."""
    if any(modality not in clip.gt for clip in clips):
        return not_measurable(f"the clips carry no raw {modality} ground truth (build them with --with-gt)")
    try:
        estimates = [read_back(modality, video, clip) for video, clip in zip(videos, clips)]
    except ValueError as e:
        return not_measurable(f"the predictions could not be read back: {e}")
    return score_estimates(modality, estimates, [clip.gt[modality] for clip in clips])


def score_agreement(modality: str, videos: np.ndarray, references: np.ndarray, clips: list[BenchmarkClip]) -> dict:
    """Metrics of one set of predicted visual forms against another (e.g. jointly generated vs estimated).

    The reference forms are read back like ground truth: depth in metres with the clip's depth
    range, the rest with the clip's encoding parameters.
    """
    try:
        estimates = [read_back(modality, video, clip) for video, clip in zip(videos, clips)]
        refs = [MODALITIES[modality].decode(ref, clip.encoding(modality)) for ref, clip in zip(references, clips)]
        return score_estimates(modality, estimates, refs)
    except ValueError as e:
        return not_measurable(f"the streams could not be compared: {e}")
