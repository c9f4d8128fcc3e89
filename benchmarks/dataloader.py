"""Clips per second through the shard loader against raw OpenCV decoding and a GPU step's consumption.

    python benchmarks/dataloader.py [--clips 16] [--frames 33] [--size 256] [--workers 0 1 2] [--batches 8]
                                    [--batch-size 2] [--rounds 3] [--formats mkv mp4] [--streams all rgb]
                                    [--keep DIR] [--json OUT]
                                    [--model-config configs/model/base.yaml --channels 16 --compression 4 8 8
                                     --gpus 8 --workers-per-gpu 12 --peak-flops 989e12 --mfu 0.5]

It renders ``--clips`` synthetic clips into FFV1 (``.mkv``) shards with ``build_synthetic``, re-encodes
every stream of the same clips to ``.mp4`` into a second shard set of the same layout (in a temporary
folder, or ``--keep DIR`` to reuse them between runs), then measures, for each format and stream set
(``all``: rgb and every modality, what training loads by default; ``rgb``: rgb only):

- ``raw``: ``cv2.VideoCapture`` on the in-memory bytes of the same members, every frame read, in this
  process (what one worker could decode at best) and, for every worker count of 2 or more, in as many
  processes at once, each decoding its share (what that many workers could decode at best);
- ``loader``: ``make_loader`` batches (resampled shards, a random ``--frames`` window, a random crop
  resized to ``--size``, uint8 as the trainer receives them) with 0 (in-process), 1, 2 ... DataLoader
  workers. Each worker's first batch (process start, shuffle-buffer fill) is discarded; the rate is over
  the next ``--batches`` batches. Per worker = clips/s / max(1, workers).

``vs raw`` compares the loader with ``w`` workers against raw decoding in ``max(1, w)`` processes, side by
side in the same rounds, so that both compete for the same cores; ``cpu vs raw`` compares CPU time per
clip, which a machine shared with other jobs disturbs least.

Variants are interleaved within each round and the rounds repeated; figures are medians over rounds,
so a machine shared with other jobs slows all variants alike. ``cpu_ms_per_clip`` is the CPU time of
this process and its workers per clip once started: the CPU of the run (workers joined) less that of a
run of its warm batches alone, per extra clip, which leaves out worker start-up and is what a shared
machine disturbs least (``cpu_ms_per_clip_with_startup`` in the JSON keeps it in). Thread pools are
pinned to one thread, so one worker is one core.

A training step consumes clips at ``peak * mfu / (3 * forward FLOPs)`` samples/s per GPU, the forward
FLOPs from ``models.flops`` for ``--model-config`` on two streams of the benchmark's clip in latents of
``--channels`` channels at ``--compression`` and ``model.text_max_tokens`` text tokens (MFU counts model
FLOPs, so the recomputation of ``grad_checkpointing`` is not in the 3). The loader of one node (``--gpus`` x
``--workers-per-gpu`` workers at the per-worker rate measured with ``--scale-workers`` workers, by default the
most measured, since workers share the memory bandwidth and the main process; and, for a machine shared with
other jobs, at the rate its CPU time per clip gives one core) is compared with that demand.
"""

from __future__ import annotations

import os

_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
for _var in _THREAD_VARS:
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from data_pipeline.loader import find_shards, make_loader  # noqa: E402
from data_pipeline.modalities import MODALITIES  # noqa: E402
from data_pipeline.schema import stream_member, video_member  # noqa: E402
from data_pipeline.synthetic.build import build_synthetic  # noqa: E402
from data_pipeline.video_io import decode_video, encode_video  # noqa: E402
from data_pipeline.writer import ShardWriter  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.flops import forward_flops, latent_grid, tokens_per_stream  # noqa: E402

STREAM_SETS = {"all": list(MODALITIES), "rgb": ["rgb"]}  # rgb first, then every auxiliary modality
TRAIN_MULTIPLIER = 3  # a training step (forward + backward) costs ~3 forwards in model FLOPs


# ---------------------------------------------------------------------------------------------
# Shards.


def _members(path: str) -> dict[str, dict[str, bytes]]:
    """``{key: {suffix: bytes}}`` of one shard, in order."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                key, suffix = member.name.split(".", 1)
                samples.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    return samples


def read_samples(root: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a shard set, as ``{key: {suffix: bytes}}``."""
    samples = {}
    for shard in find_shards(root):
        samples.update(_members(shard))
    return samples


