"""The Wan check on one GPU: a random Wan2.1-T2V-1.3B transformer built in memory and converted, its bf16
forward and backward against diffusers, and DeepSpeed bf16 training steps of the fine-tune recipe.

    python benchmarks/wan_gpu_check.py [--recipe configs/wan2.1_unity.yaml] [--steps 3] [--json OUT]
                                       [--record] [--dry-run]

1. ``WanTransformer3DModel`` of ``configs/model/wan2.1-t2v-1.3b.yaml``'s shape with random weights, saved
   and converted (``unity.convert.dit_from_wan``, and ``convert_wan`` grown to the recipe's model);
2. parity: UnityDiT under bf16 autocast against diffusers' Wan in fp32 on the GPU, on the output and on
   the gradient with respect to the input latents, 9x30x52 latents (relative L2 error at most 2e-2);
3. the recipe (``--recipe``: DeepSpeed ZeRO-2, bf16, lr 1e-5 with the grown parameters at 10x, the
   token switcher on rgb and an auxiliary stream side by side in width) on one rank: ``--steps``
   training steps of 2 x 9x60x104 latents (a 33x480x832 clip, 2 x 14,040 tokens) with a 512-token
   caption, step time (the first step is warm-up) and peak memory.

Prints one JSON; ``--record`` adds a section to benchmarks/RESULTS.md. ``--dry-run`` runs the same steps
on the CPU at tiny size (2 blocks of width 64, 1x4x8 and 2 x 1x8x8 latents, fp32, gloo): the plumbing only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from benchmarks.record import record_section  # noqa: E402
from models.dit import UnityDiT  # noqa: E402
from unity.config import load, load_run_config  # noqa: E402
from unity.inference.wan import convert_wan, dit_from_wan  # noqa: E402
from unity.method import wan  # noqa: E402
from unity.method.flow_matching import flow_matching_loss, noise_streams  # noqa: E402
from unity.method.network import TrainModule  # noqa: E402
from unity.train.checkpoint import load_init, new_parameters  # noqa: E402

TOLERANCE = 2e-2  # relative L2 error allowed between bf16 autocast and fp32
TINY = ["model.hidden=64", "model.heads=2", "model.depth=2", "model.ffn_dim=128", "model.text_dim=32"]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``||a - b|| / ||b||`` in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return ((a - b).norm() / b.norm()).item()


def wan_transformer(model_config, seed: int = 0):
    """A random diffusers Wan transformer of ``model_config``'s shape, every parameter moved off its init."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    settings = wan.diffusers_config(model_config, model_config.in_channels, model_config.text_dim)
    model = WanTransformer3DModel(**{k: v for k, v in settings.items() if not k.startswith("_")})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def parity(source: Path, device: torch.device, latents: tuple, text_dim: int, bf16: bool) -> dict:
    """UnityDiT (autocast) against diffusers' Wan (fp32): relative errors of the output and of d(loss)/dx."""
    from diffusers import WanTransformer3DModel

    reference = WanTransformer3DModel.from_pretrained(source).to(device).eval()
    dit = dit_from_wan(source, device=device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, reference.config.in_channels, *latents, generator=g).to(device)
    sigma = torch.tensor([0.6], device=device)
    caption = torch.randn(1, 512, text_dim, generator=g).to(device) * (torch.arange(512, device=device) < 40)[:, None]
    probe = torch.randn(x.shape, generator=g).to(device)
    x_ref = x.clone().requires_grad_()
    expected = reference(x_ref, timestep=1000 * sigma, encoder_hidden_states=caption).sample
    (expected * probe).sum().backward()
    x_unity = x.clone().requires_grad_()
    with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        out = dit(
            x_unity[:, None],
            torch.zeros(1, 1, dtype=torch.long, device=device),
            sigma[:, None],
            caption=caption,
            caption_mask=torch.ones(1, 512, dtype=torch.bool, device=device),
        )[:, 0]
    (out.float() * probe).sum().backward()
    result = {"output": relative_error(out, expected), "input_grad": relative_error(x_unity.grad, x_ref.grad)}
    result["passed"] = max(result.values()) <= TOLERANCE
    return result


