"""VBench dimensions (Huang et al., 2024; github.com/Vchitect/VBench) for generated videos.

Each function takes one video as RGB uint8 frames ``[T, H, W, 3]`` and follows the VBench file
named in its docstring. What VBench computes with a network we do not ship is reported as
``{"value": None, "reason": ...}``, never as a stand-in number; a stand-in computed another way
carries its own name: ``motion_smoothness_linear_proxy`` (no AMT) and ``dynamic_degree_dis``
(OpenCV DIS flow instead of RAFT; ``dynamic_degree`` is VBench's, with RAFT, the default when
``raft_large.*`` is in the weights folder). Model files: see eval/vbench_models.py and, for aesthetic
and imaging quality, overall consistency and AMT motion smoothness, eval/vbench_files.py. Videos are
decoded with decord, as VBench does, when it is installed (extra ``vbench``), else with OpenCV;
the output says which (``eval.video_decoder``).

    python -m eval.vbench --videos DIR [--dims ...] [--weights DIR] [--prompts FILE] [--decoder ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import cv2
import numpy as np
import torch

from data_pipeline.video_io import VideoDecodeError
from eval import vbench_quality
from eval.static_flag import describe, flag_from_differences, frame_difference
from eval.vbench_files import MissingWeights, not_computed, read_prompts
from eval.vbench_models import (
    RAFT_MIN_SIZE,
    RAFT_STEM,
    WeightsError,
    extract_features,
    has_weights,
    load_backbone,
    load_raft,
    preprocess_clip,
    preprocess_dino,
    raft_flow,
)
from eval.video_decoder import DECODERS, read_frames, resolve_decoder

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm")
NO_WEIGHTS = ("temporal_flickering", "motion_smoothness_linear_proxy", "dynamic_degree_dis")
WEIGHTED = ("subject_consistency", "background_consistency")
RAFT_DIMENSION = "dynamic_degree"  # VBench's dynamic degree: RAFT flow, needs raft_large.* weights
EXTERNAL = {  # what motion_smoothness() needs when called without an interpolator
    "motion_smoothness": "needs a frame interpolator (VBench: AMT-S, amt-s.pth); pass interpolate=fn(frame0, frame1)",
}
QUALITY = vbench_quality.DIMENSIONS  # aesthetic, imaging, overall consistency, AMT smoothness: eval/vbench_quality.py
DIMENSIONS = NO_WEIGHTS + WEIGHTED + (RAFT_DIMENSION,) + QUALITY
PAIR_WEIGHTED = WEIGHTED  # VBench averages these over all frames of all videos, not per video


class Unavailable(ValueError):
    """A dimension cannot be computed for this video (too short, or its model is not given)."""


def _frames(frames, min_t: int = 2) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    if len(frames) < min_t:
        raise Unavailable(f"needs at least {min_t} frames, the video has {len(frames)}")
    return frames


def temporal_flickering(frames) -> float:
    """vbench/temporal_flickering.py: ``(255 - mean_t MAE(f_t, f_t+1)) / 255``.

    Each pair's MAE is ``cv2.absdiff`` of the frames as float32, averaged in float32 over pixels and
    channels; the per-pair values are then averaged (VBench applies this to static-camera prompts).
    """
    frames = _frames(frames).astype(np.float32)
    maes = np.array([np.mean(cv2.absdiff(a, b)) for a, b in zip(frames[:-1], frames[1:])])
    return (255.0 - np.mean(maes).item()) / 255.0


def _consistency_sum(features) -> tuple[float, int]:
    f = features if torch.is_tensor(features) else torch.as_tensor(np.asarray(features))
    f = f.detach().cpu().double()
    if f.ndim != 2 or len(f) < 2:
        raise Unavailable(f"needs features [T >= 2, D], got {tuple(f.shape)}")
    f = torch.nn.functional.normalize(f, dim=-1, p=2)
    prev = torch.nn.functional.cosine_similarity(f[:-1], f[1:], dim=-1).clamp(min=0.0)
    first = torch.nn.functional.cosine_similarity(f[:1].expand_as(f[1:]), f[1:], dim=-1).clamp(min=0.0)
    return float(((prev + first) / 2).sum()), len(f) - 1


def consistency_from_features(features) -> float:
    """vbench/subject_consistency.py and background_consistency.py on per-frame features ``[T, D]``.

    Features are L2-normalised; frame ``i >= 1`` scores the mean of ``max(0, cos(f_i-1, f_i))`` and
    ``max(0, cos(f_0, f_i))``; the video scores the mean over ``i >= 1``.
    """
    total, pairs = _consistency_sum(features)
    return total / pairs


def _backbone_consistency(kind, frames, weights_dir, model, device, with_pairs=False):
    frames = _frames(frames)
    model = load_backbone(kind, weights_dir, model, device)
    images = preprocess_dino(frames) if kind == "dino" else preprocess_clip(frames)
    total, pairs = _consistency_sum(extract_features(model, images))
    return (total / pairs, pairs) if with_pairs else total / pairs


def subject_consistency(frames, weights_dir=None, *, model=None, device=None) -> float:
    """vbench/subject_consistency.py: consistency of DINO ViT-B/16 [CLS] features (``dino_vitb16.*``).

    ``model``: an architecture to use instead of timm's (loaded from ``weights_dir`` when given,
    used as it is when not); see ``eval.vbench_models.load_backbone``.
    """
    return _backbone_consistency("dino", frames, weights_dir, model, device)


def background_consistency(frames, weights_dir=None, *, model=None, device=None) -> float:
    """vbench/background_consistency.py: consistency of CLIP ViT-B/32 image embeddings (``clip_vitb32.*``)."""
    return _backbone_consistency("clip", frames, weights_dir, model, device)


def top5_flow_magnitude(flow: np.ndarray) -> float:
    """VBench's ``get_score``: the mean of the largest 5% of flow magnitudes ``|(u, v)|`` (at least one pixel)."""
    rad = np.sqrt(np.square(flow[..., 0]) + np.square(flow[..., 1])).ravel()
    cut = max(1, int(rad.size * 0.05))
    return float(np.mean(np.sort(rad)[::-1][:cut]))


