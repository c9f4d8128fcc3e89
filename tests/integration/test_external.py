"""External-encoder conditioning (Omni-Video): features of any width in the shards, adapters, training on them."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from data_pipeline.__main__ import main as data_main
from data_pipeline.benchmark import clip_features, load_clips
from data_pipeline.external import add_external, random_features
from data_pipeline.loader import make_loader
from models.external import FeatureAdapter
from unity.inference.loading import load_trained
from unity.inference.pipeline import SamplerSettings, run_task

from mini_run import ENV, ROOT, overrides

SPLITS = ("train", "val", "test")


@pytest.mark.parametrize("width", [16, 40])
@pytest.mark.parametrize("kind", ["linear", "queries"])
def test_adapter_maps_any_width_to_the_text_width(width, kind):
    adapter = FeatureAdapter(width, 64, kind, queries=5, layers=1)
    features, mask = torch.randn(3, 7, width), torch.arange(7).expand(3, 7) < torch.tensor([[7], [3], [1]])
    context, context_mask = adapter(features, mask)
    length = 7 if kind == "linear" else 5
    assert context.shape == (3, length, 64) and context_mask.shape == (3, length)
    if kind == "linear":  # padded positions carry nothing
        assert torch.equal(context_mask, mask) and context[1, 3:].abs().sum() == 0
    else:  # padding does not change the queries' outputs
        shorter, _ = adapter(features[1:2, :3], mask[1:2, :3])
        torch.testing.assert_close(context[1:2], shorter, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=rf"\[B, L, {width}\]"):
        adapter(torch.randn(3, 7, width + 1), mask)


@pytest.fixture(scope="module")
def external_root(tmp_path_factory, finished_run, data_root):
    """The shared run's synthetic splits copied with random 24-wide caption features."""
    root = tmp_path_factory.mktemp("external")
    for split in SPLITS:
        add_external(
            str(data_root / split),
            random_features(str(data_root / split), 24, seed=1),
            str(root / split),
            source="random",
            progress=False,
        )
    return root


def test_loader_pads_the_features_of_a_batch(external_root, data_root, caplog):
    features = random_features(str(data_root / "train"), 24, seed=1)
    loader = make_loader(
        external_root / "train", ["depth"], 4, frames=8, size=32, shuffle_buffer=0, shardshuffle=False, external=True
    )
    batch = next(iter(loader))
    values, mask = batch["external"]
    lengths = [len(features[key]) for key in batch["key"]]
    assert values.shape == (4, max(lengths), 24) and mask.sum(1).tolist() == lengths
    for row, (key, length) in enumerate(zip(batch["key"], lengths)):
        torch.testing.assert_close(values[row, :length], features[key])
        assert values[row, length:].abs().sum() == 0
    # plain shards have no features to read: every sample is skipped, saying why
    assert list(make_loader(data_root / "val", [], 2, frames=8, size=32, external=True)) == []
    assert "no external.safetensors member" in caplog.text


def test_cli_writes_features_and_names_bad_input(tmp_path, data_root, capsys):
    assert data_main(["external", "--data", str(data_root / "val"), "--out", str(tmp_path / "a"), "--random", "8"]) == 0
    listing = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert listing["external"] == {"dim": 8, "source": "random (width 8)"} and listing["samples"] == 2
    assert data_main(["external", "--data", str(data_root / "val"), "--out", str(tmp_path / "a"), "--random", "8"]) == 2
    assert "already holds a dataset.json" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(3)}, str(bad))
    assert (
        data_main(["external", "--data", str(data_root / "val"), "--out", str(tmp_path / "b"), "--features", str(bad)])
        == 2
    )
    assert "[L, W]" in capsys.readouterr().err


def test_training_on_external_features(tmp_path, external_root):
    """A few steps with the queries adapter, then inference that needs the features."""
    extra = {
        "model.text_encoder": "external",
        "model.external_dim": 24,
        "model.external_adapter": "queries",
        "model.external_queries": 4,
        "train.max_steps": 4,
        "checkpoint.save_every": 4,
        "train.eval_every": 4,
    }
    result = subprocess.run(
        [sys.executable, "train.py", *overrides(tmp_path, external_root, **extra), "run.name=ext"],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (tmp_path / "ext" / "metrics.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in lines if "loss" in line]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any(key.startswith("val/loss/") for line in lines for key in line)

    trained = load_trained(tmp_path / "ext", device="cpu")
    assert trained.text.adapter.kind == "queries"
    clips = load_clips(str(external_root / "test"))
    rgb = np.stack([c.videos["rgb"] for c in clips])
    settings = SamplerSettings(steps=1)
    out = run_task(
        trained,
        "estimate",
        "depth",
        [c.caption for c in clips],
        rgb=rgb,
        settings=settings,
        features=clip_features(clips),
    )
    assert out["depth"].shape == rgb.shape
    with pytest.raises(ValueError, match="external-encoder features"):
        run_task(trained, "estimate", "depth", [c.caption for c in clips], rgb=rgb, settings=settings)
