"""Training-step throughput and MFU of UnityDiT on synthetic tensors (no data loader, no codec, no text encoder).

    python benchmarks/throughput.py --config configs/<x>.yaml [--steps 10 --warmup 3]
        [--attn auto|flash|sdpa|math] [--sdpa-backend cudnn|flash|efficient] [--compile]
        [--ckpt-act | --no-ckpt-act | --ckpt-blocks N] [--no-fused]
        [--batch B --streams S --frames F --height H --width W --channels C --compression T H W]
        [--json OUT] [--record [--results benchmarks/RESULTS.md]] [model.key=value ...]

One step is what the trainer does per micro-batch minus the data: noise the streams, forward under
autocast (bf16 on CUDA, fp32 on CPU), the masked flow-matching loss, backward, AdamW (fused where
torch has it), zero_grad. ``--config`` is a run config (``configs/tiny.yaml``: its ``model:``,
``train:`` and ``data:`` sections) or a model-size file (``configs/model/base.yaml``). The input is
``x [B, S, C, T', H', W']`` in codec space: the clip geometry (``--frames/--height/--width`` pixels,
default the file's ``data:`` section, else 16x64x64 for the pixel codec and 33x480x832 for a VAE)
mapped through the codec (pixel: 3 channels, no compression; diffusers: Wan2.1-style 16 channels,
4x8x8), captions and prompts of ``model.text_max_tokens`` tokens, stream 0 (rgb) clean and the others
noised (an estimation step; a single stream is noised).

MFU counts model FLOPs only: 3x the analytic forward of ``models/flops.py`` per sample (backward = 2x
forward), with or without activation checkpointing; ``hfu`` adds the recomputed block forwards. The
peak is ``unity.metrics``' dense bf16 table on GPUs and, on CPU, the fp32 GEMM throughput of a large
matmul measured in the same run (best of before and after the timed steps). Peak memory is CUDA's max
allocated, or on CPU the process's peak RSS (torch included: compare configurations in separate processes).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.checkpoint import checkpoint  # noqa: E402

from benchmarks.record import MARKER as RECORD_MARKER  # noqa: E402, F401 - re-exported for the tests
from benchmarks.record import RESULTS, env_prefix, insert_row  # noqa: E402
from models.dit import UnityDiT  # noqa: E402
from models.flops import forward_flops, latent_grid, tokens_per_stream  # noqa: E402
from unity.config import load  # noqa: E402
from unity.method.flow_matching import flow_matching_loss, noise_streams  # noqa: E402
from unity.train.engine import autocast_dtype, build_optimizer  # noqa: E402
from unity.train.metrics import measured_cpu_tflops, peak_tflops  # noqa: E402

# Codec -> (channels, compression (T, H, W), default clip frames, height, width).
CODEC_GEOMETRY = {"pixel": (3, (1, 1, 1), 16, 64, 64), "diffusers": (16, (4, 8, 8), 33, 480, 832)}
SDPA_PRIORITY = {
    "cudnn": ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH"),
    "flash": ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH"),
    "efficient": ("EFFICIENT_ATTENTION", "FLASH_ATTENTION", "CUDNN_ATTENTION", "MATH"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/tiny.yaml", help="run config or configs/model/<size>.yaml")
    p.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, allocator)")
    p.add_argument("--attn", choices=("auto", "flash", "sdpa", "math"), default=None, help="model.attention")
    p.add_argument(
        "--sdpa-backend",
        choices=tuple(SDPA_PRIORITY),
        default=None,
        help="SDPA kernel priority on CUDA (falls through to the next for inputs it cannot take)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile each block (eager fallback on failure)")
    p.add_argument("--ckpt-act", action="store_true", help="activation checkpointing (model.grad_checkpointing)")
    p.add_argument("--no-ckpt-act", action="store_true", help="force activation checkpointing off")
    p.add_argument(
        "--ckpt-blocks",
        type=int,
        default=None,
        help="checkpoint only the first N blocks (selective; replaces model.grad_checkpointing)",
    )
    p.add_argument("--no-fused", action="store_true", help="AdamW's foreach path instead of the fused kernel")
    p.add_argument("--batch", type=int, default=None, help="default: the file's data.batch_size, else 1")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--frames", type=int, default=None, help="clip frames in pixels (before the codec)")
    p.add_argument("--height", type=int, default=None, help="clip height in pixels")
    p.add_argument("--width", type=int, default=None, help="clip width in pixels")
    p.add_argument("--channels", type=int, default=None, help="codec channels (pixel 3, Wan2.1 VAE 16)")
    p.add_argument("--compression", type=int, nargs=3, default=None, metavar=("T", "H", "W"))
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="auto: bf16 on CUDA")
    p.add_argument("--device", default=None, help="default cuda when available, else cpu")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="device peak override (TFLOP/s)")
    p.add_argument("--gemm-size", type=int, default=2048, help="CPU: matmul size of the measured fp32 peak")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument("--record", action="store_true", help="add a dated row with the command to --results")
    p.add_argument("--results", default=str(RESULTS), help="the RESULTS.md that --record writes to")
    p.add_argument("overrides", nargs="*", help="run-config key=value overrides, e.g. model.depth=12")
    return p


def resolve(args) -> dict:
    """Model config, optimizer settings and the clip / codec geometry, from the file and the flags."""
    overrides = list(args.overrides)
    if args.attn:
        overrides.append(f"model.attention={args.attn}")
    if args.ckpt_blocks is not None or args.no_ckpt_act:
        overrides.append("model.grad_checkpointing=false")  # --ckpt-blocks wraps blocks itself (Bench)
    elif args.ckpt_act:
        overrides.append("model.grad_checkpointing=true")
    config = load(args.config, overrides)
    model = OmegaConf.to_object(config.model)
    data = OmegaConf.load(args.config).get("data") or {}  # only what the file itself says
    channels, compression, frames, height, width = CODEC_GEOMETRY[model.codec]
    if "size" in data:
        height = width = data["size"]
    geometry = dict(
        batch=args.batch or data.get("batch_size", 1),
        streams=args.streams,
        channels=args.channels or channels,
        compression=list(args.compression or compression),
        frames=args.frames or data.get("frames", frames),
        height=args.height or height,
        width=args.width or width,
    )
    geometry["latent"] = list(
        latent_grid(geometry["frames"], geometry["height"], geometry["width"], geometry["compression"])
    )
    geometry["x"] = [geometry["batch"], geometry["streams"], geometry["channels"], *geometry["latent"]]
    ckpt_blocks = model.depth if model.grad_checkpointing else min(args.ckpt_blocks or 0, model.depth)
    return dict(
        model=model,
        train=config.train,
        optim=config.optim,
        geometry=geometry,
        overrides=overrides,
        ckpt_blocks=ckpt_blocks,
    )


def synthetic_inputs(model_config, geometry: dict, device, seed: int = 0) -> dict:
    """Latents ``x0, noise [B, S, C, T', H', W']``, times, modalities and full-length text embeddings."""
    g = torch.Generator().manual_seed(seed)
    b, s, length, dim = geometry["batch"], geometry["streams"], model_config.text_max_tokens, model_config.text_dim
    shape = (b, s, geometry["channels"], *geometry["latent"])
    noised = torch.ones(b, s, dtype=torch.bool)
    if s > 1:
        noised[:, 0] = False  # stream 0 (rgb) is the clean context
    tensors = dict(
        x0=torch.randn(shape, generator=g),
        noise=torch.randn(shape, generator=g),
        noised=noised,
        t=torch.rand(b, s, generator=g).clamp(0.05, 0.95),
        modality=torch.arange(s).repeat(b, 1) % model_config.num_modalities,  # [B, S]: rgb, depth, flow, ...
        caption=torch.randn(b, length, dim, generator=g),
        caption_mask=torch.ones(b, length, dtype=torch.bool),
        prompt=torch.randn(b, s, length, dim, generator=g),
        prompt_mask=torch.ones(b, s, length, dtype=torch.bool),
    )
    return {k: v.to(device) for k, v in tensors.items()}


class Checkpointed(nn.Module):
    """A block whose activations are recomputed in the backward pass (selective checkpointing)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, *args):
        return checkpoint(self.block, *args, use_reentrant=False) if torch.is_grad_enabled() else self.block(*args)


class Bench:
    """One model, its AdamW and its inputs; ``step()`` runs one timed training step."""

    def __init__(
        self,
        resolved: dict,
        device: torch.device,
        compile_blocks: bool,
        precision: str = "auto",
        sdpa_backend: str | None = None,
        seed: int = 0,
        fused: bool = True,
    ):
        self.config, self.geometry, self.device = resolved["model"], resolved["geometry"], device
        torch.manual_seed(seed)
        with device:  # initialised where it runs: a 1.4 B-parameter init takes a minute on a CPU, not on a GPU
            self.model = UnityDiT(self.config, self.geometry["channels"], self.config.text_dim).train()
        try:
            self.optimizer, self.fused = build_optimizer(self.model, resolved["optim"], fused=fused), fused
        except (RuntimeError, TypeError):  # no fused AdamW for this device / dtype
            self.optimizer, self.fused = build_optimizer(self.model, resolved["optim"], fused=False), False
        if compile_blocks:
            for block in self.model.blocks:
                block.compile()  # in place: parameter names unchanged
        self.ckpt_blocks = resolved["ckpt_blocks"]
        if not self.config.grad_checkpointing:  # selective: wrap the first N blocks (after the optimizer)
            for k in range(self.ckpt_blocks):
                self.model.blocks[k] = Checkpointed(self.model.blocks[k])
        self.dtype = autocast_dtype(precision, device.type)
        self.inputs = synthetic_inputs(self.config, self.geometry, device, seed)
        self.sdpa_backend = sdpa_backend

    def kernel_context(self):
        if self.sdpa_backend is None or self.device.type != "cuda":
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel([getattr(SDPBackend, n) for n in SDPA_PRIORITY[self.sdpa_backend]], set_priority=True)

    def step(self) -> float:
        """One training step; returns its wall time in seconds (synchronised on CUDA)."""
        i = self.inputs
        start = time.perf_counter()
        x_t, t, target = noise_streams(i["x0"], i["noised"], i["t"], i["noise"])
        autocast = torch.autocast(self.device.type, self.dtype) if self.dtype else nullcontext()
        with autocast, self.kernel_context():
            v = self.model(x_t, i["modality"], t, i["caption"], i["caption_mask"], i["prompt"], i["prompt_mask"])
        flow_matching_loss(v, target, i["noised"]).mean().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def forward_flops(self, part: str = "total") -> int:
        """Analytic forward FLOPs of one sample (``models.flops``): ``total``, or ``blocks`` (what
        checkpointing redoes)."""
        g, c = self.geometry, self.config
        flops = forward_flops(
            c, g["channels"], c.text_dim, tuple(g["latent"]), g["streams"], c.text_max_tokens, c.text_max_tokens
        )
        return flops["self_attn"] + flops["cross_attn"] + flops["mlp"] if part == "blocks" else flops["total"]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return f"CPU {model}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def cpu_peak(size: int) -> float:
    """Best of three fp32 GEMM measurements (TFLOP/s): the least disturbed by other jobs on the machine."""
    return max(measured_cpu_tflops(size, repeats=3) for _ in range(3))


def peak_mem_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def run(args, command: str) -> dict:
    """Warm up, time ``args.steps`` steps, and compute the figures (see the module docstring)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    resolved = resolve(args)
    peak_source = "table (dense bf16)" if device.type == "cuda" else f"measured fp32 GEMM {args.gemm_size}^3"
    if args.peak_tflops > 0 or resolved["train"].peak_tflops > 0:
        peak, peak_source = args.peak_tflops or resolved["train"].peak_tflops, "override"
    elif device.type == "cuda":
        peak = peak_tflops(device)
    else:
        peak = cpu_peak(args.gemm_size)
    rss_before, load_before = peak_mem_gb(torch.device("cpu")), os.getloadavg()[0]
    compiled = "off"
    bench = Bench(resolved, device, args.compile, args.precision, args.sdpa_backend, args.seed, not args.no_fused)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        for _ in range(args.warmup):
            bench.step()
        compiled = "inductor (per block)" if args.compile else "off"
    except Exception as e:  # only a compile failure is recovered from (re-raised otherwise)
        if not args.compile or isinstance(e, torch.OutOfMemoryError):
            raise
        message = " ".join(str(e).split())[:300]
        print(
            f"torch.compile of the blocks failed on {device.type} ({type(e).__name__}: {message}); "
            "falling back to eager",
            file=sys.stderr,
        )
        torch._dynamo.reset()
        del bench
        compiled = f"failed, eager fallback ({type(e).__name__})"
        bench = Bench(resolved, device, False, args.precision, args.sdpa_backend, args.seed, not args.no_fused)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            bench.step()
    seconds = np.array([bench.step() for _ in range(args.steps)])
    if device.type == "cpu" and peak_source.startswith("measured"):
        peak = max(peak, cpu_peak(args.gemm_size))
    g, step_time = bench.geometry, float(np.median(seconds))
    forward = bench.forward_flops()
    flops_per_step = 3 * forward * g["batch"]
    recompute = bench.forward_flops("blocks") * g["batch"] * bench.ckpt_blocks // bench.config.depth
    tokens_per_sample = g["streams"] * tokens_per_stream(bench.config, tuple(g["latent"]))
    return {
        "step_time_s": step_time,
        "step_time_mean_s": float(seconds.mean()),
        "step_time_min_s": float(seconds.min()),
        "step_times_s": [round(float(s), 5) for s in seconds],
        "samples_per_s": g["batch"] / step_time,
        "tokens_per_s": g["batch"] * tokens_per_sample / step_time,
        "tflops": flops_per_step / step_time / 1e12,
        "mfu": flops_per_step / step_time / (peak * 1e12),
        "hfu": (flops_per_step + recompute) / step_time / (peak * 1e12),
        "flops_per_step": flops_per_step,
        "flops_forward_per_sample": forward,
        "peak_tflops": peak,
        "peak_source": peak_source,
        "peak_mem_gb": peak_mem_gb(device),
        "rss_before_model_gb": rss_before,
        "device": device_name(device),
        "dtype": str(bench.dtype or torch.float32).replace("torch.", ""),
        "attention": bench.model.attention_backend,
        "sdpa_backend": args.sdpa_backend,
        "compile": compiled,
        "grad_checkpointing": bench.config.grad_checkpointing,
        "ckpt_blocks": bench.ckpt_blocks,
        "fused_adamw": bench.fused,
        "params": sum(p.numel() for p in bench.model.parameters()),
        "geometry": {
            **g,
            "tokens_per_stream": tokens_per_sample // g["streams"],
            "tokens_per_sample": tokens_per_sample,
            "text_tokens": bench.config.text_max_tokens,
        },
        "config": args.config,
        "overrides": resolved["overrides"],
        "command": command,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "steps": args.steps,
        "warmup": args.warmup,
        "load_avg_1min": [load_before, os.getloadavg()[0]],  # other jobs on the machine, before and after
    }


def record_row(result: dict) -> str:
    """One Markdown table row: date, machine, command, the figures and the machine's load average."""
    return (
        f"| {result['date'][:10]} | {result['device']} | `{result['command']}` | {result['step_time_s']:.4g} | "
        f"{result['samples_per_s']:.3g} | {result['tokens_per_s']:,.0f} | {result['tflops']:.3g} | "
        f"{result['mfu']:.1%} | {result['peak_tflops']:.3g} | {result['peak_mem_gb']:.2f} | "
        f"{'→'.join(f'{x:.1f}' for x in result['load_avg_1min'])} |"
    )


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    r = run(args, env_prefix() + "python benchmarks/throughput.py " + shlex.join(argv))
    g = r["geometry"]
    print(
        f"{r['step_time_s'] * 1e3:.1f} ms/step (median of {args.steps}), {r['samples_per_s']:.3g} samples/s, "
        f"{r['tokens_per_s']:,.0f} tokens/s, {r['tflops']:.3g} TFLOP/s, MFU {r['mfu']:.2%} (HFU {r['hfu']:.2%}) of "
        f"{r['peak_tflops']:.4g} ({r['peak_source']}), peak mem {r['peak_mem_gb']:.2f} GB | x {g['x']}, "
        f"{g['tokens_per_sample']} tokens/sample, {r['params'] / 1e6:.2f} M params, {r['dtype']}, attention "
        f"{r['attention']}, compile {r['compile']}, {r['ckpt_blocks']} blocks checkpointed, {r['device']}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2) + "\n")
    if args.record:
        insert_row(args.results, record_row(r))
    return r


if __name__ == "__main__":
    main()
