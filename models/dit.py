"""UnityDiT: one video diffusion transformer over a sample's time-aligned streams (rgb and auxiliary modalities).

Each stream ``[C, T, H, W]`` is cut into 3D patches; all streams of a sample then share one joint
self-attention (told apart by the modality-adaptive switcher and, per layout, by their RoPE offsets),
each attends to its own text context (the in-context learner), and the network predicts the
flow-matching velocity of every stream. Which streams are noised (the task) is only in ``t``.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint

from .attention import AttentionBackend
from .blocks import FinalLayer, UnityBlock
from .config import ModelConfig
from .context import RGB, InContextLearner
from .embed import PatchEmbed, unpatchify
from .hub import LocalHubMixin
from .rope import rope_tables, stream_positions
from .sequence_parallel import SequenceParallel
from .switcher import ModalitySwitcher


class UnityDiT(nn.Module, LocalHubMixin):
    """Patch embedding -> ``depth`` AdaLN-Zero blocks over all streams' tokens -> per-stream final layer.

    ``save_pretrained(dir)`` / ``from_pretrained(dir)`` write and read ``config.json`` + ``model.safetensors``
    (``models/hub.py``); ``config`` may then be the dict of a ``ModelConfig``.
    """

    def __init__(self, config: ModelConfig | dict, in_channels: int, text_dim: int):
        super().__init__()
        config = ModelConfig(**config) if isinstance(config, dict) else config
        config.validate()
        # what save_pretrained writes to config.json: the constructor's arguments
        self._hub_mixin_config = {"config": asdict(config), "in_channels": in_channels, "text_dim": text_dim}
        self.config = config
        self.in_channels = in_channels
        self.text_dim = text_dim
        self.patch = tuple(config.patch)
        self.head_dim = config.hidden // config.heads
        self.grad_checkpointing = config.grad_checkpointing
        self.attend = AttentionBackend(config.attention)

        patch_dim = in_channels * math.prod(self.patch)
        self.patch_embed = PatchEmbed(in_channels, self.patch, config.hidden)
        self.switcher = ModalitySwitcher(
            config.hidden, config.num_modalities, config.switcher, config.timesteps, config.time_freq_dim
        )
        cross_attention = config.in_context != "none"
        self.context = (
            InContextLearner(text_dim, config.hidden, config.in_context, config.text_pad) if cross_attention else None
        )
        self.blocks = nn.ModuleList(
            UnityBlock(
                config.hidden,
                config.heads,
                config.mlp_width,
                config.qk_norm,
                cross_attention,
                self.attend,
                config.qk_norm_scope,
                config.stream_gate,
            )
            for _ in range(config.depth)
        )
        self.final = FinalLayer(config.hidden, patch_dim, config.final_layer)
        # The auxiliary streams' own way in and out (aux_path: copied) and their zero-initialised input map.
        copied = config.aux_path == "copied"
        self.aux_patch_embed = PatchEmbed(in_channels, self.patch, config.hidden) if copied else None
        self.aux_final = FinalLayer(config.hidden, patch_dim, config.final_layer) if copied else None
        self.aux_in = nn.Linear(config.hidden, config.hidden) if config.aux_in_proj else None
        self.sequence_parallel: SequenceParallel | None = None
        self.initialize_weights()

    @property
    def attention_backend(self) -> str:
        """The attention kernel chosen at build time: flash, sdpa or math."""
        return self.attend.name

    def enable_sequence_parallel(self, group) -> None:
        """Split every stream's tokens across the ranks of ``group`` (DeepSpeed-Ulysses); None turns it off.

        Every rank of the group must then call ``forward`` with the same inputs; each returns the full
        output, and its parameter gradients are the part from its own tokens, to be summed over the
        group (see ``models/sequence_parallel.py``). ValueError when the heads (here) or the tokens per
        stream (at forward) are not a multiple of the group size.
        """
        self.sequence_parallel = None if group is None else SequenceParallel(group, self.config.heads)
        for block in self.blocks:  # only the joint self-attention: cross-attention is token-local
            block.attn.attend = self.attend if group is None else self.sequence_parallel.attention(self.attend)

    def initialize_weights(self) -> None:
        """DiT's init: xavier linears, normal(0.02) time and modality embeddings, zero modulation and output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for linear in (self.switcher.time_embed.mlp[0], self.switcher.time_embed.mlp[2]):
            nn.init.normal_(linear.weight, std=0.02)
        if self.switcher.modality_embed is not None:
            nn.init.normal_(self.switcher.modality_embed.weight, std=0.02)
        zeroed = [self.switcher.modulation[-1], self.final.linear] + ([self.aux_in] if self.aux_in is not None else [])
        if self.config.final_layer == "adaln":
            zeroed.append(self.final.modulation[-1])
        for linear in zeroed:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation)
        if self.aux_patch_embed is not None:  # auxiliary streams start from the rgb path
            self.aux_patch_embed.load_state_dict(self.patch_embed.state_dict())
            self.aux_final.load_state_dict(self.final.state_dict())

    def forward(
        self, x, modality, t, caption=None, caption_mask=None, prompt=None, prompt_mask=None, layout: str | None = None
    ) -> torch.Tensor:
        """Velocity of every stream.

        x ``[B, S, C, T, H, W]``; modality long ``[B, S]`` (registry indices, rgb = 0); t ``[B, S]``
        (0 = clean; Wan's ``timestep / 1000``), or ``[B, S, T / pt]``, a time per stream and token frame;
        caption ``[B, Lc, text_dim]`` + caption_mask bool ``[B, Lc]``; prompt
        ``[B, S, Lp, text_dim]`` + prompt_mask bool ``[B, S, Lp]`` (True = real token). The caption
        is unused with ``in_context: none`` and the prompt unless ``in_context: dual``; those may be None.
        ``layout`` overrides ``model.layout`` for this call (a visual sentence's streams follow in time).
        Returns ``[B, S, C, T, H, W]`` in the dtype of ``x``.
        """
        self.check_inputs(x, modality, t, caption, caption_mask, prompt, prompt_mask)
        streams, (frames, height, width) = x.shape[1], x.shape[3:]
        grid = (frames // self.patch[0], height // self.patch[1], width // self.patch[2])

        sp = self.sequence_parallel
        local = slice(None) if sp is None else sp.local(math.prod(grid))  # this rank's tokens of each stream
        aux = (modality != RGB)[:, :, None, None]  # [B, S, 1, 1]
        tokens = self.patch_embed(x, local)  # [B, S, N(/P), D]
        if self.aux_patch_embed is not None:
            tokens = torch.where(aux, self.aux_patch_embed(x, local), tokens)
        if self.aux_in is not None:
            tokens = torch.where(aux, self.aux_in(tokens), tokens)
        tokens = tokens.to(x.dtype)  # the residual stream keeps x's dtype
        c, modulation = self.switcher(t, modality)  # [B, S, D], [B, S, 6, D]; per frame [B, S, F, D], [B, S, F, 6, D]
        if t.ndim == 3 and sp is not None:  # a rank's share of the tokens need not hold whole frames: one per token
            frame = torch.arange(math.prod(grid), device=x.device)[local] // (grid[1] * grid[2])
            c, modulation = c[:, :, frame], modulation[:, :, frame]
        token_embedding = self.switcher.token_embedding(modality)
        if token_embedding is not None:
            tokens = tokens + token_embedding.to(tokens.dtype)
        positions = stream_positions(streams, grid, layout or self.config.layout, device=x.device)  # [S·N, 3]
        if sp is not None:  # each kept token keeps its true position
            positions = positions.view(streams, -1, 3)[:, local].reshape(-1, 3)
        rope = rope_tables(positions, self.head_dim, self.config.rope_theta)
        context, context_mask = (None, None)
        if self.context is not None:
            context, context_mask = self.context(modality, caption, caption_mask, prompt, prompt_mask)
        gated = modality == RGB if self.config.stream_gate else None  # [B, S]

        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, modulation, rope, context, context_mask, gated, use_reentrant=False)
            else:
                tokens = block(tokens, modulation, rope, context, context_mask, gated)

        out = self.final(tokens, c)  # [B, S, N(/P), pt·ph·pw·C]
        if self.aux_final is not None:
            out = torch.where(aux, self.aux_final(tokens, c), out)
        if sp is not None:
            out = sp.gather(out, dim=2)  # all N tokens, every rank's share in order
        out = unpatchify(out, self.patch, grid)  # [B, S, C, T, H, W]
        if self.config.prediction == "x":  # the head predicted the clean stream x̂_0: v = (x_t - x̂_0) / t
            t_frames = t[:, :, None] if t.ndim == 2 else t.repeat_interleave(self.patch[0], dim=2)  # [B, S, 1 or T]
            out = (x - out) / t_frames.clamp(min=self.config.x_min_t)[:, :, None, :, None, None].to(out.dtype)
        return out.to(x.dtype)

    def check_inputs(self, x, modality, t, caption, caption_mask, prompt, prompt_mask) -> None:
        """Raise ValueError naming the expected shape of the first input that does not fit."""
        if x.ndim != 6 or x.shape[2] != self.in_channels:
            raise ValueError(f"x must be [B, S, C={self.in_channels}, T, H, W], got {tuple(x.shape)}")
        batch, streams = x.shape[:2]
        if any(size % p for size, p in zip(x.shape[3:], self.patch)):
            raise ValueError(
                f"x [B, S, C, T, H, W] = {tuple(x.shape)}: T, H, W must be multiples of the patch {self.patch}"
            )
        t_shape = (batch, streams) if t is None or t.ndim != 3 else (batch, streams, x.shape[3] // self.patch[0])
        expected = {"modality": (modality, (batch, streams)), "t": (t, t_shape)}
        if self.context is not None:
            lc = caption.shape[1] if caption is not None and caption.ndim == 3 else "Lc"
            expected["caption"] = (caption, (batch, lc, self.text_dim))
            expected["caption_mask"] = (caption_mask, (batch, lc))
        if self.config.in_context == "dual":
            lp = prompt.shape[2] if prompt is not None and prompt.ndim == 4 else "Lp"
            expected["prompt"] = (prompt, (batch, streams, lp, self.text_dim))
            expected["prompt_mask"] = (prompt_mask, (batch, streams, lp))
        for name, (value, shape) in expected.items():
            if value is None or tuple(value.shape) != shape:
                got = None if value is None else tuple(value.shape)
                raise ValueError(f"{name} must have shape [{', '.join(map(str, shape))}], got {got}")
