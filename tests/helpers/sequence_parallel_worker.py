"""One rank of tests/integration/test_sequence_parallel.py, launched by torchrun on 2 CPU ranks (gloo).

Both ranks form one sequence-parallel group (DeepSpeed-Ulysses over UnityDiT's tokens). Rank 0
writes ``<out>/model.json``: forward outputs and group-summed gradients against the single-process
model, and ``<out>/zero<stage>.json``: the weights after optimizer steps of DeepSpeedEngine with
``parallel.sequence_parallel=2`` against the plain engine taking the same steps on the same samples.
"""

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.config import load
from unity.train.engine import DeepSpeedEngine, PlainEngine
from unity.train.parallel import sequence_parallel_group

CHANNELS, TEXT_DIM, BATCH, STREAMS, STEPS = 4, 16, 2, 2, 3
SHAPE = (2, 8, 8)  # T, H, W: with patch [1, 2, 2], 2·4·4 = 32 tokens per stream, 16 on each rank
# The engine checks' model. AdamW turns rounding noise in near-zero gradient elements into weight
# differences of order lr: lr=1e-4 keeps those near 1e-6 while the weights move by about 3e-4, and
# grad_clip=20 clips the first step only, so that a wrong gradient scale would change the weights too.
MODEL = [
    "model.hidden=160",
    "model.heads=2",
    "model.depth=2",
    "model.patch=[1,2,2]",
    "model.attention=math",
    "model.layout=width",
    f"model.text_dim={TEXT_DIM}",
]


def build(config: ModelConfig, seed: int = 0) -> UnityDiT:
    """The DiT with every parameter random (AdaLN-Zero's zero gates would hide most gradients)."""
    torch.manual_seed(seed)
    model = UnityDiT(config, CHANNELS, TEXT_DIM)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(std=0.05)
    return model


def inputs(step: int) -> dict:
    """The same random inputs on every rank; some caption and prompt tokens masked out."""
    g = torch.Generator().manual_seed(100 + step)
    caption_mask = torch.rand(BATCH, 5, generator=g) > 0.3
    prompt_mask = torch.rand(BATCH, STREAMS, 3, generator=g) > 0.3
    caption_mask[:, 0] = prompt_mask[..., 0] = True
    return dict(
        x=torch.randn(BATCH, STREAMS, CHANNELS, *SHAPE, generator=g),
        modality=torch.tensor([[0, 1], [0, 3]]),
        t=torch.rand(BATCH, STREAMS, generator=g).clamp(min=0.1),
        caption=torch.randn(BATCH, 5, TEXT_DIM, generator=g),
        caption_mask=caption_mask,
        prompt=torch.randn(BATCH, STREAMS, 3, TEXT_DIM, generator=g),
        prompt_mask=prompt_mask,
    )


def target(step: int) -> torch.Tensor:
    return torch.randn(BATCH, STREAMS, CHANNELS, *SHAPE, generator=torch.Generator().manual_seed(200 + step))


def loss_of(out: torch.Tensor, step: int) -> torch.Tensor:
    return torch.nn.functional.mse_loss(out, target(step))


VARIANTS = {  # ModelConfig fields over the defaults below, per checked model
    "dual_width_x": {},
    "checkpointing": {"grad_checkpointing": True},
    "token_time_v": {
        "switcher": "token",
        "layout": "time",
        "in_context": "caption_only",
        "prediction": "v",
        "attention": "math",
    },
}


def check_model(group, **fields) -> dict:
    """Forward and gradients of the sharded model against the whole one, in this process."""
    config = ModelConfig(
        **{
            "hidden": 32,
            "heads": 2,
            "depth": 2,
            "patch": [1, 2, 2],
            "attention": "sdpa",
            "layout": "width",
            "text_dim": TEXT_DIM,
            **fields,
        }
    )
    whole, sharded = build(config), build(config)
    sharded.enable_sequence_parallel(group)
    batch = inputs(0)
    expected = whole(**batch)
    got = sharded(**batch)
    loss_of(expected, 0).backward()
    loss_of(got, 0).backward()
    partial_differs, grad_difference = False, 0.0
    for a, b in zip(whole.parameters(), sharded.parameters()):
        partial = b.grad.clone()
        dist.all_reduce(b.grad, group=group)  # what the engine's loss scaling makes of DeepSpeed's average
        partial_differs |= not torch.allclose(partial, a.grad, atol=1e-6)
        grad_difference = max(grad_difference, (a.grad - b.grad).abs().max().item())
    return {
        "forward_difference": (expected - got).abs().max().item(),
        "output_scale": expected.abs().max().item(),
        "grad_difference": grad_difference,
        "grad_scale": max(p.grad.abs().max().item() for p in whole.parameters()),
        "partial_grads_differ": partial_differs,
        "sequence_parallel": repr(sharded.sequence_parallel),
    }


