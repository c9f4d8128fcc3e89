"""Every reader of shards outside the loader (``check``, the evaluation's clips and mean-map prior,
precompute) goes through one tolerant path: a truncated tar gives the samples before the damage, and
the damage is counted and logged, never raised."""

import logging

import numpy as np
import pytest

from data_pipeline.benchmark import load_clips, training_prior
from data_pipeline.check import Skips, check_dataset, iter_samples

from shard_set import clip, write_set


@pytest.fixture
def damaged(tmp_path):
    """Two shards of three samples; the second cut inside its second sample."""
    write_set(tmp_path, 6, 3)
    path = tmp_path / "shard-000001.tar"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return tmp_path


def test_iter_samples_yields_what_precedes_the_damage_and_counts_it(damaged, caplog):
    skips = Skips()
    with caplog.at_level(logging.WARNING):
        keys = [key for key, _ in iter_samples(str(damaged / "shard-000001.tar"), skips)]
    assert keys == ["s003"]  # the sample the cut went through is left out whole
    assert skips.count == 1 and "unreadable tar after 1 sample(s)" in skips.entries[0][1]
    assert "skipped the rest of" in caplog.text
    assert [key for key, _ in iter_samples(str(damaged / "shard-000000.tar"), skips)] == ["s000", "s001", "s002"]
    assert skips.count == 1  # an intact shard adds nothing


def test_check_reports_the_damage_as_a_problem(damaged):
    report = check_dataset(str(damaged), progress=False)
    assert report.samples == 4
    assert any(shard == "shard-000001.tar" and "unreadable tar" in why for shard, _, why in report.bad)


def test_evaluation_readers_skip_and_count(damaged):
    skips = Skips()
    clips = load_clips(str(damaged), need_gt=False, skips=skips)
    assert [c.key for c in clips] == ["s000", "s001", "s002", "s003"] and skips.count == 1
    prior = training_prior(str(damaged), "depth", skips=skips)
    expected = np.mean([clip(i, "depth").astype(float) for i in range(4)], axis=0)
    assert np.abs(prior - expected).max() <= 0.5  # the mean of the readable clips
    assert skips.count == 2


def test_a_sample_missing_a_member_is_skipped_not_fatal(tmp_path):
    from shard_set import sample

    broken = sample(1)
    del broken["depth.mkv"]
    broken["json"]["modalities"] = ["rgb", "seg"]  # a valid sample that lacks the depth stream
    write_set(tmp_path, 3, 3, bad={1: broken})
    skips = Skips()
    prior = training_prior(str(tmp_path), "depth", skips=skips)
    assert prior.shape == clip(0, "depth").shape and skips.count == 1 and "KeyError" in skips.entries[0][1]
