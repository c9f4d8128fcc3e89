"""The plain engine: decay groups, LR schedule, accumulation, clipping, non-finite skips, exact resume."""

import math

import pytest
import torch
from torch import nn

from unity.config import load
from unity.train.engine import PlainEngine, build_engine, clip_grads, decay_split
from unity.train.schedule import lr_factor


def config(**knobs):
    """A run config with these knobs, each found in the section that holds it (optim.lr, schedule.kind, ...)."""
    sections = {
        "lr": "optim",
        "weight_decay": "optim",
        "grad_clip": "optim",
        "warmup_steps": "schedule",
        "schedule": "schedule.kind",
        "min_lr_ratio": "schedule",
    }
    keys = {name: sections.get(name, "train") for name in knobs}
    return load(
        overrides=[
            f"{key if '.' in key else key + '.' + name}={value}"
            for (name, value), key in zip(knobs.items(), keys.values())
        ]
    )


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 3))


def batch(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randn(n, 3, generator=g)


def loss_on(engine, x, y):
    with engine.dtype_context():
        return nn.functional.mse_loss(engine.module(x), y)


def train_steps(engine, seeds, micro_batches=1):
    """One optimizer step per seed, its batch cut into ``micro_batches``; returns the step results."""
    results = []
    for seed in seeds:
        x, y = batch(seed)
        for xs, ys in zip(x.chunk(micro_batches), y.chunk(micro_batches)):
            engine.backward(loss_on(engine, xs, ys))
            results.append(engine.step())
    return results


def test_decay_split_names_what_is_not_decayed():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = nn.Sequential(nn.Linear(4, 8))
            self.pos_embed = nn.Parameter(torch.zeros(16, 8))
            self.tokens = nn.Embedding(10, 8)
            self.norm = nn.LayerNorm(8)
            self.table = nn.Parameter(torch.zeros(6, 8))
            self.head = nn.Linear(8, 2)
            self.frozen = nn.Linear(8, 8).requires_grad_(False)
            self.unembed = nn.Linear(8, 10, bias=False)
            self.unembed.weight = self.tokens.weight  # tied: counted once, as the embedding

    decay, no_decay = decay_split(Net())
    assert sorted(decay) == ["head.weight", "patch_embed.0.weight", "table"]
    assert sorted(no_decay) == [
        "head.bias",
        "norm.bias",
        "norm.weight",
        "patch_embed.0.bias",
        "pos_embed",
        "tokens.weight",
    ]


def test_optimizer_groups_carry_the_decay():
    engine = PlainEngine(mlp(), config(weight_decay=0.05))
    groups = {g["weight_decay"]: len(g["params"]) for g in engine.optimizer.param_groups}
    assert groups == {0.05: 2, 0.0: 4}  # two weight matrices; two biases, the norm's gain and shift


def test_lr_schedule_warmup_constant_and_cosine_floor():
    common = dict(warmup_steps=4, max_steps=14, min_lr_ratio=0.1)
    warm = [lr_factor(s, schedule="constant", **common) for s in range(6)]
    assert warm == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = [lr_factor(s, schedule="cosine", **common) for s in range(20)]
    assert cosine[:5] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert cosine[13] == pytest.approx(0.1)  # the run's last step sits on the floor
    assert cosine[4:14] == sorted(cosine[4:14], reverse=True) and cosine[14:] == [pytest.approx(0.1)] * 6
    assert lr_factor(5, schedule="cosine", warmup_steps=0, max_steps=11, min_lr_ratio=0.0) == pytest.approx(0.5)


def test_engine_reports_the_scheduled_lr():
    engine = PlainEngine(mlp(), config(lr=1e-2, warmup_steps=2, schedule="cosine", max_steps=5, min_lr_ratio=0.2))
    lrs = [r["lr"] for r in train_steps(engine, range(6))]
    assert lrs == pytest.approx([5e-3, 1e-2, 1e-2, 6e-3, 2e-3, 2e-3])


def test_matches_a_hand_written_adamw_loop_with_clipping_and_decay():
    engine = PlainEngine(mlp(), config(lr=1e-2, warmup_steps=0, grad_clip=0.05, weight_decay=0.1))
    model = mlp()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    plain = [p for n, p in model.named_parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": plain, "weight_decay": 0.0}], lr=1e-2
    )
    results = train_steps(engine, range(3))
    for seed, result in zip(range(3), results):
        x, y = batch(seed)
        nn.functional.mse_loss(model(x), y).backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        optimizer.step()
        optimizer.zero_grad()
        assert result["grad_norm"] == pytest.approx(norm.item(), rel=1e-6) and result["grad_norm"] > 0.05
    for mine, theirs in zip(engine.model.parameters(), model.parameters()):
        torch.testing.assert_close(mine, theirs)


def test_clip_grads_returns_the_norm_and_scales_to_the_limit():
    param = nn.Parameter(torch.zeros(2))
    param.grad = torch.tensor([3.0, 4.0])
    assert clip_grads([param], 0.0) == pytest.approx(5.0) and param.grad.tolist() == [3.0, 4.0]  # 0 disables
    assert clip_grads([param], 1.0) == pytest.approx(5.0)
    assert param.grad.norm().item() == pytest.approx(1.0, rel=1e-5)


def test_accumulated_micro_batches_equal_one_step_on_the_whole_batch():
    accumulated = PlainEngine(mlp(), config(grad_accum=4, warmup_steps=0))
    whole = PlainEngine(mlp(), config(grad_accum=1, warmup_steps=0))
    results = train_steps(accumulated, range(3), micro_batches=4)
    train_steps(whole, range(3))
    assert [r["boundary"] for r in results] == [False, False, False, True] * 3
    assert [r["skipped"] for r in results] == [True, True, True, False] * 3
    assert all(math.isnan(r["grad_norm"]) for r in results if not r["boundary"])
    for a, b in zip(accumulated.model.parameters(), whole.model.parameters()):
        torch.testing.assert_close(a, b)


def test_non_finite_gradients_skip_the_step_and_keep_the_weights():
    engine = PlainEngine(mlp(), config(warmup_steps=3))
    train_steps(engine, [0])
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    moments = {k: v.clone() for k, v in engine.optimizer.state[engine.optimizer.param_groups[0]["params"][0]].items()}
    x, y = batch(1)
    engine.backward(loss_on(engine, x, y) * float("nan"))
    result = engine.step()
    assert result["skipped"] and result["boundary"] and not math.isfinite(result["grad_norm"])
    assert all(p.grad is None for p in engine.model.parameters())
    for key, value in engine.model.state_dict().items():
        assert torch.equal(value, before[key])
    state = engine.optimizer.state[engine.optimizer.param_groups[0]["params"][0]]
    assert all(torch.equal(state[k], moments[k]) for k in moments)
    follow = train_steps(engine, [2])[0]
    assert not follow["skipped"] and follow["lr"] == pytest.approx(3e-4)  # the schedule moved on


def test_save_and_load_state_resume_to_identical_steps(tmp_path):
    train = config(warmup_steps=2, schedule="cosine", max_steps=8, weight_decay=0.1)
    engine = PlainEngine(mlp(), train)
    train_steps(engine, range(3))
    weights = engine.state_dict_consolidated()
    engine.save_state(str(tmp_path / "engine"))
    expected = train_steps(engine, range(3, 6))

    resumed = PlainEngine(mlp(seed=1), train)
    resumed.model.load_state_dict(weights)
    resumed.load_state(str(tmp_path / "engine"))
    assert train_steps(resumed, range(3, 6)) == expected
    for a, b in zip(engine.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_precision_auto_is_fp32_on_cpu_and_bf16_autocasts():
    x, _ = batch(0)
    fp32 = PlainEngine(mlp(), config(precision="auto"))
    with fp32.dtype_context():
        assert fp32.module(x).dtype == torch.float32
    bf16 = PlainEngine(mlp(), config(precision="bf16"))
    with bf16.dtype_context():
        assert bf16.module(x).dtype == torch.bfloat16
    assert next(bf16.model.parameters()).dtype == torch.float32  # weights stay fp32 under autocast


def test_build_engine_refuses_a_plain_engine_on_many_ranks(monkeypatch):
    engine = build_engine(config(), mlp())
    assert isinstance(engine, PlainEngine) and engine.is_main and engine.world_size == 1
    assert engine.device.type == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="parallel.engine=deepspeed"):
        build_engine(config(), mlp())
