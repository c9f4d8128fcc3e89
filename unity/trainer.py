"""The training loop: route tasks, noise streams, step the engine, validate, checkpoint, resume.

One loop for both engines (plain PyTorch and DeepSpeed). Each step draws per sample a task and a
modality (``unity.tasks``), builds the two streams (rgb and the routed modality), noises the
task's target streams (``unity.flow_matching``) and regresses their velocity. Everything random
comes from one generator whose state is checkpointed with the weights, the optimizer and the
data position, so a resumed run repeats the uninterrupted one step for step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import defaultdict

import torch
import torch.distributed as dist
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from models.codec import build_codec
from models.config import ModelConfig
from models.dit import UnityDiT
from models.flops import forward_flops, latent_grid, tokens_per_stream
from models.text import build_text_encoder
from unity import checkpoint
from unity.conditioning import drop_captions, encode_conditioning
from unity.data import ensure_synthetic_splits, fixed_loader, split_dir, train_loader
from unity.evaluate import depth_report, estimate_disparity, load_depth_clips, mean_map_report, summary_table
from unity.ema import EMA
from unity.engine import build_engine
from unity.flow_matching import flow_matching_loss, noise_streams, resolution_shift, sample_t
from unity.metrics import MetricsLogger, peak_tflops
from unity.tasks import TaskRouter, assemble
from unity.validation import Validator

log = logging.getLogger(__name__)


class TrainModule(nn.Module):
    """What the engine trains and checkpoints: the DiT and, when it is trainable, the text encoder.

    The training forward goes through this module (called via the engine), so that under ZeRO-3
    DeepSpeed gathers every parameter it uses. With a frozen text encoder the caller passes the
    embeddings instead of the texts.
    """

    def __init__(self, dit: UnityDiT, text: nn.Module | None):
        super().__init__()
        self.dit = dit
        self.text = text

    def forward(self, x, modality, t, captions=None, prompts=None, **embeddings):
        if self.text is not None:
            embeddings = encode_conditioning(self.text, captions, prompts, x.shape[1], x.device)
        return self.dit(x, modality, t, **embeddings)


def build_model(config: DictConfig, device) -> tuple[TrainModule, nn.Module, nn.Module]:
    """(trained module, text encoder, codec). Frozen parts (codec, an hf text encoder) stay outside the module."""
    model_config: ModelConfig = OmegaConf.to_object(config.model)
    codec = build_codec(model_config, device)
    text = build_text_encoder(model_config, device)
    dit = UnityDiT(model_config, codec.channels, text.dim)
    trainable_text = text if any(p.requires_grad for p in text.parameters()) else None
    return TrainModule(dit, trainable_text).to(device), text, codec


class Trainer:
    def __init__(self, config: DictConfig):
        self.config = config
        self.run_dir = os.path.join(config.run.dir, config.run.name)
        rank = int(os.environ.get("RANK", 0))
        os.makedirs(self.run_dir, exist_ok=True)
        ensure_synthetic_splits(config, is_main=rank == 0)
        torch.manual_seed(config.run.seed)  # the same initial weights on every rank
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if torch.cuda.is_available() else torch.device("cpu")
        module, self.text, self.codec = build_model(config, device)
        self.engine = build_engine(config, module)
        self.device = self.engine.device
        self.ema = EMA(self.engine.model, config.train.ema_decay) if config.train.ema_decay > 0 else None
        if self.ema is not None and config.train.engine == "deepspeed" and config.train.zero_stage == 3:
            log.warning("no EMA under ZeRO-3 (each rank holds only a shard of the weights); "
                        "evaluation uses the trained weights")
            self.ema = None
        self.router = TaskRouter(config.train, available=list(config.data.modalities))
        self.generator = torch.Generator().manual_seed(config.run.seed * 1000 + self.engine.rank)
        self.loader = train_loader(config, seed=config.run.seed * 1000 + self.engine.rank)
        # Every rank validates and evaluates (ZeRO-3 needs all ranks in each forward); the main rank reports.
        self.validator = Validator(fixed_loader(config, "val", config.data.batch_size), config.data.modalities,
                                   self.codec, seed=config.run.seed)
        self.metrics = MetricsLogger(self.run_dir, enabled=self.engine.is_main)
        self._throughput_constants()
        self.step, self.state, self._test_clips = 0, {}, None
        if self.engine.is_main:
            with open(os.path.join(self.run_dir, "config.yaml"), "w") as f:
                f.write(OmegaConf.to_yaml(config, resolve=True))

    def _throughput_constants(self) -> None:
        """Tokens and training FLOPs per sample (3x forward; 4x with activation checkpointing) and the device peak."""
        data, model = self.config.data, OmegaConf.to_object(self.config.model)
        ct = self.codec.temporal
        grid = latent_grid(data.frames, data.size, data.size, (ct, self.codec.spatial, self.codec.spatial))
        self.tokens_per_sample = 2 * tokens_per_stream(model, grid)
        forward = forward_flops(model, self.codec.channels, self.text.dim, grid, streams=2,
                                caption_tokens=model.text_max_tokens, prompt_tokens=model.text_max_tokens)["total"]
        self.flops_per_sample = forward * (4 if model.grad_checkpointing else 3)
        self.peak = peak_tflops(self.device, self.config.train.peak_tflops) * 1e12
        train = self.config.train
        self.t_shift = train.t_shift if train.t_shift_mode == "fixed" else resolution_shift(self.tokens_per_sample // 2)

    # ------------------------------------------------------------------ checkpoints

    def save(self) -> None:
        state = {"step": self.step, "loader": self.loader.state_dict(), "generator": self.generator.get_state().tolist(),
                 "rng": checkpoint.rng_state(), "config_hash": self._config_hash(), **self.state}
        weights = self.engine.state_dict_consolidated()
        checkpoint.save_checkpoint(self.run_dir, self.step, weights, self.ema.state_dict() if self.ema else None,
                                   state, save_engine=self.engine.save_state)

    def _config_hash(self) -> str:
        """Hash of the config, leaving out what a resume may legitimately change."""
        config = OmegaConf.to_container(self.config, resolve=True)
        for key in ("resume", "max_steps"):
            config["train"].pop(key)
        return checkpoint.config_hash(config)

    def maybe_resume(self) -> None:
        path = checkpoint.resolve_resume(self.run_dir, self.config.train.resume)
        if path is None:
            return
        state = checkpoint.read_state(path)
        if state.get("config_hash") != self._config_hash():
            log.warning("resuming %s with a config that differs from the one it was saved with", path)
        if self.config.train.engine == "plain":  # DeepSpeed's own state carries the (sharded) weights
            checkpoint.load_weights(self.engine.model, os.path.join(path, "model.safetensors"))
        self.engine.load_state(os.path.join(path, "engine"))
        if self.ema is not None:
            self.ema.load_state_dict(checkpoint.load_ema(path))
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        checkpoint.set_rng_state(state["rng"])
        self.step = state["step"]
        self.state = {k: state[k] for k in ("val_loss_first", "step0") if k in state}
        log.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ one step

    def micro_step(self, batch: dict) -> dict:
        """Route, noise, forward and backward one micro-batch, then let the engine step; returns its metrics."""
        train = self.config.train
        n = len(batch["key"])
        routes = self.router.draw(self.step, n, self.generator)
        streams = assemble(batch, routes)
        x0 = torch.stack([self.codec.encode_normalized(streams["x0"][:, s].to(self.device))
                          for s in range(streams["x0"].shape[1])], dim=1)  # [B, S, C, T, H, W]
        t = sample_t(n, self.generator, train.t_logit_mean, train.t_logit_std, self.t_shift).to(self.device)
        noise = torch.randn(x0.shape, generator=self.generator).to(self.device)
        noised = streams["noised"].to(self.device)
        x_t, t_streams, target = noise_streams(x0, noised, t, noise)
        captions = drop_captions(batch["caption"], train.caption_dropout, self.generator)
        if self.engine.model.text is not None:
            text_inputs = {"captions": captions, "prompts": streams["prompts"]}
        else:
            with torch.no_grad():
                text_inputs = encode_conditioning(self.text, captions, streams["prompts"], x0.shape[1], self.device)
        with self.engine.dtype_context():
            v = self.engine.module(x_t, streams["modality"].to(self.device), t_streams, **text_inputs)
        per_sample = flow_matching_loss(v.float(), target, noised)  # [B]
        loss = per_sample.mean()
        finite = bool(torch.isfinite(loss))
        if finite:
            self.engine.backward(loss)
        info = self.engine.step()  # applies the update at accumulation boundaries, skips non-finite gradients
        by_route = defaultdict(list)
        for route, value in zip(routes, per_sample.detach().tolist()):
            by_route[f"loss/{route.task}"].append(value)
            by_route[f"loss/{route.task}/{route.modality}"].append(value)
        return {"loss": loss.item(), "skipped_samples": batch["skipped"], "finite": finite, "info": info,
                **{k: sum(v) / len(v) for k, v in by_route.items()}}

    def train_step(self, batches) -> tuple[dict, list[str]]:
        """One optimizer step over ``train.grad_accum`` micro-batches; returns its metrics and sample keys."""
        micro, keys = [], []
        for _ in range(self.config.train.grad_accum):
            batch = next(batches)
            micro.append(self.micro_step(batch))
            keys += batch["key"]
        info = micro[-1]["info"]
        bad = not all(m["finite"] for m in micro) or info["skipped"]
        if self.ema is not None and not bad:
            self.ema.update(self.engine.model)
        metrics = defaultdict(list)
        for m in micro:
            for name, value in m.items():
                if name not in ("finite", "info"):
                    metrics[name].append(value)
        metrics = {k: sum(v) / len(v) if k != "skipped_samples" else sum(v) for k, v in metrics.items()}
        return {**metrics, "grad_norm": info["grad_norm"], "lr": info["lr"], "bad": bad}, keys

    def validate(self) -> dict:
        model = self.engine.model
        return self.validator(model.dit, (model.text if model.text is not None else self.text), self.device, self.engine.dtype_context)

    def evaluate_depth(self, use_ema: bool = True) -> dict[str, float]:
        """Depth estimation metrics on the test split (main rank), with the EMA weights when asked and kept."""
        evaluation = self.config.eval
        if self._test_clips is None:
            self._test_clips = load_depth_clips(split_dir(self.config, evaluation.split), evaluation.clips)
        model = self.engine.model
        with self._weights(use_ema and self.ema is not None):
            predictions = estimate_disparity(model.dit, (model.text if model.text is not None else self.text), self.codec, self._test_clips,
                                             evaluation.steps, self.device, seed=self.config.run.seed)
        return depth_report(predictions, self._test_clips)

    @contextlib.contextmanager
    def _weights(self, ema: bool):
        """Temporarily swap the EMA weights into the trained module."""
        if not ema:
            yield
            return
        backup = {k: v.detach().clone() for k, v in self.engine.model.state_dict().items()}
        self.ema.copy_to(self.engine.model)
        try:
            yield
        finally:
            self.engine.model.load_state_dict(backup)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict:
        train = self.config.train
        self.maybe_resume()
        if self.step == 0:
            values = self.validate()
            self.state["val_loss_first"] = values["val/loss"]
            self.state["step0"] = self.evaluate_depth(use_ema=False)
            self.metrics.log(0, {**values, **{f"eval/step0/{k}": v for k, v in self.state["step0"].items()}})
        bar = tqdm(total=train.max_steps, initial=self.step, desc="train", unit="step",
                   disable=not self.engine.is_main, dynamic_ncols=True)
        batches, bad_in_row, window = iter(self.loader), 0, []
        last = time.perf_counter()
        while self.step < train.max_steps:
            metrics, keys = self.train_step(batches)
            bad_in_row = bad_in_row + 1 if metrics.pop("bad") else 0
            self.step += 1
            now = time.perf_counter()
            window.append((len(keys) * self.engine.world_size, now - last))
            last = now
            window = window[-20:]
            samples_per_s = sum(s for s, _ in window) / sum(d for _, d in window)
            speed = {"samples_per_s": samples_per_s, "tokens_per_s": samples_per_s * self.tokens_per_sample,
                     "mfu": samples_per_s * self.flops_per_sample / (self.peak * self.engine.world_size)}
            bar.update()
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", samples_s=f"{speed['samples_per_s']:.1f}",
                            mfu=f"{speed['mfu']:.1%}")
            if self.step % train.log_every == 0 or self.step == train.max_steps:
                all_keys = gather_keys(keys)  # collective: every rank logs at the same steps
                self.metrics.log(self.step, {**metrics, **speed, "bad_steps_in_row": bad_in_row, "keys": all_keys})
            if bad_in_row >= train.max_bad_steps:
                self.save()
                raise RuntimeError(f"{bad_in_row} steps in a row had a non-finite loss or gradient (up to step "
                                   f"{self.step}); a checkpoint was saved in {self.run_dir}/checkpoints. Lower "
                                   "train.lr, check the data, or raise train.max_bad_steps")
            if self.step % train.eval_every == 0 or self.step == train.max_steps:
                values = self.validate()
                self.state["val_loss_last"] = values.get("val/loss")
                self.metrics.log(self.step, values)
            if self.step % train.save_every == 0 or self.step == train.max_steps:
                self.save()
        bar.close()
        return self.state


def gather_keys(keys: list[str]) -> list[str]:
    """The sample keys of this step on every rank, rank by rank (for the metrics record)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(keys)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(keys))
    return [key for rank_keys in gathered for key in rank_keys]


def train(config: DictConfig) -> dict:
    """The main job: train, then (main rank) evaluate depth estimation and write ``eval/results.json``."""
    trainer = Trainer(config)
    state = trainer.fit()
    trainer.metrics.close()
    final = trainer.evaluate_depth(use_ema=True)
    if not trainer.engine.is_main:
        return {}
    baseline = mean_map_report(split_dir(config, "train"), trainer._test_clips)
    results = {"steps": trainer.step, "val_loss_first": state["val_loss_first"], "val_loss_last": state["val_loss_last"]}
    for prefix, values in (("", final), ("step0.", state["step0"]), ("baseline_mean.", baseline)):
        results.update({f"{prefix}depth.{k}": v for k, v in values.items()})
    eval_dir = os.path.join(trainer.run_dir, "eval")
    os.makedirs(eval_dir, exist_ok=True)
    with open(os.path.join(eval_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(summary_table(results))
    return results
