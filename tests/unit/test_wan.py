"""UnityDiT is Wan: converted weights give diffusers' WanTransformer3DModel output and sampler to fp32 precision,
both key layouts round-trip bit for bit, and what cannot be Wan is refused with the reason."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_wan import PATCHES, SHAPES, TEXT_DIM, original_state, save_original, tiny_wan

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.convert import dit_from_wan, main
from unity.inference.wan import convert_wan, export_wan
from unity.method.network import TrainModule
from unity.method.sampler import sample, time_grid
from unity.train.checkpoint import save_checkpoint, save_run_config

diffusers = pytest.importorskip("diffusers")

RGB = torch.zeros(1, 1, dtype=torch.long)
GEOMETRY = {"t2v": (3, 8, 12), "ti2v": (1, 6, 8), "patch2": (4, 4, 6)}  # latent (T, H, W): odd, image, patch 2


def inputs(kind, batch=2, seed=0):
    """Latents, σ, the caption (real tokens, lengths 7 and 3) and Wan's 512-token zero-padded embedding."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, SHAPES[kind]["in_channels"], *GEOMETRY[kind], generator=g)
    sigma = torch.rand(batch, generator=g)
    caption = torch.randn(batch, 7, TEXT_DIM, generator=g)
    mask = torch.arange(7)[None] < torch.tensor([[7], [3]])[:batch]
    caption = caption * mask[..., None]
    padded = torch.cat([caption, torch.zeros(batch, 512 - 7, TEXT_DIM)], dim=1)
    return x, sigma, caption, mask, padded


def relative(out, ref):
    return ((out - ref).abs().max() / ref.abs().max()).item()


def unity_out(dit, x, t, caption, mask):
    with torch.no_grad():
        return dit(x[:, None], RGB.expand(len(x), 1), t[:, None], caption=caption, caption_mask=mask)[:, 0]


@pytest.fixture(scope="module", params=list(SHAPES))
def wan_folder(request, tmp_path_factory):
    model = tiny_wan(request.param)
    folder = tmp_path_factory.mktemp(f"wan-{request.param}")
    model.save_pretrained(folder)
    return request.param, model, folder


def test_every_shape_gives_diffusers_output_to_fp32_precision(wan_folder):
    kind, ref, folder = wan_folder
    dit = dit_from_wan(folder)
    x, sigma, caption, mask, padded = inputs(kind)
    with torch.no_grad():
        expected = ref(x, timestep=1000 * sigma, encoder_hidden_states=padded).sample
    assert relative(unity_out(dit, x, sigma, caption, mask), expected) <= 1e-5
    assert sum(p.numel() for p in dit.parameters()) == sum(p.numel() for p in ref.parameters())


def test_time_per_frame_is_wan22_expand_timesteps_with_the_first_frame_clean(wan_folder):
    kind, ref, folder = wan_folder
    dit = dit_from_wan(folder)
    x, sigma, caption, mask, padded = inputs(kind)
    frames = GEOMETRY[kind][0] // PATCHES[kind][0]
    t = sigma[:, None].repeat(1, frames)
    t[:, 0] = 0  # image-to-video: the first latent frame is the clean image
    tokens_per_frame = (GEOMETRY[kind][1] // 2) * (GEOMETRY[kind][2] // 2)
    with torch.no_grad():
        expected = ref(x, timestep=1000 * t.repeat_interleave(tokens_per_frame, 1), encoder_hidden_states=padded)
        out = dit(x[:, None], RGB.expand(2, 1), t[:, None], caption=caption, caption_mask=mask)[:, 0]
    assert relative(out, expected.sample) <= 1e-5


def test_masking_the_padded_text_is_not_wan(wan_folder):
    """Negative control: Wan attends to its zero pads (non-zero after the text MLP); masking them is O(1) off."""
    kind, ref, folder = wan_folder
    dit = dit_from_wan(folder)
    x, sigma, caption, mask, padded = inputs(kind)
    with torch.no_grad():
        expected = ref(x, timestep=1000 * sigma, encoder_hidden_states=padded).sample
    dit.context.length = 0  # attend to the real tokens only
    assert relative(unity_out(dit, x, sigma, caption, mask), expected) > 1e-2


def test_diffusers_layout_round_trips_bit_for_bit_from_shards(tmp_path):
    model = tiny_wan("t2v", seed=1)
    model.save_pretrained(tmp_path / "src", max_shard_size="20KB")
    assert (tmp_path / "src" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    convert_wan(tmp_path / "src", tmp_path / "run")
    export_wan(tmp_path / "run", tmp_path / "back")
    again = diffusers.WanTransformer3DModel.from_pretrained(tmp_path / "back")
    for name, x in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], x), name
    source = json.loads((tmp_path / "src" / "config.json").read_text())
    written = json.loads((tmp_path / "back" / "config.json").read_text())
    assert {k: v for k, v in written.items() if not k.startswith("_")} == {
        k: (list(v) if isinstance(v, tuple) else v) for k, v in source.items() if not k.startswith("_")
    }


