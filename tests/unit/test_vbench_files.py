"""VBench's weight files and prompts (``eval/vbench_files.py``), and ``python -m eval.vbench`` with all of the paper's
eight dimensions, on tiny random networks saved under VBench's file names."""

import argparse
import json

import pytest
import torch
from vbench_tiny import save_quality_weights, video

from eval import vbench_files
from eval.amt import AMTS
from eval.vbench_files import FILES, missing_reason, prompt_from_filename
from eval.vbench_models import WeightsError
from eval.vbench_quality import load_amt, load_models, load_viclip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    pytest.importorskip("open_clip")
    return save_quality_weights(tmp_path_factory.mktemp("vbench_weights"))


def test_prompts_from_file_names_as_vbench_takes_them():
    assert prompt_from_filename("/v/a red kite-0.mp4") == "a red kite"
    assert prompt_from_filename("a cat-12.mkv") == "a cat" and prompt_from_filename("a-b.mp4") == "a-b"


# --- weight files ------------------------------------------------------------------------------------


def test_missing_files_are_named_with_where_vbench_keeps_them(tmp_path):
    reason = missing_reason("motion_smoothness", None)
    assert "amt-s.pth" in reason and "--weights" in reason and "~/.cache/vbench/amt_model/amt-s.pth" in reason
    reason = missing_reason("aesthetic_quality", tmp_path)
    assert str(tmp_path / "ViT-L-14.pt") in reason and "\n" not in reason
    models, missing = load_models(list(FILES), tmp_path, device="cpu")
    assert models == {} and sorted(missing) == sorted(FILES)
    assert "ViClip-InternVid-10M-FLT.pth" in missing["overall_consistency"]
    assert "musiq_spaq_ckpt-358bb6af.pth" in missing["imaging_quality"]
    (tmp_path / "ViT-L-14.pt").write_bytes(b"any")
    assert "sa_0_4_vit_l_14_linear.pth" in missing_reason("aesthetic_quality", tmp_path)  # the first one missing


def test_broken_files_are_errors_that_say_how_to_fix_them(tmp_path):
    (tmp_path / "amt-s.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read .*amt-s.pth"):
        load_amt(tmp_path)
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, tmp_path / "amt-s.pth")
    with pytest.raises(WeightsError, match="does not fit AMT-S"):
        load_amt(tmp_path)
    # a checkpoint that pickles more than weights: a one-line conversion to safetensors, which is then used
    torch.save({"model": {}, "config": argparse.Namespace(lr=1e-4)}, tmp_path / "ViClip-InternVid-10M-FLT.pth")
    with pytest.raises(WeightsError, match=r"convert it once: .*\['model'\].*ViClip-InternVid-10M-FLT.safetensors"):
        load_viclip(tmp_path)
    from safetensors.torch import save_file

    save_file(AMTS().state_dict(), str(tmp_path / "amt-s.safetensors"))  # a converted copy is taken first
    assert isinstance(load_amt(tmp_path, device="cpu"), AMTS)


def test_prompts_file_errors_name_the_file_and_the_videos(tmp_path):
    paths = [str(tmp_path / "a.mp4"), str(tmp_path / "b-3.mp4")]
    assert vbench_files.read_prompts(paths) == {paths[0]: "a", paths[1]: "b"}
    table = tmp_path / "prompts.json"
    table.write_text(json.dumps({"a.mp4": "a kite", "b-3": "a dog"}))
    assert vbench_files.read_prompts(paths, table) == {paths[0]: "a kite", paths[1]: "a dog"}
    table.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        vbench_files.read_prompts(paths, table)
    table.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read it as JSON"):
        vbench_files.read_prompts(paths, table)


# --- the command line: the paper's eight dimensions -------------------------------------------------


