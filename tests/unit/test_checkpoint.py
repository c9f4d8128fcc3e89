"""Checkpoints: round trip, atomic saves under a full disk, pruning, resume resolution, multi-rank saves."""

import errno
import logging
import os
import random

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from unity.config import Config
from unity.train import checkpoint
from unity.train.checkpoint import (
    config_hash,
    load_ema,
    load_weights,
    read_state,
    resolve_resume,
    save_checkpoint,
    set_rng_state,
)
from unity.train.ema import EMA


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def write_engine(folder: str) -> None:
    torch.save({"optimizer": "adamw"}, os.path.join(folder, "engine.pt"))


def save(run, step, model=None, **kwargs):
    model = small_model(step) if model is None else model
    return save_checkpoint(run, step, model.state_dict(), None, {"loader": {"epoch": step}}, **kwargs)


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_round_trip_restores_weights_ema_state_and_random_numbers(tmp_path):
    model = small_model()
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    ema.update(model)
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    path = save_checkpoint(
        tmp_path,
        500,
        model.state_dict(),
        ema.state_dict(),
        {"loader": {"epoch": 1, "read": [3, 4]}, "config_hash": "abc"},
        save_engine=write_engine,
    )
    expected = draws()

    assert path == str(tmp_path / "checkpoints" / "step_0000500")
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_0000500"
    assert torch.load(os.path.join(path, "engine", "engine.pt")) == {"optimizer": "adamw"}
    restored = small_model(seed=7)
    load_weights(restored, os.path.join(path, "model.safetensors"))
    for name, value in model.state_dict().items():
        assert torch.equal(restored.state_dict()[name], value)
    ema_restored = EMA(small_model(seed=7), decay=0.9)
    ema_restored.load_state_dict(load_ema(path))
    for name, value in ema.state_dict().items():
        assert torch.equal(ema_restored.state_dict()[name], value)

    state = read_state(path)
    assert state["step"] == 500 and state["world_size"] == 1
    assert state["loader"] == {"epoch": 1, "read": [3, 4]} and state["config_hash"] == "abc"
    draws()  # the run goes on drawing ...
    set_rng_state(state["rng"])  # ... and a resume continues from the saved point
    assert draws() == expected


def test_tied_weights_are_saved_and_loaded(tmp_path):
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    path = save_checkpoint(tmp_path, 1, model.state_dict(), None, {})
    copy = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    copy[1].weight = copy[0].weight
    load_weights(copy, os.path.join(path, "model.safetensors"))
    assert torch.equal(copy[0].weight, model[0].weight)