def test_original_layout_names_are_the_ones_diffusers_converts_and_round_trip(tmp_path):
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    model = tiny_wan("t2v", seed=2)  # fp32, its values bf16-representable; written in bf16
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.bfloat16())
    state = {name: x.bfloat16() for name, x in original_state(model).items()}
    assert "blocks.0.norm3.weight" in state and "blocks.0.norm2.weight" not in state  # Wan's swapped norm names
    renamed = convert_wan_transformer_to_diffusers(dict(state))
    assert renamed.keys() == model.state_dict().keys()
    save_original(model, tmp_path / "wan", torch.bfloat16)
    convert_wan(tmp_path / "wan", tmp_path / "run")
    export_wan(tmp_path / "run", tmp_path / "back", layout="original")
    written = load_file(tmp_path / "back" / "diffusion_pytorch_model.safetensors")
    assert written.keys() == state.keys()
    for name, x in state.items():
        assert written[name].dtype == torch.bfloat16 and torch.equal(written[name], x), name
    x, sigma, caption, mask, padded = inputs("t2v")
    with torch.no_grad():
        expected = model.float()(x, timestep=1000 * sigma, encoder_hidden_states=padded).sample
    assert relative(unity_out(dit_from_wan(tmp_path / "wan"), x, sigma, caption, mask), expected) <= 1e-5


def test_unity_euler_with_wan_sigmas_and_negative_prompt_cfg_is_diffusers_scheduler_loop(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    model = tiny_wan("t2v", seed=3)
    model.save_pretrained(tmp_path)
    dit = dit_from_wan(tmp_path)
    x, _, caption, mask, padded = inputs("t2v", batch=1)
    negative = torch.randn(1, 512, TEXT_DIM) * (torch.arange(512) < 5)[None, :, None]  # a 5-token negative prompt
    steps, shift, scale = 6, 3.0, 5.0
    scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(steps)
    assert torch.allclose(time_grid(steps, shift, "wan").float(), scheduler.sigmas, atol=1e-6)
    latents = x.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            cond = model(latents, timestep=t.expand(1), encoder_hidden_states=padded).sample
            uncond = model(latents, timestep=t.expand(1), encoder_hidden_states=negative).sample
            latents = scheduler.step(uncond + scale * (cond - uncond), t, latents).prev_sample
    out = sample(
        dit,
        x[:, None],
        torch.ones(1, 1, dtype=torch.bool),
        RGB,
        steps=steps,
        shift=shift,
        schedule="wan",
        cfg_scale=scale,
        uncond={"caption": negative, "caption_mask": torch.ones(1, 512, dtype=torch.bool)},
        noise=x[:, None],
        caption=caption[:1],
        caption_mask=mask[:1],
    )[:, 0]
    assert relative(out, latents) <= 1e-4
    uniform = sample(
        dit,
        x[:, None],
        torch.ones(1, 1, dtype=torch.bool),
        RGB,
        steps=steps,
        shift=shift,
        noise=x[:, None],
        cfg_scale=scale,
        uncond={"caption": negative, "caption_mask": torch.ones(1, 512, dtype=torch.bool)},
        caption=caption[:1],
        caption_mask=mask[:1],
    )[:, 0]
    assert relative(uniform, latents) > 1e-3  # another grid is measurably another sampler


def test_image_to_video_and_missing_keys_are_refused_with_the_list(tmp_path):
    i2v = diffusers.WanTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=8,
        in_channels=4,
        out_channels=4,
        text_dim=16,
        freq_dim=16,
        ffn_dim=16,
        num_layers=1,
        image_dim=16,
        added_kv_proj_dim=16,
    )
    i2v.save_pretrained(tmp_path / "i2v")
    with pytest.raises(ValueError, match="image-to-video models are not supported"):
        dit_from_wan(tmp_path / "i2v")
    model = tiny_wan("t2v")
    model.save_pretrained(tmp_path / "t2v")
    path = tmp_path / "t2v" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    state["blocks.1.extra.weight"] = state.pop("blocks.1.attn1.to_k.weight")
    save_file(state, path)
    with pytest.raises(ValueError, match=r"unmapped keys \(1\): blocks.1.extra.weight") as error:
        convert_wan(tmp_path / "t2v", tmp_path / "run")
    assert "missing keys (1): blocks.1.attn1.to_k.weight" in str(error.value)


