"""One rank of tests/integration/test_sharded_checkpoint.py, launched by torchrun: sharded saves under DeepSpeed.

For each ZeRO stage given it trains the small MLP of ``deepspeed_engine_worker`` two steps with a warmed-up
EMA, saves the same state twice (``<out>/zero<stage>/sharded``: sharded only, with the engine's
consolidation forbidden; ``<out>/zero<stage>/full``: consolidated), trains two more steps, then resumes
a freshly built engine and EMA from the sharded checkpoint and trains the same two steps. Rank 0 writes
``<out>/zero<stage>.json`` with what the test compares.
"""

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from deepspeed_engine_worker import GRAD_ACCUM, MICRO_BATCH, mlp, train

from unity.config import load
from unity.train.ema import EMA
from unity.train.engine import DeepSpeedEngine
from unity.train.sharded import restore_ema, save_training_checkpoint

STEP = 2


def warm_ema(engine):
    return EMA(engine.model, 0.99, warmup=True, power=0.75, inv_gamma=1.0)


def forbid_gathering(engine):
    """Make the engine's consolidation fail: a sharded save must not call it."""

    def refuse():
        raise AssertionError("a sharded save gathered the full weights")

    engine.state_dict_consolidated = refuse


def max_difference(a, b):
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max((a[k] - b[k]).abs().max().item() for k in a)


def check_stage(stage, out):
    overrides = [
        "parallel.engine=deepspeed",
        f"parallel.zero_stage={stage}",
        f"train.grad_accum={GRAD_ACCUM}",
        f"data.batch_size={MICRO_BATCH}",
        "optim.lr=1e-3",
        "schedule.warmup_steps=2",
        "train.max_steps=6",
    ]
    config = load(overrides=overrides)
    engine = DeepSpeedEngine(mlp(), config)
    ema = warm_ema(engine)
    train(engine, range(STEP), ema=ema)
    consolidate = engine.state_dict_consolidated
    forbid_gathering(engine)
    folder = os.path.join(out, f"zero{stage}")
    sharded = save_training_checkpoint(os.path.join(folder, "sharded"), STEP, engine, ema, {}, consolidate=False)
    engine.state_dict_consolidated = consolidate
    save_training_checkpoint(os.path.join(folder, "full"), STEP, engine, ema, {}, consolidate=True)
    ema_at_save = ema.state_dict()
    losses, _ = train(engine, range(STEP, STEP + 2), ema=ema)
    ema_after = ema.state_dict()

    resumed = DeepSpeedEngine(mlp(seed=1), config)
    resumed_ema = warm_ema(resumed)
    resumed.load_state(os.path.join(sharded, "engine"))
    restore_ema(sharded, resumed_ema)
    restored = resumed_ema.state_dict()
    restored_updates = resumed_ema.updates
    resumed_losses, _ = train(resumed, range(STEP, STEP + 2), ema=resumed_ema)
    resumed_after = resumed_ema.state_dict()

    report = {"losses": losses, "resumed_losses": resumed_losses}
    gathered = [None] * engine.world_size
    dist.all_gather_object(gathered, report)
    if engine.is_main:
        summary = {
            "ranks": gathered,
            "ema_updates": ema.updates,
            "restored_updates": restored_updates,
            "restored_ema_difference": max_difference(restored, ema_at_save),
            "ema_after_difference": max_difference(resumed_after, ema_after),
            "partitioned": len(ema.partitioned),
        }
        with open(os.path.join(out, f"zero{stage}.json"), "w") as f:
            json.dump(summary, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stages", default="2,3")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for stage in map(int, args.stages.split(",")):
        check_stage(stage, args.out)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as deepspeed_engine_worker: no interpreter teardown under DeepSpeed's CPU threads


if __name__ == "__main__":
    main()
