"""The modality registry: each modality's raw form, its visual (RGB video) form and the codec between them.

Every auxiliary modality is learnt as a 3-channel uint8 video ``[T, H, W, 3]``. ``encode(raw, meta)``
renders the raw signal; ``decode(video, meta)`` recovers an estimate of it for metrics. ``meta`` is
the stream's JSON-serialisable encoding-parameter dict (stored in the sample json): encode reads
the parameters it finds there and otherwise computes them from ``raw`` and writes them back, so
``decode(encode(raw, meta), meta)`` round-trips. Passing ``meta=None`` computes and discards them.

Encodings and their round-trip error through lossless storage (FFV1):

- ``rgb``: identity.
- ``depth``: per-clip normalised inverse depth, near = bright, on a 765-level near-grey ramp;
  max relative depth error ~ (d_far / d_near - 1) / 1526 (0.6 % at a ratio of 10).
- ``flow``: HSV colour wheel (hue = direction, saturation = speed / ``max_radius``);
  end-point error < 0.5 % of ``max_radius``.
- ``seg``: fixed palette of 342 colours 42 apart (L-inf); ids exact under noise up to +-20.
- ``pose``: OpenPose-style skeleton render; see ``data_pipeline.pose_render``.
- ``densepose``: IUV image; part index exact, u and v within 0.5 / 255.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .pose_render import decode_pose, encode_pose
from .skeleton import BODY_PARTS


@dataclass(frozen=True)
class Modality:
    """One modality: its switcher index, default prompt, curriculum flag and codec."""

    name: str
    index: int  # row of the model's modality (switcher) embedding; part of the data format
    prompt: str  # context an auxiliary stream cross-attends to
    pixel_aligned: bool  # True for modalities in curriculum stage 1
    encode: Callable[[np.ndarray, dict], np.ndarray]  # (raw, meta) -> uint8 [T, H, W, 3]
    decode: Callable[[np.ndarray, dict], np.ndarray]  # (uint8 [T, H, W, 3], meta) -> raw estimate


def _check(modality: str, x, expected: str, kinds: str, ndim: int, last: int | None = None) -> np.ndarray:
    """``x`` as an array, after checking its dtype (numpy kind letters in ``kinds``, or exactly
    ``"uint8"``) and shape; a ValueError names the modality, what was expected and what was got."""
    x = np.asarray(x)
    dtype_ok = x.dtype == np.uint8 if kinds == "uint8" else x.dtype.kind in kinds
    if not dtype_ok or x.ndim != ndim or (last is not None and x.shape[-1] != last):
        raise ValueError(f"{modality}: expected {expected}, got {x.dtype} array of shape {x.shape}")
    return x


def _check_video(modality: str, video) -> np.ndarray:
    return _check(modality, video, "uint8 video [T, H, W, 3]", "uint8", 4, 3)


# --------------------------------------------------------------------------------------------- rgb


def encode_rgb(frames: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """RGB is its own visual form."""
    return np.ascontiguousarray(_check_video("rgb", frames))


def decode_rgb(video: np.ndarray, meta: dict | None = None) -> np.ndarray:
    return np.ascontiguousarray(_check_video("rgb", video))


# ------------------------------------------------------------------------------------------- depth

DEPTH_LEVELS = 765  # levels of the near-grey ramp: r + g + b of ((L+2)//3, (L+1)//3, L//3)


def _grey_ramp(level: np.ndarray) -> np.ndarray:
    """Level ``L`` in [0, 764] -> near-grey RGB whose channels sum to ``L`` and differ by at most 1."""
    return np.stack([(level + 2) // 3, (level + 1) // 3, level // 3], axis=-1).astype(np.uint8)


def encode_depth(depth: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Depth in metres ``[T, H, W]`` -> normalised inverse depth on the grey ramp, near = bright.

    Pixels that are not finite or not positive are invalid and become level 0 (black). Valid
    disparities map linearly from ``[disp_min, disp_max]`` (inverse metres, from ``meta`` or from
    the clip's valid pixels) to levels 1..764, so the farthest valid pixel is level 1, not black.
    Quantisation keeps every valid pixel within a relative depth error of about
    ``(d_far / d_near - 1) / (2 * 763)`` after decoding, e.g. 0.6 % for a far/near ratio of 10.
    """
    depth = _check("depth", depth, "float metres [T, H, W]", "f", 3).astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    disparity = np.divide(1.0, depth, out=np.zeros_like(depth), where=valid)
    meta = {} if meta is None else meta
    if "disp_min" not in meta or "disp_max" not in meta:
        found = disparity[valid]
        meta["disp_min"], meta["disp_max"] = (float(found.min()), float(found.max())) if found.size else (1.0, 1.0)
    lo, hi = _disparity_range(meta)
    scaled = (disparity - lo) / (hi - lo) if hi > lo else np.ones_like(disparity)
    level = np.where(valid, 1 + np.rint(np.clip(scaled, 0.0, 1.0) * (DEPTH_LEVELS - 2)), 0)
    return _grey_ramp(level.astype(np.int64))


