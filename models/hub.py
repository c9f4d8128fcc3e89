"""Save and load a network the Hugging Face way, from local folders only.

``save_pretrained(dir)`` writes ``config.json`` (the constructor's arguments) and
``model.safetensors`` (huggingface_hub's ``PyTorchModelHubMixin``); ``from_pretrained(dir)`` rebuilds
the network from that config and loads every weight strictly. Nothing is downloaded: a Hub repository
is fetched first with ``hf download REPO --local-dir DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin
from huggingface_hub.constants import CONFIG_NAME, SAFETENSORS_SINGLE_FILE
from safetensors import SafetensorError
from safetensors.torch import load_model

CARD = """---
{{ card_data }}
---

A UnityDiT: the transformer of a Unity model (one video diffusion transformer over RGB video and its
auxiliary modalities). `UnityDiT.from_pretrained(folder)` (Unity's `models` package) loads it; the pipeline
folder above it, when there is one, loads whole with `UnityPipeline.from_pretrained`.
"""


class LocalHubMixin(
    PyTorchModelHubMixin,
    model_card_template=CARD,
    library_name="unity",
    license="apache-2.0",
    tags=["video-diffusion", "unity-video", "multimodal"],
):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for an ``nn.Module``; loading is local and strict."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, map_location="cpu", strict: bool = True, **model_kwargs):
        """The network saved in the local folder ``pretrained_model_name_or_path``, in eval mode on ``map_location``."""
        folder = Path(pretrained_model_name_or_path)
        missing = [name for name in (CONFIG_NAME, SAFETENSORS_SINGLE_FILE) if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{folder} lacks {' and '.join(missing)}: give a folder written by {cls.__name__}.save_pretrained "
                "(a Hub repository is fetched first with `hf download REPO --local-dir DIR`)"
            )
        return super().from_pretrained(
            folder, local_files_only=True, map_location=map_location, strict=strict, **model_kwargs
        )

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision=None,
        cache_dir=None,
        force_download=False,
        local_files_only=True,
        token=None,
        map_location="cpu",
        strict: bool = True,
        **model_kwargs,
    ):
        model = cls(**model_kwargs)
        path = os.path.join(model_id, SAFETENSORS_SINGLE_FILE)
        try:
            load_model(model, path, strict=strict, device=str(map_location))
        except SafetensorError as e:
            raise ValueError(f"{path} is damaged: not a readable safetensors file ({e}); save it again") from None
        return model.eval()
