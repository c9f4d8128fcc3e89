"""Encode and decode the clips stored in shards, with OpenCV's FFmpeg backend.

Visual forms of synthetic and benchmark data are lossless FFV1 in Matroska (``.mkv``); real
footage is ``.mp4``. Frames are always RGB uint8 ``[T, H, W, 3]`` on the Python side.
"""

from __future__ import annotations

import io
import os
import tempfile

import cv2
import numpy as np

# Undecodable members are reported by this module's errors; OpenCV's own warnings would only repeat them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# FOURCC per container extension; FFV1 is lossless, mp4v is what stock OpenCV wheels can write.
_FOURCC = {"mkv": "FFV1", "mp4": "mp4v", "avi": "MJPG"}


class VideoDecodeError(ValueError):
    """Raised when bytes do not decode to at least one video frame."""


def encode_video(frames: np.ndarray, ext: str = "mkv", fps: float = 8.0) -> bytes:
    """Encode RGB uint8 frames ``[T, H, W, 3]`` to the bytes of a ``.<ext>`` file."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    if ext not in _FOURCC:
        raise ValueError(f"cannot encode .{ext}; choose one of {sorted(_FOURCC)}")
    t, h, w, _ = frames.shape
    fd, path = tempfile.mkstemp(suffix=f".{ext}")
    os.close(fd)
    try:
        writer = cv2.VideoWriter(path, cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*_FOURCC[ext]), fps, (w, h))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV could not open a {_FOURCC[ext]} writer for .{ext}")
        for frame in frames:
            writer.write(np.ascontiguousarray(frame[..., ::-1]))
        writer.release()
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def decode_video(data: bytes, max_frames: int | None = None) -> np.ndarray:
    """Decode the bytes of a video file to RGB uint8 frames ``[T, H, W, 3]``."""
    stream = io.BytesIO(data)  # must outlive the capture, which reads from it lazily
    capture = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    frames = []
    try:
        while capture.isOpened() and (max_frames is None or len(frames) < max_frames):
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise VideoDecodeError(f"no frame could be decoded from {len(data)} bytes")
    out = np.empty((len(frames), *frames[0].shape), np.uint8)  # [T, H, W, 3]
    for frame, rgb in zip(frames, out):  # written in place: a reversed-channel view would cost a copy per frame
        cv2.cvtColor(frame, cv2.COLOR_BGR2RGB, dst=rgb)
    return out


def read_video_file(path: str, max_frames: int | None = None) -> np.ndarray:
    """Decode a video file on disk to RGB uint8 frames ``[T, H, W, 3]``."""
    with open(path, "rb") as f:
        return decode_video(f.read(), max_frames)
