"""The run configuration: typed sections (``schema``), loading and migration, validation."""

from unity.config.loading import all_keys, load, load_run_config
from unity.config.schema import SCHEMA_VERSION, Config
from unity.config.validate import ConfigError

__all__ = ["SCHEMA_VERSION", "Config", "ConfigError", "all_keys", "load", "load_run_config"]
