"""Layer 3, inference: a finished run loaded, its tasks as functions, sampling I/O, the LoRA merge, and the
pipeline folder (UnityPipeline) with its export and model card (docs/architecture.md, "Layers and rules")."""
