"""Precompute: new shards that pass `check`, hold the codec's latents of the decoded videos and the
text encoder's embeddings, and come back through the loader with ``precomputed=True``."""

import json
import logging

import pytest
import safetensors.torch
import torch

from benchmarks.tiny_pretrained import save_wan_vae
from data_pipeline.check import check_dataset, iter_samples, list_shards
from data_pipeline.loader import make_loader
from data_pipeline.synthetic.build import build_synthetic
from data_pipeline.video_io import decode_video
from data_pipeline.writer import ShardWriter
from models.codec import build_codec
from models.config import ModelConfig
from models.text_encoder import build_text_encoder
from unity.precompute import main, precompute

CONFIG = ModelConfig(text_dim=32, text_layers=1, text_max_tokens=24)


def samples(root: str) -> dict[str, dict[str, bytes]]:
    """Every sample of a shard folder, ``key -> {suffix: bytes}``."""
    return {key: members for path in list_shards(root)[0] for key, members in iter_samples(path)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth"))
    build_synthetic(root, 3, frames=5, size=32, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def pixel_set(synthetic, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pixel") / "out")
    precompute(synthetic, out, CONFIG, device="cpu", seed=3, progress=False)
    return out


def test_output_passes_check_and_keeps_every_member(synthetic, pixel_set):
    report = check_dataset(pixel_set, progress=False)
    assert report.ok and report.samples == 3, report.summary()
    before, after = samples(synthetic), samples(pixel_set)
    assert before.keys() == after.keys()
    for key, members in before.items():
        meta = json.loads(after[key]["json"])
        assert {k: v for k, v in meta.items() if k != "precomputed"} == json.loads(members["json"])
        assert meta["precomputed"] == {
            "codec": "pixel",
            "codec_path": "",
            "channels": 3,
            "compression": [1, 1],
            "text_encoder": "builtin",
            "text_path": "",
            "text_dim": 32,
            "text_max_tokens": 24,
            "latent_dtype": "float16",
            "text_dtype": "bfloat16",
            "latent_shape": [3, 5, 32, 32],
        }
        assert json.load(open(f"{pixel_set}/dataset.json"))["precomputed"] == meta["precomputed"]  # the set's entry
        assert all(after[key][name] == data for name, data in members.items() if name != "json")
        names = {f"latent.{m}.safetensors" for m in meta["modalities"]} | {"text.safetensors"}
        assert set(after[key]) == set(members) | names


def test_latents_and_texts_are_the_codec_and_encoder_outputs(pixel_set):
    codec = build_codec(CONFIG)
    torch.manual_seed(3)
    encoder = build_text_encoder(CONFIG).eval()
    for members in samples(pixel_set).values():
        meta = json.loads(members["json"])
        for name in meta["modalities"]:
            video = torch.from_numpy(decode_video(members[f"{name}.mkv"]))[None]  # [1, T, H, W, 3]
            latent = safetensors.torch.load(members[f"latent.{name}.safetensors"])["latent"]
            assert latent.dtype == torch.float16
            torch.testing.assert_close(latent.float(), codec.encode(video)[0], atol=1e-3, rtol=0)
            assert torch.equal(codec.decode(latent[None].float()), video)  # float16 keeps every level
        text = safetensors.torch.load(members["text.safetensors"])
        prompts = [meta["prompts"][name] for name in meta["modalities"][1:]]
        with torch.no_grad():
            x, mask = encoder([meta["caption"], *prompts])
        for i, name in enumerate(["caption"] + [f"prompt.{m}" for m in meta["modalities"][1:]]):
            mask_name = name.replace("caption", "caption_mask").replace("prompt.", "prompt_mask.")
            length = int(mask[i].sum())
            assert text[name].dtype == torch.bfloat16 and text[name].shape == (length, 32)
            assert text[mask_name].all() and len(text[mask_name]) == length
            torch.testing.assert_close(text[name].float(), x[i, :length], atol=0.02, rtol=0.01)
    null = safetensors.torch.load_file(f"{pixel_set}/null_text.safetensors")
    assert null["caption"].shape == (2, 32) and null["caption_mask"].all()  # BOS, EOS


def test_loader_yields_the_stored_tensors(pixel_set):
    stored = samples(pixel_set)
    loader = make_loader(pixel_set, ["depth", "pose"], 2, precomputed=True, shuffle_buffer=0, shardshuffle=False)
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [2, 1]
    for batch in batches:
        assert set(batch["latent"]) == {"rgb", "depth", "pose"} and set(batch["text"]["prompt"]) == {"depth", "pose"}
        for b, key in enumerate(batch["key"]):
            for name in ("rgb", "depth", "pose"):
                latent = safetensors.torch.load(stored[key][f"latent.{name}.safetensors"])["latent"]
                assert torch.equal(batch["latent"][name][b], latent.float())
            text = safetensors.torch.load(stored[key]["text.safetensors"])
            length = len(text["caption"])
            assert torch.equal(batch["text"]["caption"][b, :length], text["caption"].float())
            assert batch["text"]["caption_mask"][b].tolist() == [True] * length + [False] * (
                batch["text"]["caption_mask"].shape[1] - length
            )
            assert torch.equal(
                batch["text"]["prompt"]["pose"][b, : len(text["prompt.pose"])], text["prompt.pose"].float()
            )


def test_tiny_wan_vae_latents(synthetic, tmp_path):
    pytest.importorskip("diffusers")
    save_wan_vae(tmp_path / "vae")
    config = ModelConfig(codec="diffusers", codec_path=str(tmp_path / "vae"), codec_batch=6, text_dim=16, text_layers=1)
    precompute(synthetic, str(tmp_path / "out"), config, device="cpu", progress=False)
    assert check_dataset(str(tmp_path / "out"), progress=False).ok
    codec = build_codec(config)
    members = next(iter(samples(str(tmp_path / "out")).values()))
    assert json.loads(members["json"])["precomputed"]["latent_shape"] == [4, 2, 8, 8]
    latent = safetensors.torch.load(members["latent.flow.safetensors"])["latent"]
    want = codec.encode(torch.from_numpy(decode_video(members["flow.mkv"]))[None])[0]
    torch.testing.assert_close(latent.float(), want, atol=2e-3, rtol=2e-3)


def test_cli_skips_a_broken_sample_and_refuses_to_overwrite(synthetic, tmp_path, caplog, capsys):
    broken = tmp_path / "broken"
    with ShardWriter(str(broken), "train", 2) as writer:
        for i, members in enumerate(samples(synthetic).values()):
            sample = {**members, "json": json.loads(members["json"])}
            if i == 1:
                sample["depth.mkv"] = b"not a video"
            writer.write(sample)
    out = str(tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="unity.precompute"):
        assert main(["--data", str(broken), "--out", out, "--device", "cpu", "model.text_dim=16"]) == 0
    assert "no frame could be decoded" in caplog.text
    dataset = json.load(open(f"{out}/dataset.json"))
    assert dataset["samples"] == 2 and dataset["skipped"] == 1 and dataset["precomputed"]["text_dim"] == 16
    assert [s["name"] for s in dataset["shards"]] == ["train-000000.tar"]
    assert main(["--data", str(broken), "--out", out]) == 2
    assert "already holds a dataset.json" in capsys.readouterr().err
    assert main(["--data", str(broken), "--out", out + "2", "model.codec=diffusers"]) == 2
    assert "model.codec_path '' is not a diffusers VAE folder" in capsys.readouterr().err
    assert main(["--data", str(broken), "--out", out + "2", "model.text_encoder=precomputd"]) == 2
    assert "config error" in capsys.readouterr().err


def test_check_flags_precomputed_members_that_disagree_with_the_json(pixel_set, tmp_path):
    with ShardWriter(str(tmp_path), "train", 3) as writer:
        for i, members in enumerate(samples(pixel_set).values()):
            sample = {**members, "json": json.loads(members["json"])}
            if i == 0:
                sample["latent.seg.safetensors"] = safetensors.torch.save({"latent": torch.zeros(3, 4, 32, 32)})
            if i == 1:
                del sample["text.safetensors"]
            if i == 2:
                sample["latent.rgb.safetensors"] = sample["latent.rgb.safetensors"][:-100]
            writer.write(sample)
    report = check_dataset(str(tmp_path), progress=False)
    why = sorted(reason for _, _, reason in report.bad)
    assert len(why) == 3, why
    assert "latent.rgb.safetensors: header promises" in why[0]
    assert why[1].startswith(
        "latent.seg.safetensors: tensor 'latent' has shape [3, 4, 32, 32], expected [3, 5, 32, 32]"
    )
    assert why[2] == "missing member text.safetensors"
