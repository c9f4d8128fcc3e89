"""Validation loss per task and modality on the whole held-out split, with fixed noise and a fixed grid of t.

Every clip of the validation split is scored at every evaluation. The noise of a clip is seeded by
the run seed, the clip's key, the task, the modality's *name* and the time, never by a position in a
list or batch, so two runs that validate the same clip for the same task and modality see the same
noise whatever their other modalities, batch size or clip order: validation curves compare across
steps, runs and ablation variants. Every run also reports text to video (``val/loss/t2v/rgb``: the
rgb stream alone from its caption), so runs with and without auxiliary modalities have one task in
common. Joint generation also reports the loss of its rgb stream alone (``val/loss/joint_rgb/<modality>``).
A run that routes visual sentences also reports ``val/loss/sentence/<modality>`` (estimation sentences).
A run that routes k >= 2 auxiliary streams also reports ``val/loss/<task>/<m_1+...+m_k>`` on the first
k of its modalities, for each such k. ``val/loss`` is the mean over the tasks the run routes with one
modality (text to video only when it routes nothing else), so it compares between runs of different k.
"""

from __future__ import annotations

import itertools
import zlib
from collections import defaultdict

import torch

from unity.method.conditioning import encode_conditioning
from unity.method.flow_matching import flow_matching_loss, noise_streams
from unity.method.router import Route
from unity.method.stored_text import stored_conditioning
from unity.method.streams import assemble, encode_streams
from unity.method.tasks import PAIR_TASKS, T2V

T_GRID = (0.2, 0.5, 0.8)


def noise_seed(seed: int, key: str, task: str, modality: str, t_value: float) -> int:
    """The seed of one clip's validation noise: a hash of names, independent of any list position."""
    return zlib.crc32(f"{seed}/{key}/{task}/{modality}/{t_value}".encode())


def fixed_noise(seed: int, keys: list[str], shape: tuple, task: str, modality: str, t_value: float) -> torch.Tensor:
    """Noise ``shape = [B, S, C, T, H, W]``, sample ``i`` drawn from the seed of ``keys[i]``."""
    generators = [torch.Generator().manual_seed(noise_seed(seed, k, task, modality, t_value)) for k in keys]
    return torch.stack([torch.randn(shape[1:], generator=g) for g in generators])


class Validator:
    """Holds the held-out split's batches and computes ``val/loss/<task>/<modality>`` and their mean."""

    def __init__(
        self, loader, modalities, codec, seed: int, sentences: bool = False, aux_streams=(1.0,), null_caption=None
    ):
        self.batches = list(loader)  # one pass: the whole split
        self.null_caption = null_caption  # precomputed text: the stored empty caption (None: encode the texts)
        self.modalities, self.codec, self.seed = list(modalities), codec, seed
        self.tasks = PAIR_TASKS + ("sentence",) if sentences else PAIR_TASKS
        ks = [k for k, weight in enumerate(aux_streams, 1) if weight > 0 and 2 <= k <= len(self.modalities)]
        self.combinations = ["+".join(self.modalities[:k]) for k in ks]  # routing.aux_streams' k >= 2

    def routes(self) -> list[tuple[str, str]]:
        """``(task, modality)`` pairs validated: every task with every modality, text to video, and the
        UnityVideo tasks on the first k modalities together (``depth+flow``) for each routed k >= 2."""
        multi = itertools.product(PAIR_TASKS, self.combinations)
        return [*itertools.product(self.tasks, self.modalities), (T2V, "rgb"), *multi]

    @torch.no_grad()
    def __call__(self, dit, text, device, autocast) -> dict[str, float]:
        was_training = dit.training
        dit.eval()
        totals, counts = defaultdict(float), defaultdict(int)  # summed per-sample losses, samples
        for batch in self.batches:
            keys, n = list(batch["key"]), len(batch["key"])
            for task, modality in self.routes():
                first, *extra = modality.split("+")
                streams = assemble(batch, [Route(task, first, extra=tuple(extra))] * n)
                if "latent" in batch:  # precomputed: the codec's latents already
                    x0 = streams["x0"].to(device)
                else:
                    x0 = encode_streams(self.codec, streams["x0"], device)  # [B, S, C, T, H, W]
                if self.null_caption is not None:
                    prompt = (streams["prompt"], streams["prompt_mask"]) if "prompt" in streams else None
                    cond = stored_conditioning(
                        batch["text"], list(range(n)), [True] * n, self.null_caption, prompt, x0.shape[1], device
                    )
                else:
                    cond = encode_conditioning(
                        text, batch["caption"], streams["prompts"], x0.shape[1], device, batch.get("external")
                    )
                noised = streams["noised"].to(device)
                for t_value in T_GRID:
                    noise = fixed_noise(self.seed, keys, tuple(x0.shape), task, modality, t_value).to(device)
                    t = torch.full((n,), t_value, device=device)
                    x_t, t_streams, target = noise_streams(x0, noised, t, noise)
                    with autocast():
                        v = dit(x_t, streams["modality"].to(device), t_streams, **cond, layout=streams["layout"])
                    name = f"val/loss/{task}/{modality}"
                    totals[name] += flow_matching_loss(v.float(), target, noised).sum().item()
                    counts[name] += n
                    if task == "joint":
                        rgb_only = torch.zeros_like(noised)
                        rgb_only[:, 0] = True
                        name = f"val/loss/joint_rgb/{modality}"
                        totals[name] += flow_matching_loss(v.float(), target, rgb_only).sum().item()
                        counts[name] += n
        dit.train(was_training)
        result = {name: totals[name] / counts[name] for name in totals}
        routed = [
            v
            for name, v in result.items()
            if not name.startswith("val/loss/joint_rgb/")
            and "+" not in name
            and (name != f"val/loss/{T2V}/rgb" or not self.modalities)
        ]
        result["val/loss"] = sum(routed) / len(routed)
        return result
