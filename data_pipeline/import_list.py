"""Import datasets users already have: lists of RGB videos with pre-rendered modality videos, into shards.

Two list layouts are read, as CSV or JSON (a list of objects, or one object per line):

- UnityVideo's ``metadata.csv`` (the released code and its OpenUni data): ``video``, ``prompt`` and one
  column per modality video, ``depth``, ``densepose``, ``raft`` (optical flow), ``segmentation``, ``skeleton``;
- VideoX-Fun / DiffSynth control lists: ``file_path``, ``control_file_path``, ``text``; which modality the
  control videos hold is given with ``--map control_file_path=<modality>``.

``--map COLUMN=MODALITY`` maps any other column (``--map raft=flow`` is the default). Relative paths are
resolved against ``root`` (default: the list's folder, as UnityVideo does). Every video is cut and
resized like ``ingest`` (the same frames of every stream of a row, nearest-neighbour resizing for
label colours); the RGB clip goes into ``ext``, the modality streams into lossless FFV1 mkv, as they are.
Each stream's visual convention is declared in its encoding (``convention``): ``unity`` when it is
Unity's own visual form, else the source's (``raft-colour-wheel``, ...), which the model learns as it is
but which is decoded for metrics only when known (``unity``). A missing or undecodable file is reported
and skipped: the row without its RGB video, a stream without its file.
"""

from __future__ import annotations

import csv
import json
import os
import warnings
from functools import partial

import cv2
import numpy as np
from tqdm import tqdm

from data_pipeline.benchmark import CATEGORICAL
from data_pipeline.card import card
from data_pipeline.ingest import _source_fps, fit, key_base, resample
from data_pipeline.modalities import MODALITIES, get
from data_pipeline.schema import SCHEMA_VERSION, UNITY_CONVENTION, VIDEO_EXTS, video_member
from data_pipeline.video_io import VideoDecodeError, encode_video
from data_pipeline.writer import ShardWriter

RGB_COLUMNS = ("video", "file_path")  # UnityVideo, VideoX-Fun / DiffSynth
CAPTION_COLUMNS = ("prompt", "text", "caption")
IGNORED_COLUMNS = ("type",)  # VideoX-Fun's "video" / "image" marker
MODALITY_EXT = "mkv"  # modality streams are stored losslessly

# column -> (modality, the visual convention of its videos); None: the list must say (--map)
KNOWN_COLUMNS = {
    "depth": ("depth", "unityvideo-depth"),
    "densepose": ("densepose", "unityvideo-densepose"),
    "raft": ("flow", "raft-colour-wheel"),
    "segmentation": ("seg", "unityvideo-segmentation"),
    "skeleton": ("pose", "unityvideo-skeleton"),
    "control_file_path": (None, "videox-fun-control"),
}
CONVENTIONS = {
    UNITY_CONVENTION: "Unity's own visual form (data_pipeline/modalities.py): decoded for metrics",
    "unityvideo-depth": "UnityVideo's depth rendering: a colour map, near in warm colours, far in cool ones",
    "unityvideo-densepose": "UnityVideo's DensePose rendering (body-part UV coordinates)",
    "raft-colour-wheel": "RAFT's flow visualisation: the Middlebury colour wheel, normalised per frame",
    "unityvideo-segmentation": "UnityVideo's segmentation masks of the foreground against the background",
    "unityvideo-skeleton": "UnityVideo's skeleton rendering (keypoints and limbs)",
    "videox-fun-control": "a VideoX-Fun / DiffSynth control video, rendered by its own tools",
}


