"""One rank of tests/gpu/test_gpu_deepspeed.py, launched alone by torchrun: DeepSpeed ZeRO-2 against the plain engine.

From the same weights and on the same batches, three optimizer steps of the small UnityDiT of
``gpu_cases`` with DeepSpeedEngine (ZeRO-2; on CUDA bf16: bf16 weights, fp32 master copies) and with
the plain engine (fp32 weights under bf16 autocast); DeepSpeed's state is saved after two steps and a
fresh engine resumed from it takes the third again. Writes what the test compares to ``<out>/report.json``.
"""

import argparse
import json
import os
import sys

import torch
import torch.distributed as dist

from unity.config import load
from unity.train.engine import DeepSpeedEngine, PlainEngine

from gpu_cases import dit_inputs, dit_loss, small_config, small_dit

OVERRIDES = [
    "parallel.engine=deepspeed",
    "parallel.zero_stage=2",
    "data.batch_size=2",
    "optim.lr=1e-3",
    "schedule.warmup_steps=1",
    "train.max_steps=10",
]


def train(engine, seeds) -> tuple[list[float], list[float]]:
    """One optimizer step per seed on ``dit_inputs(seed)``; the losses and the gradient norms."""
    losses, norms = [], []
    for seed in seeds:
        inputs = dit_inputs(small_config(), masked=True, device=engine.device, seed=seed)
        with engine.dtype_context():
            _, loss = dit_loss(engine.module, inputs)
        engine.backward(loss)
        result = engine.step()
        losses.append(loss.item())
        norms.append(result["grad_norm"])
    return losses, norms


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state[k].double().flatten() for k in sorted(state)])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    config = load(overrides=OVERRIDES)
    initial = small_dit().state_dict()

    def model(state):
        m = small_dit()
        m.load_state_dict(state)
        return m

    deepspeed = DeepSpeedEngine(model(initial), config)
    weight_dtypes = sorted({str(p.dtype) for p in deepspeed.module.parameters()})
    losses, norms = train(deepspeed, [0, 1])
    folder = os.path.join(args.out, "state")
    deepspeed.save_state(folder)
    third, third_norm = train(deepspeed, [2])
    trained = deepspeed.state_dict_consolidated()

    resumed = DeepSpeedEngine(model(small_dit(seed=1).state_dict()), config)
    resumed.load_state(folder)
    resumed_losses, _ = train(resumed, [2])

    plain = PlainEngine(model(initial), load(overrides=OVERRIDES + ["parallel.engine=plain"]))
    plain_losses, plain_norms = train(plain, [0, 1, 2])
    plain_trained = plain.state_dict_consolidated()

    start = flat({k: v.float() for k, v in initial.items()})
    update, plain_update = flat(trained) - start, flat(plain_trained) - start
    report = {
        "device": deepspeed.device.type,
        "autocast": str(deepspeed.autocast_dtype),
        "weight_dtypes": weight_dtypes,
        "consolidated_dtypes": sorted({str(v.dtype) for v in trained.values()}),
        "losses": losses + third,
        "plain_losses": plain_losses,
        "grad_norms": norms + third_norm,
        "plain_grad_norms": plain_norms,
        "resumed_losses": resumed_losses,
        "update_cosine": torch.nn.functional.cosine_similarity(update, plain_update, dim=0).item(),
        "update_norms": [update.norm().item(), plain_update.norm().item()],
    }
    with open(os.path.join(args.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    dist.barrier()
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: DeepSpeed's communication threads can abort it


if __name__ == "__main__":
    main()
