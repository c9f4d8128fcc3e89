"""Loading a config: defaults <- YAML file <- ``key=value`` overrides, typed and validated before any work.

An unknown key, a moved key or a value of the wrong type stops :func:`load`, naming the key and what
was expected. :func:`load_run_config` reads a run folder's saved ``config.yaml`` of any schema version.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from typing import Literal, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from unity.config.migrate import migrate, moved_key
from unity.config.presets import config_file
from unity.config.schema import SCHEMA_VERSION, Config
from unity.config.validate import ConfigError, validate


def all_keys(schema=Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, sections included: ``train``, ``train.max_steps``."""
    keys = []
    for f in fields(schema):
        keys.append(f"{prefix}{f.name}")
        if is_dataclass(f.default_factory):
            keys += all_keys(f.default_factory, f"{prefix}{f.name}.")
    return keys


def load(path: str | None = None, overrides: Sequence[str] = ()) -> DictConfig:
    """Defaults, then the YAML at ``path`` (or the shipped config of that name), then ``key=value`` overrides;
    validated and typed."""
    layers = []
    if path is not None:  # a file, or the name of a shipped config (unity/config/presets.py)
        layers.append(OmegaConf.load(config_file(path)))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    layers.append(OmegaConf.from_dotlist(list(overrides)))
    return _merge(layers)


def load_run_config(path: str, overrides: Sequence[str] = ()) -> DictConfig:
    """A run folder's saved ``config.yaml``, migrated from the schema version it was written with."""
    try:
        saved = OmegaConf.to_container(OmegaConf.load(path))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    return _merge([OmegaConf.create(migrate(saved, SCHEMA_VERSION)), OmegaConf.from_dotlist(list(overrides))])


def _merge(layers: list) -> DictConfig:
    config = OmegaConf.structured(Config)
    for layer in layers:
        try:
            config = OmegaConf.merge(config, layer)
        except ConfigKeyError as e:
            raise ConfigError(_unknown_key_message(e.full_key)) from None
        except ValidationError as e:
            raise ConfigError(_type_message(e)) from None
        except OmegaConfBaseException as e:
            raise ConfigError(f"config key '{e.full_key}': {e.msg}") from None
        except TypeError:  # OmegaConf names no key when a list meets a mapping
            raise ConfigError(_container_message(config, layer)) from None
    validate(config)
    return config


def _container_message(config, layer, prefix: str = "") -> str:
    """Name the first key where ``layer`` gives a list for a mapping of the schema, or a mapping for a list."""
    for key in layer:
        if key not in config:
            continue
        have, given = config[key], layer[key]
        kinds = [OmegaConf.is_dict(v) or isinstance(v, dict) for v in (have, given)]
        lists = [OmegaConf.is_list(v) or isinstance(v, list) for v in (have, given)]
        if kinds[0] and kinds[1]:
            found = _container_message(have, given, f"{prefix}{key}.")
            if found:
                return found
        elif (kinds[0] and lists[1]) or (lists[0] and kinds[1]):
            expected = "a mapping {key: value, ...}" if kinds[0] else "a list [value, ...]"
            return f"config key '{prefix}{key}' expects {expected}, got {OmegaConf.to_container(given)}"
    return "" if prefix else "a list was given for a mapping of the schema, or a mapping for a list"


def _unknown_key_message(key: str) -> str:
    new = moved_key(key)
    if new is not None:
        return (
            f"config key '{key}' has moved to '{new}': rename it in your config or command line "
            "(run folders saved before the move are migrated when read)"
        )
    close = difflib.get_close_matches(key, all_keys(), n=3, cutoff=0.6)
    hint = f"; closest valid keys: {', '.join(close)}" if close else "; see unity/config/schema.py for the schema"
    return f"unknown config key '{key}'{hint}"


def _type_message(error: ValidationError) -> str:
    """Name the key and the type (or the choices) the schema declares for it, and what was given."""
    key = error.full_key
    schema, expected = Config, None
    for part in re.split(r"[.\[]", key):
        declared = {f.name: f for f in fields(schema)}.get(part) if is_dataclass(schema) else None
        if declared is None:
            break
        expected = get_type_hints(schema)[part]
        schema = declared.default_factory if callable(declared.default_factory) else None
    if get_origin(expected) is Literal:
        return f"config key '{key}' is {error.value!r}; choose one of {', '.join(map(str, get_args(expected)))}"
    name = getattr(expected, "__name__", None) if get_origin(expected) is None else None
    return f"config key '{key}' expects {name or expected}: {error.msg.splitlines()[0]}"