def decode_depth(video: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Grey-ramp video -> depth in metres ``[T, H, W]`` (0 = invalid), float32.

    Without ``meta`` (e.g. a model's estimate, which has no scale) it returns relative disparity
    ``L / 764`` in [0, 1]: affine in true disparity on valid pixels and 0 (infinitely far) on
    invalid ones, which is what scale-and-shift-invariant depth metrics need.
    """
    level = np.minimum(_check_video("depth", video).sum(axis=-1, dtype=np.int64), DEPTH_LEVELS - 1)
    if meta is None or "disp_min" not in meta:
        return (level / (DEPTH_LEVELS - 1)).astype(np.float32)
    lo, hi = _disparity_range(meta)
    disparity = lo + (level - 1) / (DEPTH_LEVELS - 2) * (hi - lo)
    depth = np.divide(1.0, disparity, out=np.zeros(level.shape), where=level > 0)
    return depth.astype(np.float32)


def _disparity_range(meta: dict) -> tuple[float, float]:
    lo, hi = float(meta["disp_min"]), float(meta["disp_max"])
    if not (0 < lo <= hi < np.inf):
        raise ValueError(f"depth: expected 0 < disp_min <= disp_max in meta, got {lo} and {hi}")
    return lo, hi


# -------------------------------------------------------------------------------------------- flow

FLOW_MIN_RADIUS = 1e-3  # pixels; floor of max_radius so an all-zero clip still encodes


def _wheel_to_rgb(hue: np.ndarray, saturation: np.ndarray) -> np.ndarray:
    """HSV with value 1 -> RGB in [0, 1]; hue in [0, 1) turns, 0 = red."""
    h6 = hue[..., None] * 6.0
    k = (np.array([5.0, 3.0, 1.0]) + h6) % 6.0
    return 1.0 - saturation[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _rgb_to_wheel(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact inverse of ``_wheel_to_rgb`` for any RGB: (hue in turns, saturation)."""
    r, g, b = np.moveaxis(rgb, -1, 0)
    top, chroma = rgb.max(axis=-1), np.ptp(rgb, axis=-1)
    c = np.where(chroma > 0, chroma, 1.0)
    h6 = np.where(top == r, ((g - b) / c) % 6.0, np.where(top == g, (b - r) / c + 2.0, (r - g) / c + 4.0))
    saturation = np.divide(chroma, top, out=np.zeros_like(top), where=top > 0)
    return np.where(chroma > 0, h6 / 6.0, 0.0), saturation


def encode_flow(flow: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Forward flow ``[T, H, W, 2]`` (dx, dy pixels; last frame zero) -> colour wheel video.

    Hue is the direction (red = +x, rightwards; hue grows towards +y, downwards), saturation
    is magnitude / ``max_radius`` (clipped at 1), value is 1, so zero flow is white.
    ``max_radius`` is the clip's largest magnitude unless ``meta`` gives it.
    """
    flow = _check("flow", flow, "float pixels [T, H, W, 2]", "f", 4, 2).astype(np.float64)
    if not np.isfinite(flow).all():
        raise ValueError("flow: expected finite values, got nan or inf")
    magnitude = np.hypot(flow[..., 0], flow[..., 1])
    meta = {} if meta is None else meta
    if "max_radius" not in meta:
        meta["max_radius"] = max(float(magnitude.max(initial=0.0)), FLOW_MIN_RADIUS)
    radius = _flow_radius(meta)
    hue = (np.arctan2(flow[..., 1], flow[..., 0]) / (2 * np.pi)) % 1.0
    rgb = _wheel_to_rgb(hue, np.clip(magnitude / radius, 0.0, 1.0))
    return np.rint(rgb * 255).astype(np.uint8)


def decode_flow(video: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Colour wheel video -> flow ``[T, H, W, 2]`` float32 in pixels.

    Without ``meta`` the magnitude is relative, in units of the clip's max radius (so in [0, 1]).
    """
    hue, saturation = _rgb_to_wheel(_check_video("flow", video).astype(np.float64) / 255.0)
    magnitude = saturation * (_flow_radius(meta) if meta is not None and "max_radius" in meta else 1.0)
    angle = hue * 2 * np.pi
    return np.stack([magnitude * np.cos(angle), magnitude * np.sin(angle)], axis=-1).astype(np.float32)


def _flow_radius(meta: dict) -> float:
    radius = float(meta["max_radius"])
    if not 0 < radius < np.inf:
        raise ValueError(f"flow: expected a positive finite max_radius in meta, got {radius}")
    return radius


# --------------------------------------------------------------------------------------------- seg

SEG_LEVELS = np.rint(np.arange(7) * 255 / 6).astype(np.int64)  # 0, 42, 85, 128, 170, 212, 255


def _seg_palette() -> tuple[np.ndarray, np.ndarray]:
    """Colours of a 7^3 RGB grid ordered by farthest-point sampling from black.

    Returns (palette [343, 3] uint8 with palette[0] = black, id of each grid cell [343]). Low
    ids, the most common, get the most distinct colours; any two colours differ by >= 42 in
    some channel, so the nearest palette colour is the right one under noise up to 20.
    """
    grid = np.stack(np.meshgrid(SEG_LEVELS, SEG_LEVELS, SEG_LEVELS, indexing="ij"), axis=-1).reshape(-1, 3)
    order = [0]
    nearest = ((grid - grid[0]) ** 2).sum(axis=1)
    for _ in range(len(grid) - 1):
        order.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, ((grid - grid[order[-1]]) ** 2).sum(axis=1))
    id_of_cell = np.empty(len(grid), np.int64)
    id_of_cell[order] = np.arange(len(grid))
    return grid[order].astype(np.uint8), id_of_cell


SEG_PALETTE, _SEG_ID_OF_CELL = _seg_palette()
SEG_MAX_ID = len(SEG_PALETTE) - 1  # 342


def encode_seg(ids: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Instance ids ``[T, H, W]`` (0 = background) -> palette colours; writes ``meta["ids"]``.

    ``meta["ids"]`` lists the non-zero ids present, so decode can restrict its colour search.
    """
    ids = _check("seg", ids, "integer instance ids [T, H, W]", "iu", 3)
    if ids.size and (ids.min() < 0 or ids.max() > SEG_MAX_ID):
        raise ValueError(f"seg: expected ids in [0, {SEG_MAX_ID}], got [{ids.min()}, {ids.max()}]")
    if meta is not None:
        meta["ids"] = [int(i) for i in np.unique(ids) if i != 0]
    return SEG_PALETTE[ids]


def decode_seg(video: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """Palette video -> instance ids ``[T, H, W]`` int64 by nearest palette colour.

    With ``meta["ids"]`` only those ids and background are candidates; without it every
    palette colour is (a per-channel snap to the grid levels).
    """
    video = _check_video("seg", video).astype(np.int64)
    if meta is None or "ids" not in meta:
        cell = np.searchsorted((SEG_LEVELS[1:] + SEG_LEVELS[:-1]) / 2, video) @ np.array([49, 7, 1])
        return _SEG_ID_OF_CELL[cell]
    best_id = np.zeros(video.shape[:-1], np.int64)
    best = ((video - SEG_PALETTE[0].astype(np.int64)) ** 2).sum(axis=-1)
    for i in meta["ids"]:
        distance = ((video - SEG_PALETTE[int(i)].astype(np.int64)) ** 2).sum(axis=-1)
        best_id = np.where(distance < best, int(i), best_id)
        best = np.minimum(best, distance)
    return best_id


# --------------------------------------------------------------------------------------- densepose

PART_STEP = 255 // (len(BODY_PARTS) - 1)  # red step between part indices (18)


def encode_densepose(iuv: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """(part index, u, v) ``[T, H, W, 3]`` -> IUV image: R = part * 18, G = u * 255, B = v * 255.

    Part 0 is background and renders black; u and v are clipped to [0, 1].
    """
    iuv = _check("densepose", iuv, "float (part, u, v) [T, H, W, 3]", "fiu", 4, 3).astype(np.float64)
    if not np.isfinite(iuv).all():
        raise ValueError("densepose: expected finite values, got nan or inf")
    part = np.rint(iuv[..., 0])
    if not ((np.abs(iuv[..., 0] - part) < 1e-3) & (part >= 0) & (part < len(BODY_PARTS))).all():
        raise ValueError(f"densepose: expected integer part indices in [0, {len(BODY_PARTS) - 1}] in channel 0")
    uv = np.rint(np.clip(iuv[..., 1:], 0.0, 1.0) * 255) * (part[..., None] > 0)
    return np.concatenate([part[..., None] * PART_STEP, uv], axis=-1).astype(np.uint8)


def decode_densepose(video: np.ndarray, meta: dict | None = None) -> np.ndarray:
    """IUV video -> (part index, u, v) ``[T, H, W, 3]`` float32; part = nearest red level."""
    video = _check_video("densepose", video).astype(np.float64)
    part = np.clip(np.rint(video[..., 0] / PART_STEP), 0, len(BODY_PARTS) - 1)
    uv = video[..., 1:] / 255.0 * (part[..., None] > 0)
    return np.concatenate([part[..., None], uv], axis=-1).astype(np.float32)


# -------------------------------------------------------------------------------------- registry

MODALITIES: dict[str, Modality] = {
    m.name: m
    for m in (
        Modality("rgb", 0, "rgb video", True, encode_rgb, decode_rgb),
        Modality("depth", 1, "depth map, near is bright", True, encode_depth, decode_depth),
        Modality("flow", 2, "optical flow, hue is direction, saturation is speed", True, encode_flow, decode_flow),
        Modality("seg", 3, "instance segmentation, one flat colour per object", False, encode_seg, decode_seg),
        Modality("pose", 4, "human skeleton, coloured joints and limbs on black", False, encode_pose, decode_pose),
        Modality(
            "densepose", 5, "densepose, body part and surface coordinates", True, encode_densepose, decode_densepose
        ),
    )
}
NAMES = tuple(MODALITIES)


def get(name: str) -> Modality:
    """The registry entry for ``name``; ValueError listing the valid names otherwise."""
    if name not in MODALITIES:
        raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(NAMES)}")
    return MODALITIES[name]