def reencode_mp4(source: str, out: str, shard_size: int) -> dict:
    """Write the samples of ``source`` again with every stream re-encoded to ``.mp4`` (same keys and layout)."""
    with open(os.path.join(source, "dataset.json")) as f:
        info = json.load(f)
    info = {"source": info.get("source"), "args": info.get("args"), "reencoded_from": "mkv"}
    with ShardWriter(out, prefix="train", shard_size=shard_size, info=info) as writer:
        for shard in find_shards(source):
            for key, members in _members(shard).items():
                meta = json.loads(members["json"])
                sample = {name: data for name, data in members.items() if name.endswith(".npy")}
                for name in meta["modalities"]:
                    frames = decode_video(members[stream_member(meta, name)])
                    data = encode_video(frames, "mp4", meta["fps"])
                    if decode_video(data).shape != frames.shape:
                        raise RuntimeError(f"{key}.{name}.mp4 does not decode to the {frames.shape} it was made of")
                    sample[video_member(name, "mp4")] = data
                sample["json"] = {**{k: v for k, v in meta.items() if k != "exts"}, "ext": "mp4"}
                writer.write(sample)
    return writer.dataset


def _matches(root: str, args: dict) -> bool:
    try:
        with open(os.path.join(root, "dataset.json")) as f:
            return json.load(f).get("args") == args
    except (OSError, ValueError):
        return False


def ensure_shards(folder: str, clips: int, frames: int, size: int, workers: int | None) -> dict[str, str]:
    """``{"mkv": root, "mp4": root}``: the shard sets under ``folder``, built unless already there."""
    args = {"clips": clips, "frames": frames, "size": size, "seed": 0, "with_gt": False}
    shard_size = max(1, clips // 4)  # a few shards, so that workers draw different ones
    roots = {ext: os.path.join(folder, ext) for ext in ("mkv", "mp4")}
    if not _matches(roots["mkv"], args):
        start = time.perf_counter()
        build_synthetic(
            roots["mkv"], clips, frames=frames, size=size, shard_size=shard_size, workers=workers, progress=False
        )
        print(f"rendered {clips} clips {frames}x{size}x{size} in {time.perf_counter() - start:.1f} s", flush=True)
        if os.path.exists(os.path.join(roots["mp4"], "dataset.json")):
            os.unlink(os.path.join(roots["mp4"], "dataset.json"))  # made from other clips
    if not _matches(roots["mp4"], args):
        start = time.perf_counter()
        reencode_mp4(roots["mkv"], roots["mp4"], shard_size)
        print(f"re-encoded them to mp4 in {time.perf_counter() - start:.1f} s", flush=True)
    return roots


# ---------------------------------------------------------------------------------------------
# Measurements: each returns (clips/s over the timed part, CPU seconds, clips, startup seconds).


def _cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def raw_decode(data: bytes) -> int:
    """Decode every frame of a video's bytes with ``cv2.VideoCapture``; returns the frame count."""
    stream = io.BytesIO(data)
    capture = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, [])
    count = 0
    try:
        while capture.read()[0]:
            count += 1
    finally:
        capture.release()
    return count


def _decode_clips(samples: list[dict[str, bytes]], ext: str, streams: list[str], indices) -> None:
    for i in indices:
        members = samples[i % len(samples)]
        for name in streams:
            if raw_decode(members[video_member(name, ext)]) == 0:
                raise RuntimeError(f"{name}.{ext} did not decode")


def _raw_process(samples, ext, streams, indices, ready, results) -> None:
    """One raw-decoding process: wait until every process is up, decode its share, report its CPU seconds."""
    ready.wait()
    cpu = time.process_time()
    _decode_clips(samples, ext, streams, indices)
    results.put(time.process_time() - cpu)


def measure_raw(samples: list[dict[str, bytes]], ext: str, streams: list[str], clips: int, processes: int = 1) -> tuple:
    """Raw decoding of ``clips`` clips in this process, or shared by ``processes`` forked processes at once
    (timed from the moment all of them are up to the last one's end)."""
    if processes == 1:
        cpu, start = _cpu(), time.perf_counter()
        _decode_clips(samples, ext, streams, range(clips))
        return clips / (time.perf_counter() - start), _cpu() - cpu, clips, 0.0
    context = multiprocessing.get_context("fork")  # the children inherit the samples: nothing is copied
    ready, results = context.Barrier(processes + 1), context.Queue()
    shares = [range(p, clips, processes) for p in range(processes)]
    children = [
        context.Process(target=_raw_process, args=(samples, ext, streams, share, ready, results)) for share in shares
    ]
    for child in children:
        child.start()
    ready.wait()
    start = time.perf_counter()
    cpu = sum(results.get(timeout=600) for _ in children)
    seconds = time.perf_counter() - start
    for child in children:
        child.join()
        if child.exitcode:
            raise RuntimeError(f"a raw-decoding process failed (exit code {child.exitcode})")
    return clips / seconds, cpu, clips, 0.0


