"""The static-video flag: VBench's temporal flickering and motion smoothness reward a video that does not move.

Both dimensions score how little consecutive frames differ, so a still (or blank) video scores a
perfect 1.0, above real footage. Such numbers must never stand alone: every set of videos scored
for them carries ``static``, and the tables print it, with dynamic degree, beside them.

A video is **static** when the mean absolute difference between consecutive frames, over all pixels
and channels, is below ``STATIC_FRAME_DIFFERENCE`` grey levels of 255 (the quantity temporal
flickering turns into a score: ``flickering = 1 - difference / 255``, so static means flickering
above 0.996). A set is flagged when at least half of its videos are static. Dynamic degree cannot
serve as the flag on small generated clips: sampling noise between near-constant frames gives
optical flow above its threshold, so a near-blank 32x32 video counts as dynamic.
"""

from __future__ import annotations

import numpy as np

STATIC_FRAME_DIFFERENCE = 1.0  # grey levels of 255: consecutive frames closer than this on average do not move


def frame_difference(frames) -> float:
    """Mean absolute difference of consecutive frames of a uint8 video ``[T, H, W, 3]``, in grey levels."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    if len(frames) < 2:
        raise ValueError(f"needs at least 2 frames to see motion, the video has {len(frames)}")
    return float(np.abs(np.diff(frames.astype(np.int16), axis=0)).mean())


def static_flag(videos) -> dict:
    """``{"value": bool, "static_videos", "videos", "frame_difference", "threshold"}`` of videos ``[N, T, H, W, 3]``.

    ``value`` is True when at least half of the videos are static; ``frame_difference`` is the mean
    over videos. Videos of one frame are left out (``videos`` counts those measured).
    """
    return flag_from_differences([frame_difference(v) for v in videos if len(v) >= 2])


def flag_from_differences(differences: list[float]) -> dict:
    """``static_flag`` from each video's ``frame_difference`` (so a caller need not keep the frames)."""
    if not differences:
        return {"value": None, "reason": "no video has two frames"}
    still = sum(d < STATIC_FRAME_DIFFERENCE for d in differences)
    return {
        "value": bool(2 * still >= len(differences)),
        "static_videos": int(still),
        "videos": len(differences),
        "frame_difference": float(np.mean(differences)),
        "threshold": STATIC_FRAME_DIFFERENCE,
    }


def describe(flag: dict) -> str:
    """The static-video flag in words, printed under every table that shows flickering or smoothness."""
    if flag.get("value") is None:
        return f"static: n/a ({flag.get('reason', '')})"
    verdict = "STATIC: flickering and smoothness reward still frames here" if flag["value"] else "not static"
    return (
        f"{verdict} ({flag['static_videos']} of {flag['videos']} videos move by less than {flag['threshold']:g} "
        f"grey level per frame; mean frame difference {flag['frame_difference']:.2f})"
    )
