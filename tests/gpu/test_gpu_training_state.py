"""The plain engine's bf16 steps, the EMA, checkpoints, the sampler and ``run_task`` on the GPU.

One small run on CUDA: bf16 autocast steps with fused AdamW and an EMA, a checkpoint saved and
resumed into a freshly built model (the same losses follow), the run loaded back for inference with
``load_trained`` and a task sampled from it; and the sampler on the GPU against the same sampler on
the CPU from the same noise.
"""

import copy

import numpy as np
import pytest
import torch

from unity.config import load
from unity.inference.loading import load_trained
from unity.inference.pipeline import SamplerSettings, run_task
from unity.method.flow_matching import flow_matching_loss, noise_streams
from unity.method.network import build_model
from unity.method.sampler import sample
from unity.train.checkpoint import load_ema, load_weights, save_checkpoint, save_run_config
from unity.train.ema import EMA
from unity.train.engine import PlainEngine

from gpu_cases import dit_inputs, forward_args, relative_error, small_dit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FRAMES, SIZE, DECAY = 4, 16, 0.9


def run_config(run_dir):
    overrides = {
        "run.dir": run_dir.parent,
        "run.name": run_dir.name,
        "data.frames": FRAMES,
        "data.size": SIZE,
        "model.hidden": 64,
        "model.depth": 2,
        "model.heads": 2,
        "model.patch": "[2,4,4]",
        "model.text_dim": 32,
        "model.text_max_tokens": 16,
        "optim.lr": 1e-3,
        "schedule.warmup_steps": 1,
        "ema.decay": DECAY,
    }
    return load(overrides=[f"{k}={v}" for k, v in overrides.items()])


