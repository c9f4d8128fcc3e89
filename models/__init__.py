"""The network: UnityDiT, its codecs and text encoders, and FLOP counting. Imports nothing else of the project.

- ``dit``: :class:`UnityDiT`, one transformer over a sample's streams;
- ``blocks``: joint self-attention, in-context cross-attention, MLP, final layer;
- ``switcher``: modality-adaptive AdaLN-Zero conditioning; ``context``: per-stream text context;
- ``embed``: 3D patches and timestep embedding; ``rope``: 3D RoPE and stream layouts;
- ``attention``: flash-attn / SDPA / reference backends; ``layers``: fp32 norms and modulation;
- ``sequence_parallel``: DeepSpeed-Ulysses token sharding (:meth:`UnityDiT.enable_sequence_parallel`);
- ``flops``: analytic FLOPs; ``summary``: parameters and FLOPs from the command line;
- ``codec``, ``text``: video codecs and text encoders; ``config``: :class:`ModelConfig`.
"""

__all__ = ["ModelConfig", "UnityDiT"]


def __getattr__(name):
    """``from models import UnityDiT`` imports torch only when asked, so reading the config stays light."""
    if name == "UnityDiT":
        from .dit import UnityDiT

        return UnityDiT
    if name == "ModelConfig":
        from .config import ModelConfig

        return ModelConfig
    raise AttributeError(f"module 'models' has no attribute {name!r}")
