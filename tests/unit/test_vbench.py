"""VBench dimensions on cases worked out by hand, tiny random ViTs loaded from local files, and the CLI."""

import importlib.util
import json
import math
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from data_pipeline.video_io import VideoDecodeError, encode_video
from eval import vbench_models
from eval.vbench import (
    Unavailable,
    background_consistency,
    consistency_from_features,
    default_dims,
    dynamic_degree,
    evaluate_video,
    main,
    mean_over_videos,
    motion_smoothness,
    motion_smoothness_linear_proxy,
    subject_consistency,
    temporal_flickering,
    top5_flow_magnitude,
)
from eval.vbench_models import WeightsError


def uniform(values, h=1, w=1):
    """A video whose frame t is the constant ``values[t]``."""
    return np.stack([np.full((h, w, 3), v, np.uint8) for v in values])


def texture(size=96, seed=0):
    coarse = np.random.default_rng(seed).uniform(0, 255, (size // 4, size // 4, 3)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def translating(t=16, size=64, step=3):
    """A textured pattern moving ``step`` pixels right per frame, cut from a larger canvas."""
    canvas = texture(size + step * t)
    return np.stack([canvas[:size, i * step : i * step + size] for i in range(t)])


# --- temporal flickering -----------------------------------------------------------------------


def test_flickering_by_hand():
    # H=1, W=2, grey: frames [0, 0], [10, 20], [4, 80]; pair MAEs (10 + 20)/2 = 15, (6 + 60)/2 = 33; mean 24
    frames = np.stack([np.full((1, 2, 3), 0), np.array([[[10] * 3, [20] * 3]]), np.array([[[4] * 3, [80] * 3]])])
    assert temporal_flickering(frames.astype(np.uint8)) == pytest.approx((255 - 24) / 255, abs=1e-7)


def test_flickering_differences_are_taken_in_float_not_uint8():
    assert temporal_flickering(uniform([10, 5])) == pytest.approx(250 / 255)  # uint8 10 - 5 fine, 5 - 10 wraps
    assert temporal_flickering(uniform([5, 10])) == pytest.approx(250 / 255)
    assert temporal_flickering(uniform([0, 255, 0])) == 0.0
    assert temporal_flickering(uniform([7, 7, 7], 4, 4)) == 1.0


def test_one_frame_is_unavailable_and_bad_input_is_an_error():
    with pytest.raises(Unavailable, match="at least 2 frames"):
        temporal_flickering(uniform([3]))
    with pytest.raises(ValueError, match="uint8"):
        temporal_flickering(np.zeros((2, 4, 4, 3), np.float32))


# --- consistency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "features, expected",
    [
        ([[1, 0], [1, 0], [1, 0]], 1.0),  # identical
        ([[2, 0], [5, 0]], 1.0),  # norm does not matter
        ([[1, 0], [0, 1], [0, 1]], (0.0 + (1 + 0) / 2) / 2),  # orthogonal: i=1 -> 0, i=2 -> (prev 1 + first 0)/2
        ([[1, 0], [-1, 0], [-1, 0]], (0.0 + (1 + 0) / 2) / 2),  # cosine -1 clamps to 0
        ([[1, 0], [1.5, 1.5 * math.sqrt(3)]], 0.5),  # 60 degrees: (0.5 + 0.5)/2
        ([[1, 0], [1, 1], [0, 1]], (math.sqrt(2) / 2 + (math.sqrt(2) / 2 + 0) / 2) / 2),  # = 3 sqrt(2) / 8
    ],
)
def test_consistency_by_hand(features, expected):
    assert consistency_from_features(np.array(features, float)) == pytest.approx(expected, abs=1e-12)
    assert consistency_from_features(torch.tensor(features, dtype=torch.float32)) == pytest.approx(expected, abs=1e-6)


def test_consistency_needs_two_frames():
    with pytest.raises(Unavailable):
        consistency_from_features(np.ones((1, 4)))


# --- subject / background consistency with tiny random ViTs from local files ----------------------


def tiny_vit(**kw):
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=224, patch_size=32, embed_dim=32, depth=1, num_heads=2, **kw)


