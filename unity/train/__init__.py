"""Layer 2, the training machinery: trainer, engines, schedule, parallelism, EMA, checkpoints, metrics, data,
validation, precompute (docs/architecture.md, "Layers and rules")."""
