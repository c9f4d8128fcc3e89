"""A Wan transformer converted to UnityDiT (``unity.convert.dit_from_wan``) equals diffusers' Wan on the GPU in bf16.

A tiny random ``diffusers.WanTransformer3DModel`` (every parameter moved off its init) is saved,
converted, and both run on CUDA: UnityDiT under bf16 autocast against Wan in fp32, on the output and on
the gradient with respect to the input latents (relative error at most 2e-2). With one rgb stream,
``dit(x[:, None], 0, sigma[:, None], caption=emb, caption_mask=all True)[:, 0]`` is
``WanTransformer3DModel(x, timestep=1000 sigma, encoder_hidden_states=emb).sample``.
"""

import importlib
import importlib.util

import pytest
import torch

from gpu_cases import BF16_TOLERANCE, relative_error

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

WAN_SHAPE = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=64,
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=256,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    rope_max_seq_len=1024,
)


def converter():
    """``unity.convert.dit_from_wan``, or a skip saying that this tree has no Wan converter."""
    if importlib.util.find_spec("unity.convert") is None:
        pytest.skip("the Wan converter (unity/convert.py, dit_from_wan) is not in this tree")
    module = importlib.import_module("unity.convert")
    if not hasattr(module, "dit_from_wan"):
        pytest.skip("unity.convert has no dit_from_wan")
    return module.dit_from_wan


def test_converted_wan_in_bf16_equals_diffusers_wan_in_fp32(tmp_path):
    dit_from_wan = converter()
    diffusers = pytest.importorskip("diffusers", reason="diffusers is not installed")
    torch.manual_seed(0)
    wan = diffusers.WanTransformer3DModel(**WAN_SHAPE)
    with torch.no_grad():
        for param in wan.parameters():  # no parameter left at an init value that could hide a wrong mapping
            param.add_(torch.randn_like(param) * 0.05)
    wan.save_pretrained(tmp_path / "wan")
    wan = wan.cuda().eval()
    dit = dit_from_wan(str(tmp_path / "wan")).cuda().eval()

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 3, 16, 24, generator=g).cuda()  # [B, C, F, H, W]: odd frames, non-square
    sigma = torch.tensor([0.3, 0.8]).cuda()
    emb = torch.randn(2, 512, 32, generator=g).cuda()  # Wan's fixed-length text context, all attended
    probe = torch.randn(2, 16, 3, 16, 24, generator=g).cuda()

    x_wan = x.clone().requires_grad_()
    expected = wan(x_wan, timestep=1000 * sigma, encoder_hidden_states=emb).sample
    (expected * probe).sum().backward()

    x_unity = x.clone().requires_grad_()
    rgb = torch.zeros(2, 1, dtype=torch.long, device="cuda")
    with torch.autocast("cuda", torch.bfloat16):
        out = dit(
            x_unity[:, None], rgb, sigma[:, None], caption=emb, caption_mask=torch.ones(2, 512, dtype=torch.bool).cuda()
        )[:, 0]
    (out.float() * probe).sum().backward()

    assert out.shape == expected.shape
    assert relative_error(out, expected) <= BF16_TOLERANCE
    assert relative_error(x_unity.grad, x_wan.grad) <= BF16_TOLERANCE
    assert relative_error(out, expected.roll(1, dims=0)) > 10 * BF16_TOLERANCE  # negative control: another sample
