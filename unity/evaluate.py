"""Depth estimation on held-out clips with ground truth: the trained model against the mean-map prior.

Clips are read straight from the shards (``<key>.rgb.mkv`` and the raw ``<key>.depth.npy``). The
model estimates each clip's depth stream from its rgb stream with the sampler; its visual form is
read back as relative disparity, which ``eval.metrics.depth`` aligns per clip (scale and shift in
disparity) before AbsRel and δ<1.25. The baseline predicts, for every clip, the mean training
disparity map, aligned the same way.
"""

from __future__ import annotations

import io
import itertools
import json

import numpy as np
import torch

from data_pipeline.check import iter_samples, list_shards
from data_pipeline.modalities import MODALITIES
from data_pipeline.video_io import decode_video
from eval.metrics.depth import depth_metrics, mean_over_videos
from models.codec import to_uint8
from unity.conditioning import encode_conditioning
from unity.sampler import sample

DEPTH = MODALITIES["depth"]


def _samples(root: str):
    return itertools.chain.from_iterable(iter_samples(path) for path in list_shards(root)[0])


def load_depth_clips(root: str, limit: int) -> list[dict]:
    """Up to ``limit`` clips ``{caption, rgb uint8 [T,H,W,3], depth metres [T,H,W]}`` with depth ground truth."""
    clips = []
    for _, members in _samples(root):
        meta = json.loads(members["json"])
        if "depth" not in meta["gt"]:
            raise ValueError(f"{root} has no raw depth ground truth; build it with `synth --with-gt`")
        clips.append({"caption": meta["caption"], "prompt": meta["prompts"]["depth"],
                      "rgb": decode_video(members[f"rgb.{meta['ext']}"]),
                      "depth": np.load(io.BytesIO(members["depth.npy"]))})
        if len(clips) == limit:
            break
    return clips


def mean_disparity_map(root: str, limit: int) -> np.ndarray:
    """Mean relative disparity ``[T, H, W]`` of the depth visual forms of up to ``limit`` training clips."""
    maps = [DEPTH.decode(decode_video(members[f"depth.{json.loads(members['json'])['ext']}"]))
            for _, members in itertools.islice(_samples(root), limit)]
    return np.mean(maps, axis=0)


@torch.no_grad()
def estimate_disparity(dit, text, codec, clips: list[dict], steps: int, device, seed: int = 0,
                       batch_size: int = 8) -> list[np.ndarray]:
    """Relative disparity ``[T, H, W]`` per clip, from the model's estimate of the depth stream."""
    was_training = dit.training
    dit.eval()
    out = []
    for start in range(0, len(clips), batch_size):
        chunk = clips[start : start + batch_size]
        rgb = codec.encode(torch.from_numpy(np.stack([c["rgb"] for c in chunk])).to(device))  # [B, C, T, H, W]
        x = torch.stack([rgb, torch.zeros_like(rgb)], dim=1)  # [B, 2, C, T, H, W]: rgb clean, depth generated
        generate = torch.tensor([[False, True]] * len(chunk), device=device)
        modality = torch.tensor([[MODALITIES["rgb"].index, DEPTH.index]] * len(chunk), device=device)
        cond = encode_conditioning(text, [c["caption"] for c in chunk], [c["prompt"] for c in chunk], 2, device)
        generator = torch.Generator().manual_seed(seed + start)
        result = sample(dit, x, generate, modality, steps=steps, generator=generator, **cond)
        for video in to_uint8(result[:, 1]).cpu().numpy():  # [T, H, W, 3]
            out.append(DEPTH.decode(video))
    dit.train(was_training)
    return out


def depth_report(predictions: list[np.ndarray], clips: list[dict]) -> dict[str, float]:
    """Mean AbsRel, δ<1.25 and RMSE over clips."""
    return mean_over_videos([depth_metrics(p, c["depth"]) for p, c in zip(predictions, clips)])


def mean_map_report(train_root: str, clips: list[dict], limit: int = 256) -> dict[str, float]:
    """Metrics of the trivial prior: the mean training disparity map predicted for every clip."""
    prior = mean_disparity_map(train_root, limit)
    return depth_report([prior] * len(clips), clips)


def summary_table(results: dict) -> str:
    """The run's depth-estimation and validation figures as a small text table."""
    rows = [("model (trained)", results["depth.abs_rel"], results["depth.delta1"]),
            ("model at step 0", results["step0.depth.abs_rel"], results["step0.depth.delta1"]),
            ("mean training disparity map", results["baseline_mean.depth.abs_rel"], results["baseline_mean.depth.delta1"])]
    lines = [f"{'depth estimation (test split)':<30} {'AbsRel':>8} {'delta1':>8}"]
    lines += [f"{name:<30} {abs_rel:>8.4f} {delta1:>8.4f}" for name, abs_rel, delta1 in rows]
    lines.append(f"validation flow-matching loss: {results['val_loss_first']:.4f} at step 0 -> "
                 f"{results['val_loss_last']:.4f} at step {results['steps']}")
    return "\n".join(lines)