def save(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    dino, clip = tiny_vit(num_classes=0, dynamic_img_size=True), tiny_vit(num_classes=8)
    save(dino, folder / "dino_vitb16.safetensors")
    torch.save(clip.state_dict(), folder / "clip_vitb32.pth")
    return folder, dino, clip


def test_missing_weight_files_are_one_line_errors(tmp_path):
    video = translating(t=3, size=32)
    with pytest.raises(WeightsError) as err:
        subject_consistency(video, tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "dino_vitb16") + ".safetensors" in message
    assert "vit_base_patch16_224.dino" in message and "save_file" in message
    with pytest.raises(WeightsError, match="clip_vitb32.*vit_base_patch32_clip_quickgelu_224.openai"):
        background_consistency(video, tmp_path, model=tiny_vit(num_classes=8))
    with pytest.raises(WeightsError, match="--weights"):
        background_consistency(video, None)


def test_weights_load_through_the_local_file_path(weights):
    folder, dino, clip = weights
    for kind, saved in (("dino", dino), ("clip", clip)):
        fresh = tiny_vit(num_classes=0, dynamic_img_size=True) if kind == "dino" else tiny_vit(num_classes=8)
        loaded = vbench_models.load_backbone(kind, folder, model=fresh, device="cpu")
        if kind == "dino":  # a timm ViT runs through DINO's own forward
            assert isinstance(loaded, vbench_models.DinoFeatures)
            loaded = loaded.vit
        for key, value in saved.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), key


def test_a_file_for_another_architecture_is_a_clear_error(weights):
    folder, _, _ = weights
    with pytest.raises(WeightsError, match="does not fit"):
        background_consistency(translating(t=2, size=32), folder, model=tiny_vit(num_classes=4))


def test_model_consistency_scores(weights):
    folder, _, _ = weights
    static = np.repeat(texture(48)[None], 4, axis=0)
    for fn, kw in (
        (subject_consistency, {"num_classes": 0, "dynamic_img_size": True}),
        (background_consistency, {"num_classes": 8}),
    ):
        assert fn(static, folder, model=tiny_vit(**kw), device="cpu") == pytest.approx(1.0, abs=1e-6)
    # the negative control, through preprocessing and feature extraction: a feature that sees the image
    # (its 4 x 4 mean colours, centred by the normalisation) scores two textures in turn far below a still one
    pooled = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten())
    alternating = np.stack([texture(48, seed=s % 2) for s in range(4)])
    for fn in (subject_consistency, background_consistency):
        assert fn(static, model=pooled) == pytest.approx(1.0, abs=1e-6)
        assert fn(alternating, model=pooled) < 0.8
    # DINO keeps the aspect ratio (short side 224, no crop): a 2:1 video runs on 448 x 224 inputs
    wide = np.concatenate([static, static], axis=2)
    assert subject_consistency(wide, folder, model=tiny_vit(num_classes=0, dynamic_img_size=True)) == pytest.approx(1.0)
    # 80 x 96 becomes 224 x 268, cut to whole 32-px patches (224 x 256) as DINO's strided convolution does
    odd = translating(t=3, size=96)[:, :80]
    assert 0.0 <= subject_consistency(odd, folder, model=tiny_vit(num_classes=0, dynamic_img_size=True)) <= 1.0


def vbench_transforms():
    """VBench's ``dino_transform(224)`` and ``clip_transform(224)`` (vbench/utils.py), on the float tensors
    ``[T, C, H, W]`` of 0..255 that its ``load_video`` returns: torchvision transforms, ``antialias=False``."""
    T = pytest.importorskip("torchvision.transforms")
    dino = T.Compose(
        [
            T.Resize(size=224, antialias=False),
            T.Lambda(lambda v: v.float().div(255.0)),
            T.Normalize(vbench_models.DINO_MEAN, vbench_models.DINO_STD),
        ]
    )
    clip = T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=False),
            T.CenterCrop(224),
            T.Lambda(lambda v: v.float().div(255.0)),
            T.Normalize(vbench_models.CLIP_MEAN, vbench_models.CLIP_STD),
        ]
    )
    return dino, clip


