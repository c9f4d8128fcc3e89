"""benchmarks/gpu_wheels.py install: carried wheels the machine lacks, or has at an older version, are
installed into the target folder without an index, packages the machine has are kept (all replaced with
--replace), and a missing or empty folder or a stray file says what to do."""

import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from mini_run import ROOT

SCRIPT = str(Path(ROOT) / "benchmarks" / "gpu_wheels.py")


def make_wheel(folder: Path, name: str, release: str) -> Path:
    """A minimal pure-Python wheel of package ``name`` whose ``__init__`` holds ``RELEASE``."""
    dist = f"{name}-{release}.dist-info"
    files = {
        f"{name}/__init__.py": f"RELEASE = {release!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {release}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    path = folder / f"{name}-{release}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, text in files.items():
            wheel.writestr(member, text)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture
def wheels(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "unity_carried_probe", "0.1")  # a package this machine lacks
    make_wheel(folder, "pytest", "0.0.1")  # one it has
    return folder


def test_install_adds_what_the_machine_lacks_and_keeps_what_it_has(wheels, tmp_path):
    target = tmp_path / "site"
    result = run("install", "--dir", str(wheels), "--target", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"kept pytest {version('pytest')} of this machine (carried: 0.0.1)" in result.stdout
    assert "installing unity-carried-probe 0.1" in result.stdout
    probe = subprocess.run(
        [sys.executable, "-c", "import unity_carried_probe as p; print(p.RELEASE)"],
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "0.1"
    assert not (target / "pytest").exists()


def test_a_newer_carried_version_replaces_an_older_one(tmp_path):
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "pytest", "999.0")
    result = run("install", "--dir", str(folder), "--target", str(tmp_path / "site"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installing pytest 999.0 over this machine's {version('pytest')}" in result.stdout


def test_replace_installs_every_wheel(wheels, tmp_path):
    target = tmp_path / "site"
    result = run("install", "--dir", str(wheels), "--target", str(target), "--replace")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"installing pytest 0.0.1 over this machine's {version('pytest')}" in result.stdout
    assert (target / "pytest" / "__init__.py").read_text() == "RELEASE = '0.0.1'\n"


def test_a_missing_or_empty_folder_says_how_to_build_it(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        result = run("install", "--dir", str(folder), "--target", str(tmp_path / "site"))
        assert result.returncode == 1
        assert f"python benchmarks/gpu_wheels.py download --dir {folder}" in result.stdout


def test_a_file_that_is_not_a_wheel_is_named(tmp_path):
    (tmp_path / "notes.whl").write_text("")
    result = run("install", "--dir", str(tmp_path), "--target", str(tmp_path / "site"))
    assert result.returncode == 1 and "notes.whl is not a wheel file name" in result.stderr
    assert "Traceback" not in result.stderr