def batch(seed: int, device):
    """Two samples of (rgb, depth) in pixel-codec space ``[2, 2, 3, 4, 16, 16]``, estimation then joint."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(2, 2, 3, FRAMES, SIZE, SIZE, generator=g) * 2 - 1
    noised = torch.tensor([[False, True], [True, True]])
    x_t, t, target = noise_streams(x0, noised, torch.rand(2, generator=g), torch.randn(x0.shape, generator=g))
    tensors = dict(x=x_t, modality=torch.tensor([[0, 1], [0, 1]]), t=t, target=target, noised=noised)
    return {k: v.to(device) for k, v in tensors.items()}


def train_steps(engine, ema, seeds) -> list[float]:
    losses = []
    for seed in seeds:
        b = batch(seed, engine.device)
        with engine.dtype_context():
            v = engine.module(
                b["x"], b["modality"], b["t"], captions=["a red box", "two persons"], prompts=["depth"] * 2
            )
            loss = flow_matching_loss(v, b["target"], b["noised"]).mean()
        engine.backward(loss)
        assert not engine.step()["skipped"]
        ema.update(engine.model)
        losses.append(loss.item())
    return losses


def build(config, seed):
    torch.manual_seed(seed)
    module, _, _ = build_model(config, torch.device("cuda"))
    engine = PlainEngine(module, config)
    return engine, EMA(engine.model, DECAY)


def test_bf16_training_checkpoint_resume_ema_and_inference(tmp_path):
    run_dir = tmp_path / "gpu_run"
    config = run_config(run_dir)
    engine, ema = build(config, seed=0)
    assert engine.device.type == "cuda" and engine.autocast_dtype == torch.bfloat16
    assert engine.optimizer.defaults["fused"]
    initial = {name: p.detach().float().clone() for name, p in engine.model.named_parameters()}
    losses = train_steps(engine, ema, range(3))
    assert all(np.isfinite(losses))
    assert all(a.is_cuda and a.dtype == torch.float32 for a in ema.averaged.values())  # fp32, on the GPU
    assert any(not torch.equal(ema.averaged[n], initial[n]) for n in initial)  # the average moved
    probe = copy.deepcopy(ema)  # one more update follows ema = decay * ema + (1 - decay) * param
    probe.update(engine.model)
    for name, param in engine.model.named_parameters():
        moved = DECAY * ema.averaged[name] + (1 - DECAY) * param.detach().float()
        assert torch.allclose(probe.averaged[name], moved, rtol=0, atol=1e-6)

    ema_at_save = {name: t.detach().cpu().clone() for name, t in ema.state_dict().items()}
    save_run_config(run_dir, config)
    ckpt = save_checkpoint(run_dir, 3, engine.state_dict_consolidated(), ema.state_dict(), {}, engine.save_state)
    after_save = train_steps(engine, ema, range(3, 5))

    resumed, resumed_ema = build(config, seed=1)  # other initial weights, all replaced by the checkpoint's
    load_weights(resumed.model, f"{ckpt}/model.safetensors")
    resumed.load_state(f"{ckpt}/engine")
    resumed_ema.load_state_dict(load_ema(ckpt))
    after_load = train_steps(resumed, resumed_ema, range(3, 5))
    assert after_load == pytest.approx(after_save, rel=1e-5)
    for name, param in resumed.model.named_parameters():
        assert torch.allclose(param, dict(engine.model.named_parameters())[name], rtol=0, atol=1e-5)
    for name, average in resumed_ema.averaged.items():
        assert torch.allclose(average, ema.averaged[name], rtol=0, atol=1e-5)

    trained = load_trained(run_dir, device="cuda")  # the EMA weights of the step-3 checkpoint
    assert trained.weights == "ema" and next(trained.dit.parameters()).is_cuda
    loaded = {f"dit.{n}": p for n, p in trained.dit.named_parameters()}
    assert all(torch.equal(loaded[n].cpu(), ema_at_save[n]) for n in loaded)

    rgb = np.random.default_rng(0).integers(0, 256, (2, FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    settings = SamplerSettings(steps=3, seed=0, batch_size=2)
    captions = ["a red box", "two persons"]
    out = run_task(trained, "est", "depth", captions, rgb=rgb, settings=settings)
    assert set(out) == {"rgb", "depth"} and out["depth"].shape == rgb.shape and out["depth"].dtype == np.uint8
    assert np.array_equal(out["rgb"], rgb)  # the given stream is held fixed through the sampler
    again = run_task(trained, "est", "depth", captions, rgb=rgb, settings=settings)
    other = run_task(trained, "est", "depth", captions, rgb=rgb, settings=SamplerSettings(steps=3, seed=1))
    assert np.abs(again["depth"].astype(int) - out["depth"]).max() <= 1  # the seed decides the noise
    assert (other["depth"] != out["depth"]).mean() > 0.1  # and another seed another sample
    joint = run_task(trained, "joint", "depth", captions, settings=settings)
    assert joint["rgb"].shape == joint["depth"].shape == rgb.shape


def test_sampler_on_gpu_equals_the_cpu_sampler_from_the_same_noise():
    model = small_dit().eval()
    inputs = dit_inputs(model.config, masked=True)
    args = forward_args(inputs)
    generate, noise = inputs["noised"], torch.randn(args["x"].shape, generator=torch.Generator().manual_seed(5))
    text = {k: args[k] for k in ("caption", "caption_mask", "prompt", "prompt_mask")}
    uncond = {**text, "caption_mask": torch.zeros_like(text["caption_mask"])}

    def run(device, start):
        on = {k: v.to(device) for k, v in text.items()}
        return sample(
            copy.deepcopy(model).to(device),
            args["x"].to(device),
            generate.to(device),
            args["modality"].to(device),
            steps=4,
            method="heun",
            cfg_scale=2.0,
            uncond={k: v.to(device) for k, v in uncond.items()},
            noise=start.to(device),
            **on,
        ).cpu()

    on_cpu, on_gpu = run("cpu", noise), run("cuda", noise)
    assert relative_error(on_gpu, on_cpu) <= 1e-3
    assert relative_error(run("cuda", torch.randn_like(noise)), on_cpu) > 0.1  # the noise matters
