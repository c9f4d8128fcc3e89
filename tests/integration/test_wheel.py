"""The wheel: built from the checkout, installed into a fresh virtual environment outside it, its
`unity-train` trains and evaluates a run with a shipped config named on the command line."""

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from mini_run import ROOT

SOURCES = ["pyproject.toml", "README.md", "LICENSE", "unity", "unity_cli", "models", "data_pipeline", "eval", "configs"]
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc")
TINY = [  # a two-step run of the shipped tiny config on a handful of clips
    "train.max_steps=2",
    "data.synth.train_clips=4",
    "data.synth.val_clips=2",
    "data.synth.test_clips=2",
    "data.synth.shard_size=4",
    "data.batch_size=2",
    "data.num_workers=0",
    "data.shuffle_buffer=4",
    "model.depth=1",
    "train.eval_every=2",
    "checkpoint.save_every=2",
    "eval.clips=2",
]


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_the_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    source.mkdir()
    for name in SOURCES:
        if (Path(ROOT) / name).is_dir():
            shutil.copytree(Path(ROOT) / name, source / name, ignore=IGNORED)
        else:
            shutil.copy(Path(ROOT) / name, source / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)])
    (wheel,) = wheels.glob("unity_video-*.whl")
    # the dependencies (torch, ...) come from this environment: nothing is downloaded
    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)
    bin_dir = tmp_path / "venv" / ("Scripts" if os.name == "nt" else "bin")
    run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])

    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    where = run(
        [
            str(bin_dir / "python"),
            "-c",
            "import json, importlib, importlib.metadata as m; names = ['unity', 'unity_cli', 'models', 'eval', "
            "'data_pipeline']; print(json.dumps({'files': {n: importlib.import_module(n).__file__ for n in names}, "
            "'dists': {n: m.packages_distributions().get(n) for n in names}}))",
        ],
        cwd=work,
        env=env,
    )
    found = json.loads(where.stdout)
    for name, path in found["files"].items():  # the installed copies, not the checkout's
        assert str(tmp_path / "venv") in path and not path.startswith(ROOT), (name, path)
        assert set(found["dists"][name]) == {"unity-video"}, (name, found["dists"][name])  # no other provider

    result = run([str(bin_dir / "unity-train"), "--config", "tiny", *TINY], cwd=work, env=env)
    assert "depth estimation" in result.stdout
    results = json.loads((work / "runs" / "tiny" / "eval" / "results.json").read_text())
    assert results["steps"] == 2 and (work / "data" / "synth-8x32" / "train" / "dataset.json").is_file()
    assert run([str(bin_dir / "unity"), "--version"], cwd=work, env=env).stdout.strip()
    help_text = run([str(bin_dir / "unity-sample"), "--help"], cwd=work, env=env).stdout
    assert "--task" in help_text
