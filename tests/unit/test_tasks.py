"""The task router (frequencies, curriculum stages, availability) and the assembly of routed streams."""

from collections import Counter

import pytest
import torch

from unity.config import load
from unity.config.schema import CurriculumStage, RoutingConfig, TaskProbs
from unity.method.router import Route, TaskRouter
from unity.method.streams import assemble, assemble_groups

ALL = ("depth", "flow", "seg", "pose", "densepose")


def draws(router, n=4000, step=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [route for _ in range(n // 100) for route in router.draw(step, 100, g)]


def chi_square(counts: Counter, probs: dict) -> float:
    n = sum(counts.values())
    return sum((counts[k] - n * p) ** 2 / (n * p) for k, p in probs.items())


def test_frequencies_follow_task_probabilities_and_modality_weights():
    train = RoutingConfig(
        tasks=TaskProbs(cond=0.2, est=0.3, joint=0.5),
        curriculum=[],
        modalities={"depth": 2.0, "flow": 1.0, "pose": 0.0},
    )  # seg, densepose missing: 1.0
    routes = draws(TaskRouter(train, ["depth", "flow", "seg", "pose"]))
    tasks = Counter(r.task for r in routes)
    modalities = Counter(r.modality for r in routes)
    assert set(tasks) == {"cond", "est", "joint"} and set(modalities) == {"depth", "flow", "seg"}  # pose weighs 0
    # 99.9 % quantiles of chi-square with 2 degrees of freedom: 13.8
    assert chi_square(tasks, {"cond": 0.2, "est": 0.3, "joint": 0.5}) < 13.8
    assert chi_square(modalities, {"depth": 0.5, "flow": 0.25, "seg": 0.25}) < 13.8


def test_zero_probability_tasks_are_never_drawn():
    train = RoutingConfig(tasks=TaskProbs(cond=0.0, est=1.0, joint=3.0), curriculum=[])
    tasks = Counter(r.task for r in draws(TaskRouter(train, ALL)))
    assert tasks["cond"] == 0 and tasks["est"] > 800 and tasks["joint"] > 2800


def test_draws_are_deterministic_for_a_generator_state():
    router = TaskRouter(RoutingConfig(curriculum=[]), ALL)
    assert draws(router, seed=3) == draws(router, seed=3)
    assert draws(router, seed=3) != draws(router, seed=4)


def test_curriculum_stages_run_in_order_for_their_steps():
    train = RoutingConfig(
        curriculum=[
            CurriculumStage(steps=10, modalities=["depth", "flow"]),
            CurriculumStage(steps=5, modalities=["seg"], tasks=TaskProbs(cond=0, est=1, joint=0)),
            CurriculumStage(steps=0, modalities=[]),  # no modalities listed: all available ones
        ]
    )
    router = TaskRouter(train, ALL)
    assert [router.stage_at(step).index for step in (0, 9, 10, 14, 15, 10**9)] == [0, 0, 1, 1, 2, 2]
    index, modalities, tasks = router.stage_at(12)
    assert (index, modalities) == (1, ("seg",)) and tasks == {"cond": 0, "est": 1, "joint": 0, "sentence": 0}
    assert router.stage_at(0).tasks == {"cond": 0.25, "est": 0.25, "joint": 0.5, "sentence": 0.0}
    assert {r.modality for r in draws(router, 1000, step=9)} == {"depth", "flow"}
    assert set(draws(router, 1000, step=10)) == {Route("est", "seg")}
    assert {r.modality for r in draws(router, 1000, step=15)} == set(ALL)


def test_a_stage_of_zero_steps_and_the_last_stage_last_to_the_end():
    first = TaskRouter(
        RoutingConfig(
            curriculum=[CurriculumStage(steps=0, modalities=["depth"]), CurriculumStage(steps=5, modalities=["flow"])]
        ),
        ALL,
    )
    assert first.stage_at(10**6).modalities == ("depth",)
    last = TaskRouter(
        RoutingConfig(
            curriculum=[CurriculumStage(steps=3, modalities=["depth"]), CurriculumStage(steps=5, modalities=["flow"])]
        ),
        ALL,
    )
    assert last.stage_at(2).index == 0 and last.stage_at(3).index == last.stage_at(10**6).index == 1


def test_the_default_config_routes_pixel_aligned_modalities_first():
    router = TaskRouter(load().routing, ALL)  # a DictConfig, as the trainer passes it
    assert router.stage_at(0).modalities == ("depth", "flow", "densepose")
    assert router.stage_at(300).modalities == ALL


def test_unavailable_modalities_are_skipped_and_a_stage_without_any_is_an_error():
    train = RoutingConfig(
        curriculum=[
            CurriculumStage(steps=10, modalities=["depth", "seg"]),
            CurriculumStage(steps=0, modalities=["seg", "pose"]),
        ]
    )
    with pytest.raises(ValueError, match=r"routing.curriculum\[1\] routes modalities \['seg', 'pose'\]"):
        TaskRouter(train, ["depth", "flow"])
    train.curriculum[1].modalities = ["flow"]
    router = TaskRouter(train, ["depth", "flow"])
    assert router.stage_at(0).modalities == ("depth",)
    with pytest.raises(ValueError, match="not auxiliary modalities"):
        TaskRouter(train, ["rgb", "depth"])


def test_sentences_are_routed_in_both_directions():
    router = TaskRouter(RoutingConfig(tasks=TaskProbs(cond=0, est=1, joint=0, sentence=1), curriculum=[]), ALL)
    routes = draws(router, n=2000)
    sentences = [r for r in routes if r.task == "sentence"]
    assert 800 < len(sentences) < 1200
    assert 300 < sum(r.reverse for r in sentences) < 700  # routing.sentence_reverse = 0.5
    assert not any(r.reverse for r in routes if r.task != "sentence")
    assert not any(r.image_context for r in routes)  # routing.sentence_image_context = 0 by default

    mixed = RoutingConfig(
        tasks=TaskProbs(cond=0, est=1, joint=0, sentence=1), curriculum=[], sentence_image_context=0.25
    )
    routes = draws(TaskRouter(mixed, ALL), n=2000)
    assert 150 < sum(r.image_context for r in routes if r.task == "sentence") < 350
    assert not any(r.image_context for r in routes if r.task != "sentence")


def batch(b=4):
    """A loader batch whose every element tells its stream and sample apart."""
    out = {
        name: torch.full((b, 3, 2, 4, 4), float(k)) + torch.arange(b)[:, None, None, None, None] / 10
        for k, name in enumerate(("rgb", "depth", "flow", "seg"))
    }
    out["caption"] = [f"caption {i}" for i in range(b)]
    out["prompts"] = {name: [f"{name} prompt {i}" for i in range(b)] for name in ("depth", "flow", "seg")}
    return out


def test_assemble_picks_the_routed_stream_and_marks_the_noised_ones():
    data = batch()
    routes = [Route("cond", "depth"), Route("est", "flow"), Route("joint", "seg"), Route("est", "depth")]
    out = assemble(data, routes)
    assert out["x0"].shape == (4, 2, 3, 2, 4, 4)
    assert torch.equal(out["x0"][:, 0], data["rgb"])
    for i, route in enumerate(routes):
        assert torch.equal(out["x0"][i, 1], data[route.modality][i])
    assert out["modality"].tolist() == [[0, 1], [0, 2], [0, 3], [0, 1]] and out["modality"].dtype == torch.long
    assert out["noised"].tolist() == [[True, False], [False, True], [True, True], [False, True]]
    assert out["prompts"] == ["depth prompt 0", "flow prompt 1", "seg prompt 2", "depth prompt 3"]


def test_assemble_reads_precomputed_latents_and_prompt_embeddings():
    data = batch(2)
    data = {
        "latent": {name: data[name][:, :2] for name in ("rgb", "depth", "flow")},  # [B, C=2, ...]
        "text": {
            "prompt": {"depth": torch.ones(2, 3, 5), "flow": 2 * torch.ones(2, 4, 5)},  # [B, Lp, D]
            "prompt_mask": {"depth": torch.ones(2, 3).bool(), "flow": torch.ones(2, 4).bool()},
        },
        "prompts": data["prompts"],
    }
    out = assemble(data, [Route("est", "depth"), Route("joint", "flow")])
    assert out["x0"].shape == (2, 2, 2, 2, 4, 4)
    assert torch.equal(out["x0"][1, 1], data["latent"]["flow"][1])
    assert out["prompt"].shape == (2, 4, 5)  # padded to the longest routed prompt
    assert out["prompt_mask"].tolist() == [[True, True, True, False], [True, True, True, True]]
    assert torch.equal(out["prompt"][0, :3], torch.ones(3, 5)) and torch.equal(out["prompt"][0, 3], torch.zeros(5))
    assert torch.equal(out["prompt"][1], 2 * torch.ones(4, 5))


def test_without_auxiliary_modalities_every_route_is_text_to_video_on_one_stream():
    router = TaskRouter(RoutingConfig(), available=[])
    routes = router.draw(0, 3, torch.Generator().manual_seed(0))
    assert routes == [Route("t2v", "rgb")] * 3 and router.stage_at(10).tasks == {"t2v": 1.0}
    data = batch(3)
    out = assemble(data, routes)
    assert out["x0"].shape == (3, 1, 3, 2, 4, 4) and torch.equal(out["x0"][:, 0], data["rgb"])
    assert out["modality"].tolist() == [[0]] * 3 and out["noised"].tolist() == [[True]] * 3
    with pytest.raises(ValueError, match="cannot mix text-to-video"):
        assemble(data, [Route("t2v", "rgb"), Route("est", "depth"), Route("est", "depth")])


def test_sentences_pair_each_sample_with_the_next_and_form_their_own_group():
    data = batch()
    routes = [Route("cond", "depth"), Route("sentence", "depth"), Route("est", "flow"), Route("sentence", "seg", True)]
    pair, sentence = assemble_groups(data, routes)
    assert pair["index"] == [0, 2] and pair["x0"].shape == (2, 2, 3, 2, 4, 4) and pair["layout"] is None
    assert sentence["index"] == [1, 3] and sentence["x0"].shape == (2, 4, 3, 2, 4, 4) and sentence["layout"] == "time"
    # sample 1 estimates depth with sample 2 as its example: A = rgb2, A' = depth2, B = rgb1, B' = depth1
    expected = [data["rgb"][2], data["depth"][2], data["rgb"][1], data["depth"][1]]
    assert all(torch.equal(sentence["x0"][0, k], e) for k, e in enumerate(expected))
    # sample 3 is reversed (seg -> video) with sample 0 as its example
    expected = [data["seg"][0], data["rgb"][0], data["seg"][3], data["rgb"][3]]
    assert all(torch.equal(sentence["x0"][1, k], e) for k, e in enumerate(expected))
    assert sentence["modality"].tolist() == [[0, 1, 0, 1], [3, 0, 3, 0]]
    assert sentence["noised"].tolist() == [[False, False, False, True]] * 2
    assert sentence["prompts"] == ["depth prompt 1", "seg prompt 3"]
    with pytest.raises(ValueError, match="at least 2 samples"):
        assemble_groups(batch(1), [Route("sentence", "depth")])
    # image context: the example pair is sample 2's first frame held still, B and B' stay videos
    data["rgb"][2, :, 1] += 5
    [image] = assemble_groups(
        data,
        [
            Route("est", "depth"),
            Route("sentence", "depth", image_context=True),
            Route("est", "depth"),
            Route("est", "depth"),
        ],
    )[1:]
    a = image["x0"][0, 0]  # [C, T, H, W]
    assert torch.equal(a[:, 1], data["rgb"][2, :, 0]) and not torch.equal(a[:, 1], data["rgb"][2, :, 1])
    assert torch.equal(image["x0"][0, 2], data["rgb"][1])
    with pytest.raises(ValueError, match="different stream counts"):
        assemble(data, routes)
