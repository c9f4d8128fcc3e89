"""Small shard sets whose every pixel says which sample, frame and place it is: loader and parallel tests."""

import numpy as np

from data_pipeline.video_io import encode_video
from data_pipeline.writer import ShardWriter

FRAMES, SIDE = 8, 24
SEG_LEVELS = (0, 100, 200)


def clip(index: int, stream: str, frames: int = FRAMES) -> np.ndarray:
    """uint8 [T, H, W, 3] identifying sample ``index``, each frame and each pixel's place."""
    y, x = np.mgrid[:SIDE, :SIDE]
    pattern = (y // 4 + x // 4) % 3 * 100 if stream == "seg" else x * 9 + y * 2
    video = np.zeros((frames, SIDE, SIDE, 3), np.uint8)
    video[..., 0] = index
    video[..., 1] = (np.arange(frames) * 20)[:, None, None]
    video[..., 2] = pattern
    return video


def meta(index: int, modalities=("depth", "seg"), key: str | None = None) -> dict:
    return {
        "schema": 1,
        "key": key or f"s{index:03d}",
        "caption": f"clip number {index}",
        "fps": 8,
        "frames": FRAMES,
        "height": SIDE,
        "width": SIDE,
        "source": "synthetic",
        "split": "train",
        "modalities": ["rgb", *modalities],
        "ext": "mkv",
        "prompts": {m: f"{m} of clip {index}" for m in modalities},
        "encoding": {},
        "gt": [],
    }


def sample(index: int, modalities=("depth", "seg")) -> dict:
    members = {f"{m}.mkv": encode_video(clip(index, m)) for m in ("rgb", *modalities)}
    return {"json": meta(index, modalities), **members}


def write_set(folder, count: int, shard_size: int, bad: dict | None = None) -> list[str]:
    """Write samples 0..count-1 (``bad`` replaces some by index) and return the good keys."""
    bad = bad or {}
    with ShardWriter(str(folder), "shard", shard_size) as writer:
        for i in range(count):
            writer.write(bad.get(i) or sample(i))
    return [f"s{i:03d}" for i in range(count) if i not in bad]
