"""The typed configuration schema and its loader: defaults <- YAML file <- ``key=value`` overrides.

Every knob lives in a dataclass below with a default and a one-line meaning. An unknown key or a
value of the wrong type stops :func:`load` before any work, naming the key and what was expected.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from data_pipeline.modalities import NAMES as MODALITY_NAMES
from models.config import ModelConfig


@dataclass
class RunConfig:
    name: str = "tiny"  # run name; outputs go to <dir>/<name>/
    dir: str = "runs"  # parent folder of run folders
    seed: int = 0  # global seed for model init, routing and noise


@dataclass
class SynthConfig:
    train_clips: int = 512  # clips synthesised for the train split when data.root lacks it
    val_clips: int = 32  # clips for the val split (validation loss)
    test_clips: int = 32  # clips for the test split (evaluation)
    seed: int = 0  # base seed of the synthetic world; splits mix their name into it
    shard_size: int = 64  # samples per shard


@dataclass
class DataConfig:
    root: str = "data/synth"  # folder holding one shard folder per split (train/, val/, test/)
    modalities: list[str] = field(default_factory=lambda: ["depth", "flow", "seg", "pose", "densepose"])  # auxiliary streams loaded
    frames: int = 16  # frames per clip fed to the model
    size: int = 64  # square frame size fed to the model, pixels
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # random-crop area fraction range
    batch_size: int = 8  # samples per step per rank
    num_workers: int = 2  # data-loader worker processes per rank
    shuffle_buffer: int = 256  # samples held in the shuffle buffer
    synth: SynthConfig = field(default_factory=SynthConfig)  # how to build the synthetic splits if absent


@dataclass
class TaskProbs:
    cond: float = 0.25  # conditional generation u(V_r | V_m, C): rgb noised, modality clean
    est: float = 0.25  # estimation u(V_m | V_r): modality noised, rgb clean
    joint: float = 0.5  # joint generation u(V_r, V_m | C): both noised
    sentence: float = 0.0  # visual sentence (A, A', B, B'): only B' noised


@dataclass
class CurriculumStage:
    steps: int = 0  # optimizer steps in this stage; 0 = until the end of the run
    modalities: list[str] = field(default_factory=list)  # auxiliary modalities routed in this stage
    tasks: TaskProbs = field(default_factory=TaskProbs)  # task probabilities in this stage


def _paper_curriculum() -> list[CurriculumStage]:
    """UnityVideo's two stages: pixel-aligned modalities first, then all of them."""
    return [
        CurriculumStage(steps=300, modalities=["depth", "flow", "densepose"]),
        CurriculumStage(steps=0, modalities=["depth", "flow", "seg", "pose", "densepose"]),
    ]


@dataclass
class TrainConfig:
    engine: str = "plain"  # plain (one process) or deepspeed
    zero_stage: int = 0  # DeepSpeed ZeRO stage 0-3
    sequence_parallel: int = 1  # ranks splitting each sample's tokens (DeepSpeed-Ulysses; deepspeed engine only)
    max_steps: int = 1000  # optimizer steps in the run
    lr: float = 3e-4  # peak learning rate
    weight_decay: float = 0.01  # AdamW decay, not applied to norms, biases and embeddings
    warmup_steps: int = 100  # linear learning-rate warmup
    schedule: str = "constant"  # after warmup: constant or cosine
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of lr
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU), fp32 or bf16
    ema_decay: float = 0.999  # EMA of the weights; 0 disables it
    save_every: int = 250  # steps between checkpoints
    eval_every: int = 250  # steps between validation-loss passes
    log_every: int = 10  # steps between metrics.jsonl / TensorBoard records
    resume: str = "auto"  # auto (latest checkpoint of the run), never, or a checkpoint path
    init_from: str = ""  # a run or checkpoint whose weights (EMA when saved) start this run; "" = random init
    max_bad_steps: int = 20  # consecutive non-finite losses that stop the run (with a checkpoint)
    caption_dropout: float = 0.1  # probability of an empty caption, for classifier-free guidance
    t_logit_mean: float = 0.0  # mean of the logit-normal flow-matching time
    t_logit_std: float = 1.0  # std of the logit-normal flow-matching time
    t_shift: float = 1.0  # time shift s: t -> s t / (1 + (s - 1) t); > 1 favours noisier times
    t_shift_mode: str = "fixed"  # fixed (t_shift) or resolution (shift grows with tokens per stream)
    peak_tflops: float = 0.0  # device dense bf16 peak for MFU; 0 = look it up
    tasks: TaskProbs = field(default_factory=TaskProbs)  # task probabilities when no curriculum is set
    sentence_reverse: float = 0.5  # probability that a visual sentence is reversed (modality -> video) rather than estimation
    sentence_image_context: float = 0.0  # probability that a sentence's context pair (A, A') is one frame held still
    modalities: dict[str, float] = field(default_factory=lambda: {m: 1.0 for m in MODALITY_NAMES[1:]})  # routing weights
    curriculum: list[CurriculumStage] = field(default_factory=_paper_curriculum)  # stages; empty = no curriculum


