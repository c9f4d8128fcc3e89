"""UniBench's multi-stream tables: several controls at once, and several modalities estimated in one pass.

- **Multi-control fidelity**: RGB generated from each control alone and from all of them together
  (``run_task("cond", [m_1, m_2])``; with ``weights``, once more with per-control guidance weights).
  The fidelity to each control is that modality estimated back from the generated RGB by the same
  model and scored against the ground truth, so the table answers whether adding a control keeps (or
  improves) the fidelity to the first, and which control wins. The real video is the ceiling; another
  clip's real video the negative control (it follows no control of this clip).
- **Multi-estimation**: the modalities estimated from the real RGB in one pass (rgb and k noised
  streams in one call) against one call per modality: the quality of each, and the seconds per clip.
"""

from __future__ import annotations

import time

import numpy as np

from data_pipeline.benchmark import BenchmarkClip, clip_features
from data_pipeline.modalities import MODALITIES
from data_pipeline.preview import film_strip, write_image
from eval.scores import HEADLINE, score_predictions
from unity.inference.pipeline import run_task

DEFAULT_CONTROLS = ("depth", "pose")  # rgb generated from both, and from each alone
DEFAULT_ESTIMATED = ("depth", "flow", "seg")  # estimated in one pass, and one at a time


def choose(controls, estimated, trained, with_gt: list[str]) -> tuple[list[str], list[str]]:
    """The controls and the jointly estimated modalities to evaluate: as given, else the defaults (those the
    run trained with ground truth in the clips) when the run routes k >= 2 auxiliary streams, else none."""
    several = any(weight > 0 for weight in list(trained.config.routing.get("aux_streams", [1.0]))[1:])
    usable = [m for m in trained.config.data.modalities if m in with_gt]
    picked = []
    for given, default in ((controls, DEFAULT_CONTROLS), (estimated, DEFAULT_ESTIMATED)):
        chosen = list(given) if given is not None else [m for m in default if m in usable] if several else []
        missing = [m for m in chosen if m not in with_gt]
        if missing:
            raise ValueError(f"the clips carry no raw ground truth for {', '.join(missing)} (multi-stream tables)")
        picked.append(chosen)
    return picked[0], picked[1]


def clip_prompts(clips: list[BenchmarkClip], modalities) -> dict[str, list[str]]:
    """Each clip's own prompt of every modality (the registry's when the clip has none)."""
    return {m: [c.prompts.get(m, MODALITIES[m].prompt) for c in clips] for m in modalities}


def multi_control(bench, clips: list[BenchmarkClip], controls: list[str], weights: dict[str, float] | None = None):
    """``{"modalities", "rows": {label: {"fidelity": {modality: scores}, "seconds_per_clip"}}}`` and the
    generated videos by label. ``bench`` gives ``trained``, ``gen`` (settings) and ``estimate``."""
    captions, features = [c.caption for c in clips], clip_features(clips)
    truth = {m: np.stack([c.videos[m] for c in clips]) for m in controls}
    sets = [(m,) for m in controls] + [tuple(controls)]
    runs = [("+".join(s), s, None) for s in sets]
    if weights:
        runs.append((f"{'+'.join(controls)} ({' '.join(f'{m}={w:g}' for m, w in weights.items())})", sets[-1], weights))
    rows, videos = {}, {}
    for label, given, weighed in runs:
        start = time.perf_counter()
        generated = run_task(
            bench.trained,
            "cond",
            list(given),
            captions,
            control=[truth[m] for m in given],
            prompts=clip_prompts(clips, given),
            settings=bench.gen,
            features=features,
            control_weights=weighed,
        )["rgb"]
        seconds = (time.perf_counter() - start) / len(clips)
        fidelity = {m: score_predictions(m, bench.estimate(m, generated, clips), clips) for m in controls}
        rows[label], videos[label] = {"fidelity": fidelity, "seconds_per_clip": seconds}, generated
    rgb = np.stack([c.videos["rgb"] for c in clips])
    real = {m: bench.estimate(m, rgb, clips) for m in controls}
    rows["real video (ceiling)"] = {"fidelity": {m: score_predictions(m, real[m], clips) for m in controls}}
    if len(clips) > 1:  # negative control: clip i's controls against the video of clip i - 1
        other = {m: score_predictions(m, np.roll(real[m], 1, axis=0), clips) for m in controls}
        rows["another clip's real video"] = {"fidelity": other}
    return {"modalities": list(controls), "rows": rows}, {**truth, **videos}


