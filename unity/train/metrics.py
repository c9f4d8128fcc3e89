"""Training metrics: ``metrics.jsonl`` and TensorBoard on the main rank, and MFU against the device's peak."""

from __future__ import annotations

import json
import os
import time

import torch

# Dense bf16 peak TFLOP/s per device name fragment (vendor figures, no sparsity). The longest fragment found in the
# device name wins, so "H100 PCIe" (756) is told from the SXM "H100 80GB HBM3" (989) and the NVL cards (835).
PEAK_TFLOPS = {
    "H200 NVL": 835.0,
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "H800 PCIe": 756.0,
    "H800": 989.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
}


def peak_for_name(name: str) -> float | None:
    """The table's peak for a device name (the longest matching fragment, case-insensitive), or None."""
    found = [fragment for fragment in PEAK_TFLOPS if fragment.lower() in name.lower()]
    return PEAK_TFLOPS[max(found, key=len)] if found else None


def measured_cpu_tflops(size: int = 512, repeats: int = 8) -> float:
    """This CPU's fp32 GEMM throughput in TFLOP/s, measured now: the peak MFU is taken against on CPU."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm up the kernels
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def peak_tflops(device: torch.device, override: float = 0.0) -> float:
    """The device's dense peak: the override if set, else the table for GPUs, else a CPU GEMM measurement."""
    if override > 0:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_for_name(name)
        if peak is not None:
            return peak
        raise ValueError(f"no peak TFLOP/s known for {name!r}; set train.peak_tflops")
    return measured_cpu_tflops()


class MetricsLogger:
    """Appends one JSON line per record to ``<run>/metrics.jsonl`` and mirrors scalars to TensorBoard and to
    ``trackers`` (objects with ``log(step, values)`` and ``close()``, e.g. ``unity.train.trackers.WandbTracker``)."""

    def __init__(self, run_dir: str, enabled: bool = True, trackers: list | None = None):
        self.enabled = enabled
        self.trackers = list(trackers or []) if enabled else []
        if not enabled:
            return
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.file = open(self.path, "a")
        self.tensorboard_dir = os.path.join(run_dir, "tb")
        self.tensorboard = None  # opened by drop_after (with its purge step) or the first record

    def _open_tensorboard(self, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        if self.tensorboard is not None:
            self.tensorboard.close()
        self.tensorboard = SummaryWriter(self.tensorboard_dir, purge_step=purge_step)

    def drop_after(self, step: int) -> None:
        """Forget the records after ``step`` (a run resumed there redoes them; -1 for a fresh start).

        metrics.jsonl is rewritten without them; TensorBoard's event files are append-only, so the new
        writer starts with a purge marker (``SummaryWriter(purge_step=step + 1)``) that makes readers drop
        the events of later steps written before it: the curves show every step once.
        """
        if not self.enabled:
            return
        self._open_tensorboard(purge_step=step + 1)
        self.file.close()
        with open(self.path) as f:
            kept = [line for line in f if line.strip() and json.loads(line)["step"] <= step]
        with open(self.path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(self.path + ".tmp", self.path)
        self.file = open(self.path, "a")

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, "time": round(time.time(), 3), **values}) + "\n")
        self.file.flush()
        if self.tensorboard is None:
            self._open_tensorboard()
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self.tensorboard.add_scalar(name, value, step)
        self.tensorboard.flush()  # on disk like the jsonl line: a killed run keeps its curves up to here
        for tracker in self.trackers:
            tracker.log(step, values)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
            for tracker in self.trackers:
                tracker.close()
