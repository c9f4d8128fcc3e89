"""Text encoders: captions and prompts -> token embeddings (docs/architecture.md, "The network").

Every encoder maps ``list[str]`` to ``(embeddings [B, L, dim], mask [B, L])`` with ``mask`` True
on real tokens; ``L`` is the longest text of the batch after truncation to ``text_max_tokens``,
and padded positions hold zeros.

- ``builtin``: UTF-8 bytes + a small trainable transformer; nothing to download.
- ``hf``: a frozen ``transformers`` encoder (T5 / UMT5 ...) from a local folder.
- ``precomputed``: embeddings were written into the shards by ``python -m unity.precompute`` and
  the loader yields them as ``batch["text"]``; the encoder only carries ``dim`` and refuses strings.
- ``external``: captions from feature sequences of another encoder stored in the shards, through a
  trainable adapter (``models/external.py``); prompts through the builtin encoder.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
from einops import rearrange

from models.attention import attention

_TEXT_HINT = (
    "download e.g. google/umt5-xxl (config.json, the encoder weights and the tokenizer files), or "
    "the text_encoder/ and tokenizer/ subfolders of Wan-AI/Wan2.1-T2V-1.3B-Diffusers, and set "
    "model.text_path to that folder"
)


class TextEncoder(nn.Module):
    """Texts -> ``(embeddings [B, L, dim], mask [B, L])``."""

    dim: int

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class ByteTokenizer:
    """UTF-8 bytes as token ids after three specials: ``BOS text EOS``, truncated, padded with ``PAD``."""

    PAD, BOS, EOS = 0, 1, 2
    vocab_size = 256 + 3

    def __init__(self, max_tokens: int):
        if max_tokens < 2:
            raise ValueError(f"text_max_tokens must leave room for BOS and EOS, got {max_tokens}")
        self.max_tokens = max_tokens

    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [B, L], mask [B, L])``; a text too long keeps its first ``max_tokens - 2`` bytes, then EOS."""
        rows = [[self.BOS, *(b + 3 for b in text.encode()[: self.max_tokens - 2]), self.EOS] for text in texts]
        length = max(map(len, rows))
        ids = torch.tensor([row + [self.PAD] * (length - len(row)) for row in rows])
        return ids, ids != self.PAD


class TextBlock(nn.Module):
    """Pre-norm transformer layer over padded tokens. Every weight is used through its module's
    forward (unlike ``nn.MultiheadAttention``), as ZeRO-3 needs to gather partitioned weights."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.norm1(x)), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        attended = attention(q, k, v, key_mask=mask)  # [B, H, L, Dh]
        x = x + self.out(rearrange(attended, "b h l d -> b l (h d)"))
        return x + self.mlp(self.norm2(x))


class BuiltinTextEncoder(TextEncoder):
    """Byte tokens + learned positions -> a small pre-norm transformer; trained with the model."""

    def __init__(self, dim: int, layers: int, max_tokens: int):
        super().__init__()
        self.dim = dim
        self.tokenizer = ByteTokenizer(max_tokens)
        heads = dim // 64 if dim % 64 == 0 else 1  # 64-wide heads where the width allows
        self.tokens = nn.Embedding(ByteTokenizer.vocab_size, dim)
        self.positions = nn.Parameter(torch.randn(max_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(TextBlock(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.tokenizer(texts)
        ids, mask = ids.to(self.positions.device), mask.to(self.positions.device)
        x = self.tokens(ids) + self.positions[: ids.shape[1]]  # [B, L, D]
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x) * mask[..., None], mask


class HFTextEncoder(TextEncoder):
    """A frozen ``transformers`` encoder and its tokenizer; ``dim`` is the model's width."""

    def __init__(self, tokenizer, model: nn.Module, max_tokens: int):
        super().__init__()
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.model = model.requires_grad_(False)
        self.dim = int(getattr(model.config, "d_model", None) or model.config.hidden_size)
        self.train(False)

    def train(self, mode: bool = True) -> HFTextEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = next(self.model.parameters()).device
        tokens = self.tokenizer(
            list(texts), padding="longest", truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ).to(device)
        mask = tokens["attention_mask"].bool()
        x = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return x.float() * mask[..., None], mask


class PrecomputedText(TextEncoder):
    """Stands for embeddings stored in the shards: carries ``dim`` and refuses to encode strings.

    With ``text_encoder=precomputed`` the loader (``precomputed=True``) yields ``batch["text"]``:
    ``caption [B, L, dim]``, ``caption_mask [B, L]`` and ``prompt`` / ``prompt_mask`` per auxiliary
    modality; the null caption for classifier-free guidance is ``null_text.safetensors`` beside the shards.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        raise RuntimeError(
            "text_encoder=precomputed encodes no strings: take the embeddings from the batch "
            "(batch['text'], loaded with precomputed=True from shards written by "
            "`python -m unity.precompute`)"
        )


def hf_folders(path: str) -> tuple[str, str]:
    """``(tokenizer folder, encoder folder)``: ``path`` itself, or its ``tokenizer/`` + ``text_encoder/``."""
    if path and os.path.isfile(os.path.join(path, "config.json")):
        return path, path
    if path and os.path.isfile(os.path.join(path, "text_encoder", "config.json")):
        return os.path.join(path, "tokenizer"), os.path.join(path, "text_encoder")
    raise FileNotFoundError(f"model.text_path {path!r} is not a transformers text encoder folder: {_TEXT_HINT}")


def load_hf_text(path: str, max_tokens: int, dtype: torch.dtype | None = None) -> HFTextEncoder:
    """The encoder in the local folder ``path``: T5 / UMT5 / MT5 take their encoder-only class, others ``AutoModel``."""
    try:
        import transformers
    except ImportError:
        raise ImportError("text_encoder=hf needs the transformers package: pip install -e '.[hf]'") from None
    tokenizer_folder, model_folder = hf_folders(path)
    config = transformers.AutoConfig.from_pretrained(model_folder, local_files_only=True)
    cls = {
        "t5": transformers.T5EncoderModel,
        "umt5": transformers.UMT5EncoderModel,
        "mt5": transformers.MT5EncoderModel,
    }.get(config.model_type, transformers.AutoModel)
    model = cls.from_pretrained(model_folder, local_files_only=True, dtype=dtype or torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    return HFTextEncoder(tokenizer, model, max_tokens)
