"""The device peak MFU is measured against: told apart by the names CUDA reports for each card."""

import pytest
import torch

from unity.train import metrics


@pytest.mark.parametrize(
    "name, peak",
    [
        ("NVIDIA H100 80GB HBM3", 989.0),  # SXM
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA H200 NVL", 835.0),
        ("NVIDIA H800 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA GeForce RTX 4090", 165.0),
    ],
)
def test_peak_by_device_name(monkeypatch, name, peak):
    assert metrics.peak_for_name(name) == peak
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert metrics.peak_tflops(torch.device("cuda", 0)) == peak
    assert metrics.peak_tflops(torch.device("cuda", 0), override=123.0) == 123.0


def test_unknown_device_names_the_fix(monkeypatch):
    assert metrics.peak_for_name("Some Accelerator 9000") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some Accelerator 9000")
    with pytest.raises(ValueError, match="set train.peak_tflops"):
        metrics.peak_tflops(torch.device("cuda", 0))
