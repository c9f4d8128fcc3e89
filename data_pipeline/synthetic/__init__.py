"""Procedural 3D world rendered with exact ground truth for every modality.

``render_clip(seed, frames, size, split)`` returns a :class:`SyntheticClip`: RGB video of
textured ground, boxes, spheres and walking humanoids seen by a moving camera, with depth,
optical flow, occlusion, instance and target segmentation, 2D skeletons, DensePose, camera
parameters, a caption and per-modality prompts.
"""

from .render import SyntheticClip, render_clip
from .scene import SPLITS, WORLD_VERSION

__all__ = ["SPLITS", "WORLD_VERSION", "SyntheticClip", "render_clip"]
