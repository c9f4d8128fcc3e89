"""Wheels of the Python packages that a bare PyTorch GPU machine lacks, carried there with the checkout.

    python benchmarks/gpu_wheels.py download [--dir .wheels] [--python-version 3.12] [--also NAME ...]
    python benchmarks/gpu_wheels.py install --dir .wheels --target DIR [--replace]

``download`` (on a machine that reaches PyPI) saves into ``--dir`` one wheel per package of
:data:`PACKAGES` (plus ``--also``), each at the version installed here, the one the tests ran with
(unpinned when it is not installed here). Pure-Python wheels fit any machine; compiled ones
(pydantic-core) are fetched for CPython ``--python-version`` on x86-64 manylinux; a package that
PyPI only has as source (deepspeed) is built into a pure-Python wheel here, its CUDA ops left to be
compiled when first used. ``install`` (on the GPU machine, no network) installs into ``--target``
every wheel whose package the machine lacks or has at an older version (``--replace``: all of them),
without dependencies and without an index; put ``--target`` first on ``PYTHONPATH`` afterwards.
``benchmarks/gpu_check.sh --wheels DIR`` runs ``install`` itself.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.version import InvalidVersion, Version

# The project's dependencies a plain PyTorch image does not ship (DeepSpeed, the config, the shards,
# the diffusers codec and Wan import, LoRA), with those of their own dependencies such images lack
# (typing-extensions: pydantic needs a recent one). Training there also needs av (--also av, 36 MiB).
PACKAGES = (
    "deepspeed",
    "hjson",
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "omegaconf",
    "antlr4-python3-runtime",
    "webdataset",
    "braceexpand",
    "typing-extensions",
    "diffusers",
    "peft",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")


def canonical(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-``, ``_``, ``.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def local_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def wheel_name(path: Path) -> tuple[str, str]:
    """(canonical distribution name, version) from a wheel's file name."""
    parts = path.name.split("-")
    if len(parts) < 5 or not path.name.endswith(".whl"):
        raise ValueError(
            f"{path} is not a wheel file name (name-version-python-abi-platform.whl): remove it from the folder"
        )
    return canonical(parts[0]), parts[1]


def older(present: str, carried: str) -> bool:
    """Whether the machine's version is older than the carried one (unparsable versions: not older)."""
    try:
        return Version(present) < Version(carried)
    except InvalidVersion:
        return False


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download(folder: Path, names: list[str], python_version: str) -> int:
    """Save one wheel per package into ``folder``; returns the number that could not be had."""
    folder.mkdir(parents=True, exist_ok=True)
    target = ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:"]
    target += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    failed = 0
    for name in names:
        version = local_version(name)
        requirement = f"{name}=={version}" if version else name
        done = pip("download", "--no-deps", "--dest", str(folder), *target, requirement)
        how = "downloaded"
        if done.returncode != 0:  # only a source distribution: build a wheel of it here
            with tempfile.TemporaryDirectory() as build:
                done = pip("wheel", "--no-deps", "--wheel-dir", build, requirement)
                built = list(Path(build).glob("*.whl"))
                pure = [w for w in built if w.name.endswith("-none-any.whl")]
                if done.returncode == 0 and not pure:
                    done.returncode, done.stderr = 1, f"the wheel built here is not pure Python: {built[0].name}"
                for wheel in pure:
                    wheel.replace(folder / wheel.name)
            how = "built"
        if done.returncode != 0:
            failed += 1
            print(f"FAILED {requirement}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}")
        else:
            print(f"{how} {requirement}")
    names_found = [wheel_name(w)[0] for w in folder.glob("*.whl")]
    for name in sorted({n for n in names_found if names_found.count(n) > 1}):
        print(f"FAILED: {folder} holds several wheels of {name}; keep one (two versions cannot be installed)")
        failed += 1
    size = sum(w.stat().st_size for w in folder.glob("*.whl")) / 2**20
    print(f"{len(list(folder.glob('*.whl')))} wheels in {folder} ({size:.1f} MiB)")
    return failed


def install(folder: Path, target: Path, replace: bool) -> int:
    """Install the wheels of ``folder`` the machine lacks into ``target``; returns pip's exit status."""
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        print(f"no wheels in {folder}: build them with `python benchmarks/gpu_wheels.py download --dir {folder}`")
        return 1
    chosen = []
    for wheel in wheels:
        name, version = wheel_name(wheel)
        present = local_version(name)
        if present and not replace and not older(present, version):
            print(f"kept {name} {present} of this machine (carried: {version})")
        else:
            chosen.append(wheel)
            print(f"installing {name} {version}" + (f" over this machine's {present}" if present else ""))
    if not chosen:
        return 0
    target.mkdir(parents=True, exist_ok=True)
    done = pip(
        "install", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target),
        *map(str, chosen),
    )  # fmt: skip
    print(done.stdout[-2000:] + done.stderr[-4000:], end="")
    return done.returncode


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="save the wheels into --dir (needs PyPI)")
    d.add_argument("--dir", default=".wheels", help="the wheel folder (default .wheels, ignored by git)")
    d.add_argument("--python-version", default="3.12", help="CPython version of the GPU machine (compiled wheels)")
    d.add_argument("--also", nargs="*", default=[], help="more packages to carry")
    i = sub.add_parser("install", help="install the wheels of --dir the machine lacks into --target")
    i.add_argument("--dir", default=".wheels")
    i.add_argument("--target", required=True, help="a folder to put first on PYTHONPATH")
    i.add_argument("--replace", action="store_true", help="install every wheel, also over packages present")
    args = p.parse_args(argv)
    if args.command == "download":
        names = list(dict.fromkeys([*PACKAGES, *args.also]))
        return 1 if download(Path(args.dir), names, args.python_version) else 0
    if not Path(args.dir).is_dir():
        print(f"{args.dir} is not a folder: build it with `python benchmarks/gpu_wheels.py download --dir {args.dir}`")
        return 1
    try:
        return install(Path(args.dir), Path(args.target), args.replace)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
