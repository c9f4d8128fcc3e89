"""Wan checkpoints in and out: a Wan folder as a UnityDiT or a run folder, and a run's rgb path as a Wan folder.

Reading is lazy: safetensors files are memory-mapped and every renamed or reshaped tensor stays a
view of the file, so a conversion holds in memory only what it must build (the fused q/k/v and k/v
projections, about a third of the weights) and never two copies of the model. The run folder is
written by ``unity.train.checkpoint`` like any run's (``config.yaml`` + ``checkpoints/step_0000000``),
so ``train.init_from=DIR``, ``python -m unity.sample --ckpt DIR`` and ``load_trained`` take it; its
``state.json`` names the parameters the conversion created (``new_parameters``), which the trainer
gives ``optim.new_param_lr_mult``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors import safe_open
from safetensors.torch import save_file

from models.config import ModelConfig
from models.dit import UnityDiT
from unity.config import load, load_run_config
from unity.inference.export import replaceable
from unity.method import wan
from unity.method.grow import grown_state, rgb_path_state
from unity.method.network import TrainModule
from unity.train.checkpoint import WEIGHTS, find_checkpoint, save_checkpoint, save_run_config, state_mismatch

log = logging.getLogger(__name__)

WEIGHTS_NAME = "diffusion_pytorch_model"  # file stem of Wan's and diffusers' transformer weights
SHARD_BYTES = 5 * 1024**3  # largest shard an export writes


@dataclass
class WanCheckpoint:
    """A Wan transformer on disk, opened lazily: ``config.json`` and its (sharded) safetensors."""

    path: Path
    config: dict
    files: dict[str, safe_open] = field(repr=False)  # tensor name -> the open file holding it

    @classmethod
    def open(cls, path: str | Path) -> WanCheckpoint:
        """``path``: a folder with ``config.json`` and safetensors (one file or shards with an index), its
        ``transformer/`` subfolder (a diffusers pipeline), or one ``.safetensors`` file beside ``config.json``."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such Wan transformer folder or file")
        if path.is_dir() and not (path / "config.json").is_file() and (path / "transformer" / "config.json").is_file():
            path = path / "transformer"
        folder = path if path.is_dir() else path.parent
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{folder} has no config.json: give the folder of a Wan transformer (diffusers' transformer/ "
                "subfolder, or the Wan repository's checkpoint folder) with its config.json and safetensors"
            )
        names = [path] if path.is_file() else sorted(folder.glob("*.safetensors"))
        if not names:
            raise FileNotFoundError(f"{folder} holds no .safetensors weights (.pth checkpoints are not read)")
        files = {}
        for name in names:
            try:
                handle = safe_open(str(name), framework="pt")
            except Exception as e:  # safetensors' own error type: a truncated or damaged file
                raise ValueError(f"{name} is not a readable safetensors file ({e}); download it again") from None
            files.update(dict.fromkeys(handle.keys(), handle))
        try:
            config = json.loads((folder / "config.json").read_text())
        except ValueError as e:
            raise ValueError(f"{folder / 'config.json'} is not valid JSON ({e}); download it again") from None
        return cls(folder, config, files)

    def get(self, name: str) -> torch.Tensor:
        return self.files[name].get_tensor(name)

    @property
    def layout(self) -> str:
        return wan.detect_layout(self.files)

    @property
    def shape(self) -> dict:
        shape = wan.wan_shape(self.config)
        if wan.depth_of(self.files) != shape["depth"]:
            raise ValueError(
                f"{self.path}/config.json says {shape['depth']} blocks, the weights hold {wan.depth_of(self.files)}"
            )
        return shape

    def unity_state(self) -> dict[str, torch.Tensor]:
        """Every tensor under its UnityDiT name (views of the files where no copy is needed)."""
        layout, shape = self.layout, self.shape
        wan.check_keys(self.files, layout, shape["depth"])
        return {rule.unity: wan.to_unity(self.get, rule, layout, shape["patch"]) for rule in wan.rules(shape["depth"])}


def dit_from_wan(path: str | Path, variant: ModelConfig | None = None, device: str | torch.device = "cpu") -> UnityDiT:
    """A UnityDiT holding the Wan transformer at ``path`` (fp32), grown to ``variant`` (default plain Wan).

    With one rgb stream, ``dit(x[:, None], rgb, sigma[:, None], caption=emb, caption_mask=ones)[:, 0]``
    equals ``WanTransformer3DModel(x, timestep=1000 * sigma, encoder_hidden_states=emb).sample``.
    """
    checkpoint = WanCheckpoint.open(path)
    shape = checkpoint.shape
    config = wan.wan_model_config(shape, variant)
    state, _ = grown_state(checkpoint.unity_state(), config)
    dit = UnityDiT(config, shape["in_channels"], shape["text_dim"])
    dit.load_state_dict({name: x.float() for name, x in state.items()})
    return dit.to(device).eval()


# ---------------------------------------------------------------------------------------------- Wan -> run


PLAIN_WAN = [  # the run config of a conversion given none: Wan itself, text to video
    "model.codec=diffusers",
    "model.text_encoder=hf",
    "model.switcher=none",
    "model.in_context=caption_only",
    "data.modalities=[]",
]


