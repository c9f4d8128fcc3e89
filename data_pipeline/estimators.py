"""Estimators that turn an RGB clip into the raw form of one modality, for ingesting real footage.

Each estimator is called on a clip, RGB uint8 ``[T, H, W, 3]``, and returns ``(raw, meta)``: the
modality's raw form (see ``data_pipeline.modalities``) and the seed of its encoding-parameter dict,
which records how the stream was made and is completed by the modality's ``encode``.

Optical flow uses OpenCV. Depth, segmentation and pose use local ``transformers`` models (the
optional ``hf`` extra), loaded from folders written by ``save_pretrained``; nothing is downloaded.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from data_pipeline.card import model_description
from data_pipeline.skeleton import JOINTS

FLOW_METHODS = ("dis", "farneback")
# Depth models whose output is relative inverse depth (disparity up to scale and shift); others
# (ZoeDepth, GLPN, Depth Pro, metric Depth Anything) predict depth in metres.
RELATIVE_DEPTH_MODELS = ("dpt", "depth_anything")
PERSON_SCORE = 0.5  # detector score above which a box is a person
KEYPOINT_SCORE = 0.3  # keypoint score above which a joint is visible
MAX_PERSONS = 16  # per frame, highest detector scores first

# COCO-17 keypoints averaged into each joint of skeleton.JOINTS (COCO order: 0 nose, 1-4 eyes and
# ears, then left/right pairs: 5/6 shoulders, 7/8 elbows, 9/10 wrists, 11/12 hips, 13/14 knees,
# 15/16 ankles). A joint is visible when all its keypoints are, except the head, which averages
# whichever face keypoints are visible.
_COCO_SOURCES = {
    "head": (0, 1, 2, 3, 4),
    "neck": (5, 6),
    "right_shoulder": (6,),
    "right_elbow": (8,),
    "right_wrist": (10,),
    "left_shoulder": (5,),
    "left_elbow": (7,),
    "left_wrist": (9,),
    "pelvis": (11, 12),
    "right_hip": (12,),
    "right_knee": (14,),
    "right_ankle": (16,),
    "left_hip": (11,),
    "left_knee": (13,),
    "left_ankle": (15,),
}


class OpticalFlow:
    """Forward flow t -> t+1 in pixels ``[T, H, W, 2]`` on grey frames; the last frame's flow is zero."""

    modality = "flow"

    def __init__(self, method: str = "dis"):
        if method not in FLOW_METHODS:
            raise ValueError(f"unknown optical-flow method {method!r}; expected {' or '.join(FLOW_METHODS)}")
        self.method = method
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        kind = "DIS (preset medium)" if method == "dis" else "Farneback"
        self.made_by = f"OpenCV {cv2.__version__} {kind} optical flow"  # the dataset card's words

    def __call__(self, clip: np.ndarray) -> tuple[np.ndarray, dict]:
        grey = [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in clip]
        flow = np.zeros((*clip.shape[:3], 2), np.float32)  # [T, H, W, 2]; flow[-1] stays zero
        for t in range(len(clip) - 1):
            if self._dis is not None:
                flow[t] = self._dis.calc(grey[t], grey[t + 1], None)
            else:
                flow[t] = cv2.calcOpticalFlowFarneback(grey[t], grey[t + 1], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        return flow, {"method": self.method}


def _require(path: str, flag: str, task: str) -> None:
    """Check that ``path`` is a saved transformers model folder, then that transformers is installed."""
    names = os.listdir(path) if os.path.isdir(path) else []
    if not {"config.json", "preprocessor_config.json"} <= set(names) or not any(
        name.endswith((".safetensors", ".bin")) for name in names
    ):
        raise FileNotFoundError(
            f"{flag} {path}: expected a local transformers {task} model folder holding config.json, "
            "preprocessor_config.json and weights (as written by save_pretrained)"
        )
    try:
        import transformers  # noqa: F401  (optional dependency, imported only when a model is asked for)
    except ImportError as e:
        raise ImportError(
            f"{flag} {path}: model estimators need the optional 'transformers' package: pip install -e '.[hf]'"
        ) from e


def _load(path: str, flag: str, task: str, classes: dict[str, str]):
    """(model in eval mode, image processor) from a folder checked by ``_require``; ``classes`` maps
    the model types that can do ``task`` to their transformers class names."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    if config.model_type not in classes:
        raise ValueError(
            f"{flag} {path}: a {config.model_type!r} model cannot do {task}; "
            f"supported model types: {', '.join(sorted(classes))}"
        )
    model = getattr(transformers, classes[config.model_type]).from_pretrained(path, local_files_only=True)
    processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
    return model.eval().to(_device()), processor


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run(model, processor, images: list[np.ndarray]):
    """Preprocess ``images`` (RGB uint8 ``[H, W, 3]`` each) as one batch and run ``model`` without gradients."""
    import torch

    inputs = processor(images=images, return_tensors="pt").to(model.device)
    with torch.inference_mode():
        return model(**inputs)


class DepthEstimator:
    """Depth from a transformers depth-estimation model (DPT, Depth Anything, ZoeDepth, GLPN, ...).

    Relative models (``RELATIVE_DEPTH_MODELS``, unless the config says ``depth_estimation_type:
    metric``) predict inverse depth up to an unknown scale and shift: their prediction is taken as
    disparity and stored as depth = 1 / prediction with ``"relative": true`` in the encoding, so the
    decoded values are not metres. Non-positive predictions (e.g. sky) become invalid depth (0).
    Metric models' predictions are depth in metres and are stored as is (``"relative": false``).
    Frames are estimated independently, so the scale of a relative model may drift over a clip.
    """

    modality = "depth"

    def __init__(self, path: str):
        _require(path, "depth", "depth-estimation")
        from transformers.models.auto.modeling_auto import MODEL_FOR_DEPTH_ESTIMATION_MAPPING_NAMES as classes

        self.model, self.processor = _load(path, "depth", "depth-estimation", classes)
        self.made_by = f"transformers depth estimation: {model_description(path)}"
        config = self.model.config
        metric = getattr(config, "depth_estimation_type", None) == "metric"
        self.relative = config.model_type in RELATIVE_DEPTH_MODELS and not metric

    def __call__(self, clip: np.ndarray) -> tuple[np.ndarray, dict]:
        import torch

        t, h, w = clip.shape[:3]
        outputs = _run(self.model, self.processor, list(clip))
        results = self.processor.post_process_depth_estimation(outputs, target_sizes=[(h, w)] * t)
        prediction = torch.stack([r["predicted_depth"] for r in results]).float().cpu().numpy()  # [T, H, W]
        valid = np.isfinite(prediction) & (prediction > 0)
        if self.relative:
            depth = np.divide(1.0, prediction, out=np.zeros_like(prediction), where=valid)
        else:
            depth = np.where(valid, prediction, 0.0).astype(np.float32)
        return depth, {"relative": self.relative, "model": self.model.config.model_type}


class SegEstimator:
    """Segment ids ``[T, H, W]`` from a transformers segmentation model, 0 = background.

    Universal models (Mask2Former, MaskFormer, DETR, EoMT) give panoptic segments: every thing
    instance and stuff region gets its own id, numbered per frame (no tracking, so ids are not
    consistent over time); pixels in no segment are background. Semantic models (SegFormer,
    UperNet, BEiT, ...) give class maps: id = class index + 1, consistent over time, and no pixel
    is background.
    """

    modality = "seg"

    def __init__(self, path: str):
        _require(path, "seg", "image-segmentation")
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES as semantic,
        )
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_UNIVERSAL_SEGMENTATION_MAPPING_NAMES as universal,
        )

        self.model, self.processor = _load(path, "seg", "image-segmentation", {**semantic, **universal})
        self.kind = "panoptic" if self.model.config.model_type in universal else "semantic"
        self.made_by = f"transformers {self.kind} segmentation: {model_description(path)}"

    def __call__(self, clip: np.ndarray) -> tuple[np.ndarray, dict]:
        import torch

        t, h, w = clip.shape[:3]
        outputs = _run(self.model, self.processor, list(clip))
        if self.kind == "panoptic":
            results = self.processor.post_process_panoptic_segmentation(
                outputs, target_sizes=[(h, w)] * t, label_ids_to_fuse=set()
            )
            ids = torch.stack([r["segmentation"] for r in results]).clamp(min=0)  # -1 (no segment) -> 0
        else:
            classes = self.processor.post_process_semantic_segmentation(outputs, target_sizes=[(h, w)] * t)
            ids = torch.stack(classes) + 1
        return ids.cpu().numpy().astype(np.int64), {"kind": self.kind, "model": self.model.config.model_type}


class PoseEstimator:
    """Keypoints ``[T, P, 15, 3]`` (x, y, visibility) from a person detector and a VitPose model.

    ``path`` holds two model folders: ``detector/`` (a transformers object detector with a
    "person" class, e.g. RT-DETR) and ``vitpose/`` (a COCO-17 VitPose model), which needs person
    boxes. Up to ``MAX_PERSONS`` people per frame, ordered by detector score; people are not
    tracked, so person p in one frame need not be person p in the next. Frames with fewer people
    are padded with invisible joints.
    """

    modality = "pose"

    def __init__(self, path: str):
        detector_path, vitpose_path = os.path.join(path, "detector"), os.path.join(path, "vitpose")
        if not (os.path.isdir(detector_path) and os.path.isdir(vitpose_path)):
            raise FileNotFoundError(
                f"pose {path}: expected two model folders inside it, detector/ (a transformers object "
                "detector with a 'person' class, e.g. RT-DETR) and vitpose/ (a COCO-17 VitPose model)"
            )
        _require(detector_path, "pose", "object-detection")
        _require(vitpose_path, "pose", "VitPose")
        from transformers.models.auto.modeling_auto import MODEL_FOR_OBJECT_DETECTION_MAPPING_NAMES as detectors

        self.detector, self.detector_processor = _load(detector_path, "pose", "object-detection", detectors)
        labels = {name.lower(): int(i) for i, name in self.detector.config.id2label.items()}
        if "person" not in labels:
            raise ValueError(f"pose {detector_path}: the detector has no 'person' class")
        self.person = labels["person"]
        vitpose = {"vitpose": "VitPoseForPoseEstimation"}
        self.model, self.processor = _load(vitpose_path, "pose", "keypoint", vitpose)
        keypoints = self.model.config.num_labels
        if keypoints != 17:
            raise ValueError(f"pose {vitpose_path}: expected a COCO-17 keypoint model, got {keypoints} keypoints")
        self.made_by = f"persons by {model_description(detector_path)}, keypoints by {model_description(vitpose_path)}"

    def __call__(self, clip: np.ndarray) -> tuple[np.ndarray, dict]:
        t, h, w = clip.shape[:3]
        boxes = self._person_boxes(clip)
        keypoints = np.zeros((t, max(map(len, boxes)), len(JOINTS), 3), np.float32)  # [T, P, 15, 3]
        busy = [i for i in range(t) if boxes[i]]
        if busy:
            for i, people in zip(busy, self._keypoints([clip[i] for i in busy], [boxes[i] for i in busy])):
                for p, person in enumerate(people):
                    xy, scores = person["keypoints"].cpu().numpy(), person["scores"].cpu().numpy()
                    keypoints[i, p] = coco_to_joints(xy, scores)
        return keypoints, {"height": h, "width": w, "model": self.model.config.model_type}

    def _person_boxes(self, clip: np.ndarray) -> list[list[list[float]]]:
        """Per frame, person boxes as COCO ``[x, y, w, h]`` pixels, best first, at most ``MAX_PERSONS``."""
        t, h, w = clip.shape[:3]
        outputs = _run(self.detector, self.detector_processor, list(clip))
        detections = self.detector_processor.post_process_object_detection(
            outputs, threshold=PERSON_SCORE, target_sizes=[(h, w)] * t
        )
        boxes = []
        for found in detections:
            order = found["scores"].argsort(descending=True)
            people = [
                box
                for box, label in zip(found["boxes"][order].tolist(), found["labels"][order].tolist())
                if label == self.person
            ][:MAX_PERSONS]
            boxes.append([[x0, y0, x1 - x0, y1 - y0] for x0, y0, x1, y1 in people])
        return boxes

    def _keypoints(self, images: list[np.ndarray], boxes: list[list[list[float]]]) -> list[list[dict]]:
        """VitPose on each image's person boxes: per image, per box, ``keypoints`` [17, 2] and ``scores`` [17]."""
        import torch

        inputs = self.processor(images=images, boxes=boxes, return_tensors="pt").to(self.model.device)
        if getattr(self.model.config.backbone_config, "num_experts", 1) > 1:  # ViTPose+: expert 0 is COCO
            experts = torch.zeros(len(inputs["pixel_values"]), dtype=torch.long, device=self.model.device)
            inputs["dataset_index"] = experts
        with torch.inference_mode():
            outputs = self.model(**inputs)
        return self.processor.post_process_pose_estimation(outputs, boxes=boxes)


def coco_to_joints(xy: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints ``[17, 2]`` with scores ``[17]`` -> skeleton joints ``[15, 3]`` (x, y, visibility)."""
    visible = scores > KEYPOINT_SCORE
    joints = np.zeros((len(JOINTS), 3), np.float32)
    for j, name in enumerate(JOINTS):
        sources = list(_COCO_SOURCES[name])
        seen = visible[sources]
        if seen.all() or (name == "head" and seen.any()):
            joints[j, :2] = xy[sources][seen].mean(axis=0)
            joints[j, 2] = 1.0
    return joints


def load_estimators(
    flow: str = "dis", depth: str | None = None, seg: str | None = None, pose: str | None = None
) -> list:
    """The estimators asked for, in modality-registry order (depth, flow, seg, pose)."""
    estimators = [DepthEstimator(depth)] if depth else []
    estimators.append(OpticalFlow(flow))
    if seg:
        estimators.append(SegEstimator(seg))
    if pose:
        estimators.append(PoseEstimator(pose))
    return estimators
