"""The package metadata: PEP 621 in pyproject.toml, lower bounds only with the tested versions pinned in
constraints.txt, the licence, the packages and commands shipped, and Unity's top-level packages resolving to
this distribution rather than to another project's ``models`` or ``eval``."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import unity
from unity_cli.packages import OWN, foreign_packages

tomllib = pytest.importorskip("tomllib")
requirements = pytest.importorskip("packaging.requirements")
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
CUDA_ONLY = {"flash-attn"}  # builds only against CUDA: not pinned from a CPU machine


def all_requirements():
    extras = [r for group in PROJECT["optional-dependencies"].values() for r in group]
    return [requirements.Requirement(r) for r in PROJECT["dependencies"] + extras]


def test_metadata_is_pep_621_with_version_licence_and_classifiers():
    assert not (ROOT / "setup.cfg").exists()  # folded into pyproject.toml
    assert PROJECT["name"] == "unity-video" and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "unity.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", unity.__version__)
    assert f"## [{unity.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
    assert PROJECT["license"] == "Apache-2.0" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert any(c.startswith("Topic :: Scientific/Engineering") for c in PROJECT["classifiers"])
    assert not any(c.startswith("License ::") for c in PROJECT["classifiers"])  # the SPDX expression says it


def test_lower_bounds_the_code_needs_and_no_caps():
    bounds = {r.name: r.specifier for r in all_requirements()}
    for name, version in {"torch": "2.6", "transformers": "4.56", "diffusers": "0.33", "omegaconf": "2.4"}.items():
        assert f">={version}" in str(bounds[name]), (name, bounds[name])
        assert not bounds[name].contains(f"{version[:-1]}{int(version[-1]) - 1}")  # the version below is refused
    for r in all_requirements():  # the policy: lower bounds only, tested versions in constraints.txt
        assert r.specifier and all(s.operator == ">=" for s in r.specifier), r


def test_constraints_pin_every_dependency_inside_its_range():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.strip().lower()] = version.strip()
    for r in all_requirements():
        if r.name in CUDA_ONLY:
            continue
        assert r.name.lower() in pins, f"{r.name} is not pinned in constraints.txt"
        assert r.specifier.contains(pins[r.name.lower()]), (r, pins[r.name.lower()])


def test_the_packages_on_disk_are_the_packages_shipped():
    found = sorted(
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in OWN + ("unity_cli",)
        for p in (ROOT / top).rglob("__init__.py")
    )
    setuptools = PYPROJECT["tool"]["setuptools"]
    assert sorted(setuptools["packages"]) == sorted([*found, "unity.config.shipped"])
    assert setuptools["package-dir"] == {"unity.config.shipped": "configs"}
    scripts = PROJECT["scripts"]
    assert {"unity", "unity-train", "unity-sample", "unity-eval", "unity-data", "unity-convert"} <= set(scripts)
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_models_and_eval_resolve_to_this_distribution():
    for name in OWN:
        assert Path(importlib.import_module(name).__file__).parent == ROOT / name
    assert foreign_packages() == []


def test_another_projects_models_package_is_detected(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")  # e.g. another project's top-level `models`
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    code = "from unity_cli.packages import foreign_packages; print(foreign_packages())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "models (" in result.stdout and "eval" not in result.stdout
    train = "import sys; from unity_cli.train import main; sys.exit(main(['--config', 'tiny']))"  # stops at once
    run = subprocess.run([sys.executable, "-c", train], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2 and "shadowed" in run.stderr and "virtual environment" in run.stderr
