"""First use on two nodes, each with its own node-local data.root: both nodes render the synthetic splits
(their local rank 0, behind a real barrier), then train together. Two `torchrun --nnodes 2
--nproc-per-node 1` launches on this machine stand for the nodes, the rendezvous on 127.0.0.1."""

import json
import subprocess

import pytest

from mini_run import ENV, ROOT, overrides
from two_ranks import free_port, torchrun

pytestmark = pytest.mark.distributed


def test_two_nodes_with_node_local_data_both_render_then_train_together(tmp_path):
    port, launches = free_port(), []
    settings = {"parallel.engine": "deepspeed", "parallel.zero_stage": 2, "train.max_steps": 2}
    settings.update({"checkpoint.save_every": 2, "train.eval_every": 2, "eval.clips": 1, "eval.steps": 1})
    for node in (0, 1):
        args = overrides(tmp_path / "runs", tmp_path / f"node{node}" / "synth", **settings)
        command = torchrun("train.py", *args, nproc=1, nnodes=2, node_rank=node, port=port)
        with open(tmp_path / f"node{node}.log", "w") as log:
            launches.append(subprocess.Popen(command, cwd=ROOT, env=ENV, stdout=log, stderr=subprocess.STDOUT))
    for node, launch in enumerate(launches):
        assert launch.wait(timeout=600) == 0, (tmp_path / f"node{node}.log").read_text()[-4000:]
    for node in (0, 1):
        for split, clips in (("train", 12), ("val", 2), ("test", 2)):
            info = json.loads((tmp_path / f"node{node}" / "synth" / split / "dataset.json").read_text())
            assert info["samples"] == clips, (node, split)
    records = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    trained = [r for r in records if "loss" in r]
    assert [r["step"] for r in trained] == [1, 2] and all(len(r["keys"]) == 4 for r in trained)  # 2 nodes x 2
    assert "depth estimation (test split)" in (tmp_path / "node0.log").read_text()
