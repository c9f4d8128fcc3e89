"""Sharded checkpoints on two DeepSpeed CPU ranks (gloo): what a save writes without gathering, the offline
consolidation (``python -m unity.checkpoint consolidate``) against the engine's own, and an exact resume
of the weights, the optimizer and the warmed-up EMA from the shards.

One torchrun launch runs every stage (tests/helpers/sharded_checkpoint_worker.py), about 20 s on 2 cores.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from unity import checkpoint as checkpoint_cli
from unity.train.checkpoint import find_checkpoint, read_state

from two_ranks import run_two_ranks

pytestmark = pytest.mark.distributed

STAGES = (0, 2, 3)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded")
    run_two_ranks("sharded_checkpoint_worker.py", "--out", str(out), "--stages", ",".join(map(str, STAGES)))
    return out


def step_folder(out, stage, kind):
    return out / f"zero{stage}" / kind / "checkpoints" / "step_0000002"


@pytest.mark.parametrize("stage", STAGES)
def test_a_sharded_save_writes_each_ranks_part_and_no_full_weights(out, stage):
    sharded, full = step_folder(out, stage, "sharded"), step_folder(out, stage, "full")
    assert not list(sharded.glob("*.safetensors"))  # the worker made the engine's gathering fail: none happened
    assert (sharded / "engine" / "deepspeed").is_dir()
    shards = sorted(p.name for p in (sharded / "ema_shards").iterdir())
    # ZeRO-3 partitions the EMA like the weights; otherwise it is whole on every rank and rank 0 writes it.
    assert shards == (
        ["rank_00000.safetensors", "rank_00001.safetensors"] if stage == 3 else ["rank_00000.safetensors"]
    )
    layout = read_state(sharded, rank=0)["layout"]
    assert layout == {
        "engine": "deepspeed",
        "zero_stage": stage,
        "world_size": 2,
        "names": ["model", "ema"],
        "lora": False,
        "consolidated": False,
    }
    assert read_state(sharded, rank=1)["ema_updates"] == 2
    assert (full / "model.safetensors").is_file() and (full / "ema.safetensors").is_file()
    with pytest.raises(FileNotFoundError, match="python -m unity.checkpoint consolidate"):
        find_checkpoint(sharded)  # what sampling and evaluation call: it says how to get the weights


@pytest.mark.parametrize("stage", STAGES)
def test_offline_consolidation_equals_the_engines_own(out, stage, tmp_path, capsys):
    sharded = tmp_path / "step_0000002"
    shutil.copytree(step_folder(out, stage, "sharded"), sharded)
    assert checkpoint_cli.main(["consolidate", str(sharded)]) == 0
    assert "wrote model.safetensors, ema.safetensors" in capsys.readouterr().out
    for name in ("model.safetensors", "ema.safetensors"):
        offline, engine = load_file(sharded / name), load_file(step_folder(out, stage, "full") / name)
        assert offline.keys() == engine.keys()
        for key in engine:
            assert offline[key].dtype == engine[key].dtype and torch.equal(offline[key], engine[key]), (name, key)
    assert find_checkpoint(sharded) == sharded
    assert checkpoint_cli.main(["consolidate", str(sharded)]) == 0  # a second time: nothing to do
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_consolidating_a_damaged_checkpoint_names_the_shard_and_writes_nothing(out, tmp_path, capsys, damage):
    damaged = tmp_path / "step_0000002"
    shutil.copytree(step_folder(out, 3, "sharded"), damaged)
    shard = damaged / "ema_shards" / "rank_00001.safetensors"
    if damage == "missing":
        shard.unlink()
    else:
        with open(shard, "r+b") as f:
            f.truncate(shard.stat().st_size - 100)
    assert checkpoint_cli.main(["consolidate", str(damaged)]) == 2
    assert f"rank_00001.safetensors is {'missing' if damage == 'missing' else 'damaged'}" in capsys.readouterr().err
    assert sorted(p.name for p in damaged.iterdir()) == ["ema_shards", "engine", "state.json"]


@pytest.mark.parametrize("stage", STAGES)
def test_resuming_from_shards_repeats_the_run_and_its_ema_exactly(out, stage):
    report = json.loads((out / f"zero{stage}.json").read_text())
    assert report["partitioned"] > 0 if stage == 3 else report["partitioned"] == 0
    assert report["restored_updates"] == 2 and report["ema_updates"] == 4
    assert report["restored_ema_difference"] == 0.0
    for rank in report["ranks"]:
        assert rank["resumed_losses"] == rank["losses"]
    assert report["ema_after_difference"] == 0.0
