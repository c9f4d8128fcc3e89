"""Samples of rgb and k auxiliary streams: the registry at any k, routing of k, subsets and control
dropout, their assembly and conditioning, and the model's stream properties with more than two streams."""

from collections import Counter

import pytest
import torch

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.config.schema import CurriculumStage, RoutingConfig, TaskProbs
from unity.method.conditioning import encode_conditioning
from unity.method.flow_matching import flow_matching_loss, noise_streams
from unity.method.router import Route, TaskRouter
from unity.method.streams import assemble_groups
from unity.method.tasks import noised_streams, subset_masks, task_of

ALL = ("depth", "flow", "seg", "pose", "densepose")


def draws(router, n=3000, step=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [route for _ in range(n // 100) for route in router.draw(step, 100, g)]


def test_the_unityvideo_tasks_keep_their_meaning_at_any_k():
    assert noised_streams("generate", 3) == (True, False, False, False)  # every control -> rgb
    assert noised_streams("estimate", 2) == (False, True, True)  # rgb -> every modality
    assert noised_streams("joint", 2) == (True, True, True)  # text -> everything
    assert [task_of(m) for m in [(True, False), (False, True), (True, True), (True,)]] == [
        "cond",
        "est",
        "joint",
        "t2v",
    ]
    assert subset_masks(1) == []  # at k = 1 the three tasks are every subset
    for k in (2, 3):  # 2^(k+1) - 1 non-empty subsets: the three tasks and the rest
        masks = subset_masks(k)
        assert len(masks) == 2 ** (k + 1) - 4 and len(set(masks)) == len(masks)
        assert all(any(m) and task_of(m) == "subset" for m in masks)
    with pytest.raises(ValueError, match="noises none"):
        task_of((False, False))


def test_default_routing_draws_what_it_drew_before_multistream():
    """aux_streams [1.0], no subsets, no dropout: the same random numbers as the pair-only router used."""
    routing = RoutingConfig(tasks=TaskProbs(cond=0.2, est=0.3, joint=0.5), curriculum=[])
    g, replay = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    routes = TaskRouter(routing, ALL).draw(0, 50, g)
    tasks = torch.multinomial(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64), 50, True, generator=replay)
    mods = torch.multinomial(torch.ones(5, dtype=torch.float64), 50, True, generator=replay)
    expected = [Route(("cond", "est", "joint")[i], ALL[j]) for i, j in zip(tasks.tolist(), mods.tolist())]
    assert routes == expected and torch.equal(g.get_state(), replay.get_state())


def test_k_follows_aux_streams_and_the_modalities_of_a_sample_differ():
    routing = RoutingConfig(curriculum=[], aux_streams=[1.0, 2.0, 1.0], modalities={"pose": 0.0})
    routes = draws(TaskRouter(routing, ALL))
    ks = Counter(len(r.modalities) for r in routes)
    n = len(routes)
    assert sum((ks[k] - n * p) ** 2 / (n * p) for k, p in {1: 0.25, 2: 0.5, 3: 0.25}.items()) < 13.8  # chi², 99.9%
    assert all(len(set(r.modalities)) == len(r.modalities) for r in routes)
    assert not any("pose" in r.modalities for r in routes)  # weight 0 is never drawn, first or later
    assert {r.noised for r in routes if r.task == "cond" and len(r.modalities) == 3} == {(True, False, False, False)}
    assert {r.label for r in routes if len(r.modalities) == 1} <= set(ALL)
    assert Route("est", "depth", extra=("flow", "seg")).label == "depth+flow+seg"
    assert Route("est", "depth", extra=("flow",)).metric_label == "k2"


def test_a_stage_with_fewer_modalities_routes_the_k_it_can_fill():
    routing = RoutingConfig(
        aux_streams=[0.0, 1.0, 1.0],
        curriculum=[CurriculumStage(steps=10, modalities=["depth", "flow"]), CurriculumStage(steps=0)],
    )
    router = TaskRouter(routing, ALL)
    assert {len(r.modalities) for r in draws(router, 500, step=0)} == {2}
    assert {len(r.modalities) for r in draws(router, 500, step=10)} == {2, 3}
    routing.curriculum[0].modalities = ["depth"]  # k = 1 has weight 0: nothing to route
    with pytest.raises(ValueError, match=r"routing.curriculum\[0\] routes 1 modalities"):
        TaskRouter(routing, ALL)


def test_subset_tasks_noise_other_subsets_of_samples_with_several_streams():
    routing = RoutingConfig(curriculum=[], aux_streams=[1.0, 1.0], subset_tasks=0.5)
    routes = draws(TaskRouter(routing, ALL))
    subsets = [r for r in routes if r.task == "subset"]
    several = [r for r in routes if len(r.modalities) == 2]
    assert 0.4 < len(subsets) / len(several) < 0.6
    assert all(len(r.modalities) == 2 and r.noised in subset_masks(2) for r in subsets)
    assert set(Counter(r.noised for r in subsets)) == set(subset_masks(2))  # every subset is drawn


def test_control_dropout_leaves_out_clean_auxiliary_streams_only():
    routing = RoutingConfig(curriculum=[], aux_streams=[1.0, 0.0, 1.0], control_dropout=0.3)
    routes = draws(TaskRouter(routing, ALL), n=4000)
    # est and joint noise every auxiliary stream: never reduced
    assert {len(r.modalities) for r in routes if r.task in ("est", "joint")} == {1, 3}
    cond = Counter(len(r.modalities) for r in routes if r.task == "cond")
    t2v = sum(r.task == "t2v" for r in routes)
    assert cond[2] > 0 and t2v > 0  # three controls, some left out; a lone control left out is text to video
    # a single control goes with probability 0.3; three all with 0.3³: t2v ≈ (0.5·0.3 + 0.5·0.027)·P(cond)
    p_cond = (sum(cond.values()) + t2v) / len(routes)
    assert abs(t2v / len(routes) - p_cond * (0.5 * 0.3 + 0.5 * 0.027)) < 0.02
    assert all(r.noised == (True,) * 1 + (False,) * len(r.modalities) for r in routes if r.task == "cond")
    # a subset keeps its noised streams when its clean one goes: m1 from rgb, m2 -> est of m1
    subset = RoutingConfig(curriculum=[], aux_streams=[0.0, 1.0], subset_tasks=1.0, control_dropout=1.0)
    for route in draws(TaskRouter(subset, ALL), n=300):
        assert route.task in ("cond", "est", "joint", "subset")
        assert all(route.noised[1:]) or route.task == "cond"  # every clean control was left out


def batch(b=4):
    out = {
        name: torch.full((b, 3, 2, 4, 4), float(k)) + torch.arange(b)[:, None, None, None, None] / 10
        for k, name in enumerate(("rgb", *ALL))
    }
    out["caption"] = [f"caption {i}" for i in range(b)]
    out["prompts"] = {name: [f"{name} prompt {i}" for i in range(b)] for name in ALL}
    return out


def test_samples_of_different_stream_counts_form_their_own_groups():
    data = batch()
    routes = [
        Route("cond", "depth", extra=("pose",)),
        Route("est", "flow"),
        Route("t2v", "rgb"),
        Route("subset", "seg", extra=("depth",), mask=(True, False, True)),
    ]
    t2v, pair, two = assemble_groups(data, routes)
    assert (
        t2v["index"] == [2] and t2v["x0"].shape == (1, 1, 3, 2, 4, 4) and torch.equal(t2v["x0"][0, 0], data["rgb"][2])
    )
    assert pair["index"] == [1] and pair["prompts"] == ["flow prompt 1"]
    assert two["index"] == [0, 3] and two["x0"].shape == (2, 3, 3, 2, 4, 4)
    expected = [data["rgb"][3], data["seg"][3], data["depth"][3]]
    assert all(torch.equal(two["x0"][1, s], e) for s, e in enumerate(expected))
    assert two["modality"].tolist() == [[0, 1, 4], [0, 3, 1]]
    assert two["noised"].tolist() == [[True, False, False], [True, False, True]]
    # one prompt per stream; rgb's place repeats the first modality's (rgb attends to the caption)
    assert two["prompts"][0] == ["depth prompt 0", "depth prompt 0", "pose prompt 0"]


def text(texts):
    """A stand-in text encoder: each text as one token whose value is its length."""
    return torch.tensor([[[float(len(t))]] for t in texts]), torch.ones(len(texts), 1, dtype=torch.bool)


def test_per_stream_prompts_are_encoded_stream_by_stream():
    one = encode_conditioning(text, ["c"], ["four"], 3, "cpu")
    per = encode_conditioning(text, ["c"], [["a", "bb", "ccc"]], 3, "cpu")
    assert one["prompt"].shape == per["prompt"].shape == (1, 3, 1, 1)
    assert one["prompt"].flatten().tolist() == [4.0, 4.0, 4.0]
    assert per["prompt"].flatten().tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="need 3 per sample"):
        encode_conditioning(text, ["c"], [["a", "b"]], 3, "cpu")


def small_model(**overrides):
    torch.manual_seed(0)
    config = ModelConfig(hidden=32, depth=2, heads=2, patch=[2, 4, 4], attention="math", prediction="v", **overrides)
    model = UnityDiT(config, in_channels=3, text_dim=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def four_streams(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        x=torch.randn(1, 4, 3, 4, 8, 8, generator=g),
        modality=torch.tensor([[0, 1, 4, 2]]),  # rgb, depth, pose, flow
        t=torch.tensor([[0.6, 0.0, 0.0, 0.3]]),
        caption=torch.randn(1, 5, 16, generator=g),
        caption_mask=torch.ones(1, 5, dtype=torch.bool),
        prompt=torch.randn(1, 4, 3, 16, generator=g),
        prompt_mask=torch.ones(1, 4, 3, dtype=torch.bool),
    )


def test_permuting_four_streams_permutes_the_outputs_in_the_shared_layout():
    model, args = small_model(layout="shared"), four_streams()
    order = torch.tensor([2, 0, 3, 1])
    per_stream = ("x", "modality", "t", "prompt", "prompt_mask")
    permuted = {k: v[:, order] if k in per_stream else v for k, v in args.items()}
    out = model(**args)
    assert torch.allclose(model(**permuted), out[:, order], rtol=1e-5, atol=1e-6)
    # the width layout places streams by their order: permuting them changes the outputs
    width = small_model(layout="width")
    assert not torch.allclose(width(**permuted), width(**args)[:, order], rtol=1e-5, atol=1e-6)


def test_a_clean_stream_never_reaches_the_loss_with_several_streams():
    model, args = small_model(), four_streams()
    noised = args["t"] > 0  # rgb and flow generated, depth and pose given
    g = torch.Generator().manual_seed(1)
    x0, noise = args.pop("x"), torch.randn(1, 4, 3, 4, 8, 8, generator=g)
    x_t, t_streams, target = noise_streams(x0, noised, torch.tensor([0.5]), noise)
    v = model(x_t, args.pop("modality"), t_streams, **{k: a for k, a in args.items() if k != "t"})
    changed = v.detach().clone()
    changed[~noised] = float("nan")  # whatever the model says on clean streams
    assert torch.equal(flow_matching_loss(changed, target, noised), flow_matching_loss(v.detach(), target, noised))
    assert torch.equal(x_t[~noised], x0[~noised]) and torch.equal(t_streams[~noised], torch.zeros(2))


def test_the_summary_says_how_cost_grows_with_the_streams():
    from models.flops import attention_quadratic_flops, forward_flops, tokens_per_stream
    from models.summary import format_table, summarize

    config = ModelConfig()
    grid = (8, 32, 32)
    n, d = tokens_per_stream(config, grid), config.hidden
    linear = config.depth * (2 * 2 * n * d * 3 * d + 2 * 2 * n * d * d)  # qkv and out projections, 2 streams
    pair = forward_flops(config, 3, config.text_dim, grid, 2)
    assert pair["self_attn"] == linear + attention_quadratic_flops(config, grid, 2)
    assert attention_quadratic_flops(config, grid, 6) == 9 * attention_quadratic_flops(config, grid, 2)
    six = summarize(config, frames=8, height=32, width=32, streams=6)
    growth = six["against_two_streams"]
    assert growth["tokens"] == 3 and growth["attention_quadratic"] == 9
    assert 3 < growth["flops_forward"] < 9  # linear parts grow 3x, the quadratic one 9x
    assert "against 2 streams (rgb and one modality): tokens x3.00" in format_table(six)


@pytest.mark.parametrize(
    "override, message",
    [
        ("routing.aux_streams=[]", "positive sum"),
        ("routing.aux_streams=[1,-1]", "non-negative weights"),
        ("routing.aux_streams=[1,1,1,1,1,1]", "routes up to 6 auxiliary streams but data.modalities has 5"),
        ("routing.aux_streams={2: 1.0}", "'routing.aux_streams' expects a list"),
        ("routing.control_dropout=1.5", "'routing.control_dropout' is a probability"),
        ("routing.subset_tasks=-0.1", "'routing.subset_tasks' is a probability"),
    ],
)
def test_bad_multistream_settings_name_the_key(override, message):
    from unity.config import ConfigError, load

    with pytest.raises(ConfigError, match=message):
        load("configs/multistream.yaml", [override])
    assert list(load("configs/multistream.yaml").routing.aux_streams) == [1.0, 1.0, 1.0]