def test_a_full_disk_mid_save_leaves_the_previous_checkpoint_and_latest(tmp_path, monkeypatch):
    first = save(tmp_path, 1, save_engine=write_engine)
    real_save_file, calls = checkpoint.save_file, []

    def second_file_fails(tensors, filename, **kwargs):
        calls.append(filename)
        if len(calls) == 2:
            with open(filename, "wb") as f:
                f.write(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save_file(tensors, filename, **kwargs)

    monkeypatch.setattr(checkpoint, "save_file", second_file_fails)
    model = small_model()
    with pytest.raises(OSError, match="No space left on device"):
        save_checkpoint(tmp_path, 2, model.state_dict(), model.state_dict(), {}, save_engine=write_engine)

    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000001", "step_0000002.tmp"]
    assert (root / "latest").read_text().strip() == "step_0000001"
    assert resolve_resume(tmp_path, "auto") == first
    load_weights(small_model(), os.path.join(first, "model.safetensors"))
    assert read_state(first)["loader"] == {"epoch": 1}

    monkeypatch.setattr(checkpoint, "save_file", real_save_file)
    save(tmp_path, 3)  # the next save clears the leftover
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000001", "step_0000003"]


def test_a_failing_engine_save_also_leaves_latest_alone(tmp_path):
    save(tmp_path, 1)

    def broken(folder):
        raise RuntimeError("optimizer state unavailable")

    with pytest.raises(RuntimeError, match="optimizer state unavailable"):
        save(tmp_path, 2, save_engine=broken)
    assert resolve_resume(tmp_path, "auto") == str(tmp_path / "checkpoints" / "step_0000001")


def test_leftover_tmp_is_never_taken_for_a_checkpoint(tmp_path):
    good = save(tmp_path, 5)
    tmp = tmp_path / "checkpoints" / "step_0000009.tmp"
    tmp.mkdir()
    (tmp / "state.json").write_text("{}")
    assert resolve_resume(tmp_path, "auto") == good
    (tmp_path / "checkpoints" / "latest").unlink()  # even without `latest` the newest *complete* one is used
    assert resolve_resume(tmp_path, "auto") == good
    with pytest.raises(FileNotFoundError, match="unfinished"):
        resolve_resume(tmp_path, str(tmp))


def test_keep_last_prunes_older_checkpoints_but_never_latest(tmp_path):
    for step in range(1, 6):
        save(tmp_path, step, keep_last=2)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_0000004", "step_0000005"]
    save(tmp_path, 2, keep_last=1)  # a run restarted from an earlier point: its newest save survives
    assert (root / "latest").read_text().strip() == "step_0000002"
    assert (root / "step_0000002").is_dir() and (root / "step_0000005").is_dir()
    assert not (root / "step_0000004").exists()
    for step in (6, 7):
        save(tmp_path, step, keep_last=0)
    assert len(list(root.glob("step_*"))) == 4


def test_saving_the_same_step_again_replaces_it(tmp_path):
    save(tmp_path, 3, model=small_model(1))
    path = save(tmp_path, 3, model=small_model(2))
    restored = small_model(0)
    load_weights(restored, os.path.join(path, "model.safetensors"))
    assert torch.equal(restored[0].weight, small_model(2)[0].weight)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_0000003"]


def test_resolve_resume_modes(tmp_path, caplog):
    run = tmp_path / "run"
    assert resolve_resume(run, "never") is None
    assert resolve_resume(run, "auto") is None  # a fresh run
    save(run, 10)
    newest = save(run, 20)
    assert resolve_resume(run, "never") is None
    assert resolve_resume(run, "auto") == newest
    older = str(run / "checkpoints" / "step_0000010")
    assert resolve_resume(tmp_path / "elsewhere", older) == older  # a checkpoint folder
    assert resolve_resume(tmp_path / "elsewhere", str(run)) == newest  # a run folder
    assert resolve_resume(tmp_path / "elsewhere", str(run / "checkpoints")) == newest
    with pytest.raises(FileNotFoundError, match="no checkpoint there"):
        resolve_resume(run, str(tmp_path / "missing"))

    (run / "checkpoints" / "latest").write_text("step_0000030\n")  # names a folder that is gone
    with caplog.at_level(logging.WARNING, logger="unity.checkpoint"):
        assert resolve_resume(run, "auto") == newest
    assert "step_0000030" in caplog.text and "does not exist" in caplog.text


def test_load_weights_names_missing_unexpected_and_mismatched_keys(tmp_path):
    model = nn.Sequential(*[nn.Linear(4, 4) for _ in range(12)])
    path = save_checkpoint(tmp_path, 1, model.state_dict(), None, {})
    other = nn.Sequential(nn.Linear(4, 6), nn.Linear(4, 4))
    other.add_module("extra", nn.Linear(2, 2))
    with pytest.raises(ValueError) as e:
        load_weights(other, os.path.join(path, "model.safetensors"))
    message = str(e.value)
    assert "missing keys (2): extra.bias, extra.weight" in message
    assert "unexpected keys (20): " in message and "11.weight" in message
    assert (
        "shape mismatches (2): 0.bias: checkpoint [4] vs model [6], 0.weight: checkpoint [4, 4] vs model [6, 4]"
        in message
    )
    model = nn.Sequential(*[nn.Linear(1, 1) for _ in range(30)])
    with pytest.raises(ValueError, match=r"missing keys \(36\): .*\.\.\. 16 more"):
        load_weights(model, os.path.join(path, "model.safetensors"))


def test_load_ema_without_ema_weights(tmp_path):
    path = save(tmp_path, 1)
    with pytest.raises(FileNotFoundError, match="no EMA weights"):
        load_ema(path)


def test_config_hash_follows_the_config():
    from omegaconf import OmegaConf

    config = OmegaConf.structured(Config)
    assert config_hash(config) == config_hash(Config()) == config_hash(OmegaConf.structured(Config))
    config.optim.lr = 1.0
    assert config_hash(config) != config_hash(Config())


def _rank_saves(rank: int, init_file: str, run_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:

        def save_engine(folder):
            torch.save({"rank": rank}, os.path.join(folder, f"rank{rank}.pt"))

        weights = small_model().state_dict() if rank == 0 else {}  # like a ZeRO-3 gather: full on rank 0 only
        save_checkpoint(run_dir, 1, weights, None, {"loader": {"rank": rank}}, save_engine=save_engine)

        if rank == 0:  # a full disk on rank 0 fails the save on both ranks instead of hanging rank 1

            def full(*args, **kwargs):
                raise OSError(errno.ENOSPC, "No space left on device")

            checkpoint.save_file = full
        error = None
        try:
            save_checkpoint(run_dir, 2, weights, None, {}, save_engine=save_engine)
        except (OSError, RuntimeError) as e:
            error = e
        expected = OSError if rank == 0 else RuntimeError
        assert isinstance(error, expected), f"rank {rank}: {error!r}"
    finally:
        dist.destroy_process_group()


def test_two_ranks_save_one_checkpoint(tmp_path):
    mp.spawn(_rank_saves, args=(str(tmp_path / "init"), str(tmp_path / "run")), nprocs=2)
    root = tmp_path / "run" / "checkpoints"
    ckpt = root / "step_0000001"
    assert sorted(p.name for p in ckpt.iterdir()) == ["engine", "model.safetensors", "state.json"]
    assert sorted(os.listdir(ckpt / "engine")) == ["rank0.pt", "rank1.pt"]
    assert (root / "latest").read_text().strip() == "step_0000001"
    assert read_state(ckpt, rank=1)["loader"] == {"rank": 1}
    assert read_state(ckpt, rank=0)["world_size"] == 2
    assert resolve_resume(tmp_path / "run", "auto") == str(ckpt)


def test_a_damaged_weights_file_is_named_with_the_fix(tmp_path):
    from safetensors.torch import save_file

    from unity.train.checkpoint import load_weights, read_weights

    good = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(good))
    assert torch.equal(read_weights(good)["w"], torch.ones(2))
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(good.read_bytes()[:20])  # a copy cut short
    with pytest.raises(ValueError, match="damaged.safetensors is damaged.*earlier step_"):
        load_weights(nn.Linear(2, 2), damaged)
