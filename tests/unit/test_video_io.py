"""Video containers: lossless FFV1 mkv for shards, H.264 yuv420p mp4 that browsers play."""

import numpy as np
import pytest

from data_pipeline.video_io import VideoDecodeError, decode_video, encode_video, video_codec


def smooth_clip(t=6, h=32, w=48):
    """A clip of smooth gradients moving over time (what a lossy codec keeps well), uint8 [T, H, W, 3]."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([x * 4 + 8 * i, y * 6, 255 - x * 3 - 4 * i], axis=-1) for i in range(t)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_mp4_is_h264_yuv420p_and_decodes_close():
    clip = smooth_clip()
    data = encode_video(clip, "mp4", fps=8.0)
    assert video_codec(data) == ("h264", "yuv420p")
    decoded = decode_video(data)
    assert decoded.shape == clip.shape
    assert np.abs(decoded.astype(int) - clip).mean() < 3  # lossy, but close
    assert np.abs(decoded.astype(int) - clip[::-1]).mean() > 10  # negative control: another clip is not close


def test_mkv_is_lossless_ffv1():
    clip = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    data = encode_video(clip, "mkv")
    assert video_codec(data)[0] == "ffv1"
    np.testing.assert_array_equal(decode_video(data), clip)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="even height and width.*use mkv"):
        encode_video(smooth_clip(h=33), "mp4")
    with pytest.raises(ValueError, match="choose one of"):
        encode_video(smooth_clip(), "webm")
    with pytest.raises(VideoDecodeError, match="no video stream"):
        video_codec(b"not a video" * 50)
