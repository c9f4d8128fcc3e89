"""``train.deterministic`` turns on PyTorch's deterministic algorithms and what cuBLAS needs for them;
off, it leaves PyTorch's defaults alone."""

import os

import torch

from unity.config import load
from unity.train.determinism import CUBLAS_WORKSPACE, use_deterministic_algorithms


def test_the_knob_turns_deterministic_algorithms_on(monkeypatch):
    assert load(None).train.deterministic is False and load(None, ["train.deterministic=true"]).train.deterministic
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    use_deterministic_algorithms(False)
    assert not torch.are_deterministic_algorithms_enabled() and "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    benchmark = torch.backends.cudnn.benchmark
    try:
        use_deterministic_algorithms(True)
        assert torch.are_deterministic_algorithms_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, benchmark