def measure_loader(
    root: str,
    streams: list[str],
    workers: int,
    batches: int,
    batch_size: int,
    frames: int,
    size: int,
    shuffle_buffer: int,
    seed: int,
) -> tuple:
    warm = max(1, workers)  # each worker's first batch carries its start-up and shuffle-buffer fill
    loader = make_loader(
        root,
        streams[1:],
        batch_size,
        frames=frames,
        size=size,
        shuffle_buffer=shuffle_buffer,
        resampled=True,
        epoch_samples=(warm + batches) * batch_size,
        num_workers=workers,
        seed=seed,
    )
    cpu, start = _cpu(), time.perf_counter()
    clips = timed_clips = 0
    startup = timed_from = seconds = None
    for i, batch in enumerate(loader):
        n = len(batch["key"])
        if batch["skipped"]:
            raise RuntimeError(f"the loader skipped {batch['skipped']} samples (see the warnings)")
        if list(batch["rgb"].shape[2:]) != [frames, size, size] or batch["rgb"].dtype != torch.uint8:
            raise RuntimeError(f"unexpected batch {batch['rgb'].dtype} {tuple(batch['rgb'].shape)}")
        clips += n
        if i == 0:
            startup = time.perf_counter() - start
        if i == warm - 1:
            timed_from = time.perf_counter()
        elif i >= warm:
            timed_clips += n
        if i == warm + batches - 1:  # the last batch (the workers then shut down, outside the timing)
            seconds = time.perf_counter() - timed_from
        del batch
    rate = timed_clips / seconds if batches else None
    return rate, _cpu() - cpu, clips, startup  # the CPU time once the workers have ended


def steady_cpu_per_clip(long: tuple, short: tuple) -> float:
    """CPU seconds per clip of a loader once started: the extra CPU of a run over a run of its warm batches
    alone, per extra clip (worker start-up, shuffle-buffer fill and shut-down cancel out)."""
    return (long[1] - short[1]) / (long[2] - short[2])


# ---------------------------------------------------------------------------------------------
# What a GPU consumes.


def load_model_config(path: str) -> ModelConfig:
    """The ``model:`` section of a YAML config over the defaults (``models.summary``'s, without importing the model)."""
    config = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(path).get("model", {}))
    model_config = OmegaConf.to_object(config)
    model_config.validate()
    return model_config


def gpu_demand(
    model_config: str,
    channels: int,
    compression,
    frames: int,
    height: int,
    width: int,
    peak_flops: float,
    mfu: float,
    gpus: int,
    streams: int = 2,
) -> dict:
    """Samples/s a training step of ``model_config`` consumes per GPU and per node, from ``models.flops``."""
    config = load_model_config(model_config)
    grid = latent_grid(frames, height, width, tuple(compression))
    forward = forward_flops(
        config, channels, config.text_dim, grid, streams, config.text_max_tokens, config.text_max_tokens
    )["total"]
    seconds = TRAIN_MULTIPLIER * forward / (peak_flops * mfu)
    return {
        "model_config": model_config,
        "clip": [frames, height, width],
        "streams": streams,
        "channels": channels,
        "compression": list(compression),
        "latent_grid": list(grid),
        "patch": list(config.patch),
        "tokens_per_stream": tokens_per_stream(config, grid),
        "context_tokens": config.text_max_tokens,
        "forward_flops": forward,
        "train_flops": TRAIN_MULTIPLIER * forward,
        "peak_flops": peak_flops,
        "mfu": mfu,
        "s_per_sample": seconds,
        "samples_per_s_per_gpu": 1 / seconds,
        "gpus": gpus,
        "samples_per_s_per_node": gpus / seconds,
    }


