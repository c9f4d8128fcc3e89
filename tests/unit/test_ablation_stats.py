"""Ablation tables: seeds as mean ± std, "better" only beyond the spread, rgb-task steps, like-with-like columns."""

import json

import pytest

from benchmarks.ablation_stats import (
    COLUMNS,
    column_modalities,
    mean_curve,
    rgb_task_steps,
    run_curves,
    spread_winner,
    table,
)


def run(seed_loss: float, t2v: float | None = None) -> dict:
    val = {"val/loss": seed_loss, **({"val/loss/t2v": t2v} if t2v is not None else {})}
    return {"val": val, "minutes": 1.0}


def test_the_best_mean_is_bold_only_beyond_the_spread():
    assert spread_winner([(1.0, 0.1), (1.5, 0.1), (2.0, 0.3)], higher=False) == 0
    assert spread_winner([(1.0, 0.3), (1.5, 0.3)], higher=False) is None  # the intervals overlap
    assert spread_winner([(0.9, 0.01), (0.8, 0.01), None], higher=True) == 0
    assert spread_winner([(0.9, 0.0), None], higher=True) is None  # nothing to compare with
    clear = {"a": [run(1.0), run(1.1), run(0.9)], "b": [run(2.0), run(2.2), run(1.8)]}
    lines = table(["val/loss"], clear).splitlines()
    assert lines[2].startswith("| a (3 seeds) | **1.0000 ± 0.1000** |") and "**" not in lines[3]
    close = {"a": [run(1.0), run(1.4), run(0.6)], "b": [run(1.2), run(1.6), run(0.8)]}
    assert "**" not in table(["val/loss"], close)


def test_a_column_a_variant_cannot_fill_is_na_not_a_mixed_task():
    variants = {"rgb only": [run(1.0, t2v=0.5)] * 3, "+ depth": [run(1.2, t2v=0.7)] * 3}
    variants["+ depth"][0]["val"]["val/loss/joint_rgb"] = 0.6
    text = table(["val/loss/t2v", "val/loss/joint_rgb"], variants)
    assert "| rgb only (3 seeds) | **0.5000 ± 0.0000** | n/a |" in text
    assert COLUMNS["val/loss/t2v"][0] == "val loss text→video rgb"


def test_rgb_task_steps_count_only_samples_whose_rgb_is_noised(tmp_path):
    records = [
        {"step": 1, "loss": 1.0, "samples/cond": 2, "samples/est": 4, "samples/joint": 2},
        {"step": 2, "loss": 1.0, "samples/est": 8},
        {"step": 2, "val/loss": 0.5, "val/loss/t2v/rgb": 0.9},
        {"step": 3, "loss": 1.0, "samples/t2v": 8},
    ]
    assert rgb_task_steps(records, batch_size=8) == {1: 0.5, 2: 0.5, 3: 1.5}
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    curves = json.loads(json.dumps(run_curves(tmp_path, 8)))  # as summary.json stores them: string keys
    runs = [{"curves": curves}, {"curves": curves}]
    assert mean_curve(runs, "val/loss/t2v/rgb", "step") == [(2, 0.9)]
    assert mean_curve(runs, "val/loss/t2v/rgb", "rgb_steps") == [(0.5, 0.9)]


def test_columns_name_the_modalities_to_evaluate():
    assert column_modalities(["val/loss/t2v", "est.depth.abs_rel", "est.seg.miou", "t2v.static"]) == ["depth", "seg"]
    summary = {"unibench": {"t2v": {"static": {"videos": 8, "static_videos": 2, "value": False}}}}
    assert COLUMNS["t2v.static"][1](summary) == pytest.approx(0.25)