def check_errors(group) -> dict:
    """The ValueError messages for heads and for tokens per stream that do not split over the group."""
    messages = {}
    try:
        UnityDiT(ModelConfig(hidden=32, heads=1, depth=1), CHANNELS, TEXT_DIM).enable_sequence_parallel(group)
    except ValueError as e:
        messages["heads"] = str(e)
    model = build(ModelConfig(hidden=32, heads=2, depth=1, patch=[1, 2, 2], text_dim=TEXT_DIM))
    model.enable_sequence_parallel(group)
    batch = inputs(0)
    batch["x"] = batch["x"][..., :1, :2, :6]  # a 1 x 1 x 3 grid: 3 tokens per stream
    try:
        model(**batch)
    except ValueError as e:
        messages["tokens"] = str(e)
    return messages


def train(engine) -> tuple[list[float], list[float]]:
    """``STEPS`` optimizer steps, one micro-batch each; the losses and the global gradient norms."""
    losses, norms = [], []
    for step in range(STEPS):
        with engine.dtype_context():
            loss = loss_of(engine.module(**inputs(step)), step)
        losses.append(loss.item())
        engine.backward(loss)
        norms.append(engine.step()["grad_norm"])
    return losses, norms


def check_stage(stage: int, out: str) -> None:
    """DeepSpeedEngine with sequence_parallel=2 (one group: no data parallelism) against the plain engine."""
    overrides = [
        f"data.batch_size={BATCH}",
        "optim.lr=1e-4",
        "schedule.warmup_steps=0",
        "optim.grad_clip=20",
        "optim.weight_decay=0.1",
        *MODEL,
    ]
    config = load(
        overrides=[
            *overrides,
            "parallel.engine=deepspeed",
            f"parallel.zero_stage={stage}",
            "parallel.sequence_parallel=2",
        ]
    )
    model_config = OmegaConf.to_object(config.model)
    initial = build(model_config).state_dict()
    engine = DeepSpeedEngine(build(model_config), config)
    engine.model.enable_sequence_parallel(engine.sequence_group)
    losses, norms = train(engine)
    partitioned = sum(p.ds_tensor.numel() < p.ds_numel for p in engine.model.parameters() if hasattr(p, "ds_tensor"))
    trained = engine.state_dict_consolidated()
    ranks = [None] * engine.world_size
    dist.all_gather_object(
        ranks,
        {
            "losses": losses,
            "grad_norms": norms,
            "data_rank": engine.data_rank,
            "data_world_size": engine.data_world_size,
        },
    )
    if engine.is_main:
        plain = PlainEngine(build(model_config), load(overrides=overrides))
        expected_losses, expected_norms = train(plain)
        expected = plain.state_dict_consolidated()
        report = {
            "ranks": ranks,
            "expected_losses": expected_losses,
            "expected_grad_norms": expected_norms,
            "max_difference": max((trained[k] - expected[k]).abs().max().item() for k in expected),
            "worst": sorted(((trained[k] - expected[k]).abs().max().item(), k) for k in expected)[-4:],
            "moved": max((expected[k] - initial[k]).abs().max().item() for k in expected),
            "partitioned_params": partitioned,
        }
        with open(os.path.join(out, f"zero{stage}.json"), "w") as f:
            json.dump(report, f, indent=1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--stages", default="2,3")
    args = parser.parse_args()
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    group = sequence_parallel_group(2)
    report = {name: check_model(group, **fields) for name, fields in VARIANTS.items()}
    report["errors"] = check_errors(group)
    reports = [None] * dist.get_world_size()
    dist.all_gather_object(reports, report)
    if dist.get_rank() == 0:
        with open(os.path.join(args.out, "model.json"), "w") as f:
            json.dump(reports, f, indent=1)
    for stage in map(int, filter(None, args.stages.split(","))):
        check_stage(stage, args.out)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # as tests/deepspeed_engine_worker.py: skip a teardown DeepSpeed's CPU threads can abort


if __name__ == "__main__":
    main()
