"""Experiment trackers beside metrics.jsonl and TensorBoard: Weights & Biases (``run.wandb=true``).

One W&B run per Unity run: its id is kept in ``<run>/wandb_id``, so a resumed run continues the same
W&B run (W&B keeps the first record of a step the resume redoes). ``run.wandb_mode=offline`` writes it
under ``<run>/wandb`` for a later ``wandb sync``; ``WANDB_ENTITY``, ``WANDB_API_KEY`` and the other
``WANDB_*`` variables apply as usual.
"""

from __future__ import annotations

import secrets
from pathlib import Path

ID_FILE = "wandb_id"


class WandbTracker:
    """Mirrors every scalar of a metrics record to a W&B run, at the record's step."""

    def __init__(self, run_dir: str, name: str, project: str, mode: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise ImportError(
                "run.wandb=true needs the wandb package: pip install 'unity-video[wandb]' "
                "(in a checkout: pip install -e '.[wandb]'), or set run.wandb=false"
            ) from None
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        id_file = Path(run_dir) / ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else secrets.token_hex(4)  # W&B's id format
        id_file.write_text(run_id + "\n")
        settings = wandb.Settings(console="off", silent=True)  # stdout stays the trainer's
        self.run = wandb.init(
            project=project,
            name=name,
            id=run_id,
            resume="allow",
            dir=run_dir,
            mode=mode,
            config=config,
            settings=settings,
        )

    def log(self, step: int, values: dict) -> None:
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if scalars:
            self.run.log(scalars, step=step, commit=True)

    def close(self) -> None:
        self.run.finish()