@pytest.mark.parametrize(
    "height, width, dino_shape",
    [(80, 96, (224, 268)), (360, 480, (224, 298)), (300, 200, (336, 224)), (256, 256, (224, 224))],
)
def test_preprocessing_matches_vbench_transforms(height, width, dino_shape):
    """Upscaling and downscaling, square and not: the same tensors as VBench's transforms."""
    dino, clip = vbench_transforms()
    frames = np.stack([texture(max(height, width), seed=s)[:height, :width] for s in range(2)])  # [2, H, W, 3]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # VBench's load_video: float 0..255, [T, C, H, W]
    assert vbench_models.preprocess_dino(frames).shape == (2, 3, *dino_shape)
    torch.testing.assert_close(vbench_models.preprocess_dino(frames), dino(x))
    torch.testing.assert_close(vbench_models.preprocess_clip(frames), clip(x))


def test_downscaling_without_antialias_is_what_vbench_sees():
    """The control: an antialiased resize (VBench before late 2024, and torchvision's default) differs."""
    T = pytest.importorskip("torchvision.transforms")
    frames = texture(480, seed=3)[None, :360]  # [1, 360, 480, 3]: scaled down to 224 x 298
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    antialiased = T.Resize(size=224, antialias=True)(x).div(255.0)
    ours = vbench_models.preprocess_dino(frames) * torch.tensor(vbench_models.DINO_STD).view(1, 3, 1, 1)
    ours = ours + torch.tensor(vbench_models.DINO_MEAN).view(1, 3, 1, 1)
    assert (ours - antialiased).abs().mean() > 0.01


def dino_reference_pos_embed(pos_embed, height, width, patch):
    """DINO's published ``interpolate_pos_encoding`` (facebookresearch/dino, vision_transformer.py), restated:
    unchanged for a square image with the trained patch count, else the n x n grid resized by
    ``nn.functional.interpolate(..., scale_factor=((h // p + 0.1) / n, (w // p + 0.1) / n), mode="bicubic")``."""
    n_patches, dim = pos_embed.shape[1] - 1, pos_embed.shape[-1]
    if (height // patch) * (width // patch) == n_patches and height == width:
        return pos_embed
    n = math.sqrt(n_patches)
    h0, w0 = height // patch + 0.1, width // patch + 0.1
    grid = pos_embed[:, 1:].reshape(1, int(n), int(n), dim).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(grid, scale_factor=(h0 / n, w0 / n), mode="bicubic")
    assert grid.shape[-2:] == (int(h0), int(w0))
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)


@pytest.mark.parametrize("height, width", [(224, 268), (224, 298), (336, 224), (224, 232), (224, 224)])
def test_dino_position_embeddings_are_interpolated_as_dino_does(height, width):
    from timm.layers import resample_abs_pos_embed

    torch.manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 16, 4, 4), size=(14, 14), mode="bicubic")
    pos_embed = torch.cat([torch.randn(1, 1, 16), smooth.permute(0, 2, 3, 1).reshape(1, 196, 16)], dim=1)
    ours = vbench_models.dino_pos_embed(pos_embed, height, width, 16)
    torch.testing.assert_close(ours, dino_reference_pos_embed(pos_embed, height, width, 16), rtol=0, atol=0)
    rows, cols = height // 16, width // 16
    assert ours.shape == (1, 1 + rows * cols, 16)
    timm_style = resample_abs_pos_embed(pos_embed, new_size=(rows, cols), old_size=(14, 14), num_prefix_tokens=1)
    if height == width:  # nothing to interpolate
        assert torch.equal(ours, pos_embed)
    else:  # the control: timm's resampler gives other embeddings on non-square frames
        assert ((ours - timm_style).norm() / timm_style.norm()) > 0.01


