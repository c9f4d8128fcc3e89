"""torch.compile of the blocks and the fused AdamW kernel on the GPU agree with the eager / foreach paths.

The compiled model is the one ``benchmarks/throughput.py --compile`` times: each block compiled in
place (parameter names unchanged) and, as in the ``base`` config, run under activation checkpointing.
"""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from unity.config import load
from unity.train.engine import build_optimizer

from gpu_cases import BF16_TOLERANCE, dit_inputs, dit_loss, gradients, relative_error, small_config, small_dit

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def bf16_step(model, inputs):
    model.zero_grad(set_to_none=True)
    with torch.autocast("cuda", torch.bfloat16):
        v, loss = dit_loss(model, inputs)
    loss.backward()
    return v.detach(), gradients(model)


def test_compiled_blocks_match_eager_forward_and_backward():
    eager = small_dit(small_config(grad_checkpointing=True)).cuda().train()
    compiled = copy.deepcopy(eager)
    for block in compiled.blocks:
        block.compile()
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in eager.named_parameters()]
    for seed in (0, 1):  # a second batch of the same shapes reuses the compiled graphs
        inputs = dit_inputs(eager.config, masked=bool(seed), device="cuda", seed=seed)
        v_eager, grads_eager = bf16_step(eager, inputs)
        v_compiled, grads_compiled = bf16_step(compiled, inputs)
        assert relative_error(v_compiled, v_eager) <= BF16_TOLERANCE
        flat = torch.cat([g.flatten() for g in grads_compiled.values()])
        assert relative_error(flat, torch.cat([g.flatten() for g in grads_eager.values()])) <= BF16_TOLERANCE


def test_fused_adamw_equals_the_foreach_implementation():
    optim = OmegaConf.to_object(load(overrides=["optim.lr=1e-3", "optim.weight_decay=0.1"]).optim)
    models = [small_dit().cuda() for _ in range(2)]
    initial = [p.detach().clone() for p in models[0].parameters()]
    fused = build_optimizer(models[0], optim, fused=True)  # what the engines use on CUDA
    foreach = build_optimizer(models[1], optim, fused=False)
    for group in foreach.param_groups:
        group["foreach"] = True
    assert fused.defaults["fused"] and not foreach.defaults["fused"]
    assert [g["weight_decay"] for g in fused.param_groups] == [g["weight_decay"] for g in foreach.param_groups]
    for step in range(5):  # the same gradients for both: the fp32 gradients of one bf16 step
        _, grads = bf16_step(models[0], dit_inputs(models[0].config, masked=True, device="cuda", seed=step))
        for model, optimizer in zip(models, (fused, foreach)):
            for param, grad in zip(model.parameters(), grads.values()):
                param.grad = grad.cuda()
            optimizer.step()
    moved = max((p.detach() - p0).abs().max().item() for p, p0 in zip(models[0].parameters(), initial))
    difference = max((a - b).abs().max().item() for a, b in zip(models[0].parameters(), models[1].parameters()))
    assert moved > 1e-3  # five steps at lr 1e-3 really moved the weights
    assert difference <= 1e-6 + 1e-3 * moved  # and both kernels moved them alike