def test_a_model_that_is_not_wan_is_refused_naming_the_options(tmp_path):
    config = ModelConfig(hidden=32, depth=1, heads=2, patch=[1, 2, 2], text_dim=16)
    module = TrainModule(UnityDiT(config, 4, 16), None)
    from unity.config import load

    save_run_config(tmp_path / "run", load(None, ["model.hidden=32", "model.depth=1", "model.heads=2"]))
    save_checkpoint(tmp_path / "run", 0, module.state_dict(), None, {})
    with pytest.raises(ValueError, match="model.qk_norm_scope is 'head'.*model.final_layer is 'adaln'"):
        export_wan(tmp_path / "run", tmp_path / "out")


def test_cli_converts_twice_and_names_a_damaged_file(tmp_path, capsys):
    tiny_wan("t2v").save_pretrained(tmp_path / "src")
    command = ["wan", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "run")]
    assert main(command) == 0
    assert main(command) == 0  # the same command again: the same checkpoint, replaced
    assert main(["export-wan", "--ckpt", str(tmp_path / "run"), "--out", str(tmp_path / "back")]) == 0
    weights = tmp_path / "src" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    assert main([*command[:-1], str(tmp_path / "run2")]) == 2
    assert "error:" in capsys.readouterr().err


def test_the_same_time_on_every_frame_is_the_time_per_stream_and_a_wrong_frame_count_is_named():
    torch.manual_seed(0)
    config = ModelConfig(hidden=32, depth=1, heads=2, patch=[2, 2, 2], text_dim=16, prediction="x", attention="math")
    model = UnityDiT(config, in_channels=4, text_dim=16)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(2, 2, 4, 4, 4, 4), torch.rand(2, 2)
    text = dict(
        caption=torch.randn(2, 3, 16),
        caption_mask=torch.ones(2, 3, dtype=torch.bool),
        prompt=torch.randn(2, 2, 3, 16),
        prompt_mask=torch.ones(2, 2, 3, dtype=torch.bool),
    )
    modality = torch.tensor([[0, 1], [0, 2]])
    with torch.no_grad():
        per_stream = model(x, modality, t, **text)
        per_frame = model(x, modality, t[:, :, None].expand(2, 2, 2), **text)  # T / pt = 2 token frames
    assert torch.allclose(per_frame, per_stream, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"t must have shape \[2, 2, 2\]"):
        model(x, modality, t[:, :, None].expand(2, 2, 4), **text)