def test_dino_features_run_dinos_forward():
    """On a square 224 frame DINO's forward is timm's; on other sizes it uses DINO's interpolation."""
    torch.manual_seed(0)
    vit = tiny_vit(num_classes=0).eval()  # no dynamic_img_size: timm itself would refuse other sizes
    wrapped = vbench_models.DinoFeatures(vit)
    square = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(wrapped(square), vit(square))
    wide = torch.randn(2, 3, 224, 300)  # 7 x 9 patches of 32 px; the last 12 columns fall outside, as in DINO
    torch.testing.assert_close(wrapped(wide), wrapped(wide[..., :288]))
    tokens = vit.patch_embed.proj(wide[..., :288]).flatten(2).transpose(1, 2)
    tokens = torch.cat([vit.cls_token.expand(2, -1, -1), tokens], dim=1)
    tokens = tokens + dino_reference_pos_embed(vit.pos_embed, 224, 300, 32)
    torch.testing.assert_close(wrapped(wide), vit.norm(vit.blocks(tokens))[:, 0])


def test_clip_backbone_is_the_quickgelu_variant():
    """OpenAI's CLIP (what VBench loads) uses QuickGELU: the architecture built for background consistency does."""
    import timm

    _, arch, _ = vbench_models.BACKBONES["clip"]
    model = timm.create_model(arch, pretrained=False)
    acts = {type(m).__name__ for m in model.modules() if "GELU" in type(m).__name__}
    assert acts == {"QuickGELU"} and model.num_classes == 512
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(model.blocks[0].mlp.act(x), x * torch.sigmoid(1.702 * x))


# --- dynamic degree ------------------------------------------------------------------------------


def test_dynamic_degree_opencv():
    static = dynamic_degree(np.repeat(texture(64)[None], 16, axis=0), fps=8)
    assert static["dynamic"] is False and static["backend"] == "opencv-dis" and static["reference"] is False
    assert static["threshold"] == 6.0 * 64 / 256 and static["pairs_needed"] == 4 and static["pairs_moving"] == 0
    moving = dynamic_degree(translating(t=16, size=64, step=3), fps=8)
    assert moving["dynamic"] is True and moving["pairs_moving"] == 15
    assert all(2.5 < s < 3.5 for s in moving["scores"])  # the pattern moves 3 px per frame


def test_dynamic_degree_resamples_to_8_fps_and_rounds_like_python():
    video = translating(t=30, size=64, step=1)  # 1 px per frame at 24 fps is 3 px per kept frame
    result = dynamic_degree(video, fps=24)
    assert result["interval"] == 3 and len(result["scores"]) == 9  # frames 0, 3, ..., 27
    assert result["pairs_needed"] == round(4 * 10 / 16) == 2  # round(2.5) == 2
    assert result["dynamic"] is True
    assert dynamic_degree(video, fps=24)["scores"] == result["scores"]
    assert dynamic_degree(video[:10], fps=8)["dynamic"] is False  # 1 px < 1.5 px threshold


def test_top5_flow_magnitude_by_hand():
    flow = np.zeros((4, 10, 2), np.float32)  # 40 pixels: the top 5% are 2 pixels
    flow[0, 0] = (3, 4)  # 5
    flow[1, 1] = (0, 3)  # 3
    flow[2, 2] = (1, 0)  # 1, not in the top 2
    assert top5_flow_magnitude(flow) == pytest.approx(4.0)


def test_raft_backend_needs_torchvision(monkeypatch, tmp_path):
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")] + ["torchvision"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match="torchvision.*--flow opencv"):
        dynamic_degree(translating(t=2, size=32), 8, backend="raft", weights_dir=tmp_path)


def test_raft_backend_loads_local_weights(tmp_path):
    optical_flow = pytest.importorskip("torchvision.models.optical_flow")
    with pytest.raises(WeightsError, match="raft_large"):
        dynamic_degree(translating(t=2, size=32), 8, backend="raft", weights_dir=tmp_path)
    torch.manual_seed(0)
    torch.save(optical_flow.raft_large(weights=None).state_dict(), tmp_path / "raft_large.pth")
    with pytest.raises(Unavailable, match="at least 121 px"):
        dynamic_degree(translating(t=2, size=120), 8, backend="raft", weights_dir=tmp_path)
    result = dynamic_degree(translating(t=2, size=121), 8, backend="raft", weights_dir=tmp_path, device="cpu")
    assert result["backend"] == "raft-large" and result["reference"] is True and len(result["scores"]) == 1
    assert isinstance(result["dynamic"], bool) and all(np.isfinite(result["scores"]))


# --- motion smoothness ---------------------------------------------------------------------------


