"""Unity: one video diffusion transformer trained on RGB video and its auxiliary modalities.

``from unity import UnityPipeline`` gives a trained model as one object (``unity.inference.unity_pipeline``);
it is imported on first use, so ``import unity`` stays light.
"""

__version__ = "0.1.0"
__all__ = ["UnityPipeline", "UnityPipelineOutput", "__version__"]


def __getattr__(name):
    if name in ("UnityPipeline", "UnityPipelineOutput"):
        from unity.inference import unity_pipeline

        return getattr(unity_pipeline, name)
    raise AttributeError(f"module 'unity' has no attribute {name!r}")