def run_config(shape: dict, config: DictConfig | None, modalities: list[str] | None) -> DictConfig:
    """The run config of a converted Wan: ``config``'s (its model variant kept, the shape Wan's); None is
    :data:`PLAIN_WAN` (set ``model.codec_path`` and ``model.text_path`` to the VAE and umT5 folders)."""
    config = load(None, PLAIN_WAN) if config is None else config.copy()
    if modalities is not None:
        config.data.modalities = list(modalities)
    if config.model.text_encoder not in ("hf", "precomputed"):
        raise ValueError(
            f"model.text_encoder is {config.model.text_encoder!r}; a converted Wan reads umT5 embeddings: "
            "use hf (model.text_path = the umT5 folder) or precomputed"
        )
    config.model = OmegaConf.structured(wan.wan_model_config(shape, OmegaConf.to_object(config.model)))
    return config


def convert_wan(
    src: str | Path, out: str | Path, config: DictConfig | None = None, modalities: list[str] | None = None
) -> Path:
    """Write the Wan transformer ``src`` as the run folder ``out``, grown to ``config``'s model; returns the checkpoint.

    ``config``: the run config the weights are for (its model section chooses the variant); None
    converts to plain Wan. ``modalities`` sets ``data.modalities``. Raises ValueError listing every key
    that does not map and every option that cannot hold Wan.
    """
    checkpoint = WanCheckpoint.open(src)
    shape = checkpoint.shape
    config = run_config(shape, config, modalities)
    model_config: ModelConfig = OmegaConf.to_object(config.model)
    state, new = grown_state(checkpoint.unity_state(), model_config)
    state = {wan.PREFIX + name: x for name, x in state.items()}
    with torch.device("meta"):
        expected = TrainModule(UnityDiT(model_config, shape["in_channels"], shape["text_dim"]), None).state_dict()
    problems = state_mismatch(state, expected)
    if problems:
        raise ValueError(f"the converted weights do not fit the configured model:\n{problems}")
    config.train.init_from = str(Path(out).resolve())  # the config now trains from these weights
    save_run_config(out, config)
    info = {"converted_from": str(Path(src).resolve()), "new_parameters": [wan.PREFIX + name for name in new]}
    folder = save_checkpoint(out, 0, state, None, info, keep_last=0)
    log.info("converted %s (%s layout, %d tensors, %d new) to %s", src, checkpoint.layout, len(state), len(new), folder)
    return Path(folder)


# ---------------------------------------------------------------------------------------------- run -> Wan


def export_wan(
    ckpt: str | Path,
    out: str | Path,
    layout: str = wan.DIFFUSERS,
    use_ema: bool = True,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the rgb path of a run (or checkpoint) as a Wan transformer folder: ``config.json`` and safetensors
    (``WanTransformer3DModel.from_pretrained(out)`` loads the diffusers layout). Returns ``out``.

    The EMA weights when asked and saved; ``dtype`` casts (default: as stored). Raises ValueError naming
    every model option that keeps the run from being a Wan transformer.
    """
    if layout not in wan.LAYOUTS:
        raise ValueError(f"layout {layout!r}; choose one of {', '.join(wan.LAYOUTS)}")
    folder = find_checkpoint(ckpt)
    config_path = folder.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} is missing: a checkpoint is exported with its run's config.yaml")
    run = load_run_config(str(config_path))
    if run.lora.enabled:
        raise ValueError(f"{ckpt} is a LoRA run: fold its adapters in first (python -m unity.lora merge)")
    config: ModelConfig = OmegaConf.to_object(run.model)
    problems = wan.not_wan(config)
    if problems:
        raise ValueError(f"{ckpt} cannot be written as a Wan transformer: " + "; ".join(problems))
    stem = WEIGHTS[1] if use_ema and (folder / f"{WEIGHTS[1]}.safetensors").is_file() else WEIGHTS[0]
    handle = safe_open(str(folder / f"{stem}.safetensors"), framework="pt")
    state = {name[len(wan.PREFIX) :]: handle.get_tensor(name) for name in handle.keys() if name.startswith(wan.PREFIX)}
    state = rgb_path_state(state, config)
    in_channels = state["patch_embed.proj.weight"].shape[1] // (config.patch[0] * config.patch[1] * config.patch[2])
    text_dim = state["context.text_proj.fc1.weight"].shape[1]
    tensors = {}
    for rule in wan.rules(config.depth):
        tensors.update(wan.from_unity(state.pop(rule.unity), rule, layout, config.patch))
    if state:
        raise ValueError(f"{folder} holds tensors outside Wan's rgb path: {', '.join(sorted(state))}")
    tensors = {name: (x if dtype is None else x.to(dtype)).contiguous() for name, x in tensors.items()}
    out = Path(out)
    if not replaceable(out, "config.json", ("WanTransformer3DModel", "WanModel")):
        raise FileExistsError(f"{out} exists and is not an earlier Wan export; choose another --out or remove it")
    tmp = out.with_name(out.name + ".tmp")  # written whole, then put in place
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_config = wan.diffusers_config if layout == wan.DIFFUSERS else wan.original_config
    (tmp / "config.json").write_text(json.dumps(write_config(config, in_channels, text_dim), indent=2) + "\n")
    write_shards(tensors, tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("exported the %s weights of %s as a %s-layout Wan transformer in %s", stem, folder, layout, out)
    return out


def write_shards(tensors: dict[str, torch.Tensor], out: Path, limit: int = SHARD_BYTES) -> None:
    """``diffusion_pytorch_model.safetensors``, or shards of at most ``limit`` bytes and their index."""
    shards, size = [{}], 0
    for name, x in tensors.items():
        nbytes = x.numel() * x.element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = x
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], str(out / f"{WEIGHTS_NAME}.safetensors"), metadata={"format": "pt"})
        return
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        name = f"{WEIGHTS_NAME}-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
    total = sum(x.numel() * x.element_size() for x in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / f"{WEIGHTS_NAME}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