def test_linear_proxy_is_exact_on_a_linear_ramp():
    assert motion_smoothness_linear_proxy(uniform([10 * t for t in range(9)], 4, 4)) == 1.0
    assert motion_smoothness_linear_proxy(uniform([10 * t for t in range(8)], 4, 4)) == 1.0


def test_linear_proxy_by_hand():
    # even frames 0, 20, 40 predict the odd ones as 10 and 30; they are 30 and 0: errors 20, 30
    assert motion_smoothness_linear_proxy(uniform([0, 30, 20, 0, 40])) == pytest.approx((255 - 25) / 255)
    # T = 4: only frame 1 is predicted (from 0 and 2); frame 3 has no right neighbour
    assert motion_smoothness_linear_proxy(uniform([0, 7, 10, 99])) == pytest.approx((255 - 2) / 255)
    # the average of 0 and 11 is 5.5, truncated to 5 as AMT's uint8 output is
    assert motion_smoothness_linear_proxy(uniform([0, 7, 11])) == pytest.approx((255 - 2) / 255)
    with pytest.raises(Unavailable):
        motion_smoothness_linear_proxy(uniform([0, 1]))


def test_motion_smoothness_needs_an_interpolator():
    video = uniform([0, 30, 20])
    with pytest.raises(Unavailable, match="AMT"):
        motion_smoothness(video)
    assert motion_smoothness(video, lambda a, b: b) == pytest.approx((255 - 10) / 255)
    assert motion_smoothness(video, lambda a, b: b.astype(np.float32) + 0.9) == pytest.approx((255 - 10) / 255)


# --- evaluate_video / averages --------------------------------------------------------------------


def test_evaluate_video_reports_unavailable_dimensions(weights):
    video = translating(t=6, size=32)
    result = evaluate_video(video, 8)
    assert list(result) == ["temporal_flickering", "motion_smoothness_linear_proxy", "dynamic_degree_dis"]
    assert result["dynamic_degree_dis"]["backend"] == "opencv-dis" and result["dynamic_degree_dis"]["value"] == 1.0
    other = evaluate_video(
        video,
        8,
        ["motion_smoothness", "aesthetic_quality", "imaging_quality"],
        scorers={"imaging_quality": lambda frames: 0.25},
    )
    assert other["motion_smoothness"]["value"] is None and "AMT" in other["motion_smoothness"]["reason"]
    assert other["aesthetic_quality"] == {"value": None, "reason": other["aesthetic_quality"]["reason"]}
    assert other["imaging_quality"]["value"] == 0.25
    assert evaluate_video(video[:1], 8, ["temporal_flickering"])["temporal_flickering"]["value"] is None
    with pytest.raises(WeightsError):
        evaluate_video(video, 8, ["subject_consistency"])
    folder, _, _ = weights
    models = {"dino": vbench_models.load_backbone("dino", folder, tiny_vit(num_classes=0, dynamic_img_size=True))}
    scored = evaluate_video(video, 8, ["subject_consistency"], models=models)["subject_consistency"]
    features = vbench_models.extract_features(models["dino"], vbench_models.preprocess_dino(video))
    assert scored["value"] == pytest.approx(consistency_from_features(features)) and scored["pairs"] == 5


def test_dynamic_degree_is_vbench_s_with_raft_weights_and_named_apart_without(tmp_path):
    """``dynamic_degree`` is VBench's (RAFT); the DIS stand-in is ``dynamic_degree_dis``, the default without RAFT."""
    assert "dynamic_degree_dis" in default_dims(None) and "dynamic_degree" not in default_dims(None)
    assert "dynamic_degree_dis" in default_dims(tmp_path) and "subject_consistency" in default_dims(tmp_path)
    (tmp_path / "raft_large.safetensors").write_bytes(b"")
    dims = default_dims(tmp_path)
    assert "dynamic_degree" in dims and "dynamic_degree_dis" not in dims


