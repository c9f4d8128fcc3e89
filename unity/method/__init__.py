"""Layer 1, the method: task registry, router, streams, flow matching, sentences, conditioning, sampler, the
network of a run, LoRA (docs/architecture.md, "Layers and rules")."""
