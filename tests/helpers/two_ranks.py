"""Launching a test worker script on two CPU ranks with torchrun."""

import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_ranks(worker: str, *args: str) -> None:
    """Run ``tests/helpers/<worker>`` on two ranks (gloo, one thread each); fails the test with its output on error."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        os.path.join(ROOT, "tests", "helpers", worker),
        *args,
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([ROOT, os.path.join(ROOT, "tests", "helpers")]),
    }
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def torchrun(script: str, *args: str, nproc: int = 2, nnodes: int = 1, node_rank: int = 0, port: int = 0) -> list[str]:
    """The command that runs ``script`` (a path from the repository root) on ``nproc`` CPU ranks of one of
    ``nnodes`` nodes, the rendezvous on 127.0.0.1:``port`` (a free one when 0)."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nnodes={nnodes}",
        f"--node_rank={node_rank}",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={port or free_port()}",
        script,
        *args,
    ]
