"""Text encoders: builtin (bytes + a trainable transformer), hf (a tiny random T5 / UMT5 from a local
folder, with a word-level tokenizer trained here) and the precomputed stand-in."""

import pytest
import torch

from models.config import ModelConfig
from models.text import ByteTokenizer
from models.text_encoder import build_text_encoder

TEXTS = ["a red box on the ground", "two people walk", "depth map , near is bright"]


def test_byte_tokenizer_pads_and_truncates():
    ids, mask = ByteTokenizer(8)(["ab", "é", "a long caption"])
    assert ids.shape == mask.shape == (3, 8)
    assert ids[0, :4].tolist() == [ByteTokenizer.BOS, ord("a") + 3, ord("b") + 3, ByteTokenizer.EOS]
    assert mask.sum(1).tolist() == [4, 4, 8]  # "é" is two UTF-8 bytes; the long one is cut to 6 + BOS, EOS
    assert ids[2, -1] == ByteTokenizer.EOS and (ids[~mask] == ByteTokenizer.PAD).all()


def test_builtin_shapes_masks_and_gradients():
    torch.manual_seed(0)
    encoder = build_text_encoder(ModelConfig(text_dim=32, text_layers=2, text_max_tokens=16))
    x, mask = encoder(["short", "a caption longer than sixteen bytes"])
    assert encoder.dim == 32 and x.shape == (2, 16, 32) and mask.shape == (2, 16) and mask.dtype == torch.bool
    assert mask[0].tolist() == [True] * 7 + [False] * 9 and mask[1].all()
    assert (x[~mask] == 0).all()
    alone, _ = encoder(["short"])
    torch.testing.assert_close(alone[0], x[0, :7])  # padding does not change the real tokens
    x.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())  # trainable end to end


def test_precomputed_carries_dim_and_refuses_strings():
    encoder = build_text_encoder(ModelConfig(text_encoder="precomputed", text_dim=4096))
    assert encoder.dim == 4096
    with pytest.raises(RuntimeError, match="batch\\['text'\\].*unity.precompute"):
        encoder(["a caption"])


@pytest.fixture(scope="module", params=["t5", "umt5"])
def hf_folder(request, tmp_path_factory):
    """A tiny random T5 or UMT5 encoder and a word-level tokenizer that appends ``</s>`` like T5's."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(TEXTS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    config_class = transformers.T5Config if request.param == "t5" else transformers.UMT5Config
    config = config_class(vocab_size=fast.vocab_size, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    model_class = transformers.T5EncoderModel if request.param == "t5" else transformers.UMT5EncoderModel
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    model_class(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_hf_shapes_masks_frozen_and_deterministic(hf_folder):
    encoder = build_text_encoder(ModelConfig(text_encoder="hf", text_path=str(hf_folder), text_max_tokens=4))
    assert encoder.dim == 16
    x, mask = encoder(["two people walk", "a red box on the ground", "depth"])
    assert x.shape == (3, 4, 16) and x.dtype == torch.float32
    assert mask.tolist() == [[True] * 4, [True] * 4, [True, True, False, False]]  # cut to 4; "depth" + </s>
    assert (x[~mask] == 0).all() and x[mask].abs().sum() > 0
    again, _ = encoder(["two people walk"])
    torch.testing.assert_close(again[0], x[0])  # deterministic, padding-independent
    encoder.train()
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert not x.requires_grad


def test_hf_pipeline_layout_is_found(hf_folder, tmp_path):
    for sub in ("tokenizer", "text_encoder"):
        (tmp_path / sub).symlink_to(hf_folder, target_is_directory=True)
    encoder = build_text_encoder(ModelConfig(text_encoder="hf", text_path=str(tmp_path)))
    assert encoder(["two people walk"])[0].shape == (1, 4, 16)


def test_missing_hf_folder_says_what_to_download(tmp_path):
    for path in ("", str(tmp_path)):
        with pytest.raises(FileNotFoundError, match="google/umt5-xxl.*model.text_path"):
            build_text_encoder(ModelConfig(text_encoder="hf", text_path=path))
