"""The training metrics logger on resume: metrics.jsonl and TensorBoard both forget the steps after the
checkpoint, read back from the files (TensorBoard's own event reader applies the purge)."""

import json

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from unity.train.metrics import MetricsLogger


def scalars(run_dir, tag="loss"):
    """``[(step, value)]`` of a tag as TensorBoard shows it, from every event file of the run."""
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


def first_run(run_dir, steps):
    logger = MetricsLogger(str(run_dir))
    logger.drop_after(-1)
    for step in steps:
        logger.log(step, {"loss": float(step), "keys": ["a"]})
    logger.close()  # everything written, as a run killed after its events were flushed


def test_a_resumed_run_shows_each_step_once_in_tensorboard_and_jsonl(tmp_path):
    first_run(tmp_path, range(1, 11))
    logger = MetricsLogger(str(tmp_path))
    logger.drop_after(6)  # resumed from the step-6 checkpoint: steps 7-10 are redone
    for step in range(7, 13):
        logger.log(step, {"loss": 100.0 + step})
    logger.close()
    expected = [(s, float(s)) for s in range(1, 7)] + [(s, 100.0 + s) for s in range(7, 13)]
    assert scalars(tmp_path) == expected
    with open(tmp_path / "metrics.jsonl") as f:
        assert [(r["step"], r["loss"]) for r in map(json.loads, f)] == expected


def test_without_the_purge_marker_the_steps_after_the_checkpoint_appear_twice(tmp_path):
    first_run(tmp_path, range(1, 11))
    writer = SummaryWriter(str(tmp_path / "tb"))  # what the logger did before: a plain new writer
    for step in range(7, 13):
        writer.add_scalar("loss", 100.0 + step, step)
    writer.close()
    steps = [step for step, _ in scalars(tmp_path)]
    assert len(steps) == 16 and steps.count(7) == 2


def test_a_fresh_start_in_an_old_run_folder_drops_every_old_record(tmp_path):
    first_run(tmp_path, range(1, 11))
    first_run(tmp_path, range(1, 4))  # train.resume=never in the same folder
    assert scalars(tmp_path) == [(1, 1.0), (2, 2.0), (3, 3.0)]
