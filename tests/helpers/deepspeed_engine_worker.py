"""One rank of tests/integration/test_engine_distributed.py, launched by torchrun: DeepSpeedEngine on CPU ranks.

For each ZeRO stage given it trains a small MLP on rank-dependent micro-batches, then rank 0 writes
``<out>/zero<stage>.json`` with what the test compares: the consolidated weights against a plain
engine trained on the concatenation of every rank's micro-batches, a resume from ``save_state``,
and a step whose gradients are non-finite on one rank.
"""

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from unity.config import load
from unity.train.ema import EMA
from unity.train.engine import DeepSpeedEngine, PlainEngine

MICRO_BATCH, GRAD_ACCUM, EMA_DECAY = 2, 2, 0.5


def mlp(seed=0):
    torch.manual_seed(seed)
    # Weights over 1e5 elements, so that ZeRO-3 partitions them rather than keeping them whole on each rank.
    return nn.Sequential(nn.Linear(64, 2048), nn.LayerNorm(2048), nn.GELU(), nn.Linear(2048, 8))


def micro_batch(step, micro, rank):
    g = torch.Generator().manual_seed(1000 * step + 10 * micro + rank)
    return torch.randn(MICRO_BATCH, 64, generator=g), torch.randn(MICRO_BATCH, 8, generator=g)


def train(engine, steps, poison_rank=None, ema=None):
    """One optimizer step per entry of ``steps`` (each followed by an EMA update when given); returns
    this rank's micro-batch losses and the boundary results."""
    losses, results = [], []
    for step in steps:
        for micro in range(GRAD_ACCUM):
            x, y = micro_batch(step, micro, engine.rank)
            with engine.dtype_context():
                loss = nn.functional.mse_loss(engine.module(x), y)
            losses.append(loss.item())
            if engine.rank == poison_rank:
                loss = loss * float("nan")
            engine.backward(loss)
            result = engine.step()
        results.append(result)
        if ema is not None:
            ema.update(engine.model)
    return losses, results


def reference(config, steps, world_size):
    """The plain engine taking each step on all ranks' micro-batches together; its weights, results and EMA."""
    engine = PlainEngine(mlp(), config)
    ema = EMA(engine.model, EMA_DECAY)
    results = []
    for step in steps:
        parts = [micro_batch(step, micro, rank) for rank in range(world_size) for micro in range(GRAD_ACCUM)]
        x, y = (torch.cat(t) for t in zip(*parts))
        engine.backward(nn.functional.mse_loss(engine.module(x), y))
        results.append(engine.step())
        ema.update(engine.model)
    return engine.state_dict_consolidated(), results, ema.state_dict()


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
        "schedule.kind=cosine",
        "train.max_steps=6",
        "optim.grad_clip=0.5",
        "optim.weight_decay=0.1",
    ]
    config = load(overrides=overrides)
    engine = DeepSpeedEngine(mlp(), config)
    ema = EMA(engine.model, EMA_DECAY)
    _, results = train(engine, range(3), ema=ema)
    # Under ZeRO-3 each rank holds a shard (ds_tensor) of a partitioned parameter.
    partitioned = sum(p.ds_tensor.numel() < p.ds_numel for p in engine.model.parameters() if hasattr(p, "ds_tensor"))
    trained = engine.state_dict_consolidated()
    averaged = ema.state_dict()  # a collective under ZeRO-3: every rank gathers the shards
    probe = torch.randn(4, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        with ema.applied(engine.model):
            output_with_ema = engine.module(probe)
        output_after = engine.module(probe)
    folder = os.path.join(out, f"zero{stage}_state")
    engine.save_state(folder)
    after_save, _ = train(engine, range(3, 5))
    before_poison = engine.state_dict_consolidated()
    _, (poisoned,) = train(engine, [5], poison_rank=1)
    after_poison = engine.state_dict_consolidated()

    resumed = DeepSpeedEngine(mlp(seed=1), config)
    resumed.load_state(folder)
    after_load, _ = train(resumed, range(3, 5))

    report = {
        "losses_after_save": after_save,
        "losses_after_load": after_load,
        "poisoned_skipped": poisoned["skipped"],
        "poisoned_grad_norm": poisoned["grad_norm"],
    }
    gathered = [None] * engine.world_size
    dist.all_gather_object(gathered, report)
    if engine.is_main:
        plain_config = load(overrides=overrides + ["parallel.engine=plain", "train.grad_accum=1"])
        expected, expected_results, expected_ema = reference(plain_config, range(3), engine.world_size)
        single = mlp()
        single.load_state_dict(averaged)
        plain = mlp()
        plain.load_state_dict(trained)
        summary = {
            "world_size": engine.world_size,
            "ranks": gathered,
            "max_difference": max_difference(trained, expected),
            "ema_max_difference": max_difference(averaged, expected_ema),
            "ema_forward_difference": (output_with_ema - single(probe)).abs().max().item(),
            "restored_forward_difference": (output_after - plain(probe)).abs().max().item(),
            "grad_norms": [r["grad_norm"] for r in results],
            "expected_grad_norms": [r["grad_norm"] for r in expected_results],
            "lrs": [r["lr"] for r in results],
            "expected_lrs": [r["lr"] for r in expected_results],
            "skipped": [r["skipped"] for r in results],
            "poison_changed_weights": max_difference(before_poison, after_poison),
            "partitioned_params": partitioned,
            "dtypes": sorted({str(v.dtype) for v in trained.values()}),
        }
        with open(os.path.join(out, f"zero{stage}.json"), "w") as f:
            json.dump(summary, f, indent=1)
    else:
        assert trained == {}, "only the main rank receives the consolidated weights"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stages", default="0,2,3")
    args = parser.parse_args()
    for stage in map(int, args.stages.split(",")):
        check_stage(stage, args.out)
    dist.barrier()
    dist.destroy_process_group()
    # Leave without interpreter teardown: DeepSpeed's CPU communication threads can abort the
    # process ("terminate called without an active exception") while static objects are destroyed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
