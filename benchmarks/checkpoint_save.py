"""Checkpoint save time and rank-0 peak memory against model size: sharded saves against consolidated ones.

    python benchmarks/checkpoint_save.py [--widths 1024 1792 2560 3584 5120] [--layers 8] [--ranks 2] [--stage 3]
                                         [--repeats 2] [--json OUT] [--record]

Launches itself on ``--ranks`` CPU processes (torchrun, gloo), builds for each width a stack of ``--layers``
``width x width`` linear layers (8 w^2 parameters at 8 layers: 8 M to 210 M by default; one launch each) under DeepSpeed
ZeRO ``--stage`` with AdamW and an EMA, takes one optimizer step (so the optimizer holds its moments),
then saves it through the trainer's own path (``unity.train.sharded.save_training_checkpoint``):

- ``sharded``: what ``checkpoint.save_every`` writes: each rank its own partitions, nothing gathered;
- ``consolidated``: the same plus the full fp32 ``model.safetensors`` and ``ema.safetensors`` gathered on
  rank 0 (what every save wrote before, and what step 0 and the last step still write);
- ``offline``: ``python -m unity.checkpoint consolidate`` of the sharded checkpoint, in rank 0's process
  after the others are done (what a user runs to sample from an intermediate checkpoint).

Rank-0 peak memory is the growth of its peak resident set during the save (the kernel's high-water mark
``VmHWM``, reset before each save through ``/proc/self/clear_refs``) over its resident set before it.
Times are the slowest rank's wall time, the best of ``--repeats``; peaks the largest of them.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import ctypes  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _status(field: str) -> int:
    """A memory figure of this process from /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _measured(work, *args, **kwargs) -> tuple[float, int]:
    """(seconds, peak resident-set growth in bytes) of ``work(*args, **kwargs)`` in this process."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed memory still resident would hide part of the growth
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current resident set
    before = _status("VmRSS")
    start = time.perf_counter()
    work(*args, **kwargs)
    return time.perf_counter() - start, _status("VmHWM") - before


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _rank_main(args) -> None:
    """One rank: every width, every save kind; rank 0 writes the JSON."""
    import torch
    import torch.distributed as dist
    from torch import nn

    from unity.checkpoint import main as consolidate_cli
    from unity.config import load
    from unity.train.ema import EMA
    from unity.train.engine import DeepSpeedEngine
    from unity.train.sharded import save_training_checkpoint

    torch.set_num_threads(1)
    rows = []
    for width in args.widths:
        torch.manual_seed(0)
        model = nn.Sequential(*[nn.Linear(width, width, bias=False) for _ in range(args.layers)])
        params = sum(p.numel() for p in model.parameters())
        config = load(overrides=["parallel.engine=deepspeed", f"parallel.zero_stage={args.stage}", "data.batch_size=2"])
        engine = DeepSpeedEngine(model, config)
        ema = EMA(engine.model, 0.999, warmup=True)
        x = torch.randn(2, width)
        engine.backward(engine.module(x).square().mean())
        engine.step()
        ema.update(engine.model)
        rank = engine.rank
        scratch = Path(args.scratch)
        for kind in ("sharded", "consolidated"):
            for repeat in range(args.repeats):
                run_dir = scratch / f"w{width}_{kind}_{repeat}"
                dist.barrier()
                consolidate = kind == "consolidated"
                seconds, peak = _measured(
                    save_training_checkpoint, run_dir, 1, engine, ema, {}, consolidate=consolidate, keep_last=0
                )
                times = [None] * engine.world_size
                dist.all_gather_object(times, seconds)
                ckpt = run_dir / "checkpoints" / "step_0000001"
                if rank == 0:
                    rows.append(
                        {
                            "width": width,
                            "params": params,
                            "kind": kind,
                            "repeat": repeat,
                            "seconds": max(times),
                            "rank0_peak_bytes": peak,
                            "disk_bytes": _folder_bytes(ckpt),
                        }
                    )
                dist.barrier()
                if rank == 0 and kind == "sharded" and repeat == 0:
                    seconds, peak = _measured(consolidate_cli, ["consolidate", str(ckpt)])
                    rows.append(
                        {
                            "width": width,
                            "params": params,
                            "kind": "offline",
                            "repeat": 0,
                            "seconds": seconds,
                            "rank0_peak_bytes": peak,
                            "disk_bytes": _folder_bytes(ckpt),
                        }
                    )
                dist.barrier()
                if rank == 0:
                    shutil.rmtree(run_dir)
        del engine, ema, model
    if dist.get_rank() == 0:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown under DeepSpeed's CPU communication threads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _table(rows: list[dict]) -> str:
    """A markdown table: per width, each kind's time and rank-0 peak (best repeat), and disk size."""
    lines = [
        "| parameters | fp32 weights | save | time (s) | rank-0 peak growth (GB) | peak / weights | on disk (GB) |",
        "| ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for width in sorted({r["width"] for r in rows}):
        for kind in ("sharded", "consolidated", "offline"):
            found = [r for r in rows if r["width"] == width and r["kind"] == kind]
            if not found:
                continue
            best = min(found, key=lambda r: r["seconds"])
            peak = max(r["rank0_peak_bytes"] for r in found)
            weights = 4 * best["params"]
            lines.append(
                f"| {best['params'] / 1e6:.1f} M | {weights / 1e9:.2f} GB | {kind} | {best['seconds']:.2f} | "
                f"{peak / 1e9:.2f} | {peak / weights:.2f} | {best['disk_bytes'] / 1e9:.2f} |"
            )
    return "\n".join(lines)


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` without the given options and their values."""
    kept, skipping = [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg in options
        if not skipping:
            kept.append(arg)
    return kept


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 1792, 2560, 3584, 5120])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--stage", type=int, default=3, choices=[0, 1, 2, 3])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows here")
    parser.add_argument("--record", action="store_true", help="add the table to benchmarks/RESULTS.md")
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)  # set for the ranks
    args = parser.parse_args(argv)
    if "LOCAL_RANK" in os.environ:
        _rank_main(args)
        return []
    forwarded = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--record"]
    rows = []
    for width in args.widths:  # one launch per size: each rank's memory starts from scratch
        with tempfile.TemporaryDirectory(prefix="checkpoint-bench-") as scratch:
            out = Path(scratch) / "rows.json"
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={args.ranks}",
                "--master_addr=127.0.0.1",
                f"--master_port={_free_port()}",
                __file__,
                *_without(forwarded, ("--widths", "--json")),
                "--widths",
                str(width),
                "--scratch",
                scratch,
                "--json",
                str(out),
            ]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
            subprocess.run(command, check=True, env=env, cwd=ROOT)
            rows += json.loads(out.read_text())
        print(f"width {width} done", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    table = _table(rows)
    print(table)
    if args.record:
        sys.path.insert(0, str(ROOT))
        from benchmarks.record import record_section

        record_section(
            "checkpoint_save.py",
            f"ZeRO-{args.stage}, {args.ranks} CPU ranks, {args.layers} linear layers per model",
            table,
            argv=forwarded,
        )
    return rows


if __name__ == "__main__":
    main()
