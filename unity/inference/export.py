"""A trained run exported as a pipeline folder that ``UnityPipeline.from_pretrained`` loads, with its model card.

``python -m unity.convert export --ckpt RUN_OR_CKPT --out DIR`` calls :func:`export`. A LoRA run's adapters
are folded into its base first, so the folder needs neither peft nor the base run. The folder is written
under a temporary name and renamed when complete; exporting again to the same folder replaces it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from unity import __version__
from unity.inference.loading import Trained, load_trained
from unity.inference.model_card import model_card
from unity.inference.unity_pipeline import INDEX, UnityPipeline
from unity.method.lora import merged_state
from unity.method.network import build_model
from unity.train.checkpoint import read_state

LICENSE = "apache-2.0"  # the default licence of exported weights: the code's


def _without_lora(trained: Trained) -> Trained:
    """A LoRA run's model with its adapters folded into the base weights, as a plain model."""
    state = merged_state(trained.module)
    config = OmegaConf.merge(trained.config, {"lora": {"enabled": False}, "train": {"init_from": ""}})
    module, text, codec = build_model(config, trained.device)
    module.load_state_dict(state)
    module.eval()
    text = module.text if module.text is not None else text
    return Trained(config, module, text, codec, trained.checkpoint, trained.weights, trained.device)


def replaceable(out: Path, index: str, classes: tuple[str, ...]) -> bool:
    """Whether ``out`` may be written: absent, empty, or an earlier export (``index`` names one of ``classes``)."""
    if not out.exists():
        return True
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        name = json.loads((out / index).read_text()).get("_class_name")
    except (OSError, ValueError):
        return False
    return name in classes


def export(ckpt: str | Path, out: str | Path, use_ema: bool = True, license: str = LICENSE) -> Path:
    """Write the pipeline folder ``out`` from a run folder (its latest checkpoint) or a checkpoint folder."""
    out = Path(out)
    if not replaceable(out, INDEX, (UnityPipeline.__name__,)):
        raise FileExistsError(f"{out} exists and is not an earlier export; choose another --out or remove it")
    trained = load_trained(ckpt, use_ema=use_ema, device="cpu")
    if trained.config.lora.enabled:
        trained = _without_lora(trained)
    pipe = UnityPipeline.from_trained(trained)
    checkpoint = Path(trained.checkpoint)
    run_dir, step = checkpoint.parent.parent, read_state(checkpoint, rank=0)["step"]
    origin = {"checkpoint": str(checkpoint.resolve()), "step": step, "weights": trained.weights}
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, index_extra={"_unity_version": __version__, "exported_from": origin})
    parameters = sum(p.numel() for p in pipe.transformer.parameters())
    card = model_card(trained.config, run_dir, str(checkpoint), step, trained.weights, parameters, license)
    (tmp / "README.md").write_text(card)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
