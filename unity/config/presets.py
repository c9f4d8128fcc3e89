"""The configs shipped with Unity, addressable by name: ``--config tiny`` is ``configs/tiny.yaml``.

In a checkout they are the repository's ``configs/`` folder; an installed wheel carries the same files
as the package data ``unity.config.shipped``. A name is a path below that folder without ``.yaml``
(``tiny``, ``tiny_long``, ``model/small``); a path to an existing file is taken as it is.
"""

from __future__ import annotations

import os
from pathlib import Path

from unity.config.validate import ConfigError

INSTALLED = Path(__file__).resolve().parent / "shipped"  # the wheel's copy of configs/ (package data)
CHECKOUT = Path(__file__).resolve().parents[2] / "configs"  # configs/ beside the package in a checkout


def presets_folder() -> Path | None:
    """The folder of shipped configs: the installed package data, else the checkout's configs/."""
    for folder in (INSTALLED, CHECKOUT):
        if folder.is_dir():
            return folder
    return None


def shipped_configs() -> list[str]:
    """The names of the shipped configs (``tiny``, ``model/small``, ...), sorted."""
    folder = presets_folder()
    if folder is None:
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def config_file(name_or_path: str) -> str:
    """The YAML file ``name_or_path`` names: an existing file, else a shipped config of that name."""
    if os.path.isfile(name_or_path):
        return name_or_path
    folder = presets_folder()
    name = name_or_path.removesuffix(".yaml").removeprefix("configs/")
    if folder is not None and (folder / f"{name}.yaml").is_file():
        return str(folder / f"{name}.yaml")
    runs = [name for name in shipped_configs() if "/" not in name]
    raise ConfigError(
        f"config {name_or_path!r} does not exist: it is neither a file nor a shipped config "
        f"(shipped run configs: {', '.join(runs)}; model sizes as model/<size>)"
    )