def dynamic_degree(frames, fps: float, backend: str = "opencv", weights_dir=None, *, model=None, device=None) -> dict:
    """vbench/dynamic_degree.py: is the video dynamic?

    Frames are first taken every ``max(1, round(fps / 8))`` (VBench's 8 fps resampling; VBench
    itself has no ``max`` and fails below 4 fps). Per consecutive pair, the score is the mean of the
    top 5% flow magnitudes; the threshold is ``6 * min(H, W) / 256`` pixels, and the video is dynamic
    when at least ``round(4 * n / 16)`` pairs (Python's round; ``n`` frames after resampling) exceed it.
    Backends: ``opencv`` (DIS, medium preset, on grey frames; always there) and ``raft``
    (torchvision RAFT-Large, 20 updates: VBench's reference, given ``raft_large.*`` weights or ``model``).
    """
    frames = _frames(frames)
    if backend == "opencv":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        flow_fn, name, reference = (lambda a, b: dis.calc(a, b, None)), "opencv-dis", False
    elif backend == "raft":
        raft = model if model is not None else load_raft(weights_dir, device)
        if min(-(-side // 8) * 8 for side in frames.shape[1:3]) < RAFT_MIN_SIZE:
            raise Unavailable(f"RAFT needs frames of at least {RAFT_MIN_SIZE - 7} px a side, got {frames.shape[1:3]}")
        flow_fn, name, reference = (lambda a, b: raft_flow(raft, a, b)), "raft-large", True
    else:
        raise ValueError(f"unknown flow backend {backend!r}; expected opencv or raft")
    interval = max(1, round(fps / 8)) if fps and math.isfinite(fps) else 1
    frames = frames[::interval]
    if backend == "opencv":
        frames = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
    threshold = 6.0 * (min(frames.shape[1:3]) / 256.0)
    count_needed = round(4 * (len(frames) / 16.0))
    scores = [top5_flow_magnitude(flow_fn(a, b)) for a, b in zip(frames[:-1], frames[1:])]
    moving = sum(score > threshold for score in scores)
    return {
        "dynamic": bool(scores) and moving >= count_needed,
        "backend": name,
        "reference": reference,
        "threshold": threshold,
        "pairs_needed": count_needed,
        "pairs_moving": int(moving),
        "interval": interval,
        "scores": scores,
    }


def _vfi_score(frames: np.ndarray, interpolate) -> float:
    """VBench's ``motion_score``: interpolate the even frames, compare with the odd ones, ``(255 - MAE) / 255``."""
    frames = _frames(frames, min_t=3)
    even, odd = frames[0::2], frames[1::2]
    maes = []
    for a, b, target in zip(even[:-1], even[1:], odd):  # len(even) - 1 interpolated frames
        mid = np.asarray(interpolate(a, b))
        if mid.shape != target.shape:
            raise ValueError(f"the interpolator returned {mid.shape}, expected {target.shape}")
        if mid.dtype != np.uint8:  # AMT's tensor2img: clip to 0..255, then truncate to uint8
            mid = np.clip(mid, 0, 255).astype(np.uint8)
        maes.append(np.mean(cv2.absdiff(target, mid)))
    return (255.0 - float(np.mean(np.array(maes)))) / 255.0


def motion_smoothness(frames, interpolate=None) -> float:
    """vbench/motion_smoothness.py with the interpolator ``interpolate(frame0, frame1) -> frame`` (VBench: AMT-S)."""
    if interpolate is None:
        raise Unavailable(EXTERNAL["motion_smoothness"])
    return _vfi_score(frames, interpolate)


def _linear_midpoint(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a.astype(np.uint16) + b) // 2).astype(np.uint8)  # the average, truncated as AMT's output is


def motion_smoothness_linear_proxy(frames) -> float:
    """VBench's motion-smoothness arithmetic with each odd frame predicted as the mean of its neighbours.

    Not VBench's number (that needs AMT); exact (1.0) for motion that is linear in pixel values.
    """
    return _vfi_score(frames, _linear_midpoint)


def _unavailable(reason: str) -> dict:
    return {"value": None, "reason": reason}


def evaluate_video(
    frames,
    fps: float,
    dims=None,
    weights_dir=None,
    *,
    models=None,
    interpolate=None,
    scorers=None,
    prompt=None,
    device=None,
) -> dict:
    """``{dimension: {"value": float | None, ...}}`` for one video; unavailable ones carry a ``reason``.

    ``models``: preloaded modules by name (``dino``, ``clip``, ``raft``), so that many videos load
    them once; otherwise they are loaded from ``weights_dir``. Missing weight files raise WeightsError.
    ``dynamic_degree`` runs RAFT, ``dynamic_degree_dis`` OpenCV's DIS flow. The ``QUALITY`` dimensions
    use ``models[dim]`` or their files in ``weights_dir`` (a missing file makes them unavailable);
    ``prompt`` is the video's prompt for ``overall_consistency``.
    """
    dims = list(dims) if dims else default_dims(weights_dir)
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown VBench dimension(s) {unknown}; choose from {list(DIMENSIONS)}")
    models, scorers = models or {}, scorers or {}
    out = {}
    for dim in dims:
        try:
            if dim == "temporal_flickering":
                out[dim] = {"value": temporal_flickering(frames)}
            elif dim == "motion_smoothness_linear_proxy":
                out[dim] = {
                    "value": motion_smoothness_linear_proxy(frames),
                    "notes": "odd frames predicted as the mean of their neighbours, not AMT",
                }
            elif dim in QUALITY and dim not in scorers and not (dim == "motion_smoothness" and interpolate):
                model = models.get(dim)
                out[dim] = vbench_quality.evaluate(dim, frames, model, weights_dir, prompt, device, motion_smoothness)
            elif dim == "motion_smoothness":
                out[dim] = {"value": motion_smoothness(frames, interpolate), "backend": "given interpolator"}
            elif dim in (RAFT_DIMENSION, "dynamic_degree_dis"):
                backend = "raft" if dim == RAFT_DIMENSION else "opencv"
                result = dynamic_degree(frames, fps, backend, weights_dir, model=models.get("raft"), device=device)
                out[dim] = {"value": float(result.pop("dynamic")), **result}
            elif dim in WEIGHTED:
                kind = "dino" if dim == "subject_consistency" else "clip"
                model = models.get(kind)
                value, pairs = _backbone_consistency(
                    kind, frames, None if model is not None else weights_dir, model, device, with_pairs=True
                )
                backend = "dino-vitb16" if kind == "dino" else "clip-vitb32"
                out[dim] = {"value": value, "pairs": pairs, "backend": backend}
            elif dim in scorers:
                out[dim] = {"value": float(scorers[dim](np.asarray(frames))), "backend": "given scorer"}
            else:
                out[dim] = _unavailable(EXTERNAL[dim])
        except (Unavailable, vbench_quality.Unscorable, MissingWeights) as exc:
            out[dim] = _unavailable(str(exc))
    return out


def default_dims(weights_dir=None) -> list[str]:
    """The dimensions computed by default: those that need no weights, and with ``weights_dir`` the consistency
    ones; dynamic degree with RAFT (VBench's) when ``raft_large.*`` is there, else the DIS stand-in."""
    motion = RAFT_DIMENSION if has_weights(weights_dir, RAFT_STEM) else "dynamic_degree_dis"
    weighted = WEIGHTED + QUALITY if weights_dir else ()
    return [*(motion if d == "dynamic_degree_dis" else d for d in NO_WEIGHTS), *weighted]


def mean_over_videos(results: list[dict]) -> dict:
    """Average per-video results; the consistency dimensions weigh each video by its frame pairs, as VBench does."""
    if not results:
        raise ValueError("no videos to average")
    out = {}
    for dim in results[0]:
        rows = [r[dim] for r in results if r[dim]["value"] is not None]
        if not rows:
            out[dim] = _unavailable(results[0][dim]["reason"])
            continue
        if dim in PAIR_WEIGHTED:
            value = sum(r["value"] * r["pairs"] for r in rows) / sum(r["pairs"] for r in rows)
        else:
            value = float(np.mean([r["value"] for r in rows]))
        entry = {"value": value, "videos": len(rows)}
        for key in ("backend", "reference", "notes"):
            if key in rows[0]:
                entry[key] = rows[0][key]
        if len(rows) < len(results):
            entry["notes"] = f"{len(results) - len(rows)} video(s) skipped: {results[0][dim].get('reason', '')}"
        out[dim] = entry
    return out


def video_fps(path: str, default: float = 8.0) -> float:
    capture = cv2.VideoCapture(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return fps if fps and math.isfinite(fps) and fps > 0 else default


def evaluate_videos(
    paths,
    dims=None,
    weights_dir=None,
    *,
    fps: float | None = None,
    decoder: str = "auto",
    prompts: dict | None = None,
    device=None,
    progress: bool = True,
    **kwargs,
) -> tuple[dict, dict, dict]:
    """Mean results over the video files ``paths``, the per-video results, and ``{"decoder", "static"}``:
    the decoder that read the videos and the static-video flag of the set (``eval.static_flag``).
    Models are loaded once; ``prompts``: ``{path: prompt}`` for overall consistency."""
    from tqdm import tqdm

    dims = list(dims) if dims else default_dims(weights_dir)
    decoder = resolve_decoder(decoder)
    models = {}
    if "subject_consistency" in dims:
        models["dino"] = load_backbone("dino", weights_dir, device=device)
    if "background_consistency" in dims:
        models["clip"] = load_backbone("clip", weights_dir, device=device)
    if RAFT_DIMENSION in dims:
        models["raft"] = load_raft(weights_dir, device)
    models.update(vbench_quality.load_models(dims, weights_dir, device)[0])
    per_video, differences = {}, []
    for path in tqdm(list(paths), desc="vbench", unit="video", disable=not progress):
        rate = fps if fps else video_fps(path)
        frames = read_frames(path, decoder)
        prompt = (prompts or {}).get(path)
        per_video[path] = evaluate_video(
            frames, rate, dims, weights_dir, models=models, prompt=prompt, device=device, **kwargs
        )
        if len(frames) >= 2:
            differences.append(frame_difference(frames))
    info = {"decoder": decoder, "static": flag_from_differences(differences)}
    return mean_over_videos(list(per_video.values())), per_video, info


def _notes(r: dict) -> str:
    if r["value"] is None:
        return r["reason"]
    parts = [str(r["backend"])] if "backend" in r else []
    if "reference" in r:
        parts.append("VBench's reference backend" if r["reference"] else "not VBench's RAFT: compare with care")
    return "; ".join(parts + ([r["notes"]] if "notes" in r else []))


def format_table(results: dict) -> str:
    rows = [("dimension", "value", "backend / notes")]
    rows += [(dim, "n/a" if r["value"] is None else f"{r['value']:.4f}", _notes(r)) for dim, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c}".rstrip() for a, b, c in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.vbench", description=__doc__.split("\n")[0])
    parser.add_argument("--videos", required=True, help="folder of .mp4/.mkv/.avi videos")
    parser.add_argument(
        "--dims",
        nargs="+",
        choices=DIMENSIONS,
        help="default: those that need no weights (dynamic degree with RAFT when raft_large.* is in --weights), "
        "plus with --weights the consistency, aesthetic, imaging, overall consistency and AMT smoothness ones",
    )
    parser.add_argument(
        "--weights",
        help="folder of local weights: dino_vitb16.*, clip_vitb32.*, raft_large.* and VBench's own files "
        "(ViT-L-14.pt, sa_0_4_vit_l_14_linear.pth, musiq_spaq_ckpt-358bb6af.pth, ViClip-InternVid-10M-FLT.pth, "
        "amt-s.pth; ~/.cache/vbench works as it is)",
    )
    parser.add_argument(
        "--prompts", help='JSON {"video.mp4": "its prompt"} for overall_consistency (default: VBench\'s file-name rule)'
    )
    parser.add_argument(
        "--decoder", choices=DECODERS, default="auto", help="video decoder (auto: decord, VBench's, when installed)"
    )
    parser.add_argument("--fps", type=float, help="frame rate for dynamic_degree (default: each file's, else 8)")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 2

    if not os.path.isdir(args.videos):
        return fail(f"--videos {args.videos}: no such folder")
    paths = sorted(os.path.join(args.videos, n) for n in os.listdir(args.videos) if n.lower().endswith(VIDEO_EXTS))
    if not paths:
        return fail(f"--videos {args.videos}: no video file ({'/'.join(e[1:] for e in VIDEO_EXTS)}) in it")
    try:
        prompts = read_prompts(paths, args.prompts)
        means, per_video, info = evaluate_videos(
            paths, args.dims, args.weights, fps=args.fps, decoder=args.decoder, prompts=prompts, device=args.device
        )
    except (WeightsError, ImportError, VideoDecodeError, ValueError) as exc:
        return fail(" ".join(str(exc).split()))
    print(f"{len(paths)} videos decoded with {info['decoder']}")
    print(format_table(means))
    print(describe(info["static"]))
    print("\n".join(not_computed(means, args.weights)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"videos": paths, "mean": means, "per_video": per_video, **info}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
