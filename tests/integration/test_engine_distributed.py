"""DeepSpeedEngine on two CPU ranks (gloo), ZeRO 0-3: data-parallel semantics, consolidation, resume, skips.

One torchrun launch runs every stage (tests/deepspeed_engine_worker.py); each test reads that
stage's report. The first DeepSpeed run on a machine compiles its CPU shared-memory op (about
80 s on 2 cores, cached under ~/.cache/torch_extensions); later runs take about 15 s.
"""

import json
import math

import pytest

from two_ranks import run_two_ranks

pytestmark = pytest.mark.distributed

STAGES = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    out = tmp_path_factory.mktemp("deepspeed")
    run_two_ranks("deepspeed_engine_worker.py", "--out", str(out), "--stages", ",".join(map(str, STAGES)))
    return {stage: json.loads((out / f"zero{stage}.json").read_text()) for stage in STAGES}


@pytest.mark.parametrize("stage", STAGES)
def test_consolidated_weights_equal_one_process_on_the_global_batch(reports, stage):
    report = reports[stage]
    assert report["world_size"] == 2 and report["dtypes"] == ["torch.float32"]
    assert report["max_difference"] < 1e-5  # fp32 reduction order only
    assert report["grad_norms"] == pytest.approx(report["expected_grad_norms"], rel=1e-5)  # averaged, not summed
    assert report["lrs"] == pytest.approx(report["expected_lrs"])
    assert report["skipped"] == [False, False, False]
    if stage == 3:
        assert report["partitioned_params"] >= 2  # the weights really were sharded


@pytest.mark.parametrize("stage", STAGES)
def test_ema_is_consolidated_and_swapped_in_under_every_stage(reports, stage):
    report = reports[stage]
    assert (
        report["ema_max_difference"] < 1e-5
    )  # the same average as one process keeps (gathered from shards under ZeRO-3)
    assert report["ema_forward_difference"] < 1e-5  # forward with the average swapped in = a model loaded with it
    assert report["restored_forward_difference"] < 1e-5  # and the trained weights come back afterwards


@pytest.mark.parametrize("stage", STAGES)
def test_load_state_resumes_to_identical_losses(reports, stage):
    for rank in reports[stage]["ranks"]:
        assert rank["losses_after_load"] == rank["losses_after_save"]


@pytest.mark.parametrize("stage", STAGES)
def test_non_finite_gradients_on_one_rank_skip_the_step_everywhere(reports, stage):
    report = reports[stage]
    assert [rank["poisoned_skipped"] for rank in report["ranks"]] == [True, True]
    assert not any(math.isfinite(rank["poisoned_grad_norm"]) for rank in report["ranks"])
    assert report["poison_changed_weights"] == 0.0