# ---------------------------------------------------------------------------------------------


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=16, help="synthetic clips rendered (reused through the run)")
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--size", type=int, default=256, help="square frame size, stored and loaded")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader worker counts")
    parser.add_argument("--batches", type=int, default=8, help="timed batches per loader measurement")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repeats; figures are medians")
    parser.add_argument("--formats", nargs="+", default=["mkv", "mp4"], choices=["mkv", "mp4"])
    parser.add_argument("--streams", nargs="+", default=["all", "rgb"], choices=list(STREAM_SETS))
    parser.add_argument("--shuffle-buffer", type=int, default=8)
    parser.add_argument("--keep", default=None, help="build the shards here, or reuse the ones already there")
    parser.add_argument("--build-workers", type=int, default=None, help="render processes (default: all cores)")
    parser.add_argument("--model-config", default="configs/model/base.yaml")
    parser.add_argument("--channels", type=int, default=16, help="latent channels (Wan2.1 VAE: 16)")
    parser.add_argument("--compression", type=int, nargs=3, default=[4, 8, 8], metavar=("T", "H", "W"))
    parser.add_argument("--peak-flops", type=float, default=989e12, help="per GPU (H200 dense bf16: 989e12)")
    parser.add_argument("--mfu", type=float, default=0.5)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per node")
    parser.add_argument("--workers-per-gpu", type=int, default=12, help="loader workers per GPU on a node")
    parser.add_argument(
        "--scale-workers",
        type=int,
        default=None,
        help="scale the per-worker rate measured with this many workers (default and fallback: the most measured)",
    )
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if min(args.workers) < 0 or args.batches < 1 or args.batch_size < 1 or args.rounds < 1 or args.clips < 1:
        parser.error("need workers >= 0 and batches, batch size, rounds and clips >= 1")

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    logging.basicConfig(level=logging.WARNING)
    clips_per_run = args.batches * args.batch_size

    with contextlib.ExitStack() as stack:
        folder = args.keep or stack.enter_context(tempfile.TemporaryDirectory(prefix="dataloader-bench-"))
        roots = ensure_shards(folder, args.clips, args.frames, args.size, args.build_workers)
        samples = {ext: list(read_samples(roots[ext]).values()) for ext in args.formats}

        processes = sorted({1, *(w for w in args.workers if w >= 2)})  # raw decoding side by side with w workers
        variants = [
            (ext, streams, kind, n)
            for ext in args.formats
            for streams in args.streams
            for kind, counts in (("raw", processes), ("loader", args.workers))
            for n in counts
        ]
        runs = {v: [] for v in variants}
        for r in range(args.rounds):
            for ext in args.formats:
                for streams in args.streams:
                    group = [v for v in variants if v[:2] == (ext, streams)]
                    for v in group if r % 2 == 0 else group[::-1]:  # alternate the order within a group
                        names = STREAM_SETS[streams]
                        if v[2] == "raw":
                            raw = measure_raw(samples[ext], ext, names, clips_per_run, v[3])
                            runs[v].append((*raw, raw[1] / raw[2]))
                        else:
                            setup = (args.batch_size, args.frames, args.size, args.shuffle_buffer)
                            long = measure_loader(roots[ext], names, v[3], args.batches, *setup, seed=r)
                            short = measure_loader(roots[ext], names, v[3], 0, *setup, seed=r)
                            runs[v].append((*long, steady_cpu_per_clip(long, short)))
            print(f"round {r + 1}/{args.rounds} done", flush=True)

    results = []
    for ext, streams, kind, n in variants:
        measured = runs[(ext, streams, kind, n)]
        rate = statistics.median(m[0] for m in measured)
        results.append(
            {
                "format": ext,
                "streams": streams,
                "stream_names": STREAM_SETS[streams],
                "variant": kind,
                "workers": None if (kind, n) == ("raw", 1) else n,  # raw: processes (None: this one)
                "clips_per_s": rate,
                "per_worker_clips_per_s": rate / max(1, n),
                "cpu_ms_per_clip": 1e3 * statistics.median(m[4] for m in measured),  # steady state
                "cpu_ms_per_clip_with_startup": 1e3 * statistics.median(m[1] / m[2] for m in measured),
                "startup_s": None if kind == "raw" else statistics.median(m[3] for m in measured),
                "rounds": [m[0] for m in measured],
            }
        )
    raw = {(r["format"], r["streams"], r["workers"] or 1): r for r in results if r["variant"] == "raw"}
    for r in results:  # against raw decoding in as many processes as the loader has workers (at least 1)
        base = raw[(r["format"], r["streams"], max(1, r["workers"] or 1))]
        r["vs_raw"] = r["clips_per_s"] / base["clips_per_s"]
        r["cpu_vs_raw"] = base["cpu_ms_per_clip"] / r["cpu_ms_per_clip"]

    demand = gpu_demand(
        args.model_config,
        args.channels,
        args.compression,
        args.frames,
        args.size,
        args.size,
        args.peak_flops,
        args.mfu,
        args.gpus,
    )
    reference = (
        gpu_demand(
            args.model_config, args.channels, args.compression, 33, 480, 832, args.peak_flops, args.mfu, args.gpus
        )
        if args.frames == 33 and args.channels == 16
        else None
    )
    scale_workers = args.scale_workers if args.scale_workers in args.workers else max(args.workers)
    node_workers = args.gpus * args.workers_per_gpu
    node = {
        "gpus": args.gpus,
        "workers_per_gpu": args.workers_per_gpu,
        "loader_workers": node_workers,
        "scale_workers": scale_workers,
        "rows": [],
    }
    for r in results:
        if r["variant"] == "loader" and r["workers"] == scale_workers:
            supply = r["per_worker_clips_per_s"] * node_workers
            # A worker with a core to itself: all the CPU time of the loader (workers and main process) per clip.
            per_core = 1e3 / r["cpu_ms_per_clip"]
            node["rows"].append(
                {
                    "format": r["format"],
                    "streams": r["streams"],
                    "per_worker_clips_per_s": r["per_worker_clips_per_s"],
                    "node_clips_per_s": supply,
                    "vs_gpu_demand": supply / demand["samples_per_s_per_node"],
                    "cpu_bound_clips_per_s_per_core": per_core,
                    "cpu_bound_vs_gpu_demand": per_core * node_workers / demand["samples_per_s_per_node"],
                }
            )

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()}-core {platform.machine()}",
        "clip": {"frames": args.frames, "height": args.size, "width": args.size},
        "clips_rendered": args.clips,
        "clips_per_run": clips_per_run,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "threads": 1,
        "opencv": cv2.__version__,
        "results": results,
        "gpu": demand,
        "gpu_480x832": reference,
        "node": node,
    }

    print(
        f"\n{args.frames}x{args.size}x{args.size} clips, batch {args.batch_size}, {clips_per_run} timed clips per "
        f"run, median of {args.rounds} interleaved rounds, 1 thread per process; raw rows: decoding processes; "
        "vs raw: against raw decoding in max(1, workers) processes"
    )
    columns = ("format", "streams", "variant", "workers", "clips/s", "/worker", "vs raw", "cpu ms/clip", "cpu vs raw")
    widths = (6, 7, 7, 7, 8, 8, 7, 11, 10)
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, widths)))
    for r in results:
        row = (
            r["format"],
            f"{r['streams']}({len(r['stream_names'])})",
            r["variant"],
            "-" if r["workers"] is None else r["workers"],
            _fmt(r["clips_per_s"]),
            _fmt(r["per_worker_clips_per_s"]),
            _fmt(r["vs_raw"]),
            _fmt(r["cpu_ms_per_clip"], 0),
            _fmt(r["cpu_vs_raw"]),
        )
        print(" ".join(f"{str(c):>{w}}" for c, w in zip(row, widths)))
    g = demand
    print(
        f"\nGPU demand: {g['model_config']}, 2 streams of {args.frames}x{args.size}x{args.size} -> latent "
        f"{g['latent_grid']} x{g['channels']}, {g['tokens_per_stream']} tokens/stream: "
        f"{g['forward_flops'] / 1e12:.3f} TFLOPs forward, x{TRAIN_MULTIPLIER} / ({g['peak_flops']:.3g} x {g['mfu']} "
        f"MFU) = {g['s_per_sample'] * 1e3:.1f} ms/sample -> {g['samples_per_s_per_gpu']:.2f} samples/s/GPU, "
        f"{g['samples_per_s_per_node']:.1f} per {g['gpus']}-GPU node"
    )
    if reference:
        print(
            f"  (33x480x832: {reference['tokens_per_stream']} tokens/stream, "
            f"{reference['samples_per_s_per_gpu']:.2f} samples/s/GPU, "
            f"{reference['samples_per_s_per_node']:.1f} per node)"
        )
    print(
        f"Loader of one node: {node_workers} workers ({args.workers_per_gpu} per GPU) x per-worker clips/s "
        f"measured with {scale_workers} worker(s) here:"
    )
    for row in node["rows"]:
        print(
            f"  {row['format']} {row['streams']:>3}: {row['per_worker_clips_per_s']:.2f} x {node_workers} = "
            f"{row['node_clips_per_s']:.1f} clips/s = {row['vs_gpu_demand']:.2f}x the node's demand "
            f"(from CPU time, a core per worker: {row['cpu_bound_clips_per_s_per_core']:.2f} x {node_workers} = "
            f"{row['cpu_bound_vs_gpu_demand']:.2f}x)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
