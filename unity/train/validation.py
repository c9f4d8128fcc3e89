"""Validation loss per task and modality on held-out clips, with fixed noise and a fixed grid of t.

The same clips, noise and times are used at every evaluation and in every run with the same data
and seed, so validation curves are comparable across steps, runs and ablations. Joint generation
also reports the loss of its rgb stream alone (``val/loss/joint_rgb/<modality>``), which a run
without auxiliary modalities compares with its text-to-video loss (``val/loss/t2v/rgb``). A run that
routes visual sentences also reports ``val/loss/sentence/<modality>`` (estimation sentences).
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import torch

from unity.method.conditioning import encode_conditioning
from unity.method.flow_matching import flow_matching_loss, noise_streams
from unity.method.router import Route
from unity.method.streams import assemble, encode_streams
from unity.method.tasks import PAIR_TASKS, T2V

T_GRID = (0.2, 0.5, 0.8)


class Validator:
    """Holds the held-out batches and computes ``val/loss/<task>/<modality>`` and their mean."""

    def __init__(self, loader, modalities, codec, seed: int, max_batches: int = 1, sentences: bool = False):
        self.batches = list(itertools.islice(iter(loader), max_batches))
        self.modalities, self.codec, self.seed = list(modalities), codec, seed
        self.tasks = PAIR_TASKS + ("sentence",) if sentences else PAIR_TASKS

    @torch.no_grad()
    def __call__(self, dit, text, device, autocast) -> dict[str, float]:
        was_training = dit.training
        dit.eval()
        losses = defaultdict(list)
        for b, batch in enumerate(self.batches):
            n = len(batch["key"])
            pairs = (
                itertools.product(enumerate(self.tasks), enumerate(self.modalities))
                if self.modalities
                else [((9, T2V), (0, "rgb"))]
            )
            for (ti, task), (mi, modality) in pairs:
                streams = assemble(batch, [Route(task, modality)] * n)
                x0 = encode_streams(self.codec, streams["x0"], device)  # [B, S, C, T, H, W]
                cond = encode_conditioning(
                    text, batch["caption"], streams["prompts"], x0.shape[1], device, batch.get("external")
                )
                for k, t_value in enumerate(T_GRID):
                    generator = torch.Generator().manual_seed(self.seed + 1000 * b + 100 * ti + 10 * mi + k)
                    noise = torch.randn(x0.shape, generator=generator).to(device)
                    t = torch.full((n,), t_value, device=device)
                    noised = streams["noised"].to(device)
                    x_t, t_streams, target = noise_streams(x0, noised, t, noise)
                    with autocast():
                        v = dit(x_t, streams["modality"].to(device), t_streams, **cond, layout=streams["layout"])
                    losses[f"val/loss/{task}/{modality}"].append(
                        flow_matching_loss(v.float(), target, noised).mean().item()
                    )
                    if task == "joint":
                        rgb_only = torch.zeros_like(noised)
                        rgb_only[:, 0] = True
                        losses[f"val/loss/joint_rgb/{modality}"].append(
                            flow_matching_loss(v.float(), target, rgb_only).mean().item()
                        )
        dit.train(was_training)
        result = {name: sum(v) / len(v) for name, v in losses.items()}
        main = [v for name, v in result.items() if not name.startswith("val/loss/joint_rgb/")]
        result["val/loss"] = sum(main) / len(main)
        return result
