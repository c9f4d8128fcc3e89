"""The shard loader: batch contents, shard splitting, shuffling, skipping bad samples, resuming.

Every clip encodes its identity: channel 0 holds the sample index, channel 1 holds 20 x the frame
index, and channel 2 a spatial pattern (a smooth ramp for rgb and depth, three flat levels for
seg), so a test can tell which sample, which frames and which crop came out.
"""

import copy
import io
import json
import logging
import os
import tarfile

import cv2
import numpy as np
import pytest
import safetensors.torch
import torch

from data_pipeline import decode as decode_module
from data_pipeline.loader import make_loader, worker_quota
from data_pipeline.video_io import VideoReader, encode_video
from data_pipeline.writer import ShardWriter

from shard_set import FRAMES, SEG_LEVELS, SIDE, clip, meta, sample, write_set  # noqa: F401


def truncate_in(shard, member: str):
    """Cut ``shard`` in the middle of ``member``'s data."""
    with tarfile.open(shard) as tar:
        cut = next(m for m in tar.getmembers() if m.name == member)
    with open(shard, "r+b") as f:
        f.truncate(cut.offset_data + cut.size // 2)


def as_uint8(batch: dict, stream: str) -> np.ndarray:
    """The batch's ``stream`` (uint8 [B, 3, T, H, W]) as [B, T, H, W, 3]."""
    return batch[stream].permute(0, 2, 3, 4, 1).numpy()


def run(loader) -> tuple[list[str], int]:
    """Keys and skipped count of one epoch."""
    keys, skipped = [], 0
    for batch in loader:
        keys += batch["key"]
        skipped += batch["skipped"]
    return keys, skipped


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("set")
    return str(folder), write_set(folder, 12, shard_size=3)


def test_batches_hold_windows_and_crops_shared_by_all_streams(dataset):
    root, keys = dataset
    loader = make_loader(root, ["depth", "seg"], 5, frames=4, size=(12, 16), crop_scale=(0.5, 0.8), seed=3)
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [5, 5, 2]
    full_frame = cv2.resize(clip(0, "rgb")[0], (16, 12), interpolation=cv2.INTER_AREA)[..., 2]
    starts = set()
    for batch in batches:
        assert batch["rgb"].shape == (len(batch["key"]), 3, 4, 12, 16) and batch["rgb"].dtype == torch.uint8
        assert batch["skipped"] == 0
        rgb, depth, seg = (as_uint8(batch, s) for s in ("rgb", "depth", "seg"))
        for b, key in enumerate(batch["key"]):
            index = int(key[1:])
            for stream in (rgb, depth, seg):
                assert (stream[b, ..., 0] == index).all()  # every stream holds this sample
                start = stream[b, 0, 0, 0, 1] // 20
                assert (stream[b, ..., 1] == (start + np.arange(4))[:, None, None] * 20).all()  # consecutive
            assert rgb[b, 0, 0, 0, 1] == depth[b, 0, 0, 0, 1] == seg[b, 0, 0, 0, 1]  # one window
            starts.add(rgb[b, 0, 0, 0, 1] // 20)
            assert (rgb[b, ..., 2] == depth[b, ..., 2]).all()  # one crop, one filter
            assert not (rgb[b, 0, ..., 2] == full_frame).all()  # a crop, not the whole frame
            assert set(np.unique(seg[b, ..., 2])) <= set(SEG_LEVELS)  # nearest keeps discrete values
            assert batch["caption"][b] == f"clip number {index}"
            assert batch["prompts"]["depth"][b] == f"depth of clip {index}"
            assert batch["meta"][b]["key"] == key
        assert set(batch["prompts"]) == {"depth", "seg"}
    assert len(starts) > 1  # windows are drawn per sample
    assert sorted(k for b in batches for k in b["key"]) == keys


def test_same_seed_same_batches_and_each_epoch_reshuffles(dataset):
    root, keys = dataset
    first, again, other = (make_loader(root, ["depth"], 4, frames=4, size=16, seed=s) for s in (1, 1, 2))
    epoch0 = list(first)
    for a, b in zip(epoch0, list(again), strict=True):
        assert a["key"] == b["key"] and torch.equal(a["depth"], b["depth"])
    order = [k for b in epoch0 for k in b["key"]]
    assert sorted(order) == keys and order != keys
    assert run(first)[0] != order  # epoch 1
    assert run(other)[0] != order


def test_no_shuffling_keeps_shard_order(dataset):
    root, keys = dataset
    loader = make_loader(root, [], 5, shardshuffle=False, shuffle_buffer=0)
    assert run(loader) == (keys, 0)
    assert run(loader) == (keys, 0)


def test_two_workers_share_an_epoch_without_overlap(tmp_path):
    keys = write_set(tmp_path, 15, shard_size=3)
    got, _ = run(make_loader(tmp_path, ["depth"], 2, num_workers=2, seed=5))  # a Path root
    assert sorted(got) == keys  # every sample exactly once


def test_ranks_split_the_shards(dataset, monkeypatch):
    root, keys = dataset
    monkeypatch.setenv("WORLD_SIZE", "2")
    per_rank = []
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        per_rank.append(set(run(make_loader(root, [], 4, seed=0))[0]))
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]
    assert sorted(per_rank[0] | per_rank[1]) == keys


# ---------------------------------------------------------------------------------------------
# Bad samples are skipped with a warning and counted.


def check_skips(caplog, root, good: list[str], skipped: int, *phrases: str, modalities=("depth", "seg")):
    with caplog.at_level(logging.WARNING, logger="data_pipeline.loader"):
        got = run(make_loader(root, modalities, 3, frames=4, shuffle_buffer=0, shardshuffle=False))
    assert got == (good, skipped)
    text = caplog.text
    assert all(phrase in text for phrase in phrases), text


def test_undecodable_video_is_skipped(tmp_path, caplog):
    garbage = {**sample(4), "depth.mkv": b"not a video at all" * 10}
    good = write_set(tmp_path, 8, 3, bad={4: garbage})
    check_skips(caplog, str(tmp_path), good, 1, "'s004'", "shard-000001.tar", "depth.mkv does not decode")


def test_missing_modality_is_skipped(tmp_path, caplog):
    good = write_set(tmp_path, 8, 3, bad={2: sample(2, modalities=("depth",))})
    check_skips(caplog, str(tmp_path), good, 1, "'s002'", "modality 'seg' is missing")


def test_streams_of_different_lengths_are_skipped(tmp_path, caplog):
    short = {**sample(6), "seg.mkv": encode_video(clip(6, "seg", frames=FRAMES - 2))}
    good = write_set(tmp_path, 8, 3, bad={6: short})
    check_skips(caplog, str(tmp_path), good, 1, "'s006'", "seg has (frames, height, width) (6, 24, 24)")


def test_key_with_a_dot_is_skipped(tmp_path, caplog):
    path = tmp_path / "dotted.tar"
    with tarfile.open(path, "w") as tar:
        for key, index in (("a.b", 0), ("s001", 1)):
            members = sample(index)
            members["json"] = meta(index, key=key)
            for suffix, data in members.items():
                data = data if isinstance(data, bytes) else json.dumps(data).encode()
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    check_skips(caplog, str(path), ["s001"], 1, "key 'a.b' contains a dot")


def test_truncated_shard_yields_what_precedes_the_cut(tmp_path, caplog):
    good = write_set(tmp_path, 8, 4)
    shard = tmp_path / "shard-000000.tar"
    truncate_in(shard, "s002.depth.mkv")
    with caplog.at_level(logging.WARNING, logger="data_pipeline.loader"):
        keys, skipped = run(make_loader(str(tmp_path), ["depth"], 3, shuffle_buffer=0, shardshuffle=False))
    assert keys == ["s000", "s001"] + good[4:]  # the next shard is read whole
    assert skipped >= 1 and "unexpected end of data" in caplog.text and str(shard) in caplog.text


# ---------------------------------------------------------------------------------------------
# Resuming from a saved position.


def comparable(batch: dict) -> tuple:
    return batch["key"], batch["skipped"], batch["rgb"], batch["depth"]


def assert_same(got: list[dict], want: list[dict]):
    assert len(got) == len(want)
    for a, b in zip(map(comparable, got), map(comparable, want)):
        assert a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


@pytest.fixture(scope="module")
def flawed_set(tmp_path_factory):
    """20 samples in 5 shards; two do not decode and the last shard breaks off in s018, so batches
    and raw positions drift apart and a restart meets read errors while it skips."""
    folder = tmp_path_factory.mktemp("flawed")
    broken = {i: {**sample(i), "rgb.mkv": b"garbage"} for i in (5, 13)}
    write_set(folder, 20, 4, bad=broken)
    truncate_in(folder / "shard-000004.tar", "s018.depth.mkv")
    return str(folder)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("resampled", [False, True])
def test_restarted_loader_yields_the_same_next_batches(flawed_set, num_workers, resampled):
    options = dict(
        frames=4,
        size=16,
        shuffle_buffer=6,
        num_workers=num_workers,
        seed=7,
        resampled=resampled,
        epoch_samples=13 if resampled else None,
    )
    loader = make_loader(flawed_set, ["depth"], 3, **options)
    epochs, states = [], []  # per epoch: its batches, and the state after each
    for _ in range(2):
        epochs.append([])
        states.append([])
        for batch in loader:
            epochs[-1].append(batch)
            states[-1].append(copy.deepcopy(loader.state_dict()))
    if resampled:
        assert [len(b["key"]) for b in epochs[0]] == [3, 3, 3, 3, 1]
    else:  # two bad samples, then the broken shard's read errors and its partial sample
        assert sum(b["skipped"] for b in epochs[0]) >= 3
        assert sorted(k for b in epochs[0] for k in b["key"]) == [f"s{i:03d}" for i in range(18) if i not in (5, 13)]
    for epoch, cut in ((0, 1), (0, 2), (0, 3), (0, len(epochs[0])), (1, 2)):
        restarted = make_loader(flawed_set, ["depth"], 3, **options)
        restarted.load_state_dict(states[epoch][cut - 1])
        want = epochs[epoch][cut:] + (epochs[1] if epoch == 0 else [])
        got = list(restarted) + (list(restarted) if epoch == 0 else [])
        assert_same(got, want)


def test_restart_skips_samples_without_decoding_them(dataset, monkeypatch):
    root, _ = dataset
    decoded = []
    monkeypatch.setattr(decode_module, "VideoReader", lambda data: decoded.append(1) or VideoReader(data))
    loader = make_loader(root, ["depth"], 2, frames=4, seed=1)
    iterator = iter(loader)
    for _ in range(4):
        next(iterator)
    state = loader.state_dict()
    restarted = make_loader(root, ["depth"], 2, frames=4, seed=1)
    restarted.load_state_dict(state)
    decoded.clear()
    rest, _ = run(restarted)
    assert len(rest) == 12 - 8 and len(decoded) == 2 * len(rest)  # rgb + depth of the remaining samples only


def test_position_from_another_setup_is_refused(dataset):
    root, _ = dataset
    state = make_loader(root, [], 2, num_workers=2).state_dict()
    with pytest.raises(ValueError, match="workers=2"):
        make_loader(root, [], 2).load_state_dict(state)


# ---------------------------------------------------------------------------------------------
# Resampled epochs, and arguments refused.


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resampled_epoch_has_exactly_epoch_samples(dataset, num_workers):
    root, keys = dataset
    loader = make_loader(root, [], 4, resampled=True, epoch_samples=11, num_workers=num_workers, seed=2)
    epochs = [[b["key"] for b in loader] for _ in range(2)]
    for batches in epochs:
        assert [len(k) for k in batches] == [4, 4, 3]
        assert set(k for ks in batches for k in ks) <= set(keys)
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("samples,batch,workers", [(11, 4, 2), (7, 3, 3), (2, 4, 3), (64, 8, 5)])
def test_worker_quotas_add_up_to_the_epoch(samples, batch, workers):
    quotas = [worker_quota(samples, batch, workers, w) for w in range(workers)]
    assert sum(quotas) == samples
    assert all(q % batch == 0 for w, q in enumerate(quotas) if w != (-(-samples // batch) - 1) % workers)


def test_bad_arguments_are_refused(tmp_path, dataset):
    root, _ = dataset
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no shards"):
        make_loader(str(tmp_path / "empty"), [], 2)
    with pytest.raises(ValueError, match="unknown modality 'normals'"):
        make_loader(root, ["depth", "normals"], 2)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(root, [], 0)
    with pytest.raises(ValueError, match="epoch_samples needs resampled"):
        make_loader(root, [], 2, epoch_samples=10)


# ---------------------------------------------------------------------------------------------
# Precomputed latents and text embeddings (as `unity.precompute` writes them).

LATENT_SHAPE, TEXT_DIM = [4, 3, 6, 6], 8


def precomputed_sample(index: int, modalities=("depth", "seg"), streams=None) -> dict:
    """``sample(index)`` plus latents filled with ``index + stream number``, a caption of ``index % 3 + 2``
    tokens filled with ``index`` and one-token prompts filled with ``-index``."""
    members = sample(index, modalities)
    members["json"]["precomputed"] = {"codec": "pixel", "latent_shape": LATENT_SHAPE, "text_dim": TEXT_DIM}
    for s, name in enumerate(streams or ("rgb", *modalities)):
        latent = torch.full(LATENT_SHAPE, float(index + s), dtype=torch.float16)
        members[f"latent.{name}.safetensors"] = safetensors.torch.save({"latent": latent})
    length = index % 3 + 2
    text = {
        "caption": torch.full((length, TEXT_DIM), float(index)),
        "caption_mask": torch.ones(length, dtype=torch.bool),
    }
    for name in modalities:
        text[f"prompt.{name}"] = torch.full((1, TEXT_DIM), -float(index))
        text[f"prompt_mask.{name}"] = torch.ones(1, dtype=torch.bool)
    members["text.safetensors"] = safetensors.torch.save(
        {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in text.items()}
    )
    return members


def test_precomputed_batches_hold_latents_and_padded_texts(tmp_path, caplog):
    lacking = precomputed_sample(2, streams=("rgb", "depth"))  # no seg latent
    with ShardWriter(str(tmp_path), "shard", 3) as writer:
        for i in range(6):
            writer.write(lacking if i == 2 else precomputed_sample(i))
    loader = make_loader(tmp_path, ["depth", "seg"], 3, precomputed=True, shuffle_buffer=0, shardshuffle=False)
    with caplog.at_level(logging.WARNING, logger="data_pipeline.loader"):
        batches = list(loader)
    assert "'s002'" in caplog.text and "no latent.seg.safetensors member" in caplog.text
    assert [b["key"] for b in batches] == [["s000", "s001", "s003"], ["s004", "s005"]]
    assert sum(b["skipped"] for b in batches) == 1
    first = batches[0]
    assert "rgb" not in first and set(first["latent"]) == {"rgb", "depth", "seg"}
    assert first["latent"]["rgb"].shape == (3, *LATENT_SHAPE) and first["latent"]["rgb"].dtype == torch.float32
    for b, index in enumerate((0, 1, 3)):
        for s, name in enumerate(("rgb", "depth", "seg")):
            assert (first["latent"][name][b] == index + s).all()
    text = first["text"]
    assert text["caption"].shape == (3, 3, TEXT_DIM) and text["caption"].dtype == torch.float32  # 2, 3, 2 tokens
    assert text["caption_mask"].tolist() == [[True, True, False], [True] * 3, [True, True, False]]
    assert batches[1]["text"]["caption_mask"].tolist() == [[True, True, True, False], [True] * 4]  # 3 and 4 tokens
    assert (batches[1]["text"]["caption"][0, 3] == 0).all() and (batches[1]["text"]["caption"][0, :3] == 4).all()
    assert set(text["prompt"]) == set(text["prompt_mask"]) == {"depth", "seg"}
    assert text["prompt"]["seg"].shape == (3, 1, TEXT_DIM) and (text["prompt"]["seg"][2] == -3).all()
    assert first["caption"][2] == "clip number 3" and first["prompts"]["depth"][0] == "depth of clip 0"


def test_precomputed_needs_the_whole_clip_and_the_members(dataset, caplog):
    root, keys = dataset
    with pytest.raises(ValueError, match="frames and size do not apply to precomputed"):
        make_loader(root, [], 2, precomputed=True, size=16)
    with caplog.at_level(logging.WARNING, logger="data_pipeline.loader"):
        assert run(make_loader(root, [], 4, precomputed=True))[0] == []  # plain shards: every sample skipped
    assert caplog.text.count("no 'precomputed' entry") == len(keys)


@pytest.mark.parametrize(
    "start, frames, box, size, interpolation",
    [
        (0, 6, None, None, cv2.INTER_AREA),  # the whole clip, decoded straight into the output
        (1, 4, (2, 3, 15, 17), (11, 13), cv2.INTER_AREA),  # a window and a crop, shrunk
        (2, 3, (1, 0, 12, 14), (24, 28), cv2.INTER_AREA),  # enlarged
        (0, 5, (0, 0, 20, 22), (11, 13), cv2.INTER_NEAREST),  # the whole frame, shrunk
        (3, 2, (4, 5, 9, 10), None, cv2.INTER_AREA),  # cropped only
    ],
)
def test_decoding_at_the_crop_gives_what_decoding_then_cropping_gives(start, frames, box, size, interpolation):
    from data_pipeline.loader import _stack_rgb

    video = np.random.default_rng(0).integers(0, 256, (6, 20, 22, 3), dtype=np.uint8)
    with VideoReader(encode_video(video)) as reader:  # FFV1: lossless
        assert reader.shape == (6, 20, 22)
        clip = reader.read_bgr(start, frames, box, size, interpolation)
    top, left, h, w = box or (0, 0, 20, 22)
    plain = video[start : start + frames, top : top + h, left : left + w]
    if size is not None:
        plain = np.stack([cv2.resize(f, size[::-1], interpolation=interpolation) for f in plain])
    batch = _stack_rgb([clip, clip])  # what collate makes of it: RGB, [B, 3, T, H, W]
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, *plain.shape[:3])
    assert np.array_equal(batch[1].permute(1, 2, 3, 0).numpy(), plain)


def test_a_window_past_the_decodable_frames_is_refused():
    with VideoReader(encode_video(clip(0, "rgb", frames=3))) as reader:
        with pytest.raises(ValueError, match="only 3 frames decode, 5 needed"):
            reader.read_bgr(1, 4)
