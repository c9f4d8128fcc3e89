"""Sequence parallelism (DeepSpeed-Ulysses, ``parallel.sequence_parallel``) on two CPU ranks (gloo).

One torchrun launch (tests/sequence_parallel_worker.py) checks the sharded UnityDiT against the
single-process one (forward, and gradients summed over the group) and DeepSpeedEngine with
``parallel.sequence_parallel=2`` under ZeRO 0-3 against the plain engine on the same samples. About
30 s on 2 cores, once DeepSpeed's CPU communication op is compiled (the first DeepSpeed run on a
machine compiles it, about 80 s; see tests/integration/test_engine_distributed.py).
"""

import json

import pytest
import torch

from data_pipeline.loader import make_loader
from unity.config import ConfigError, load
from unity.config.validate import check_launch
from unity.train.parallel import data_parallel_rank

from shard_set import write_set
from two_ranks import run_two_ranks

pytestmark = pytest.mark.distributed

STAGES = (0, 1, 2, 3)
VARIANTS = ("dual_width_x", "checkpointing", "token_time_v")


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequence_parallel")
    run_two_ranks("sequence_parallel_worker.py", "--out", str(out), "--stages", ",".join(map(str, STAGES)))
    model = json.loads((out / "model.json").read_text())
    return model, {stage: json.loads((out / f"zero{stage}.json").read_text()) for stage in STAGES}


@pytest.mark.parametrize("variant", VARIANTS)
def test_sharded_forward_and_summed_gradients_equal_one_process(reports, variant):
    for rank, report in enumerate(r[variant] for r in reports[0]):
        assert report["sequence_parallel"] == f"SequenceParallel(rank={rank}, size=2)"
        assert report["forward_difference"] < 1e-5 * max(1.0, report["output_scale"])
        assert report["grad_difference"] < 1e-5 * max(1.0, report["grad_scale"])
        assert report["partial_grads_differ"]  # each rank alone holds only its tokens' part


def test_heads_or_tokens_that_do_not_split_raise(reports):
    for report in reports[0]:
        errors = report["errors"]
        assert "model.heads = 1" in errors["heads"] and "multiple of 2" in errors["heads"]
        assert "tokens per stream (N = 3)" in errors["tokens"]


@pytest.mark.parametrize("stage", STAGES)
def test_zero_steps_with_sequence_parallel_equal_the_plain_engine(reports, stage):
    report = reports[1][stage]
    assert report["moved"] > 1e-4  # the weights did move, by far more than the tolerance
    assert report["max_difference"] < 1e-5, report["worst"]
    for rank in report["ranks"]:
        assert (rank["data_rank"], rank["data_world_size"]) == (0, 1)  # one group: both ranks are data rank 0
        assert rank["losses"] == pytest.approx(report["expected_losses"], rel=1e-5)
        assert rank["grad_norms"] == pytest.approx(report["expected_grad_norms"], rel=1e-5)  # summed, not averaged
    if stage == 3:
        assert report["partitioned_params"] >= 2  # the weights really were sharded


# ---------------------------------------------------------------------------------------------
# Configuration and data-parallel ranks (no launch).


@pytest.mark.parametrize(
    "overrides, phrase",
    [
        (["parallel.sequence_parallel=2"], "needs parallel.engine=deepspeed"),
        (["parallel.engine=deepspeed", "parallel.sequence_parallel=0"], "must be at least 1"),
        (["parallel.engine=deepspeed", "parallel.sequence_parallel=3", "model.heads=4"], "must divide model.heads"),
    ],
)
def test_bad_sequence_parallel_config_names_the_key(overrides, phrase):
    with pytest.raises(ConfigError, match="parallel.sequence_parallel") as error:
        load(overrides=overrides)
    assert phrase in str(error.value)


def test_sequence_parallel_must_divide_the_ranks():
    parallel = load(overrides=["parallel.engine=deepspeed", "parallel.sequence_parallel=2"]).parallel
    check_launch(parallel, 4)
    with pytest.raises(ConfigError, match=r"'parallel.sequence_parallel' \(2\) must divide the number of ranks"):
        check_launch(parallel, 3)


def test_ranks_of_a_group_share_a_data_rank():
    assert [data_parallel_rank(rank, 6, 2) for rank in range(6)] == [(0, 3), (0, 3), (1, 3), (1, 3), (2, 3), (2, 3)]
    assert [data_parallel_rank(rank, 2, 1) for rank in range(2)] == [(0, 2), (1, 2)]


def test_loader_with_a_given_rank_draws_the_same_batches_on_every_process(tmp_path, monkeypatch):
    write_set(tmp_path, 6, shard_size=2)
    monkeypatch.setenv("WORLD_SIZE", "2")

    def keys(process_rank, rank):
        monkeypatch.setenv("RANK", str(process_rank))
        loader = make_loader(
            tmp_path, ["depth"], 2, frames=4, size=16, resampled=True, epoch_samples=6, seed=1, rank=rank
        )
        return [(b["key"], b["rgb"]) for b in loader]

    same = keys(0, 0), keys(1, 0)
    assert [k for k, _ in same[0]] == [k for k, _ in same[1]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(*same))  # the same windows and crops too
    assert [k for k, _ in keys(1, None)] != [k for k, _ in same[0]]  # the process rank otherwise
    with pytest.raises(ValueError, match="rank needs resampled"):
        make_loader(tmp_path, ["depth"], 2, rank=0)
