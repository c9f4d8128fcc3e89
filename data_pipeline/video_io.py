"""Encode and decode the clips stored in shards and written by sampling.

Visual forms of synthetic and benchmark data are lossless FFV1 in Matroska (``.mkv``, written with
OpenCV's FFmpeg backend); ``.mp4`` is H.264 in yuv420p, the form every browser and player plays,
written with PyAV, whose wheels bundle FFmpeg with libx264 (the stock OpenCV wheels can write only
MPEG-4 Part 2 to mp4, which browsers do not play). Decoding is OpenCV's for every container. Frames
are always RGB uint8 ``[T, H, W, 3]`` on the Python side.
"""

from __future__ import annotations

import io
import os
import tempfile
from fractions import Fraction

import av
import cv2
import numpy as np

# Undecodable members are reported by this module's errors; OpenCV's own warnings would only repeat them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# FOURCC per container extension OpenCV writes; FFV1 is lossless. mp4 goes through PyAV (H.264).
_FOURCC = {"mkv": "FFV1", "avi": "MJPG"}
H264_CRF = 18  # libx264 constant rate factor of written mp4s: 0 lossless, 18 visually lossless, 23 its default


class VideoDecodeError(ValueError):
    """Raised when bytes do not decode to at least one video frame."""


def encode_video(frames: np.ndarray, ext: str = "mkv", fps: float = 8.0) -> bytes:
    """Encode RGB uint8 frames ``[T, H, W, 3]`` to the bytes of a ``.<ext>`` file (mkv FFV1, mp4 H.264, avi MJPG)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    if ext not in (*_FOURCC, "mp4"):
        raise ValueError(f"cannot encode .{ext}; choose one of {sorted((*_FOURCC, 'mp4'))}")
    t, h, w, _ = frames.shape
    if ext == "mp4" and (h % 2 or w % 2):
        raise ValueError(f"H.264 in yuv420p needs an even height and width, got {h}x{w}; crop a pixel or use mkv")
    fd, path = tempfile.mkstemp(suffix=f".{ext}")
    os.close(fd)
    try:
        if ext == "mp4":
            _write_h264(path, frames, fps)
        else:
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


def _write_h264(path: str, frames: np.ndarray, fps: float) -> None:
    """Write frames ``[T, H, W, 3]`` as H.264 yuv420p mp4, the index up front (``faststart``) so browsers stream it."""
    with av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": str(H264_CRF)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())  # flush the frames the encoder holds back


def video_codec(data: bytes) -> tuple[str, str]:
    """``(codec, pixel format)`` of the first video stream of a file's bytes, e.g. ``("h264", "yuv420p")``."""
    try:
        with av.open(io.BytesIO(data)) as container:
            context = container.streams.video[0].codec_context
            return context.name, context.pix_fmt
    except (av.FFmpegError, IndexError) as e:
        raise VideoDecodeError(f"no video stream in {len(data)} bytes: {e}") from e


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


class VideoReader:
    """A video's bytes opened for the loader: its ``(frames, height, width)`` from the container before any
    decoding, then one window of frames decoded straight into a clip, cropped and resized as each frame
    leaves the decoder.

    Frames come in the decoder's BGR order (turning them RGB costs a pass over the clip, which the loader
    folds into copying them into the batch). Frames before the window are decoded without colour
    conversion and frames after it not at all.
    """

    def __init__(self, data: bytes):
        self._stream = io.BytesIO(data)  # must outlive the capture, which reads from it lazily
        self._capture = cv2.VideoCapture(self._stream, cv2.CAP_FFMPEG, [])
        if not self._capture.isOpened():
            self.close()
            raise VideoDecodeError(f"{len(data)} bytes do not open as a video")

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._capture.release()

    @property
    def shape(self) -> tuple[int | None, int, int]:
        """``(frames, height, width)`` as the container states them; frames is None when it does not say."""
        frames = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        height, width = (
            int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
        )
        return (frames if frames > 0 else None), height, width

    def read_bgr(
        self,
        start: int,
        frames: int,
        box: tuple[int, int, int, int] | None = None,
        size: tuple[int, int] | None = None,
        interpolation: int = cv2.INTER_AREA,
    ) -> np.ndarray:
        """Frames ``[start, start + frames)`` as uint8 BGR ``[frames, H, W, 3]``: the ``box`` ``(top, left, h, w)``
        of each (None: the whole frame) resized to ``size`` ``(H, W)`` (None: the box's size)."""
        _, height, width = self.shape
        top, left, h, w = box or (0, 0, height, width)
        out_h, out_w = size or (h, w)
        straight = (top, left, h, w) == (0, 0, height, width) and (out_h, out_w) == (h, w)
        out = np.empty((frames, out_h, out_w, 3), np.uint8)
        for index in range(start):
            if not self._capture.grab():
                raise VideoDecodeError(f"frame {index} does not decode ({start + frames} needed)")
        frame = None
        for t, target in enumerate(out):
            ok, frame = self._capture.read(target if straight else frame)  # straight: decoded into the clip
            if not ok:
                raise VideoDecodeError(f"only {start + t} frames decode, {start + frames} needed")
            if frame.shape != (height, width, 3):
                raise VideoDecodeError(f"frame {start + t} is {frame.shape}, not the ({height}, {width}, 3) stated")
            if straight:
                if frame.ctypes.data != target.ctypes.data:  # OpenCV gave a new array instead of filling ours
                    target[...] = frame
            elif size is None:
                target[...] = frame[top : top + h, left : left + w]
            else:
                cv2.resize(
                    frame[top : top + h, left : left + w], (out_w, out_h), dst=target, interpolation=interpolation
                )
        return out
