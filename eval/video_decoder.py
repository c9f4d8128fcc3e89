"""Which library decodes the videos VBench-style dimensions are computed on: decord (VBench's) or OpenCV.

VBench reads mp4 files with decord (``vbench/utils.py``: ``VideoReader(path, num_threads=1)``, all
frames with ``get_batch``). OpenCV and decord both wrap FFmpeg but can disagree, e.g. on the colour
conversion of HDR-tagged H.264, so the decoder that ran is part of every result. decord is an
optional extra (``pip install -e '.[vbench]'``); ``auto`` takes it when it is installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from data_pipeline.video_io import VideoDecodeError, read_video_file

DECODERS = ("auto", "decord", "opencv")


def resolve_decoder(name: str = "auto") -> str:
    """``decord`` or ``opencv``: ``auto`` is decord when it is installed; decord asked for but missing is an error."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(DECODERS)}")
    have_decord = importlib.util.find_spec("decord") is not None
    if name == "decord" and not have_decord:
        raise ImportError("the decord decoder is not installed: pip install -e '.[vbench]' (or use --decoder opencv)")
    if name == "auto":
        return "decord" if have_decord else "opencv"
    return name


def _undecodable(path: str, decoder: str, exc: Exception) -> VideoDecodeError:
    detail = " ".join(str(exc).split())
    detail = detail if len(detail) <= 160 else "..." + detail[-157:]
    fix = "re-encode it or move it out of the folder"
    return VideoDecodeError(f"{path}: {decoder} could not decode it ({detail}); {fix}")


def read_frames(path: str, decoder: str) -> np.ndarray:
    """Every frame of the video file ``path`` as RGB uint8 ``[T, H, W, 3]``, decoded by ``decoder``."""
    if decoder == "opencv":
        try:
            return read_video_file(path)
        except VideoDecodeError as exc:
            raise _undecodable(path, decoder, exc) from exc
    if decoder != "decord":
        raise ValueError(f"unknown decoder {decoder!r}; expected decord or opencv")
    import decord

    try:
        reader = decord.VideoReader(path, num_threads=1)
        frames = reader.get_batch(list(range(len(reader)))).asnumpy()
    except Exception as exc:  # decord raises its own DECORDError, and RuntimeError on empty files
        raise _undecodable(path, decoder, exc) from exc
    return np.ascontiguousarray(frames, dtype=np.uint8)
