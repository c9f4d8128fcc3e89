"""Tiny random pretrained parts saved to folders, as a user downloads them: a Wan video VAE and a UMT5
encoder, for the precomputed-training benchmark and the tests.

Nothing is downloaded: the weights are random, the tokenizer is word-level, trained here on the
modality prompts and a few caption words (other words map to ``<unk>``).
"""

import torch

from data_pipeline.modalities import MODALITIES

WORDS = [m.prompt for m in MODALITIES.values()] + ["a red green blue box ball cube person walks on the ground"]


def save_wan_vae(folder) -> None:
    """AutoencoderKLWan with 4 latent channels, 4x compression in time and space (1 + 4k frames -> 1 + k)."""
    import diffusers

    torch.manual_seed(0)
    vae = diffusers.AutoencoderKLWan(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[True, True],
        latents_mean=[0.1, 0.0, -0.1, 0.2],
        latents_std=[2.0, 1.0, 0.5, 1.5],
    )
    vae.save_pretrained(folder)


def save_umt5(folder, width: int = 16, layers: int = 1) -> None:
    """A UMT5 encoder of ``layers`` and ``width`` and a word-level tokenizer appending ``</s>`` like T5's."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(WORDS, trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"]))
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    config = transformers.UMT5Config(
        vocab_size=fast.vocab_size, d_model=width, d_kv=8, d_ff=2 * width, num_layers=layers, num_heads=2
    )
    torch.manual_seed(0)
    transformers.UMT5EncoderModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)


def model_overrides(weights) -> list[str]:
    """``key=value`` overrides naming the tiny VAE and UMT5 under ``weights`` (``vae/``, ``umt5/``) and a
    DiT patch that fits their 4x-compressed latents."""
    return [
        "model.codec=diffusers",
        f"model.codec_path={weights / 'vae'}",
        "model.text_encoder=hf",
        f"model.text_path={weights / 'umt5'}",
        "model.text_max_tokens=16",
        "model.patch=[1,2,2]",
    ]