def test_mean_over_videos_weighs_consistency_by_frame_pairs():
    a = {
        "subject_consistency": {"value": 1.0, "pairs": 3},
        "temporal_flickering": {"value": 1.0},
        "aesthetic_quality": {"value": None, "reason": "no model"},
    }
    b = {
        "subject_consistency": {"value": 0.5, "pairs": 1},
        "temporal_flickering": {"value": 0.5},
        "aesthetic_quality": {"value": None, "reason": "no model"},
    }
    mean = mean_over_videos([a, b])
    assert mean["subject_consistency"]["value"] == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert mean["temporal_flickering"]["value"] == pytest.approx(0.75)
    assert mean["aesthetic_quality"] == {"value": None, "reason": "no model"}


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_on_two_videos(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "static.mkv").write_bytes(encode_video(np.repeat(texture(64)[None], 16, axis=0), "mkv", fps=8))
    (videos / "moving.mkv").write_bytes(encode_video(translating(t=16, size=64, step=3), "mkv", fps=8))
    (videos / "notes.txt").write_text("not a video")
    out = tmp_path / "vbench.json"
    assert main(["--videos", str(videos), "--json", str(out), "--decoder", "opencv"]) == 0
    table = capsys.readouterr().out
    assert "temporal_flickering" in table and "opencv-dis" in table and "2 videos decoded with opencv" in table
    assert "STATIC: flickering and smoothness reward still frames here (1 of 2 videos" in table
    result = json.loads(out.read_text())
    assert [p.rsplit("/", 1)[-1] for p in result["videos"]] == ["moving.mkv", "static.mkv"]
    assert result["decoder"] == "opencv" and result["static"]["static_videos"] == 1 and result["static"]["value"]
    assert result["mean"]["dynamic_degree_dis"]["value"] == 0.5  # the moving one is dynamic, the static one not
    static = result["per_video"][str(videos / "static.mkv")]
    assert static["temporal_flickering"]["value"] == 1.0 and static["motion_smoothness_linear_proxy"]["value"] == 1.0
    assert result["mean"]["temporal_flickering"]["videos"] == 2

    assert main(["--videos", str(videos), "--weights", str(tmp_path)]) == 2  # no dino_vitb16.* there
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "dino_vitb16" in err


def test_cli_errors(tmp_path, capsys):
    assert main(["--videos", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["--videos", str(tmp_path)]) == 2
    assert "no video file" in capsys.readouterr().err
    (tmp_path / "a.mkv").write_bytes(encode_video(uniform([0, 1], 16, 16), "mkv"))
    assert main(["--videos", str(tmp_path), "--dims", "dynamic_degree"]) == 2  # VBench's needs RAFT weights
    assert "raft_large" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse names the choices
        main(["--videos", str(tmp_path), "--decoder", "nope"])


def test_decord_is_vbench_s_decoder_and_agrees_on_lossless_video(tmp_path, monkeypatch):
    from eval import video_decoder

    video = translating(t=6, size=32)
    path = tmp_path / "clip.mkv"
    path.write_bytes(encode_video(video, "mkv", fps=8))
    assert np.array_equal(video_decoder.read_frames(str(path), "opencv"), video)  # FFV1 is lossless
    if importlib.util.find_spec("decord") is not None:
        assert video_decoder.resolve_decoder("auto") == "decord"
        assert np.array_equal(video_decoder.read_frames(str(path), "decord"), video)
        (tmp_path / "broken.mp4").write_bytes(b"not a video")
        with pytest.raises(VideoDecodeError, match="broken.mp4: decord could not decode it .*re-encode it"):
            video_decoder.read_frames(str(tmp_path / "broken.mp4"), "decord")
    (tmp_path / "broken.mkv").write_bytes(b"not a video")
    with pytest.raises(VideoDecodeError, match="broken.mkv: opencv could not decode it .*re-encode it"):
        video_decoder.read_frames(str(tmp_path / "broken.mkv"), "opencv")
    monkeypatch.setattr(video_decoder.importlib.util, "find_spec", lambda name: None)  # decord not installed
    assert video_decoder.resolve_decoder("auto") == "opencv"
    with pytest.raises(ImportError, match=r"pip install -e '\.\[vbench\]'.*--decoder opencv"):
        video_decoder.resolve_decoder("decord")


def test_cli_module_entry_point(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "eval.vbench", "--videos", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "no such folder" in run.stderr
