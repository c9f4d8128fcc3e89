"""Every check of a config's values beyond their types, in one place.

:func:`validate` runs on every load; :func:`check_launch` when the engine knows how many ranks started.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from data_pipeline.modalities import NAMES as MODALITY_NAMES


class ConfigError(ValueError):
    """A configuration that cannot be used, with the key at fault and what was expected."""


def validate(config: DictConfig) -> None:
    """Raise ConfigError naming the first key whose value cannot work."""
    if config.lora.enabled and not config.train.init_from:
        raise ConfigError(
            "config key 'lora.enabled' needs 'train.init_from' (the run or checkpoint the adapters "
            "are trained on), e.g. train.init_from=runs/tiny"
        )
    try:
        OmegaConf.to_object(config.model).validate()
    except ValueError as e:
        raise ConfigError(f"config key {e}") from None
    if config.optim.new_param_lr_mult <= 0:
        mult = config.optim.new_param_lr_mult
        raise ConfigError(f"config key 'optim.new_param_lr_mult' must be positive (1 = no boost), got {mult}")
    _check_sequence_parallel(config)
    _check_modalities(config)
    _check_routing(config.routing)
    _check_aux_streams(config)
    if config.checkpoint.keep_last < 0:
        raise ConfigError(
            f"config key 'checkpoint.keep_last' must be 0 (keep all) or more, got {config.checkpoint.keep_last}"
        )
    _check_checkpoint_and_ema(config)


def _check_modalities(config: DictConfig) -> None:
    auxiliary = MODALITY_NAMES[1:]
    named = [("data.modalities", name) for name in config.data.modalities]
    named += [("routing.modalities", name) for name in config.routing.modalities]
    named += [
        (f"routing.curriculum[{i}].modalities", name)
        for i, stage in enumerate(config.routing.curriculum)
        for name in stage.modalities
    ]
    for key, name in named:
        if name not in auxiliary:
            raise ConfigError(f"config key '{key}' lists {name!r}; auxiliary modalities are {', '.join(auxiliary)}")


def _check_routing(routing: DictConfig) -> None:
    probs = [("routing.tasks", routing.tasks)]
    probs += [(f"routing.curriculum[{i}].tasks", stage.tasks) for i, stage in enumerate(routing.curriculum)]
    for key, tasks in probs:
        values = list(tasks.values())
        if min(values) < 0 or sum(values) <= 0:
            raise ConfigError(
                f"config key '{key}' needs non-negative probabilities with a positive sum, got {dict(tasks)}"
            )
    for i, stage in enumerate(routing.curriculum):
        if stage.steps < 0:
            raise ConfigError(f"config key 'routing.curriculum[{i}].steps' must be non-negative, got {stage.steps}")


def _check_checkpoint_and_ema(config: DictConfig) -> None:
    checkpoint, ema = config.checkpoint, config.ema
    if checkpoint.save_every < 1:
        raise ConfigError(f"config key 'checkpoint.save_every' must be at least 1, got {checkpoint.save_every}")
    if checkpoint.consolidate_every < 0:
        raise ConfigError(
            "config key 'checkpoint.consolidate_every' must be 0 (only the first and last checkpoints) or more, "
            f"got {checkpoint.consolidate_every}"
        )
    if not 0 <= ema.decay < 1:
        raise ConfigError(f"config key 'ema.decay' must be in [0, 1) (0 disables the EMA), got {ema.decay}")
    for key in ("warmup_power", "warmup_inv_gamma"):
        if ema[key] <= 0:
            raise ConfigError(f"config key 'ema.{key}' must be positive, got {ema[key]}")


def _check_aux_streams(config: DictConfig) -> None:
    """``routing.aux_streams``: weights of k = 1, 2, ... the data can fill; the routing probabilities in [0, 1]."""
    routing, weights = config.routing, list(config.routing.aux_streams)
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(
            "config key 'routing.aux_streams' needs non-negative weights of k = 1, 2, ... auxiliary streams "
            f"with a positive sum (e.g. [1.0] for one, [1, 1, 1] for one to three), got {weights}"
        )
    largest = max(k for k, weight in enumerate(weights, 1) if weight > 0)
    available = len(config.data.modalities)
    if available and largest > available:
        raise ConfigError(
            f"config key 'routing.aux_streams' ({weights}) routes up to {largest} auxiliary streams but "
            f"data.modalities has {available} ({list(config.data.modalities)}): give k > {available} weight 0 "
            "or load more modalities"
        )
    for key in ("subset_tasks", "control_dropout"):
        if not 0 <= routing[key] <= 1:
            raise ConfigError(f"config key 'routing.{key}' is a probability in [0, 1], got {routing[key]}")


def _check_sequence_parallel(config: DictConfig) -> None:
    """``parallel.sequence_parallel``: at least 1; above 1 only on DeepSpeed, with heads it divides."""
    size, parallel = config.parallel.sequence_parallel, config.parallel
    key = f"config key 'parallel.sequence_parallel' ({size})"
    if size < 1:
        raise ConfigError(f"{key} must be at least 1")
    if size > 1 and parallel.engine != "deepspeed":
        raise ConfigError(f"{key} needs parallel.engine=deepspeed, got {parallel.engine!r}")
    if config.model.heads % size:
        raise ConfigError(f"{key} must divide model.heads ({config.model.heads}): Ulysses splits the heads")


def check_launch(parallel, world_size: int) -> None:
    """Raise ConfigError when the ranks launched do not fit ``parallel``: one for the plain engine, a
    multiple of ``parallel.sequence_parallel`` for DeepSpeed."""
    if parallel.engine == "plain" and world_size > 1:
        raise ConfigError(
            f"parallel.engine=plain runs one process but {world_size} were launched; set parallel.engine=deepspeed"
        )
    if world_size % parallel.sequence_parallel:
        raise ConfigError(
            f"config key 'parallel.sequence_parallel' ({parallel.sequence_parallel}) must divide the "
            f"number of ranks launched ({world_size})"
        )
