"""The model card (README.md) of an exported pipeline: what the model is, what it was trained on, how it scored.

Written from what the run left behind: its config, its data's ``dataset.json`` (source, licence, source URL,
the estimator of each modality), its evaluation figures (``<run>/eval/results.json``) and the checkpoint the
weights came from. The front matter is the Hugging Face Hub's model-card metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import ModelCardData
from omegaconf import DictConfig, OmegaConf

from unity.method.tasks import TASKS

TAGS = ["video-diffusion", "unity-video", "depth-estimation", "optical-flow", "multimodal"]


def trained_modalities(config: DictConfig) -> list[str]:
    """The auxiliary modalities the run routed (weight > 0)."""
    return [name for name, weight in config.routing.modalities.items() if weight > 0]


def trained_tasks(config: DictConfig) -> list[str]:
    """The tasks the run routed: a probability > 0 in ``routing.tasks`` or in a stage of the curriculum."""
    tables = [config.routing.tasks] if not config.routing.curriculum else [s.tasks for s in config.routing.curriculum]
    return [name for name in TASKS if any(table.get(name, 0) > 0 for table in tables)]


def read_dataset_card(root: str, split: str = "train") -> dict | None:
    """The ``dataset.json`` of a split of ``root`` (resolved from the working directory), or None when absent."""
    path = os.path.join(root, split, "dataset.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _data_section(config: DictConfig) -> list[str]:
    root = str(config.data.root)
    info = read_dataset_card(root)
    lines = ["## Training data", ""]
    shape = f"{config.data.frames}-frame {config.data.size}x{config.data.size} clips"
    if info is None:
        return lines + [f"{shape} from `{root}` (its `train/dataset.json` was not found at export time).", ""]
    source = info.get("source", "unknown")
    lines.append(f"{shape}: {info.get('samples', '?')} training samples from `{root}` (source: {source}).")
    lines.append("")
    lines.append(f"- licence of the footage: {info.get('license') or 'not recorded'}")
    lines.append(f"- source URL: {info.get('source_url') or 'not recorded'}")
    for modality, made_by in (info.get("estimators") or {}).items():
        lines.append(f"- `{modality}` made by: {made_by}")
    return lines + [""]


def _evaluation_section(run_dir: Path) -> list[str]:
    path = run_dir / "eval" / "results.json"
    lines = ["## Evaluation", ""]
    if not path.is_file():
        return lines + ["The run was not evaluated (no `eval/results.json`).", ""]
    results = json.loads(path.read_text())
    lines += [
        "From the run's `eval/results.json` (depth estimation on the held-out test split; `step0.` is the",
        "untrained model, `baseline_mean.` the mean training disparity map):",
        "",
        "| metric | value |",
        "| --- | ---: |",
    ]
    for key, value in results.items():
        if isinstance(value, (int, float)):
            lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    return lines + [""]


def model_card(
    config: DictConfig, run_dir: Path, checkpoint: str, step: int, weights: str, parameters: int, license: str
) -> str:
    """The README.md text of an export of ``checkpoint`` (step ``step``, ``weights`` file) of the run ``run_dir``."""
    modalities = trained_modalities(config)
    front = ModelCardData(library_name="unity", license=license, tags=TAGS).to_yaml()
    model = config.model
    tasks = "\n".join(f"- `{name}`: {TASKS[name].description}" for name in trained_tasks(config))
    lines = [
        "---",
        front,
        "---",
        "",
        f"# {config.run.name}",
        "",
        f"A Unity model: one video diffusion transformer (UnityDiT, {parameters / 1e6:.2f} M parameters, "
        f"width {model.hidden}, {model.depth} blocks, patch {list(model.patch)}, codec `{model.codec}`, text encoder "
        f"`{model.text_encoder}`) trained on RGB video together with {', '.join(modalities)}, the tasks routed per "
        "sample. Its tasks:",
        "",
        tasks,
        "",
        *_data_section(config),
        "## Training",
        "",
        f"{step} steps of batch {config.data.batch_size} (`{config.parallel.engine}` engine, AdamW at lr "
        f"{config.optim.lr}, {config.schedule.warmup_steps} warmup steps, then {config.schedule.kind}); "
        f"these are the `{weights}` weights of `{checkpoint}`. The model section of the resolved config "
        "(all of it is in `config.yaml`):",
        "",
        "```yaml",
        OmegaConf.to_yaml(config.model).rstrip(),
        "```",
        "",
        *_evaluation_section(run_dir),
        "## Use",
        "",
        "```python",
        "from unity import UnityPipeline",
        "",
        'pipe = UnityPipeline.from_pretrained("path/to/this/folder")',
        'out = pipe(task="estimate", video="clip.mp4", modality="depth")  # or uint8 frames [T, H, W, 3]',
        "out.videos['depth']  # uint8 [1, T, H, W, 3], the visual form; out.estimate: relative disparity [1, T, H, W]",
        "```",
        "",
        "Everything loads from this local folder; nothing is downloaded.",
        "",
        "## License",
        "",
        f"The weights are released under `{license}`; the training footage keeps its own licence (above).",
        "",
    ]
    return "\n".join(lines)
