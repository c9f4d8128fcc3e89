"""UnityPipeline: a trained model as one object in the diffusers style, saved to and loaded from one folder.

The folder (written by :meth:`UnityPipeline.save_pretrained`, e.g. through ``python -m unity.convert export``)::

    model_index.json   the components, the clip shape, the modalities and tasks, where the weights came from
    config.yaml        the run's resolved config (migrated when read, like a run folder's)
    transformer/       UnityDiT.save_pretrained: config.json + model.safetensors
    text_encoder/      builtin or external encoder: model.safetensors; hf: the transformers encoder (+ tokenizer/)
    vae/               codec diffusers: the diffusers VAE (the pixel codec has no weights)
    README.md          the model card

Paths in ``config.yaml`` (``model.codec_path``, ``model.text_path``) are relative to the folder, so it
can be moved or shared as it is. Nothing is downloaded: the folder must be local.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from omegaconf import DictConfig, OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from data_pipeline.benchmark import CATEGORICAL
from data_pipeline.modalities import MODALITIES
from models.codec import Codec, build_codec
from models.dit import UnityDiT
from models.text_encoder import build_text_encoder
from unity.config import load_run_config
from unity.inference.loading import Trained
from unity.inference.media import fit_clip, read_input
from unity.inference.model_card import trained_modalities, trained_tasks
from unity.inference.pipeline import SamplerSettings, run_task, task_streams
from unity.method.network import TrainModule
from unity.method.tasks import T2V, TASKS, get_task

log = logging.getLogger(__name__)

INDEX = "model_index.json"
CONFIG = "config.yaml"
TRANSFORMER, TEXT_ENCODER, TOKENIZER, VAE = "transformer", "text_encoder", "tokenizer", "vae"
WEIGHTS_FILE = "model.safetensors"
OWN_TEXT_ENCODERS = ("builtin", "external")  # text encoders whose weights are the model's own (trained with it)


@dataclass
class UnityPipelineOutput:
    """What a call returns: every stream of the task as uint8 videos, and the raw estimate of an estimation."""

    videos: dict[str, np.ndarray]  # stream name -> uint8 [B, T, H, W, 3], the inputs included
    generated: list[str] = field(default_factory=list)  # the names of the streams the model generated
    estimate: np.ndarray | None = None  # est: the modality read back through the registry (depth: disparity)

    @property
    def frames(self) -> np.ndarray:
        """The first generated stream, uint8 ``[B, T, H, W, 3]`` (diffusers' ``.frames``)."""
        return self.videos[self.generated[0]]


class UnityPipeline:
    """A UnityDiT with its codec and text encoder, the run's clip shape and training shift; tasks by name.

    ``pipe(task="estimate", video=clip, modality="depth")`` estimates depth from an RGB clip;
    ``pipe(task="generate", control=depth_video, modality="depth", prompt=...)`` generates RGB from it;
    ``pipe(task="joint", prompt=..., modality="flow")`` generates both. Tasks are the registry's names or
    aliases (``unity.method.tasks``); sampling is :func:`unity.inference.pipeline.run_task`.
    """

    def __init__(self, transformer: UnityDiT, text_encoder: nn.Module, codec: Codec, config: DictConfig, source=""):
        self.transformer, self.text_encoder, self.codec, self.config = transformer, text_encoder, codec, config
        self.source = str(source)  # where the weights came from (a checkpoint or a pipeline folder)
        device = next(transformer.parameters()).device
        module = TrainModule(transformer, None).eval()
        self.trained = Trained(config, module, text_encoder, codec, self.source, "pretrained", device)

    @property
    def device(self) -> torch.device:
        return self.trained.device

    @property
    def clip_shape(self) -> tuple[int, int]:
        """(frames, size) of the clips the model takes and makes; inputs are fitted to it."""
        return self.trained.clip_shape

    def to(self, device) -> UnityPipeline:
        """Move every component to ``device``."""
        device = torch.device(device)
        for part in (self.transformer, self.text_encoder, self.codec):
            part.to(device)
        self.trained.device = device
        return self

    @classmethod
    def from_trained(cls, trained: Trained) -> UnityPipeline:
        """The pipeline of a run loaded by ``unity.inference.loading.load_trained`` (not a LoRA run: merge it first)."""
        if trained.config.lora.enabled:
            raise ValueError("a LoRA run's DiT carries adapters: fold them in first (unity.inference.export does)")
        return cls(trained.dit, trained.text, trained.codec, trained.config, trained.checkpoint)

    # ------------------------------------------------------------------------------------------ saving, loading

    def save_pretrained(self, folder: str | Path, index_extra: dict | None = None) -> Path:
        """Write the pipeline folder (see the module docstring); ``index_extra`` adds entries to model_index.json."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        model = self.config.model
        self.transformer.save_pretrained(folder / TRANSFORMER)
        components = {TRANSFORMER: ["models.dit", "UnityDiT"]}
        if model.text_encoder in OWN_TEXT_ENCODERS:
            (folder / TEXT_ENCODER).mkdir(exist_ok=True)
            save_model(self.text_encoder, str(folder / TEXT_ENCODER / WEIGHTS_FILE))
            components[TEXT_ENCODER] = [type(self.text_encoder).__module__, type(self.text_encoder).__name__]
        elif model.text_encoder == "hf":
            self.text_encoder.model.save_pretrained(folder / TEXT_ENCODER)
            self.text_encoder.tokenizer.save_pretrained(folder / TOKENIZER)
            components[TEXT_ENCODER] = ["transformers", type(self.text_encoder.model).__name__]
            components[TOKENIZER] = ["transformers", type(self.text_encoder.tokenizer).__name__]
        if model.codec == "diffusers":
            self.codec.vae.save_pretrained(folder / VAE)
            components[VAE] = ["diffusers", type(self.codec.vae).__name__]
        config = OmegaConf.to_container(self.config, resolve=True)
        config["model"]["codec_path"] = VAE if model.codec == "diffusers" else ""  # relative to the folder
        config["model"]["text_path"] = "." if model.text_encoder == "hf" else ""
        config["lora"]["enabled"], config["train"]["init_from"] = False, ""
        OmegaConf.save(OmegaConf.create(config), folder / CONFIG)
        frames, size = self.clip_shape
        index = {
            "_class_name": type(self).__name__,
            **components,
            "codec": model.codec,
            "clip": {"frames": frames, "height": size, "width": size},
            "modalities": trained_modalities(self.config),
            "tasks": {name: TASKS[name].description for name in trained_tasks(self.config)},
            **(index_extra or {}),
        }
        (folder / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: torch.device | str | None = None) -> UnityPipeline:
        """The pipeline saved in the local ``folder``; ``device`` defaults to cuda when available."""
        folder = Path(folder)
        if not (folder / INDEX).is_file() or not (folder / CONFIG).is_file():
            raise FileNotFoundError(
                f"{folder} holds no {INDEX} and {CONFIG}: give a folder written by `python -m unity.convert export` "
                "or UnityPipeline.save_pretrained (a Hub repository is fetched first with "
                "`hf download REPO --local-dir DIR`)"
            )
        index = json.loads((folder / INDEX).read_text())
        if index.get("_class_name") != cls.__name__:
            raise ValueError(f"{folder / INDEX} describes a {index.get('_class_name')!r}, not a {cls.__name__}")
        config = load_run_config(str(folder / CONFIG))
        for key in ("codec_path", "text_path"):  # relative to the folder
            if config.model[key]:
                config.model[key] = str((folder / config.model[key]).resolve())
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        model_config = OmegaConf.to_object(config.model)
        codec = build_codec(model_config, device)
        text = build_text_encoder(model_config, device)
        if config.model.text_encoder in OWN_TEXT_ENCODERS:
            path = folder / TEXT_ENCODER / WEIGHTS_FILE
            try:
                load_model(text, str(path), strict=True, device=str(device))
            except SafetensorError as e:
                raise ValueError(f"{path} is damaged: not a readable safetensors file ({e}); export again") from None
        text.eval().requires_grad_(False)
        transformer = UnityDiT.from_pretrained(folder / TRANSFORMER, map_location=device).requires_grad_(False)
        if (transformer.in_channels, transformer.text_dim) != (codec.channels, text.dim):
            raise ValueError(
                f"{folder}: the transformer takes {transformer.in_channels} channels and {transformer.text_dim}-wide "
                f"text, but the codec gives {codec.channels} and the text encoder {text.dim}"
            )
        log.info("loaded the pipeline in %s", folder)
        return cls(transformer, text, codec, config, folder)

    # ------------------------------------------------------------------------------------------ calling

    def _clips(self, value, modality: str, name: str) -> np.ndarray:
        """uint8 ``[B, T, S, S, 3]`` from a file path, a clip ``[T, H, W, 3]`` or clips ``[B, T, H, W, 3]``;
        a raw auxiliary array (e.g. depth in metres, not uint8) is rendered through the registry first."""
        frames, size = self.clip_shape
        if isinstance(value, (str, Path)):
            return read_input(str(value), modality, frames, size)[None]
        array = np.asarray(value)
        if array.dtype != np.uint8:
            if modality == "rgb":
                raise ValueError(f"{name} must be uint8 RGB frames [T, H, W, 3] or [B, T, H, W, 3], got {array.dtype}")
            array = MODALITIES[modality].encode(array, {})  # one raw clip -> its visual form [T, H, W, 3]
        if array.ndim == 4:
            array = array[None]
        if array.ndim != 5 or array.shape[-1] != 3:
            raise ValueError(f"{name} must be [T, H, W, 3] or [B, T, H, W, 3], got {list(array.shape)}")
        nearest = modality in CATEGORICAL
        return np.stack([fit_clip(clip, frames, size, nearest=nearest, name=name) for clip in array])

    @torch.no_grad()
    def __call__(
        self,
        task: str,
        video=None,
        modality: str = "depth",
        prompt: str | list[str] = "",
        *,
        control=None,
        context=None,
        reverse: bool = False,
        num_inference_steps: int | None = None,
        guidance_scale: float = 1.0,
        method: str = "euler",
        shift: float | None = None,
        seed: int = 0,
        num_videos_per_prompt: int = 1,
        batch_size: int = 8,
        features: tuple[torch.Tensor, torch.Tensor] | None = None,
        progress: bool = False,
    ) -> UnityPipelineOutput:
        """Run ``task`` (a name or alias: estimate / est, generate / cond, joint, t2v, sentence).

        ``video``: the RGB clip(s) of ``estimate``; ``control``: the modality's clip(s) of ``generate``
        (its visual form, or its raw array); ``context``: the three clips A, A', B of a ``sentence``. Each may
        be a file path, uint8 ``[T, H, W, 3]`` or ``[B, T, H, W, 3]`` of any size (fitted to the model's clip
        shape). ``num_inference_steps`` defaults to the run's ``eval.steps`` for estimation, else 20.
        """
        name = get_task(task).name
        if name != T2V and modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(list(MODALITIES)[1:])}")
        rgb = None if video is None else self._clips(video, "rgb", "video")
        control = None if control is None else self._clips(control, modality, "control")
        if context is not None:
            kinds = task_streams("sentence", modality, reverse)[1][:3]
            parts = [self._clips(clip, kind, f"context {i}") for i, (clip, kind) in enumerate(zip(context, kinds))]
            context = np.stack(parts, axis=1)  # [B, 3, T, H, W, 3]
        given = [x for x in (rgb, control, context) if x is not None]
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        count = len(given[0]) if given else len(prompts)
        if len(prompts) == 1:
            prompts = prompts * count
        if len(prompts) != count or any(len(x) != count for x in given):
            raise ValueError(f"the inputs hold {[len(x) for x in given]} clips but {len(prompts)} prompts were given")
        repeat = num_videos_per_prompt
        rgb, control, context = (None if x is None else np.repeat(x, repeat, axis=0) for x in (rgb, control, context))
        prompts = [p for p in prompts for _ in range(repeat)]
        steps = num_inference_steps or (int(self.config.eval.steps) if name == "est" else 20)
        settings = SamplerSettings(steps, method, guidance_scale, shift, seed, batch_size, progress)
        videos = run_task(
            self.trained,
            name,
            modality,
            prompts,
            rgb=rgb,
            control=control,
            context=context,
            reverse=reverse,
            settings=settings,
            features=features,
        )
        names, _, flags = task_streams(name, modality, reverse)
        generated = [n for n, flag in zip(names, flags) if flag]
        estimate = None
        if name == "est" or (name == "sentence" and not reverse):
            read_back = MODALITIES[modality].decode
            estimate = np.stack([read_back(clip) for clip in videos[modality if name == "est" else "B_prime"]])
        return UnityPipelineOutput(videos, generated, estimate)
