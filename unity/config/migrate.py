"""Keys that moved between schema versions: old run configs are migrated, old keys in new input are refused.

A run folder's ``config.yaml`` written by an older version loads through :func:`migrate` (sampling,
evaluation and ``train.init_from`` keep working on old runs); the same old key in a YAML file or on
the command line stops with an error naming its new place.
"""

from __future__ import annotations

# Version 1 -> 2: the flat ``train`` section split into the components that use each knob.
MOVED_IN_2 = {
    "train.engine": "parallel.engine",
    "train.zero_stage": "parallel.zero_stage",
    "train.sequence_parallel": "parallel.sequence_parallel",
    "train.lr": "optim.lr",
    "train.weight_decay": "optim.weight_decay",
    "train.grad_clip": "optim.grad_clip",
    "train.schedule": "schedule.kind",
    "train.warmup_steps": "schedule.warmup_steps",
    "train.min_lr_ratio": "schedule.min_lr_ratio",
    "train.ema_decay": "ema.decay",
    "train.save_every": "checkpoint.save_every",
    "train.tasks": "routing.tasks",
    "train.modalities": "routing.modalities",
    "train.curriculum": "routing.curriculum",
    "train.caption_dropout": "routing.caption_dropout",
    "train.sentence_reverse": "routing.sentence_reverse",
    "train.sentence_image_context": "routing.sentence_image_context",
    "train.t_logit_mean": "flow.t_logit_mean",
    "train.t_logit_std": "flow.t_logit_std",
    "train.t_shift": "flow.t_shift",
    "train.t_shift_mode": "flow.t_shift_mode",
}
MIGRATIONS = {1: MOVED_IN_2}  # version -> the moves that bring it to version + 1


def moved_key(key: str) -> str | None:
    """The current key of an old one (``train.lr`` -> ``optim.lr``, also below it), else None."""
    for moves in MIGRATIONS.values():
        for old, new in moves.items():
            if key == old or key.startswith(old + ".") or key.startswith(old + "["):
                return new + key[len(old) :]
    return None


def migrate(tree: dict, target: int) -> dict:
    """A config tree (plain dicts) of any older version rewritten to version ``target``."""
    version = int(tree.get("schema_version", 1))
    tree = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    while version < target:
        for old, new in MIGRATIONS[version].items():
            section, name = old.split(".")
            if name in tree.get(section, {}):
                new_section, new_name = new.split(".")
                tree.setdefault(new_section, {})[new_name] = tree[section].pop(name)
        version += 1
    tree["schema_version"] = target
    return tree
