"""The typed configuration schema and its loader: defaults <- YAML file <- ``key=value`` overrides.

Every knob lives in a dataclass below with a default and a one-line meaning. An unknown key or a
value of the wrong type stops :func:`load` before any work, naming the key and what was expected.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Sequence

from omegaconf import DictConfig, ListConfig, OmegaConf
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
class TrainConfig:
    engine: str = "plain"  # plain (one process) or deepspeed
    zero_stage: int = 0  # DeepSpeed ZeRO stage 0-3
    max_steps: int = 1000  # optimizer steps in the run
    lr: float = 3e-4  # peak learning rate
    save_every: int = 250  # steps between checkpoints
    eval_every: int = 250  # steps between validation-loss passes
    resume: str = "auto"  # auto (latest checkpoint of the run), never, or a checkpoint path


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
    eval: EvalConfig = field(default_factory=EvalConfig)


# Keys whose value must be one of a fixed set (the model section checks its own: ModelConfig.validate).
CHOICES = {
    "train.engine": ("plain", "deepspeed"),
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
    for key, allowed in CHOICES.items():
        value = OmegaConf.select(config, key)
        if value not in allowed:
            raise ConfigError(f"config key '{key}' is {value!r}; choose one of {', '.join(map(str, allowed))}")
    try:
        OmegaConf.to_object(config.model).validate()
    except ValueError as e:
        raise ConfigError(f"config key {e}") from None
    for name in config.data.modalities:
        if name not in MODALITY_NAMES[1:]:
            raise ConfigError(
                f"config key 'data.modalities' lists {name!r}; auxiliary modalities are {', '.join(MODALITY_NAMES[1:])}"
            )
