"""Training metrics: ``metrics.jsonl`` and TensorBoard on the main rank, and MFU against the device's peak."""

from __future__ import annotations

import json
import os
import time

import torch

# Dense bf16 peak TFLOP/s per device name fragment (vendor figures, no sparsity).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "H800": 989.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
}


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
        for fragment, peak in PEAK_TFLOPS.items():
            if fragment in name:
                return peak
        raise ValueError(f"no peak TFLOP/s known for {name!r}; set train.peak_tflops")
    return measured_cpu_tflops()


class MetricsLogger:
    """Appends one JSON line per record to ``<run>/metrics.jsonl`` and mirrors scalars to TensorBoard."""

    def __init__(self, run_dir: str, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.file = open(self.path, "a")
        self.tensorboard = SummaryWriter(os.path.join(run_dir, "tb"))

    def drop_after(self, step: int) -> None:
        """Forget the records after ``step`` (a run resumed there redoes them; -1 for a fresh start)."""
        if not self.enabled:
            return
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
        for name, value in values.items():
            if isinstance(value, (int, float)):
                self.tensorboard.add_scalar(name, value, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tensorboard.close()