def multi_estimation(bench, clips: list[BenchmarkClip], modalities: list[str]):
    """``{"modalities", "one pass": {...}, "one at a time": {...}}`` (each ``scores`` per modality and
    ``seconds_per_clip``) and the estimates by ``(way, modality)``. ``bench``: ``trained``, ``est``, ``estimate``."""
    rgb = np.stack([c.videos["rgb"] for c in clips])
    captions = [c.caption for c in clips]
    start = time.perf_counter()
    together = run_task(
        bench.trained,
        "est",
        list(modalities),
        captions,
        rgb=rgb,
        prompts=clip_prompts(clips, modalities),
        settings=bench.est,
        features=clip_features(clips),
    )
    one_pass = (time.perf_counter() - start) / len(clips)
    start = time.perf_counter()
    alone = {m: bench.estimate(m, rgb, clips) for m in modalities}
    one_at_a_time = (time.perf_counter() - start) / len(clips)
    result = {
        "modalities": list(modalities),
        "one pass": {
            "scores": {m: score_predictions(m, together[m], clips) for m in modalities},
            "seconds_per_clip": one_pass,
        },
        "one at a time": {
            "scores": {m: score_predictions(m, alone[m], clips) for m in modalities},
            "seconds_per_clip": one_at_a_time,
        },
    }
    estimates = {("one pass", m): together[m] for m in modalities} | {
        ("one at a time", m): alone[m] for m in modalities
    }
    return result, estimates


def evaluate(bench, clips, controls: list[str], estimate: list[str], weights, images, name: str) -> dict:
    """The split's ``multi_control`` (when two or more controls) and ``multi_estimation`` (two or more
    modalities) results, with their film strips written to ``images``."""
    out, control_videos, estimates = {}, {}, {}
    if len(controls) > 1:
        out["multi_control"], control_videos = multi_control(bench, clips, controls, weights)
    if len(estimate) > 1:
        out["multi_estimation"], estimates = multi_estimation(bench, clips, estimate)
    write_grids(images, name, clips, control_videos, estimates)
    return out


def write_grids(images, name: str, clips: list[BenchmarkClip], control_videos: dict, estimates: dict) -> None:
    """Film strips of the first clip: controls and the RGB generated from each set; ground truth and estimates."""
    if control_videos:
        rows = [(label.replace("+", "+\n"), videos[0]) for label, videos in control_videos.items()]
        write_image(str(images / f"{name}_multi_control.png"), film_strip(rows))
    if estimates:
        rows = [("rgb", clips[0].videos["rgb"])]
        for modality in dict.fromkeys(m for _, m in estimates):
            rows.append((f"{modality}\nground truth", clips[0].videos[modality]))
            rows += [(f"{modality}\n{way}", estimates[(way, modality)][0]) for way in ("one pass", "one at a time")]
        write_image(str(images / f"{name}_multi_estimation.png"), film_strip(rows))


def _cells(modality: str, scores: dict) -> list:
    if "not_measurable" in scores:
        return [scores] * len(HEADLINE[modality])
    return [scores.get(name) for name, _ in HEADLINE[modality]]


def _names(modalities) -> list[str]:
    return [f"{m} {name} {'↑' if higher else '↓'}" for m in modalities for name, higher in HEADLINE[m]]


def tables(tag: str, split: dict) -> list[tuple[str, str, list[str], list[list]]]:
    """``(title, note, header, rows)`` of the multi-control and multi-estimation tables of one split, if run."""
    out = []
    if "multi_control" in split:
        control = split["multi_control"]
        modalities = control["modalities"]
        rows = [
            [label, *(c for m in modalities for c in _cells(m, row["fidelity"][m])), row.get("seconds_per_clip")]
            for label, row in control["rows"].items()
        ]
        out.append(
            (
                f"{tag}: rgb generated from several controls",
                "fidelity to each control: the modality estimated back from the generated rgb vs ground truth",
                ["controls given", *_names(modalities), "s / clip"],
                rows,
            )
        )
    if "multi_estimation" in split:
        estimation = split["multi_estimation"]
        modalities = estimation["modalities"]
        rows = [
            [
                way,
                *(c for m in modalities for c in _cells(m, estimation[way]["scores"][m])),
                estimation[way]["seconds_per_clip"],
            ]
            for way in ("one pass", "one at a time")
        ]
        out.append(
            (
                f"{tag}: {', '.join(modalities)} estimated in one pass vs one at a time",
                "one pass: rgb and every modality in one model call per step; one at a time: a call per modality",
                ["estimation", *_names(modalities), "s / clip"],
                rows,
            )
        )
    return out
