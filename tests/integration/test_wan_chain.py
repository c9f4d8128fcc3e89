"""Fine-tune Wan into a UnityVideo model, end to end on CPU with tiny random stand-ins built here (a Wan
transformer, AutoencoderKLWan, UMT5 with a word-level tokenizer), as the README runs it: convert with the
recipe's config -> precompute -> 4 training steps from the precomputed shards -> sample -> export, and
diffusers loads the export and computes what the run computes."""

import json

import pytest
import torch
from tiny_wan import tiny_wan

from benchmarks.tiny_pretrained import save_umt5, save_wan_vae
from data_pipeline.synthetic.build import build_synthetic
from unity.config import load
from unity.convert import main as convert_main
from unity.inference.loading import load_trained
from unity.precompute import main as precompute_main
from unity.sample import main as sample_main
from unity.train.trainer import Trainer

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

FRAMES, SIZE = 5, 32  # 1 + 4k frames: latents [4, 2, 8, 8] through the tiny VAE


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("wan-chain")
    for split, clips in (("train", 4), ("val", 2)):
        build_synthetic(str(root / "pixels" / split), clips, frames=FRAMES, size=SIZE, split=split, shard_size=4)
    save_wan_vae(root / "weights" / "vae")
    save_umt5(root / "weights" / "umt5")  # 16 wide, like the tiny transformer's text_dim
    tiny_wan("t2v").save_pretrained(root / "weights" / "wan" / "transformer")  # a pipeline folder's layout
    return root


def settings(root) -> list[str]:
    """The recipe's config shrunk to the stand-ins and a CPU budget."""
    values = {
        "model.codec_path": root / "weights" / "vae",
        "model.text_path": root / "weights" / "umt5",
        "model.text_dim": 16,
        "model.in_channels": 4,
        "data.root": root / "latent",
        "data.frames": FRAMES,
        "data.size": SIZE,
        "data.batch_size": 2,
        "data.num_workers": 0,
        "data.shuffle_buffer": 4,
        "run.dir": root / "runs",
        "parallel.engine": "plain",
        "train.precision": "fp32",
        "train.max_steps": 4,
        "train.eval_every": 2,
        "train.log_every": 1,
        "checkpoint.save_every": 2,
        "schedule.warmup_steps": 1,
        "eval.clips": 2,
    }
    return [f"{k}={v}" for k, v in values.items()]


def test_convert_precompute_train_sample_export_and_diffusers_loads_it(chain, tmp_path, capsys):
    converted = chain / "runs" / "wan"
    recipe = ["--config", "configs/wan2.1_unity.yaml", *settings(chain)]
    assert convert_main(["wan", "--src", str(chain / "weights" / "wan"), "--out", str(converted), *recipe]) == 0
    state = json.loads((converted / "checkpoints" / "step_0000000" / "state.json").read_text())
    grown = state["ranks"][0]["new_parameters"]
    assert "dit.switcher.modality_embed.weight" in grown and "dit.aux_in.weight" in grown

    config_file = str(converted / "config.yaml")  # the recipe with Wan's shape: what trains from these weights
    assert (
        precompute_main(["--data", str(chain / "pixels"), "--out", str(chain / "latent"), "--config", config_file]) == 0
    )

    config = load(config_file, [f"train.init_from={converted}", "run.name=unity"])
    trainer = Trainer(config)
    assert trainer.precomputed is not None  # the latents and text come from the shards
    lrs = {group["lr"] for group in trainer.engine.optimizer.param_groups}
    assert max(lrs) / min(lrs) == pytest.approx(10.0)  # the grown parameters at optim.new_param_lr_mult
    trainer.fit()
    trainer.metrics.close()
    run = chain / "runs" / "unity"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step_0000004"

    out = tmp_path / "sample"
    args = ["--ckpt", str(run), "--task", "joint", "--modality", "depth", "--prompt", "a red box", "--steps", "2"]
    args += ["--schedule", "wan", "--shift", "5", "--cfg", "4", "--negative-prompt", "blurry", "--out", str(out)]
    assert sample_main(args) == 0
    assert (out / "rgb.mp4").is_file() and (out / "depth.mp4").is_file()

    exported = tmp_path / "exported"
    assert convert_main(["export-wan", "--ckpt", str(run), "--out", str(exported)]) == 0
    wan = diffusers.WanTransformer3DModel.from_pretrained(exported).eval()
    trained = load_trained(run, device="cpu")
    g = torch.Generator().manual_seed(0)
    x, sigma = torch.randn(1, 4, 2, 8, 8, generator=g), torch.tensor([0.7])
    text = trained.conditioning(["a red box"], [""], 1)  # caption [1, L, 16] with no pads
    padded = torch.nn.functional.pad(text["caption"], (0, 0, 0, 512 - text["caption"].shape[1]))
    with torch.no_grad():
        expected = trained.dit(x[:, None], torch.zeros(1, 1, dtype=torch.long), sigma[:, None], **text)[:, 0]
        out = wan(x, timestep=1000 * sigma, encoder_hidden_states=padded).sample
    assert ((out - expected).abs().max() / expected.abs().max()).item() <= 1e-5
