"""Aesthetic quality, imaging quality, overall consistency and AMT motion smoothness against VBench's arithmetic.

Each reference below is written from VBench's published source (``vbench/aesthetic_quality.py``,
``imaging_quality.py``, ``overall_consistency.py``, ``motion_smoothness.py``, ``utils.py`` and AMT's
``utils/utils.py``): its frame reading, torchvision transforms, normalisation and averaging, run on
the same tiny random-weight networks that the code under test loads from files named as VBench
names them. Frames are non-square and include downscaled sizes.
"""

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from vbench_tiny import save_amt, save_quality_weights, video

from eval import amt, vbench_quality
from eval.vbench import motion_smoothness
from eval.vbench_quality import (
    Unscorable,
    aesthetic_quality,
    amt_interpolator,
    imaging_quality,
    load_aesthetic,
    load_amt,
    load_viclip,
    middle_frame_indices,
    overall_consistency,
)
from eval.viclip import ViCLIP

CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def vbench_clip_transform():  # vbench/utils.py clip_transform(224)
    T = pytest.importorskip("torchvision.transforms")
    return T.Compose(
        [
            T.Resize(224, interpolation=T.InterpolationMode.BICUBIC, antialias=False),
            T.CenterCrop(224),
            T.Lambda(lambda x: x.float().div(255.0)),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


@pytest.fixture(scope="module")
def amt_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("amt_weights")
    return {"dir": folder, "amt": save_amt(folder)}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    pytest.importorskip("open_clip")
    return save_quality_weights(tmp_path_factory.mktemp("vbench_weights"))


# --- aesthetic quality ------------------------------------------------------------------------------


@torch.no_grad()
def vbench_aesthetic(frames, visual, head):
    images = torch.Tensor(frames).permute(0, 3, 1, 2)  # load_video: float [T, C, H, W]
    transform, scores = vbench_clip_transform(), []
    for i in range(0, len(images), 32):
        feats = visual(transform(images[i : i + 32])).to(torch.float32)
        scores.append(head(F.normalize(feats, dim=-1, p=2)).squeeze(dim=-1))
    return torch.mean(torch.cat(scores, dim=0) / 10, dim=0, keepdim=True).item()


def test_aesthetic_quality_matches_vbench(weights):
    scorer = load_aesthetic(weights["dir"], device="cpu")
    for frames in (video(35, 240, 320), video(3, 48, 80, seed=1)):  # 35 frames: two batches; 240 px: downscaled
        expected = vbench_aesthetic(frames, weights["visual"], weights["head"])
        assert aesthetic_quality(frames, scorer) == pytest.approx(expected, abs=1e-6)


def test_aesthetic_quality_ranks_altered_videos_as_vbench(weights):
    scorer = load_aesthetic(weights["dir"], device="cpu")
    frames = video(6, 120, 200)
    shuffled = frames[np.random.default_rng(0).permutation(6)]
    frozen = np.repeat(frames[:1], 6, axis=0)
    noised = np.clip(frames + np.random.default_rng(1).normal(0, 60, frames.shape), 0, 255).astype(np.uint8)
    scores = {
        name: aesthetic_quality(v, scorer)
        for name, v in [("clean", frames), ("shuffled", shuffled), ("frozen", frozen), ("noised", noised)]
    }
    for name, v in [("shuffled", shuffled), ("frozen", frozen), ("noised", noised)]:
        assert scores[name] == pytest.approx(vbench_aesthetic(v, weights["visual"], weights["head"]), abs=1e-6)
    assert scores["shuffled"] == pytest.approx(scores["clean"], abs=1e-6)  # a per-frame mean: order is ignored
    assert scores["frozen"] == pytest.approx(aesthetic_quality(frames[:1], scorer), abs=1e-6)
    assert abs(scores["noised"] - scores["clean"]) > 1e-4  # it reads the pixels


# --- imaging quality --------------------------------------------------------------------------------


@torch.no_grad()
def vbench_imaging(frames, model):
    T = pytest.importorskip("torchvision.transforms")
    images = torch.Tensor(frames).permute(0, 3, 1, 2)
    _, _, h, w = images.size()
    if max(h, w) > 512:  # transform(images, 'longer')
        scale = 512.0 / max(h, w)
        images = T.Resize(size=(int(scale * h), int(scale * w)), antialias=False)(images)
    images = images / 255.0
    acc = 0.0
    for i in range(len(images)):
        acc += float(model(images[i].unsqueeze(0)))
    return acc / len(images) / 100.0


def test_imaging_quality_matches_vbench(weights):
    if "musiq" not in weights:
        pytest.skip("pyiqa is not installed")
    musiq = vbench_quality.load_musiq(weights["dir"], device="cpu")  # found under pyiqa_model/
    assert vbench_quality.musiq_resize(torch.zeros(1, 3, 300, 700)).shape[-2:] == (219, 512)
    for frames in (video(1, 300, 700), video(2, 64, 96, seed=2)):  # downscaled to 219 x 512; left as it is
        assert imaging_quality(frames, musiq) == pytest.approx(vbench_imaging(frames, weights["musiq"]), abs=1e-6)
    frames = video(3, 64, 96)
    noised = np.clip(frames + np.random.default_rng(1).normal(0, 60, frames.shape), 0, 255).astype(np.uint8)
    clean = imaging_quality(frames, musiq)
    assert imaging_quality(frames[[2, 0, 1]], musiq) == pytest.approx(clean, abs=1e-7)  # a per-frame mean
    assert imaging_quality(noised, musiq) == pytest.approx(vbench_imaging(noised, weights["musiq"]), abs=1e-6)
    assert abs(imaging_quality(noised, musiq) - clean) > 1e-5  # it reads the pixels


# --- overall consistency ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, expected",
    [
        (16, [0, 2, 4, 6, 8, 10, 12, 14]),
        (20, [0, 3, 5, 8, 10, 13, 15, 18]),  # bounds 0, 2, 5, 7, 10, 12, 15, 17, 20
        (8, list(range(8))),
        (5, [0, 1, 2, 3, 4, 4, 4, 4]),  # shorter than 8: the last index repeats
    ],
)
def test_middle_frame_indices_by_hand(length, expected):
    assert middle_frame_indices(8, length) == expected


def vbench_middle_indices(num_frames, vlen):  # get_frame_indices(..., sample="middle")
    acc_samples = min(num_frames, vlen)
    intervals = np.linspace(start=0, stop=vlen, num=acc_samples + 1).astype(int)
    ranges = [(interv, intervals[idx + 1] - 1) for idx, interv in enumerate(intervals[:-1])]
    frame_indices = [(x[0] + x[1]) // 2 for x in ranges]
    if len(frame_indices) < num_frames:
        padded = [frame_indices[-1]] * num_frames
        padded[: len(frame_indices)] = frame_indices
        frame_indices = padded
    return frame_indices


@torch.no_grad()
def vbench_overall(frames, prompt, model):
    images = torch.from_numpy(frames[vbench_middle_indices(8, len(frames))]).permute(0, 3, 1, 2)  # decord: uint8
    images = vbench_clip_transform()(images).unsqueeze(0)  # [1, 8, C, H, W]
    clip_feat = model.vision_encoder(images.permute(0, 2, 1, 3, 4).contiguous()).float()
    clip_feat /= clip_feat.norm(dim=-1, keepdim=True)
    tokenizer = pytest.importorskip("open_clip").tokenizer.SimpleTokenizer()
    text = model.text_encoder(tokenizer([prompt], context_length=32)).float()
    text /= text.norm(dim=-1, keepdim=True)
    return float((clip_feat @ text.T)[0][0])


def test_overall_consistency_matches_vbench(weights):
    model = load_viclip(weights["dir"], device="cpu")
    assert model.num_frames == 8 and model.vision_encoder.conv1.weight.shape[-1] == 56  # sized from the file
    for frames, prompt in [
        (video(20, 300, 400), "a red kite over a beach"),  # short side 300 -> 224, rounded to uint8 as decord's
        (video(5, 64, 48, seed=3), "A cat & a dog, playing " * 8),  # 5 frames; a prompt longer than 32 tokens
    ]:
        expected = vbench_overall(frames, prompt, weights["viclip"])
        assert overall_consistency(frames, prompt, model) == pytest.approx(expected, abs=1e-6)
    frames = video(16, 96, 128)
    score = overall_consistency(frames, "a kite", model)
    shuffled = frames[np.random.default_rng(0).permutation(16)]
    assert overall_consistency(shuffled, "a kite", model) == pytest.approx(
        vbench_overall(shuffled, "a kite", weights["viclip"]), abs=1e-6
    )
    assert abs(overall_consistency(shuffled, "a kite", model) - score) > 1e-5  # frame order matters to ViCLIP
    assert abs(overall_consistency(frames, "a dog", model) - score) > 1e-5
    with pytest.raises(Unscorable, match="prompt"):
        overall_consistency(frames, " ", model)


def test_viclip_layout_matches_the_published_checkpoint():
    """Full-size ViCLIP-L/14 as VBench builds it: 447 tensors, 427,590,145 values (built on the meta device)."""
    pytest.importorskip("open_clip")
    with torch.device("meta"):
        state = ViCLIP().state_dict()
    assert len(state) == 447 and sum(v.numel() for v in state.values()) == 427_590_145
    assert state["vision_encoder.conv1.weight"].shape == (1024, 3, 1, 14, 14)
    assert state["vision_encoder.temporal_positional_embedding"].shape == (1, 8, 1024)
    assert state["text_encoder.positional_embedding"].shape == (32, 768) and state["temp"].shape == ()


# --- motion smoothness (AMT-S) ----------------------------------------------------------------------


class InputPadder:  # AMT's utils.InputPadder
    def __init__(self, dims, divisor=16):
        self.ht, self.wd = dims[-2:]
        pad_ht = (((self.ht // divisor) + 1) * divisor - self.ht) % divisor
        pad_wd = (((self.wd // divisor) + 1) * divisor - self.wd) % divisor
        self._pad = [pad_wd // 2, pad_wd - pad_wd // 2, pad_ht // 2, pad_ht - pad_ht // 2]

    def pad(self, *inputs):
        return [F.pad(x, self._pad, mode="replicate") for x in inputs]

    def unpad(self, *inputs):
        ht, wd = inputs[0].shape[-2:]
        c = [self._pad[2], ht - self._pad[3], self._pad[0], wd - self._pad[1]]
        return [x[..., c[0] : c[1], c[2] : c[3]] for x in inputs]


@torch.no_grad()
def vbench_motion(frames, model, scale=1.0):
    def img2tensor(img):
        return torch.tensor(img).permute(2, 0, 1).unsqueeze(0) / 255.0

    def tensor2img(t):
        return (t * 255.0).detach().squeeze(0).permute(1, 2, 0).cpu().numpy().clip(0, 255).astype(np.uint8)

    inputs = [img2tensor(f) for f in list(frames)[0::2]]
    padder = InputPadder(inputs[0].shape, int(16 / scale))
    inputs = padder.pad(*inputs)
    embt = torch.tensor(1 / 2).float().view(1, 1, 1, 1)
    outputs = [inputs[0]]
    for in_0, in_1 in zip(inputs[:-1], inputs[1:]):
        outputs += [model(in_0, in_1, embt, scale_factor=scale), in_1]
    outputs = [tensor2img(o) for o in padder.unpad(*outputs)]
    ori, interpolated = list(frames)[1::2], outputs[1::2]
    scores = [np.mean(cv2.absdiff(ori[i], interpolated[i])) for i in range(len(interpolated))]
    return (255.0 - np.mean(np.array(scores))) / 255.0


def test_motion_smoothness_matches_vbench(amt_weights):
    model = load_amt(amt_weights["dir"], device="cpu")
    for frames in (video(5, 120, 136), video(4, 113, 150, seed=4)):  # padded to 128 x 144 and 128 x 160
        expected = vbench_motion(frames, amt_weights["amt"])
        assert motion_smoothness(frames, amt_interpolator(model)) == pytest.approx(expected, abs=1e-12)
    # VBench's working scale below 1 (a small GPU): padding to a multiple of 20 px, AMT run at 0.8
    assert amt.vbench_scale(1080, 1920, memory=4000 * 1024**2) == 16 / 31  # 1 / floor(16 / sqrt(0.2528)) * 16
    assert amt.vbench_scale(480, 832, memory=141 * 1024**3) == 1.0 and amt.vbench_scale(480, 832) == 1.0
    frames = video(3, 170, 200, seed=5)
    expected = vbench_motion(frames, amt_weights["amt"], scale=0.8)
    got = [amt.interpolate_midpoint(model, frames[0], frames[2], scale=0.8)]
    assert np.mean(cv2.absdiff(frames[1], got[0])) == pytest.approx((1 - expected) * 255.0, abs=1e-9)


def test_amt_refuses_frames_too_small_for_it(amt_weights):
    interpolate = amt_interpolator(load_amt(amt_weights["dir"], device="cpu"))
    with pytest.raises(Unscorable, match="113 px"):
        motion_smoothness(video(3, 112, 200), interpolate)
    assert amt.usable(113, 113) and not amt.usable(112, 500) and not amt.usable(170, 200, scale=0.5)


def test_motion_smoothness_ranks_altered_videos_as_vbench():
    """AMT-S with every weight zero blends its two inputs half and half: a linear ramp is smooth, shuffled is not."""
    model = amt.AMTS().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    ramp = np.stack([np.full((120, 128, 3), 20 + 40 * t, np.uint8) for t in range(5)])
    ramp[:, :, :64] //= 2  # two regions ramping at different rates
    shuffled = ramp[[0, 3, 2, 1, 4]]
    frozen = np.repeat(ramp[:1], 5, axis=0)
    interpolate = amt_interpolator(model)
    scores = {
        n: motion_smoothness(v, interpolate) for n, v in [("ramp", ramp), ("shuffled", shuffled), ("frozen", frozen)]
    }
    for name, v in [("ramp", ramp), ("shuffled", shuffled), ("frozen", frozen)]:
        assert scores[name] == pytest.approx(vbench_motion(v, model), abs=1e-12)
    assert scores["ramp"] > 0.99 and scores["frozen"] > 0.99  # tensor2img truncates: off by at most 1 level
    assert scores["shuffled"] < scores["ramp"] - 0.05


def test_amt_layout_matches_the_published_checkpoint():
    """AMT-S as VBench builds it (corr_radius 3, corr_lvls 4, num_flows 3): 213 tensors, 2,990,543 values."""
    state = amt.AMTS().state_dict()
    assert len(state) == 213 and sum(v.numel() for v in state.values()) == 2_990_543
    assert state["update2.convc1.weight"].shape == (64, 392, 1, 1)
    assert state["decoder1.convblock.2.weight"].shape == (60, 24, 4, 4)
    assert state["feat_encoder.conv2.weight"].shape == (84, 96, 1, 1)