# attention q/k/v/out and the MLP of every block
LORA_TARGETS = ("attn.qkv", "attn.proj", "cross_attn.q", "cross_attn.kv", "cross_attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass
class LoraSettings:
    enabled: bool = False  # train LoRA adapters on a frozen base (train.init_from) instead of the whole model
    rank: int = 8  # LoRA rank r
    alpha: float = 16.0  # LoRA scale numerator: the update is B A · alpha / r
    dropout: float = 0.0  # dropout on the LoRA branch's input
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # DiT layers given adapters (name suffixes)


@dataclass
class EvalConfig:
    split: str = "test"  # split evaluated after training
    clips: int = 16  # clips evaluated
    steps: int = 20  # sampler steps


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the network, codec and text encoder (models/config.py)
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)  # LoRA fine-tuning (unity/lora.py)
    eval: EvalConfig = field(default_factory=EvalConfig)


# Keys whose value must be one of a fixed set (the model section checks its own: ModelConfig.validate).
CHOICES = {
    "train.engine": ("plain", "deepspeed"),
    "train.schedule": ("constant", "cosine"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.t_shift_mode": ("fixed", "resolution"),
    "train.zero_stage": (0, 1, 2, 3),
    "eval.split": ("train", "val", "test", "zeroshot"),
}


class ConfigError(ValueError):
    """A configuration that cannot be used, with the key at fault and what was expected."""


def all_keys(schema=Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, sections included: ``train``, ``train.max_steps``."""
    keys = []
    for f in fields(schema):
        keys.append(f"{prefix}{f.name}")
        if is_dataclass(f.default_factory):
            keys += all_keys(f.default_factory, f"{prefix}{f.name}.")
    return keys


def load(path: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Defaults, then the YAML at ``path``, then ``key=value`` overrides; validated and typed."""
    config = OmegaConf.structured(Config)
    layers = []
    if path is not None:
        try:
            layers.append(OmegaConf.load(path))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    layers.append(OmegaConf.from_dotlist(list(overrides)))
    for layer in layers:
        try:
            config = OmegaConf.merge(config, layer)
        except ConfigKeyError as e:
            raise ConfigError(_unknown_key_message(e.full_key)) from None
        except ValidationError as e:
            raise ConfigError(_type_message(e)) from None
        except OmegaConfBaseException as e:
            raise ConfigError(f"config key '{e.full_key}': {e.msg}") from None
    _check_choices(config)
    return config


def _unknown_key_message(key: str) -> str:
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.6)
    hint = f"; closest valid keys: {', '.join(close)}" if close else "; see unity/config.py for the schema"
    return f"unknown config key '{key}'{hint}"


def _type_message(error: ValidationError) -> str:
    """Name the key, the type the schema declares for it and what was given."""
    key = error.full_key
    schema, expected = Config, None
    for part in re.split(r"[.\[]", key):
        declared = {f.name: f for f in fields(schema)}.get(part) if is_dataclass(schema) else None
        if declared is None:
            break
        expected = declared.type
        schema = declared.default_factory if callable(declared.default_factory) else None
    return f"config key '{key}' expects {expected}: {error.msg.splitlines()[0]}"


def _check_choices(config: DictConfig) -> None:
    if config.lora.enabled and not config.train.init_from:
        raise ConfigError("config key 'lora.enabled' needs 'train.init_from' (the run or checkpoint the adapters "
                          "are trained on), e.g. train.init_from=runs/tiny")
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(config, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(map(str, allowed))}")
    try:
        OmegaConf.to_object(config.model).validate()
    except ValueError as e:
        raise ConfigError(f"config key {e}") from None
    _check_sequence_parallel(config)
    auxiliary = MODALITY_NAMES[1:]
    named = [("data.modalities", name) for name in config.data.modalities]
    named += [("train.modalities", name) for name in config.train.modalities]
    named += [(f"train.curriculum[{i}].modalities", name)
              for i, stage in enumerate(config.train.curriculum) for name in stage.modalities]
    for key, name in named:
        if name not in auxiliary:
            raise ConfigError(f"config key '{key}' lists {name!r}; auxiliary modalities are {', '.join(auxiliary)}")
    probs = [("train.tasks", config.train.tasks)]
    probs += [(f"train.curriculum[{i}].tasks", stage.tasks) for i, stage in enumerate(config.train.curriculum)]
    for key, tasks in probs:
        values = list(tasks.values())
        if min(values) < 0 or sum(values) <= 0:
            raise ConfigError(f"config key '{key}' needs non-negative probabilities with a positive sum, got {dict(tasks)}")


def _check_sequence_parallel(config: DictConfig) -> None:
    """``train.sequence_parallel``: at least 1; above 1 only on DeepSpeed, with heads it divides (the rank count
    is checked at launch, ``unity.parallel.check_world_size``)."""
    size, train = config.train.sequence_parallel, config.train
    key = f"config key 'train.sequence_parallel' ({size})"
    if size < 1:
        raise ConfigError(f"{key} must be at least 1")
    if size > 1 and train.engine != "deepspeed":
        raise ConfigError(f"{key} needs train.engine=deepspeed, got {train.engine!r}")
    if config.model.heads % size:
        raise ConfigError(f"{key} must divide model.heads ({config.model.heads}): Ulysses splits the heads")