def recipe_steps(run_dir: Path, latents: tuple, steps: int) -> dict:
    """``steps`` DeepSpeed training steps of the converted run's recipe on one rank; step time and peak memory."""
    from unity.train.engine import DeepSpeedEngine

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", "29531")
    config = load_run_config(str(run_dir / "config.yaml"))
    model_config = OmegaConf.to_object(config.model)
    module = TrainModule(UnityDiT(model_config, model_config.in_channels, model_config.text_dim), None)
    load_init(module, run_dir)
    engine = DeepSpeedEngine(module, config, new_parameters(run_dir))
    device = engine.device
    g = torch.Generator().manual_seed(2)
    x0 = torch.randn(1, 2, model_config.in_channels, *latents, generator=g).to(device)
    text = {
        "caption": torch.randn(1, 512, model_config.text_dim, generator=g).to(device),
        "caption_mask": torch.ones(1, 512, dtype=torch.bool, device=device),
        "prompt": torch.randn(1, 2, 16, model_config.text_dim, generator=g).to(device),
        "prompt_mask": torch.ones(1, 2, 16, dtype=torch.bool, device=device),
    }
    modality = torch.tensor([[0, 1]], device=device)  # rgb, depth: joint generation
    noised = torch.ones(1, 2, dtype=torch.bool, device=device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(steps):
        start = time.perf_counter()
        x_t, t, target = noise_streams(x0, noised, torch.rand(1, generator=g).to(device), torch.randn_like(x0))
        with engine.dtype_context():
            v = engine.module(x_t, modality, t, **text)
        loss = flow_matching_loss(v.float(), target, noised).mean()
        engine.backward(loss)
        result = engine.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    groups = sorted({group["lr"] for group in engine.module.optimizer.param_groups})
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {
        "step_s": sum(times[1:]) / max(1, len(times) - 1),
        "first_step_s": times[0],
        "peak_memory_gib": peak,
        "loss": loss.item(),
        "grad_norm": result["grad_norm"],
        "finite": bool(torch.isfinite(loss)),
        "group_lrs": groups,
        "tokens": 2 * latents[0] * (latents[1] // 2) * (latents[2] // 2),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="configs/wan2.1_unity.yaml", help="the fine-tune recipe's run config")
    parser.add_argument("--steps", type=int, default=3, help="training steps (the first is warm-up)")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("--record", action="store_true", help="add a section to benchmarks/RESULTS.md")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny size: check the plumbing")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.dry_run
    if not cuda and not args.dry_run:
        raise SystemExit("no CUDA GPU: run with --dry-run to check the plumbing on the CPU")
    device = torch.device("cuda" if cuda else "cpu")
    shrink = TINY if args.dry_run else []
    parity_latents, step_latents = ((1, 4, 8), (1, 8, 8)) if args.dry_run else ((9, 30, 52), (9, 60, 104))
    overrides = ["parallel.engine=deepspeed", "data.batch_size=1", f"train.max_steps={args.steps}", *shrink]
    if args.dry_run:
        overrides += ["train.precision=fp32", "model.grad_checkpointing=false"]
    plain = OmegaConf.to_object(load("configs/model/wan2.1-t2v-1.3b.yaml", shrink).model)
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "dry_run": args.dry_run}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        wan_transformer(plain).save_pretrained(Path(tmp) / "wan")
        result["build_and_save_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result["parity"] = parity(Path(tmp) / "wan", device, parity_latents, plain.text_dim, bf16=cuda)
        result["parity_s"] = time.perf_counter() - start
        if cuda:
            torch.cuda.empty_cache()
        config = load(args.recipe, overrides)
        start = time.perf_counter()
        convert_wan(Path(tmp) / "wan", Path(tmp) / "run", config)
        result["convert_s"] = time.perf_counter() - start
        result["recipe"] = recipe_steps(Path(tmp) / "run", step_latents, args.steps)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.record and not args.dry_run:
        p, r = result["parity"], result["recipe"]
        body = (
            f"| check | figure |\n| --- | ---: |\n| bf16 output vs fp32 diffusers (rel. L2) | {p['output']:.2e} |\n"
            f"| bf16 input gradient vs fp32 diffusers (rel. L2) | {p['input_grad']:.2e} |\n"
            f"| recipe step, 2 x 14,040 tokens, ZeRO-2 bf16 (s) | {r['step_s']:.2f} |\n"
            f"| peak memory (GiB) | {r['peak_memory_gib']:.1f} |"
        )
        record_section("wan_gpu_check.py", "Wan2.1-T2V-1.3B converted: parity and the fine-tune recipe's step", body)
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["parity"]["passed"] and outcome["recipe"]["finite"] else 1)
