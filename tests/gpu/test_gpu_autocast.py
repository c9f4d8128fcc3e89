"""bf16 autocast on the GPU equals fp32, for every attention kernel that runs here.

The model tests run UnityDiT's forward and backward under bf16 autocast with each attention
backend (SDPA with one kernel put first, the explicit ``math`` reference, the ``flash_attn`` package
when it imports), every RoPE layout, with every text token kept or with padded text, and compare
output and gradients with the fp32 explicit-math model: relative error at most 2e-2. With an SDPA
kernel put first, an input that kernel refuses falls to SDPA's math kernel: SDPA's flash kernel takes
no mask, so there the masked cross-attention runs on math while the joint self-attention (three
quarters of the FLOPs) runs on flash. The kernel tests force each SDPA kernel alone on the
self-attention's shapes, so a kernel that silently never ran cannot pass.
"""

import copy

import pytest
import torch

from models.attention import attention, flash_unavailable_reason
from models.rope import LAYOUTS

from gpu_cases import (
    BF16_TOLERANCE,
    dit_inputs,
    dit_loss,
    forward_args,
    gradients,
    relative_error,
    small_config,
    small_dit,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

SDPA_KERNELS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION", "MATH")
BACKENDS = [f"sdpa:{kernel}" for kernel in SDPA_KERNELS] + ["math", "flash"]


def kernel_context(kernels: list[str]):
    """SDPA restricted to ``kernels``, tried in that order."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, k) for k in kernels], set_priority=True)


@pytest.fixture(scope="module")
def fp32_references():
    """(model, inputs, output, gradients) of the fp32 explicit-math model, per (layout, masked)."""
    cache = {}

    def get(layout: str, masked: bool):
        if (layout, masked) not in cache:
            model = small_dit(small_config(attention="math", layout=layout)).cuda()
            inputs = dit_inputs(model.config, masked, device="cuda")
            v, loss = dit_loss(model, inputs)
            loss.backward()
            cache[layout, masked] = (model, inputs, v.detach(), gradients(model))
        return cache[layout, masked]

    return get


@pytest.mark.parametrize("masked", [False, True], ids=["all-text", "padded-text"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_bf16_forward_and_backward_match_fp32(fp32_references, backend, layout, masked):
    if backend == "flash" and flash_unavailable_reason():
        pytest.skip(f"flash attention: {flash_unavailable_reason()}")
    reference, inputs, v_ref, grads_ref = fp32_references(layout, masked)
    model = copy.deepcopy(reference)
    model.zero_grad(set_to_none=True)
    name, _, kernel = backend.partition(":")
    model.attend.name = name  # one backend object serves every attention layer
    kernels = kernel_context([kernel, "MATH"]) if kernel else kernel_context(list(SDPA_KERNELS))
    with kernels, torch.autocast("cuda", torch.bfloat16):
        v, loss = dit_loss(model, inputs)
    loss.backward()
    assert v.dtype == torch.float32 and torch.isfinite(v).all()
    assert relative_error(v, v_ref) <= BF16_TOLERANCE
    grads = gradients(model)
    flat = torch.cat([g.flatten() for g in grads.values()])
    assert relative_error(flat, torch.cat([g.flatten() for g in grads_ref.values()])) <= BF16_TOLERANCE
    matrices = {n: relative_error(g, grads_ref[n]) for n, g in grads.items() if g.ndim >= 2}
    assert max(matrices.values()) <= BF16_TOLERANCE, sorted(matrices.items(), key=lambda kv: -kv[1])[:5]


def test_the_tolerance_sees_a_kernel_that_ignores_the_text_mask(fp32_references):
    """Negative control: ignoring the padding changes the fp32 output far beyond the bf16 tolerance."""
    model, inputs, v_masked, _ = fp32_references("shared", True)
    unmasked = {**forward_args(inputs), "caption_mask": torch.ones_like(inputs["caption_mask"])}
    unmasked["prompt_mask"] = torch.ones_like(inputs["prompt_mask"])
    with torch.no_grad():
        v_ignoring = model(**unmasked)
    assert relative_error(v_ignoring, v_masked) > 2.5 * BF16_TOLERANCE


def self_attention_qkv(masked: bool, seed: int = 0):
    """bf16 ``q, k, v [2, 2, 256, 64]`` (the small model's joint self-attention) and a key mask whose
    second row keeps 100 keys and third none (``[3, 256]``, batch 3 then)."""
    g = torch.Generator().manual_seed(seed)
    batch = 3 if masked else 2
    q, k, v = (torch.randn(batch, 2, 256, 64, generator=g).cuda().requires_grad_() for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(batch, 256, dtype=torch.bool, device="cuda")
        mask[1, 100:] = False
        mask[2] = False
    return q, k, v, mask


@pytest.mark.parametrize("masked", [False, True], ids=["no-mask", "key-mask"])
@pytest.mark.parametrize("kernel", SDPA_KERNELS)
def test_each_sdpa_kernel_alone_matches_fp32_math(kernel, masked):
    q, k, v, mask = self_attention_qkv(masked)
    reference = attention(q, k, v, mask, "math")  # fp32 inputs: the explicit fp32 softmax
    reference.square().sum().backward()
    expected_grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    qb, kb, vb = (x.detach().bfloat16().requires_grad_() for x in (q, k, v))
    try:
        with kernel_context([kernel]):
            out = attention(qb, kb, vb, mask, "sdpa")
            out.float().square().sum().backward()
    except RuntimeError as e:
        refused = any(m in str(e) for m in ("No available kernel", "No viable backend"))
        if masked and refused:
            pytest.skip(f"SDPA's {kernel} kernel takes no boolean attention mask in this torch: {str(e)[:200]}")
        raise
    assert out.dtype == torch.bfloat16
    assert relative_error(out, reference) <= BF16_TOLERANCE
    for got, expected in zip((qb.grad, kb.grad, vb.grad), expected_grads):
        assert relative_error(got, expected) <= BF16_TOLERANCE
    if masked:
        assert torch.equal(out[2], torch.zeros_like(out[2]))  # a row without keys outputs zero
