"""Validation loss per task and modality on held-out clips, with fixed noise and a fixed grid of t.

The same clips, noise and times are used at every evaluation and in every run with the same data
and seed, so validation curves are comparable across steps, runs and ablations.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import torch

from unity.conditioning import encode_conditioning
from unity.flow_matching import flow_matching_loss, noise_streams
from unity.tasks import Route, assemble

T_GRID = (0.2, 0.5, 0.8)
TASKS = ("cond", "est", "joint")


class Validator:
    """Holds the held-out batches and computes ``val/loss/<task>/<modality>`` and their mean."""

    def __init__(self, loader, modalities, codec, seed: int, max_batches: int = 1):
        self.batches = list(itertools.islice(iter(loader), max_batches))
        self.modalities, self.codec, self.seed = list(modalities), codec, seed

    @torch.no_grad()
    def __call__(self, dit, text, device, autocast) -> dict[str, float]:
        was_training = dit.training
        dit.eval()
        losses = defaultdict(list)
        for b, batch in enumerate(self.batches):
            n = len(batch["key"])
            for (ti, task), (mi, modality) in itertools.product(enumerate(TASKS), enumerate(self.modalities)):
                streams = assemble(batch, [Route(task, modality)] * n)
                x0 = torch.stack([self.codec.encode_normalized(streams["x0"][:, s].to(device))
                                  for s in range(streams["x0"].shape[1])], dim=1)  # [B, S, C, T, H, W]
                cond = encode_conditioning(text, batch["caption"], streams["prompts"], x0.shape[1], device)
                for k, t_value in enumerate(T_GRID):
                    generator = torch.Generator().manual_seed(self.seed + 1000 * b + 100 * ti + 10 * mi + k)
                    noise = torch.randn(x0.shape, generator=generator).to(device)
                    t = torch.full((n,), t_value, device=device)
                    noised = streams["noised"].to(device)
                    x_t, t_streams, target = noise_streams(x0, noised, t, noise)
                    with autocast():
                        v = dit(x_t, streams["modality"].to(device), t_streams, **cond)
                    losses[f"val/loss/{task}/{modality}"].append(flow_matching_loss(v.float(), target, noised).mean().item())
        dit.train(was_training)
        result = {name: sum(v) / len(v) for name, v in losses.items()}
        result["val/loss"] = sum(result.values()) / len(result)
        return result
