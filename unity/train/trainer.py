"""The training loop: route tasks, noise streams, step the engine, validate, checkpoint, resume.

One loop for both engines (plain PyTorch and DeepSpeed). Each step draws per sample a task and a
modality (``unity.method.router``), builds the streams (rgb and the routed modality), noises the
task's target streams (``unity.method.flow_matching``) and regresses their velocity. Everything
random comes from one generator whose state is checkpointed with the weights, the optimizer and the
data position, so a resumed run repeats the uninterrupted one step for step. The trainer only
trains: a finished run is evaluated by ``eval.run_report`` from its checkpoints (step 0 included).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter, defaultdict

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from models.flops import forward_flops, latent_grid, tokens_per_stream
from unity.method.conditioning import drop_captions, drop_features, encode_conditioning
from unity.method.flow_matching import flow_matching_loss, noise_streams, sample_t, training_shift
from unity.method.lora import adapter_config, add_lora
from unity.method.network import build_model
from unity.method.router import TaskRouter
from unity.method.stored_text import stored_conditioning
from unity.method.streams import assemble_groups, encode_streams
from unity.train import checkpoint, distributed
from unity.train.checkpoint import ADAPTER, ADAPTER_EMA, WEIGHTS, load_adapter, load_init
from unity.train.data import ensure_synthetic_splits, fixed_loader, train_loader
from unity.train.determinism import use_deterministic_algorithms
from unity.train.ema import EMA
from unity.train.engine import build_engine
from unity.train.metrics import MetricsLogger, peak_tflops
from unity.train.precomputed_set import open_precomputed
from unity.train.sharded import restore_ema, save_training_checkpoint
from unity.train.trackers import WandbTracker
from unity.train.validation import Validator

log = logging.getLogger(__name__)


class Trainer:
    def __init__(self, config: DictConfig):
        self.config = config
        self.run_dir = os.path.join(config.run.dir, config.run.name)
        # Shards of unity.precompute stand in for the codec and a frozen text encoder; checked before any work.
        self.precomputed = open_precomputed(config)
        os.makedirs(self.run_dir, exist_ok=True)
        use_deterministic_algorithms(config.train.deterministic)
        if self.precomputed is None:
            ensure_synthetic_splits(config)
        torch.manual_seed(config.run.seed)  # the same initial weights on every rank
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", distributed.local_rank()) if cuda else torch.device("cpu")
        codec, text = self.precomputed.stand_ins() if self.precomputed else (None, None)
        module, self.text, self.codec = build_model(config, device, codec, text)
        if config.train.init_from:
            log.info("initial weights: %s", load_init(module, config.train.init_from))
        self.lora = config.lora.enabled
        if self.lora:  # before the engine: its optimizer takes the adapters only
            add_lora(module, config.lora)
        self.weight_names = (ADAPTER, ADAPTER_EMA) if self.lora else WEIGHTS
        # parameters the init checkpoint created (a grown Wan) train at optim.new_param_lr_mult x the LR
        grown = checkpoint.new_parameters(config.train.init_from) if config.train.init_from and not self.lora else []
        self.engine = build_engine(config, module, grown)
        self.device = self.engine.device
        ema = config.ema
        self.ema = None
        if ema.decay > 0:
            self.ema = EMA(
                self.engine.model,
                ema.decay,
                trainable_only=self.lora,
                warmup=ema.warmup,
                power=ema.warmup_power,
                inv_gamma=ema.warmup_inv_gamma,
            )
        self.router = TaskRouter(config.routing, available=list(config.data.modalities))
        if self.engine.sequence_group is not None:  # the ranks of a group split each sample's tokens
            self.engine.model.dit.enable_sequence_parallel(self.engine.sequence_group)
        # Seeded by the data-parallel rank: the ranks of a sequence-parallel group draw the same samples,
        # routes, times and noise (each rank is its own data rank without sequence parallelism).
        data_rank = self.engine.data_rank
        self.generator = torch.Generator().manual_seed(config.run.seed * 1000 + data_rank)
        self.loader = train_loader(config, config.run.seed * 1000 + data_rank, data_rank, self.precomputed)
        # Every rank validates and evaluates (ZeRO-3 needs all ranks in each forward); the main rank reports.
        routing = config.routing
        routes_sentences = routing.tasks.sentence > 0 or any(s.tasks.sentence > 0 for s in routing.curriculum)
        self.validator = Validator(
            fixed_loader(config, "val", config.data.batch_size, self.precomputed),
            config.data.modalities,
            self.codec,
            seed=config.run.seed,
            sentences=routes_sentences,
            aux_streams=list(routing.aux_streams),
            null_caption=self.precomputed.null_caption if self.precomputed else None,
        )
        self.metrics = MetricsLogger(self.run_dir, enabled=self.engine.is_main, trackers=self._trackers())
        self._throughput_constants()
        self.step, self.state = 0, {}
        if self.engine.is_main:
            checkpoint.save_run_config(self.run_dir, config)

    def _throughput_constants(self) -> None:
        """Tokens and model FLOPs per training sample (3x forward: MFU leaves activation recompute out)
        and the device peak."""
        data, model = self.config.data, OmegaConf.to_object(self.config.model)
        ct = self.codec.temporal
        grid = latent_grid(data.frames, data.size, data.size, (ct, self.codec.spatial, self.codec.spatial))
        # Streams per sample -> probability: rgb and k routed modalities (routing.aux_streams); rgb alone for t2v.
        weights = list(self.config.routing.aux_streams) if data.modalities else []
        mix = {1 + k: w / sum(weights) for k, w in enumerate(weights, 1) if w > 0} if weights else {1: 1.0}
        self.tokens_per_sample = sum(p * s for s, p in mix.items()) * tokens_per_stream(model, grid)
        forward = sum(
            p
            * forward_flops(
                model,
                self.codec.channels,
                self.text.dim,
                grid,
                streams=s,
                caption_tokens=model.text_max_tokens,
                prompt_tokens=model.text_max_tokens,
            )["total"]
            for s, p in mix.items()
        )
        self.flops_per_sample = 3 * forward
        self.peak = peak_tflops(self.device, self.config.train.peak_tflops) * 1e12
        self.t_shift = training_shift(self.config.flow, model, self.codec, data.frames, data.size)

    # ------------------------------------------------------------------ checkpoints

    def save(self, consolidate: bool = False) -> None:
        """Checkpoint the run: sharded under DeepSpeed, with the full weights too when ``consolidate``."""
        state = {
            "step": self.step,
            "loader": self.loader.state_dict(),
            "generator": self.generator.get_state().tolist(),
            "rng": checkpoint.rng_state(),
            "config_hash": self._config_hash(),
            **self.state,
        }
        save_training_checkpoint(
            self.run_dir,
            self.step,
            self.engine,
            self.ema,
            state,
            consolidate=consolidate,
            lora=self.lora,  # the base is train.init_from's: only the adapters are this run's
            names=self.weight_names,
            keep_last=self.config.checkpoint.keep_last,
            adapter_config=adapter_config(self.config.lora, self.config.train.init_from) if self.lora else None,
        )

    def _trackers(self) -> list:
        """The experiment trackers the config asks for, on the main rank: W&B with ``run.wandb``."""
        run = self.config.run
        if not (run.wandb and self.engine.is_main):
            return []
        config = OmegaConf.to_container(self.config, resolve=True)
        return [WandbTracker(self.run_dir, run.name, run.wandb_project, run.wandb_mode, config)]

    def _config_hash(self) -> str:
        """Hash of the config, leaving out what a resume may legitimately change."""
        config = OmegaConf.to_container(self.config, resolve=True)
        for key in ("resume", "max_steps"):
            config["train"].pop(key)
        return checkpoint.config_hash(config)

    def maybe_resume(self) -> bool:
        """Continue from the checkpoint ``train.resume`` names, if any; True when resumed."""
        path = checkpoint.resolve_resume(self.run_dir, self.config.train.resume)
        if path is None:
            return False
        state = checkpoint.read_state(path)
        if state.get("config_hash") != self._config_hash():
            log.warning("resuming %s with a config that differs from the one it was saved with", path)
        if self.config.parallel.engine == "plain":  # DeepSpeed's own state carries the (sharded) weights
            load = load_adapter if self.lora else checkpoint.load_weights
            load(self.engine.model, checkpoint.weights_file(path, self.weight_names[0]))
        self.engine.load_state(os.path.join(path, "engine"))
        if self.ema is not None:
            restore_ema(path, self.ema, self.weight_names[1])
        self.loader.load_state_dict(state["loader"])
        self.generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))
        checkpoint.set_rng_state(state["rng"])
        self.step = state["step"]
        self.state = {k: state[k] for k in ("val_loss_first", "val_loss_last", "skipped_samples") if k in state}
        log.info("resumed from %s at step %d", path, self.step)
        return True

    # ------------------------------------------------------------------ one step

    def micro_step(self, batch: dict) -> dict:
        """Route, noise, forward and backward one micro-batch, then let the engine step; returns its metrics.

        Samples with different stream counts (two-stream tasks, sentences) run as separate model calls
        whose losses are summed before one backward.
        """
        flow = self.config.flow
        n = len(batch["key"])
        routes = self.router.draw(self.step, n, self.generator)
        groups = assemble_groups(batch, routes)
        t = sample_t(n, self.generator, flow.t_logit_mean, flow.t_logit_std, self.t_shift).to(self.device)
        for group in groups:  # [G, S, C, T, H, W] in the codec's space (a precomputed batch's latents already)
            x0 = group["x0"]
            group["x0"] = x0.to(self.device) if "latent" in batch else encode_streams(self.codec, x0, self.device)
            group["noise"] = torch.randn(group["x0"].shape, generator=self.generator).to(self.device)
        captions = drop_captions(batch["caption"], self.config.routing.caption_dropout, self.generator)
        per_sample = torch.zeros(n, device=self.device)  # [B]
        for group in groups:
            index = torch.tensor(group["index"], device=self.device)
            noised = group["noised"].to(self.device)
            x_t, t_streams, target = noise_streams(group["x0"], noised, t[index], group["noise"])
            group_captions = [captions[i] for i in group["index"]]
            features = None
            if "external" in batch:  # the caption's external features, cleared where the caption was dropped
                features = drop_features(tuple(f[group["index"]] for f in batch["external"]), group_captions)
            if self.engine.model.text is not None:
                text_inputs = {"captions": group_captions, "prompts": group["prompts"], "features": features}
            elif self.precomputed is not None and self.precomputed.stored_text:
                text_inputs = stored_conditioning(
                    batch["text"],
                    group["index"],
                    [bool(c) for c in group_captions],
                    self.precomputed.null_caption,
                    (group["prompt"], group["prompt_mask"]) if "prompt" in group else None,
                    x_t.shape[1],
                    self.device,
                )
            else:
                with torch.no_grad():
                    text_inputs = encode_conditioning(
                        self.text, group_captions, group["prompts"], x_t.shape[1], self.device, features
                    )
            with self.engine.dtype_context():
                v = self.engine.module(
                    x_t, group["modality"].to(self.device), t_streams, layout=group["layout"], **text_inputs
                )
            per_sample = per_sample.index_put((index,), flow_matching_loss(v.float(), target, noised))
        loss = per_sample.mean()
        finite = bool(torch.isfinite(loss))
        if finite:
            self.engine.backward(loss)
        info = self.engine.step()  # applies the update at accumulation boundaries, skips non-finite gradients
        by_route = defaultdict(list)
        for route, value in zip(routes, per_sample.detach().tolist()):
            by_route[f"loss/{route.task}"].append(value)
            by_route[f"loss/{route.task}/{route.metric_label}"].append(value)
        return {
            "loss": loss.item(),
            "skipped_samples": batch["skipped"],
            "finite": finite,
            "info": info,
            **{k: sum(v) / len(v) for k, v in by_route.items()},
            **{f"samples/{task}": n for task, n in Counter(route.task for route in routes).items()},  # summed per step
        }

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
        counts = ("skipped_samples", "samples/")  # summed over micro-batches; the rest averaged
        metrics = {k: sum(v) if k.startswith(counts) else sum(v) / len(v) for k, v in metrics.items()}
        return {**metrics, "grad_norm": info["grad_norm"], "lr": info["lr"], "bad": bad}, keys

    def validate(self) -> dict:
        model = self.engine.model
        return self.validator(
            model.dit, (model.text if model.text is not None else self.text), self.device, self.engine.dtype_context
        )

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict:
        train = self.config.train
        resumed = self.maybe_resume()
        self.metrics.drop_after(self.step if resumed else -1)
        if self.step == 0:
            values = self.validate()
            self.state["val_loss_first"] = values["val/loss"]
            self.metrics.log(0, values)
            if self.config.checkpoint.keep_initial:
                self.save(consolidate=True)  # the untrained weights: evaluation's step-0 reference
        bar = tqdm(
            total=train.max_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=not self.engine.is_main,
            dynamic_ncols=True,
        )
        batches, bad_in_row, window = iter(self.loader), 0, []
        last = time.perf_counter()
        while self.step < train.max_steps:
            metrics, keys = self.train_step(batches)
            self.state["skipped_samples"] = self.state.get("skipped_samples", 0) + metrics["skipped_samples"]
            bad_in_row = bad_in_row + 1 if metrics.pop("bad") else 0
            self.step += 1
            now = time.perf_counter()
            window.append((len(keys) * self.engine.data_world_size, now - last))  # a sample once per SP group
            last = now
            window = window[-20:]
            samples_per_s = sum(s for s, _ in window) / sum(d for _, d in window)
            speed = {
                "samples_per_s": samples_per_s,
                "tokens_per_s": samples_per_s * self.tokens_per_sample,
                "mfu": samples_per_s * self.flops_per_sample / (self.peak * self.engine.world_size),
            }
            bar.update()
            bar.set_postfix(
                loss=f"{metrics['loss']:.4f}", samples_s=f"{speed['samples_per_s']:.1f}", mfu=f"{speed['mfu']:.1%}"
            )
            if self.step % train.log_every == 0 or self.step == train.max_steps:
                all_keys = gather_keys(keys, self.engine.sequence_parallel)  # collective: all ranks log together
                self.metrics.log(self.step, {**metrics, **speed, "bad_steps_in_row": bad_in_row, "keys": all_keys})
            if bad_in_row >= train.max_bad_steps:
                self.save(consolidate=True)
                raise RuntimeError(
                    f"{bad_in_row} steps in a row had a non-finite loss or gradient (up to step "
                    f"{self.step}); a checkpoint was saved in {self.run_dir}/checkpoints. Lower "
                    "train.lr, check the data, or raise train.max_bad_steps"
                )
            if self.step % train.eval_every == 0 or self.step == train.max_steps:
                values = self.validate()
                self.state["val_loss_last"] = values.get("val/loss")
                self.metrics.log(self.step, values)
            saving = self.config.checkpoint
            consolidate = self.step == train.max_steps or (
                saving.consolidate_every > 0 and self.step % saving.consolidate_every == 0
            )
            if consolidate or self.step % saving.save_every == 0:
                self.save(consolidate)
        bar.close()
        return self.state


def gather_keys(keys: list[str], sequence_parallel: int = 1) -> list[str]:
    """The sample keys of this step on every data-parallel rank, rank by rank (for the metrics record).

    Raises RuntimeError when the ranks of a sequence-parallel group did not train on the same samples.
    """
    if not distributed.initialized():
        return list(keys)
    gathered = [None] * distributed.world_size()
    dist.all_gather_object(gathered, list(keys))
    if any(rank_keys != gathered[rank - rank % sequence_parallel] for rank, rank_keys in enumerate(gathered)):
        raise RuntimeError(f"the ranks of a sequence-parallel group trained on different samples: {gathered}")
    return [key for rank_keys in gathered[::sequence_parallel] for key in rank_keys]


def completed_run(config: DictConfig) -> dict | None:
    """The state of the run's latest checkpoint when it is at ``train.max_steps`` already (a finished run
    started again with ``train.resume=auto``), else None. Reads files only: no rank needs the others."""
    if config.train.resume != "auto":
        return None
    path = checkpoint.resolve_resume(os.path.join(config.run.dir, config.run.name), "auto")
    if path is None:
        return None
    state = checkpoint.read_state(path, rank=0)
    return state if state["step"] >= config.train.max_steps else None


def train(config: DictConfig) -> dict:
    """The main job's training part: train to ``train.max_steps`` (continuing a run that stopped earlier)
    and return the run state (validation losses, samples the loader skipped)."""
    trainer = Trainer(config)
    state = trainer.fit()
    trainer.metrics.close()
    return {"steps": trainer.step, **state}
