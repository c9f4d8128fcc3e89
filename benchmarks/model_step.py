"""Wall time of one UnityDiT forward + backward on random inputs (ms per step), with parameters and tokens.

    python benchmarks/model_step.py [--config configs/model/tiny.yaml] [--batch 2 --streams 2 --channels 3
                                    --frames 16 --size 64] [--steps 10 --warmup 3] [--device cpu] [--json OUT]

The input is ``x [batch, streams, channels, frames, size, size]`` in codec space, all streams noised
(a joint-generation step), captions and prompts of ``model.text_max_tokens`` tokens.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from models.dit import UnityDiT
from models.flops import tokens_per_stream
from unity.config import load


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/model/tiny.yaml")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--channels", type=int, default=3, help="codec channels (3 for the pixel codec)")
    parser.add_argument("--frames", type=int, default=16, help="codec-space frames")
    parser.add_argument("--size", type=int, default=64, help="codec-space height and width")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the result here")
    parser.add_argument("overrides", nargs="*", help="run-config key=value overrides, e.g. model.depth=12")
    args = parser.parse_args(argv)

    config = OmegaConf.to_object(load(args.config, args.overrides).model)
    torch.manual_seed(0)
    model = UnityDiT(config, args.channels, config.text_dim).to(args.device).train()
    b, s, length = args.batch, args.streams, config.text_max_tokens
    x = torch.randn(b, s, args.channels, args.frames, args.size, args.size, device=args.device)
    modality = torch.arange(b * s, device=args.device).reshape(b, s) % config.num_modalities
    t = torch.rand(b, s, device=args.device)
    caption = torch.randn(b, length, config.text_dim, device=args.device)
    prompt = torch.randn(b, s, length, config.text_dim, device=args.device)
    caption_mask = torch.ones(b, length, dtype=torch.bool, device=args.device)
    prompt_mask = torch.ones(b, s, length, dtype=torch.bool, device=args.device)

    seconds = []
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        velocity = model(x, modality, t, caption, caption_mask, prompt, prompt_mask)
        velocity.square().mean().backward()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    seconds = np.array(seconds)
    tokens = tokens_per_stream(config, (args.frames, args.size, args.size))
    result = {
        "config": args.config, "batch": b, "streams": s, "input": list(x.shape),
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_sample": s * tokens, "attention": model.attention_backend,
        "threads": torch.get_num_threads(), "device": args.device,
        "ms_median": round(float(np.median(seconds) * 1e3), 1),
        "ms_mean": round(float(seconds.mean() * 1e3), 1),
        "ms_min": round(float(seconds.min() * 1e3), 1),
    }
    print(f"{result['ms_median']} ms/step fwd+bwd (median of {args.steps}; mean {result['ms_mean']}, "
          f"min {result['ms_min']}), {result['params'] / 1e6:.2f} M params, {result['tokens_per_sample']} "
          f"tokens/sample, batch {b}, attention {result['attention']}, {result['threads']} threads")
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
