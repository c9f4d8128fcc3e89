"""``train.deterministic``: deterministic algorithms, so that a GPU run repeats bit for bit.

A run is seeded everywhere (weights, routes, times, noise, data order), and a resumed run restores
every RNG state, so on CPU it repeats step for step. On a GPU several kernels (atomic-add reductions
in cuBLAS, cuDNN autotuning, attention backwards) may sum in a different order on each call: losses
then agree to rounding, not bit for bit. Turning on PyTorch's deterministic algorithms removes that
at some cost in speed; an operation without a deterministic version then stops the run with
PyTorch's error naming it.
"""

from __future__ import annotations

import os

import torch

CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for reproducible GEMMs (CUDA >= 10.2)


def use_deterministic_algorithms(enabled: bool) -> None:
    """Turn deterministic algorithms on (or leave PyTorch's defaults when not ``enabled``); before any CUDA work."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