def test_cli_reports_the_papers_eight_dimensions(weights, tmp_path, monkeypatch, capsys):
    from timm.models.vision_transformer import VisionTransformer

    from data_pipeline.video_io import encode_video
    from eval import vbench

    optical_flow = pytest.importorskip("torchvision.models.optical_flow")
    folder = tmp_path / "weights"
    folder.mkdir()
    for path in weights["dir"].rglob("*.pt*"):
        target = folder / path.relative_to(weights["dir"])
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(path.read_bytes())
    torch.manual_seed(0)
    torch.save(optical_flow.raft_large(weights=None).state_dict(), folder / "raft_large.pth")

    def tiny_backbone(kind, weights_dir=None, model=None, device=None):  # DINO / CLIP ViT-B stand-ins
        return VisionTransformer(img_size=224, patch_size=32, embed_dim=32, depth=1, num_heads=2, num_classes=0).eval()

    monkeypatch.setattr(vbench, "load_backbone", tiny_backbone)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a red kite-0.mkv").write_bytes(encode_video(video(3, 128, 136), "mkv", fps=8))
    (videos / "a red kite-1.mkv").write_bytes(encode_video(video(3, 128, 136, seed=1), "mkv", fps=8))
    out = tmp_path / "vbench.json"
    args = ["--videos", str(videos), "--weights", str(folder), "--decoder", "opencv", "--json", str(out), "--fps", "16"]
    assert vbench.main(args) == 0
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    paper = (
        vbench_files.PAPER_DIMENSIONS
        if "musiq" in weights
        else set(vbench_files.PAPER_DIMENSIONS) - {"imaging_quality"}
    )
    for dim in paper:
        assert result["mean"][dim]["value"] is not None, dim
        assert any(line.startswith(dim + " ") for line in table.splitlines()), dim
    assert result["mean"]["motion_smoothness"]["backend"] == "amt-s"
    assert result["per_video"][str(videos / "a red kite-1.mkv")]["overall_consistency"]["prompt"] == "a red kite"

    prompts = tmp_path / "prompts.json"  # the same run with its prompts given: the file's are used
    prompts.write_text(json.dumps({"a red kite-0.mkv": "a dog", "a red kite-1": "a cat"}))
    assert vbench.main([*args, "--prompts", str(prompts), "--dims", "overall_consistency"]) == 0
    again = json.loads(out.read_text())["per_video"]
    assert again[str(videos / "a red kite-0.mkv")]["overall_consistency"]["prompt"] == "a dog"
    prompts.write_text(json.dumps({"a red kite-0.mkv": "a dog"}))
    assert vbench.main([*args, "--prompts", str(prompts)]) == 2
    assert "no prompt for a red kite-1.mkv" in capsys.readouterr().err

    (folder / "amt_model").mkdir(exist_ok=True)
    (folder / "amt-s.pth").rename(folder / "amt_model" / "amt-s.pth")  # VBench's cache layout is found
    assert vbench.main([*args, "--dims", "motion_smoothness"]) == 0
    (folder / "amt_model" / "amt-s.pth").unlink()  # missing: unavailable, and the file is named
    assert vbench.main([*args, "--dims", "motion_smoothness"]) == 0
    assert "missing AMT-S weights: put " + str(folder / "amt-s.pth") in capsys.readouterr().out
    (folder / "amt-s.pth").write_bytes(b"\0" * 10)  # damaged: an error that names it
    assert vbench.main([*args, "--dims", "motion_smoothness"]) == 2
    err = capsys.readouterr().err
    assert "cannot read " + str(folder / "amt-s.pth") in err and err.strip().count("\n") == 0

    assert vbench.main(["--videos", str(videos), "--decoder", "opencv"]) == 0  # no weights: each says what it needs
    lines = capsys.readouterr().out.splitlines()
    for dim, file in [
        ("aesthetic_quality", "ViT-L-14.pt"),
        ("overall_consistency", "ViClip-InternVid-10M-FLT.pth"),
        ("motion_smoothness", "amt-s.pth"),
        ("subject_consistency", "dino_vitb16"),
        ("dynamic_degree", "raft_large"),
        ("imaging_quality", "musiq_spaq_ckpt-358bb6af.pth"),
    ]:
        assert any(line.startswith(f"{dim}: not computed: ") and file in line for line in lines), dim