def read_list(path: str, kind: str | None = None) -> list[dict]:
    """The rows of a list: ``kind`` csv, or json (a list of objects, or one object per line); None: by extension."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such list file")
    kind = kind or ("csv" if path.lower().endswith(".csv") else "json")
    with open(path, encoding="utf-8", newline="") as f:
        if kind == "csv":
            return list(csv.DictReader(f))
        text = f.read()
    try:
        rows = json.loads(text)
    except ValueError:
        try:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]  # JSON lines
        except ValueError as e:
            raise ValueError(f"{path} is neither a JSON list nor JSON lines: {e}") from None
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path}: expected a JSON list of objects (or one object per line)")
    return rows


def parse_map(items: list[str]) -> dict[str, str]:
    """``["raft=flow", ...]`` -> ``{"raft": "flow"}``; ValueError on a malformed item or an unknown modality."""
    mapping = {}
    for item in items:
        column, _, modality = item.partition("=")
        if not column or modality not in MODALITIES or modality == "rgb":
            raise ValueError(f"--map {item!r}: expected COLUMN=MODALITY with one of {', '.join(list(MODALITIES)[1:])}")
        mapping[column] = modality
    return mapping


def parse_conventions(items: list[str]) -> dict[str, str]:
    """``["depth=unity", ...]`` -> ``{"depth": "unity"}``; ValueError on a malformed item or an unknown modality."""
    conventions = {}
    for item in items:
        modality, _, name = item.partition("=")
        if modality not in MODALITIES or modality == "rgb" or not name:
            raise ValueError(f"--convention {item!r}: expected MODALITY=NAME, e.g. depth=unity")
        conventions[modality] = name
    return conventions


def plan_columns(
    columns: list[str], mapping: dict[str, str], conventions: dict[str, str]
) -> tuple[str, str | None, dict[str, tuple[str, str]]]:
    """(RGB column, caption column or None, {column: (modality, convention)}) of a list; ValueError naming the fix."""
    rgb = next((c for c in RGB_COLUMNS if c in columns), None)
    if rgb is None:
        raise ValueError(f"the list has no RGB video column ({' or '.join(RGB_COLUMNS)}); its columns: {columns}")
    caption = next((c for c in CAPTION_COLUMNS if c in columns), None)
    streams, ignored = {}, []
    for column in columns:
        if column in (rgb, caption, *IGNORED_COLUMNS):
            continue
        modality, convention = KNOWN_COLUMNS.get(column, (None, f"{column} column"))
        modality = mapping.get(column, modality)
        if modality is None and column in KNOWN_COLUMNS:
            raise ValueError(f"which modality does column {column!r} hold? say it with --map {column}=<modality>")
        if modality is None:
            ignored.append(column)
            continue
        streams[column] = (modality, conventions.get(modality, convention))
    unknown = sorted(set(mapping) - set(columns))
    if unknown:
        raise ValueError(f"--map names column(s) {unknown} that the list does not have; its columns: {columns}")
    doubled = sorted({m for m, _ in streams.values() if [x for x, _ in streams.values()].count(m) > 1})
    if doubled:
        raise ValueError(f"several columns hold {doubled}; map each modality from one column")
    if ignored:
        warnings.warn(f"ignoring column(s) {ignored}: map one with --map COLUMN=MODALITY", stacklevel=3)
    return rgb, caption, streams


def read_frames(path: str, fps: float, height: int, width: int, nearest: bool) -> tuple[np.ndarray, float | None]:
    """All frames of a video resampled to ``fps`` and fitted to ``height x width``, RGB uint8 ``[T, H, W, 3]``,
    and the source frame rate (None when the container does not say)."""
    capture = cv2.VideoCapture(path)
    try:
        source_fps = _source_fps(capture, path, fps)
        frames = [
            fit(frame, height, width, nearest)[..., ::-1] for _, frame in resample(capture, source_fps or fps, fps)
        ]
    finally:
        capture.release()
    return np.ascontiguousarray(np.stack(frames)), source_fps


def import_list(
    list_path: str,
    out: str,
    *,
    kind: str | None = None,
    root: str | None = None,
    mapping: dict[str, str] | None = None,
    conventions: dict[str, str] | None = None,
    fps: float = 8.0,
    size: int | tuple[int, int] = 256,
    frames: int = 16,
    stride: int | None = None,
    ext: str = "mp4",
    shard_size: int = 64,
    split: str = "train",
    license: str | None = None,
    source_url: str | None = None,
    progress: bool = True,
) -> dict:
    """Write the rows of the list ``list_path`` as shards under ``out``; returns ``dataset.json``.

    ``kind``: csv or json (None: by the extension); ``mapping``: column -> modality beyond the defaults;
    ``conventions``: modality -> the visual convention of its videos (``unity`` when they are Unity's own
    visual form). Its ``"import"`` entry counts the rows and samples and lists the files that were missing
    or did not decode.
    """
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    stride = frames if stride is None else stride
    if min(height, width, frames, stride) < 1 or not fps > 0:
        raise ValueError(f"need positive fps, size, frames and stride; got {fps}, {size}, {frames}, {stride}")
    if ext not in VIDEO_EXTS:
        raise ValueError(f"ext {ext!r} is not one of {', '.join(VIDEO_EXTS)}")
    if ext == "mp4" and (height % 2 or width % 2):
        raise ValueError(f"mp4 (H.264, yuv420p) needs an even height and width, got {height}x{width}; change --size")
    rows = read_list(list_path, kind)
    if not rows:
        raise ValueError(f"{list_path} lists no videos")
    conventions = dict(conventions or {})
    columns = list(dict.fromkeys(c for row in rows for c in row))
    rgb_column, caption_column, streams = plan_columns(columns, dict(mapping or {}), conventions)
    root = root if root is not None else os.path.dirname(os.path.abspath(list_path))
    args = dict(list=list_path, root=root, fps=fps, size=[height, width], frames=frames, stride=stride, ext=ext)
    args["columns"] = {column: modality for column, (modality, _) in streams.items()}
    made_by = {"rgb": f"the videos of column {rgb_column!r} of {os.path.basename(list_path)}"}
    made_by |= {m: f"pre-rendered, column {c!r}: {CONVENTIONS.get(v, v)}" for c, (m, v) in streams.items()}
    resolve = partial(_resolve, root=root)
    if not any(row.get(rgb_column) and os.path.isfile(resolve(row[rgb_column])) for row in rows):
        raise FileNotFoundError(
            f"no RGB video of {list_path} exists (column {rgb_column!r}, {len(rows)} rows; the first: "
            f"{resolve(rows[0].get(rgb_column) or '')}); relative paths start from {root}: set --root"
        )
    report = {"rows": len(rows), "samples": 0, "missing": [], "undecodable": {}, "without_clips": [], "modalities": {}}
    info = {"source": "import", "args": args, **card(license, source_url, made_by)}
    taken: set[str] = set()
    with ShardWriter(out, prefix=split, shard_size=shard_size, info=info) as writer:
        bar = tqdm(rows, desc="import", unit="row", disable=not progress)
        for number, row in enumerate(bar, start=1):
            found = _row_files(row, rgb_column, streams, root, report, number)
            if found is None:
                continue
            videos, source_fps = _read_row(found, fps, height, width, report)
            if "rgb" not in videos:
                continue
            length = min(len(video) for video in videos.values())
            starts = list(range(0, length - frames + 1, stride))
            if not starts:
                report["without_clips"].append(found["rgb"][0])
            relpath = os.path.relpath(found["rgb"][0], root)
            base = key_base(os.path.basename(relpath) if relpath.startswith("..") else relpath, taken)
            caption = str(row.get(caption_column) or "") if caption_column else ""
            for index, start in enumerate(starts):
                clip = {name: video[start : start + frames] for name, video in videos.items()}
                meta = _meta(f"{base}-{index:04d}", caption, found, clip, streams, fps, ext, split, start, source_fps)
                writer.write(_sample(meta, clip, ext, fps))
                report["samples"] += 1
                for name in meta["modalities"]:
                    report["modalities"][name] = report["modalities"].get(name, 0) + 1
            bar.set_postfix(samples=report["samples"])
        writer.info["import"] = report
        present = {name for name in writer.info["estimators"] if name in report["modalities"]}
        writer.info["estimators"] = {k: v for k, v in writer.info["estimators"].items() if k == "rgb" or k in present}
    for kind in ("missing", "undecodable"):
        if report[kind]:
            warnings.warn(f"{len(report[kind])} {kind} file(s) skipped; dataset.json lists them", stacklevel=2)
    return writer.dataset


def _resolve(value, root: str) -> str:
    """A path of the list: absolute, or relative to ``root``."""
    path = os.path.expanduser(str(value))
    return path if os.path.isabs(path) else os.path.join(root, path)


def _row_files(row: dict, rgb_column: str, streams: dict, root: str, report: dict, number: int) -> dict | None:
    """{stream: (path, column, convention)} of the files of a row that exist; None when its RGB video is missing."""
    resolve = partial(_resolve, root=root)
    rgb = row.get(rgb_column)
    if not rgb or not os.path.isfile(resolve(rgb)):
        report["missing"].append(f"row {number}: {rgb_column} {rgb!r} (row skipped)")
        warnings.warn(f"row {number}: the RGB video {rgb!r} is missing; row skipped", stacklevel=3)
        return None
    found = {"rgb": (resolve(rgb), rgb_column, UNITY_CONVENTION)}
    for column, (modality, convention) in streams.items():
        value = row.get(column)
        if not value:
            continue
        if not os.path.isfile(resolve(value)):
            report["missing"].append(f"row {number}: {column} {value!r}")
            warnings.warn(
                f"row {number}: {column} video {value!r} is missing; the sample goes without it", stacklevel=3
            )
            continue
        found[modality] = (resolve(value), column, convention)
    return found


def _read_row(found: dict, fps: float, height: int, width: int, report: dict) -> tuple[dict, float | None]:
    """The decoded frames of each stream of a row (an undecodable one reported and left out) and the RGB fps."""
    videos, source_fps = {}, None
    for name, (path, column, _) in found.items():
        try:
            videos[name], stream_fps = read_frames(path, fps, height, width, nearest=name in CATEGORICAL)
        except (VideoDecodeError, cv2.error, ValueError) as e:
            report["undecodable"][path] = str(e)
            warnings.warn(f"{column} video {path} does not decode ({e}); skipped", stacklevel=3)
            if name == "rgb":
                return {}, None
            continue
        if name == "rgb":
            source_fps = stream_fps
    return videos, source_fps


def _meta(key, caption, found, clip, streams, fps, ext, split, start, source_fps) -> dict:
    auxiliary = [m for m in MODALITIES if m != "rgb" and m in clip]  # registry order
    height, width = clip["rgb"].shape[1:3]
    return {
        "schema": SCHEMA_VERSION,
        "key": key,
        "caption": caption,
        "fps": fps,
        "frames": len(clip["rgb"]),
        "height": int(height),
        "width": int(width),
        "source": found["rgb"][0],
        "split": split,
        "modalities": ["rgb", *auxiliary],
        "ext": ext,
        "exts": {m: MODALITY_EXT for m in auxiliary if MODALITY_EXT != ext},
        "prompts": {m: get(m).prompt for m in auxiliary},
        "encoding": {m: {"convention": found[m][2], "column": found[m][1]} for m in auxiliary},
        "gt": [],
        "clip": {"start_frame": start, "source_fps": source_fps},
        "files": {m: found[m][0] for m in clip},
    }


def _sample(meta: dict, clip: dict, ext: str, fps: float) -> dict:
    """A writer sample: the json and every stream's video (RGB in ``ext``, the others lossless)."""
    sample = {"json": meta, video_member("rgb", ext): encode_video(clip["rgb"], ext, fps)}
    for name in meta["modalities"][1:]:
        stream_ext = meta["exts"].get(name, ext)
        sample[video_member(name, stream_ext)] = encode_video(clip[name], stream_ext, fps)
    return sample
