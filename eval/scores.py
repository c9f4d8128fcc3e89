"""Score predicted visual forms of a modality against raw ground truth, over a set of clips.

A prediction is what the model writes: the modality's uint8 visual form. It is read back through
the registry **without any parameter of the ground truth** (no oracle): depth as relative disparity,
aligned per clip (scale and shift) as the DepthCrafter protocol does; flow as speed relative to an
unknown radius, brought to pixels by one least-squares scale per clip (the same kind of alignment);
segmentation against the whole palette, not the clip's instance ids, with instances matched per clip;
skeletons with the person count the rendering itself shows. Baselines are read and scored the same
way. ``PROTOCOL`` says it in one line per modality, and the tables print it. The metric of each
modality is in ``eval.metrics``; what cannot be scored is reported as not measurable with the
reason, never as a number.
"""

from __future__ import annotations

import numpy as np

from data_pipeline.benchmark import BenchmarkClip
from data_pipeline.modalities import MODALITIES
from eval.metrics import (
    densepose_metrics,
    depth_metrics,
    flow_metrics,
    instance_miou,
    least_squares_scale,
    mask_map,
    mean_over_videos,
    pck,
)

HEADLINE = {  # the metrics shown in tables, with whether higher is better
    "depth": (("abs_rel", False), ("delta1", True)),
    "flow": (("epe", False), ("fl_all", False)),
    "seg": (("miou", True), ("map", True), ("map50", True)),
    "pose": (("pck", True),),
    "densepose": (("part_accuracy", True), ("part_miou", True)),
}
PROTOCOL = {  # how a prediction is read back and scored, in one line (no ground-truth parameter is used)
    "depth": "relative disparity, one least-squares scale and shift per clip, then AbsRel and δ<1.25 in depth",
    "flow": "relative speed, one least-squares scale per clip (no ground-truth radius), then EPE (px) and Fl-all",
    "seg": "colours snapped to the whole palette; instances matched per clip, mIoU per clip averaged; mask mAP",
    "pose": "skeletons read with the person count the rendering shows; PCK@0.1, people matched per frame",
    "densepose": "part and (u, v) read from the IUV colours; part accuracy and part mIoU over body pixels",
}


def read_back(modality: str, video: np.ndarray) -> np.ndarray:
    """The raw estimate in a predicted visual form ``video [T, H, W, 3]``, read without ground-truth parameters."""
    return MODALITIES[modality].decode(video, None)


def read_reference(modality: str, video: np.ndarray, clip: BenchmarkClip) -> np.ndarray:
    """A visual form read as a stand-in for ground truth (cross-stream consistency).

    Only the units come from the clip: depth in metres over the clip's disparity range, flow in
    pixels of the clip's radius, so the scores read on the scale of real scenes. Segmentation and
    skeletons are read as a prediction is (the whole palette, the person count the rendering shows).
    """
    if modality in ("depth", "flow"):
        return MODALITIES[modality].decode(video, clip.encoding(modality))
    return read_back(modality, video)


def not_measurable(reason: str) -> dict:
    return {"not_measurable": reason}


def _instances(ids: np.ndarray, score: float | None = None) -> list[dict]:
    """One track per non-zero id of ``ids [T, H, W]`` (a prediction when ``score`` is given)."""
    tracks = []
    for i in np.unique(ids):
        if i != 0:
            tracks.append({"mask": ids == i, "category": 1, **({"score": score} if score is not None else {})})
    return tracks


def _flow_scores(estimate: np.ndarray, reference: np.ndarray) -> dict:
    """Flow metrics over all frames but the last (zero by convention), after the least-squares scale."""
    scale = least_squares_scale(estimate[:-1], reference[:-1])
    return flow_metrics(scale * estimate[:-1], reference[:-1])


def score_estimates(modality: str, estimates: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """Metrics of raw ``estimates`` (read back as a prediction) against raw ``references``, one pair per clip.

    depth: AbsRel, δ1, RMSE (aligned per clip); flow: EPE, Fl-all after the per-clip scale; seg:
    instance mIoU per clip (averaged) and mask mAP with every instance one "target" category (the
    model gives no confidence, so every mask scores 1); pose: PCK@0.1 (0 when nothing is read back);
    densepose: part accuracy, part mIoU and uv error. Clips without anything to score (no body, no
    visible joint in the reference) are left out and counted in ``skipped``.
    """
    if modality == "depth":
        return {
            **mean_over_videos([depth_metrics(e, r) for e, r in zip(estimates, references)]),
            "videos": len(estimates),
        }
    if modality == "flow":
        scores = [_flow_scores(e, r) for e, r in zip(estimates, references)]
        return {**mean_over_videos(scores), "videos": len(estimates)}
    if modality == "seg":
        ids = [np.asarray(e, np.int64) for e in estimates]
        gts = [np.asarray(r, np.int64) for r in references]
        maps = mask_map([_instances(e, 1.0) for e in ids], [_instances(r) for r in gts])
        return {"miou": float(np.mean([instance_miou(e, r) for e, r in zip(ids, gts)])), **maps, "videos": len(ids)}
    scorer, has_target = {
        "pose": (lambda e, r: {"pck": pck(e, r)}, lambda r: (r[..., 2] > 0).any()),
        "densepose": (densepose_metrics, lambda r: (np.rint(r[..., 0]) > 0).any()),
    }[modality]
    pairs = [(e, r) for e, r in zip(estimates, references) if has_target(r)]
    if not pairs:
        return not_measurable(f"no clip has a {modality} target in its reference")
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
        estimates = [read_back(modality, video) for video in videos]
        return score_estimates(modality, estimates, [clip.gt[modality] for clip in clips])
    except ValueError as e:
        return not_measurable(f"the predictions could not be scored: {e}")


def score_agreement(modality: str, videos: np.ndarray, references: np.ndarray, clips: list[BenchmarkClip]) -> dict:
    """Metrics of one set of predicted visual forms against another (e.g. jointly generated vs estimated).

    ``videos`` are read back as predictions, ``references`` by ``read_reference``.
    """
    try:
        estimates = [read_back(modality, video) for video in videos]
        refs = [read_reference(modality, ref, clip) for ref, clip in zip(references, clips)]
        return score_estimates(modality, estimates, refs)
    except ValueError as e:
        return not_measurable(f"the streams could not be compared: {e}")
