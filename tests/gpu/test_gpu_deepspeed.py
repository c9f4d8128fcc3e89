"""A DeepSpeed ZeRO-2 bf16 step on one GPU gives the plain engine's bf16 step, and resumes from its saved state.

The rank runs in its own process under a one-rank torchrun (tests/helpers/gpu_deepspeed_worker.py),
as a real launch does: NCCL, DeepSpeed's bf16 weights with fp32 master copies, its own clipping.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

from gpu_cases import BF16_TOLERANCE
from two_ranks import ROOT, free_port

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed")
    out = tmp_path_factory.mktemp("deepspeed_gpu")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=1",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        os.path.join(ROOT, "tests", "helpers", "gpu_deepspeed_worker.py"),
        "--out",
        str(out),
    ]
    paths = [ROOT, os.path.join(ROOT, "tests", "helpers"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return json.loads((out / "report.json").read_text())


def test_zero2_bf16_runs_bf16_weights_with_fp32_master_weights(report):
    assert report["device"] == "cuda" and report["autocast"] == "torch.bfloat16"
    assert report["weight_dtypes"] == ["torch.bfloat16"]  # DeepSpeed's bf16 module
    assert report["consolidated_dtypes"] == ["torch.float32"]  # checkpoints get the fp32 master weights


def test_zero2_bf16_steps_give_the_plain_engines_losses(report):
    assert report["losses"] == pytest.approx(report["plain_losses"], rel=BF16_TOLERANCE)
    assert report["grad_norms"] == pytest.approx(report["plain_grad_norms"], rel=2 * BF16_TOLERANCE)
    assert report["update_cosine"] > 0.9  # three updates in the same direction
    ds_norm, plain_norm = report["update_norms"]
    assert ds_norm == pytest.approx(plain_norm, rel=0.1)


def test_zero2_resumes_from_its_saved_state(report):
    assert report["resumed_losses"] == pytest.approx(report["losses"][2:], rel=1e-5)
