"""Segmentation metrics: semantic mIoU over a whole set of videos, instance mIoU of one video, mask mAP.

``miou`` accumulates one confusion matrix over every frame of every video, so each pixel
weighs the same, and averages the per-class IoU over the classes present, as detectron2's
``SemSegEvaluator`` and mmsegmentation do; it is for classes that mean the same in every video.
``instance_miou`` is for instance ids, which do not: it matches instances within one video first.
``mask_map`` scores video instance segmentation the way YouTube-VIS does: COCO's AP with a
spatio-temporal mask IoU (one IoU per pair of tracks, over all frames of the video). The
confusion-matrix helpers are shared with the DensePose part metrics.
"""

from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCO's .50:.05:.95, the same float values as pycocotools
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # COCO's 101 recall points


def _videos(x) -> list[np.ndarray]:
    return [np.asarray(x)] if isinstance(x, np.ndarray) else [np.asarray(v) for v in x]


def confusion_matrix(preds, gts, ignore_index: int | None = 255, num_classes: int | None = None) -> np.ndarray:
    """Pixel counts ``[C, C]`` (row = gt class, column = predicted class) over all frames of all videos.

    ``preds`` and ``gts``: lists (videos) of integer class ids ``[T, H, W]``, or one such array.
    Pixels where ``gt == ignore_index`` are skipped. ``C`` is ``num_classes``, by default one
    more than the largest class id seen on the other pixels.
    """
    preds, gts = _videos(preds), _videos(gts)
    if len(preds) != len(gts):
        raise ValueError(f"got {len(preds)} predicted videos and {len(gts)} ground-truth videos")
    pairs = []
    for pred, gt in zip(preds, gts):
        if pred.shape != gt.shape or gt.ndim != 3:
            raise ValueError(f"pred and gt must both be [T, H, W], got {pred.shape} and {gt.shape}")
        if pred.dtype.kind not in "iu" or gt.dtype.kind not in "iu":
            raise ValueError(f"expected integer class ids, got {pred.dtype} and {gt.dtype}")
        keep = gt != ignore_index if ignore_index is not None else np.ones(gt.shape, bool)
        pairs.append((gt[keep].astype(np.int64), pred[keep].astype(np.int64)))
    gt_ids = np.concatenate([g for g, _ in pairs]) if pairs else np.zeros(0, np.int64)
    pred_ids = np.concatenate([p for _, p in pairs]) if pairs else np.zeros(0, np.int64)
    if (gt_ids < 0).any() or (pred_ids < 0).any():
        raise ValueError("class ids must be non-negative (apart from ignore_index in gt)")
    largest = int(max(gt_ids.max(initial=-1), pred_ids.max(initial=-1)))
    if num_classes is None:
        num_classes = largest + 1
    elif largest >= num_classes:
        raise ValueError(f"class id {largest} out of range for {num_classes} classes")
    counts = np.bincount(gt_ids * num_classes + pred_ids, minlength=num_classes**2)
    return counts.reshape(num_classes, num_classes)


def class_iou(conf: np.ndarray) -> dict[int, float]:
    """IoU = TP / (TP + FP + FN) of every class present, i.e. with a non-empty union (in gt or pred).

    A class seen only in the prediction is present with IoU 0. This is mmsegmentation's
    convention (``IoUMetric``: nanmean of intersect / union) and that of older detectron2
    ``SemSegEvaluator`` (``iou_valid = (pos_gt + pos_pred) > 0``); current detectron2 averages
    over classes with ground-truth pixels only (``iou_valid = (pos_gt > 0) & (union > 0)``),
    which leaves out classes that are only false positives.
    """
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    return {int(c): float(tp[c] / union[c]) for c in np.flatnonzero(union > 0)}


def per_class_iou(preds, gts, ignore_index: int | None = 255) -> dict[int, float]:
    """IoU of each class present, from one confusion matrix over all videos (see ``class_iou``)."""
    return class_iou(confusion_matrix(preds, gts, ignore_index))


def miou(preds, gts, ignore_index: int | None = 255) -> float:
    """Mean IoU (0..1) over the classes present in ``gts`` or ``preds`` (lists of ``[T, H, W]`` int ids)."""
    ious = per_class_iou(preds, gts, ignore_index)
    if not ious:
        raise ValueError("no pixel to score: every gt pixel is ignore_index")
    return float(np.mean(list(ious.values())))


def instance_miou(pred, gt) -> float:
    """Mean IoU (0..1) of one video's instance ids ``[T, H, W]`` (0 = background) after matching instances.

    Instance ids are arbitrary labels, so predicted ids need not equal the ground truth's: predicted
    and gt instances are paired one to one to maximise the total spatio-temporal IoU (the Hungarian
    assignment; pairs of IoU 0 stay unpaired), each predicted instance takes its partner's id, and
    the mean IoU is taken over the classes with ground-truth pixels, background and every gt instance
    (current detectron2's convention): an unpaired predicted instance costs through the pixels it takes
    from them, not as a class of its own (a few stray pixels of an unused colour would otherwise weigh
    as much as a missed person). Average it over clips: pooling ids across clips would treat instance 3
    of one clip and of another as one class.
    """
    from scipy.optimize import linear_sum_assignment

    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape or gt.ndim != 3 or pred.dtype.kind not in "iu" or gt.dtype.kind not in "iu":
        raise ValueError(
            f"pred and gt must both be integer ids [T, H, W], got {pred.dtype} {pred.shape}, {gt.dtype} {gt.shape}"
        )
    pred_ids, pred_index = np.unique(np.concatenate([[0], pred.ravel()]), return_inverse=True)  # id 0 first
    gt_ids, gt_index = np.unique(np.concatenate([[0], gt.ravel()]), return_inverse=True)
    pred_index, gt_index = pred_index[1:], gt_index[1:]
    inter = np.bincount(pred_index * len(gt_ids) + gt_index, minlength=len(pred_ids) * len(gt_ids))
    inter = inter.reshape(len(pred_ids), len(gt_ids))[1:, 1:].astype(np.float64)  # [D, G] instance overlaps
    union = np.bincount(pred_index, minlength=len(pred_ids))[1:, None] + np.bincount(gt_index)[None, 1:] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    partner = np.arange(len(gt_ids), len(gt_ids) + len(pred_ids) - 1)  # unpaired: classes of their own
    for d, g in zip(*linear_sum_assignment(iou, maximize=True)):
        if iou[d, g] > 0:
            partner[d] = g + 1
    relabelled = np.concatenate([[0], partner])[pred_index].reshape(gt.shape)
    conf = confusion_matrix(relabelled, gt_index.reshape(gt.shape), ignore_index=None)
    ious = class_iou(conf)
    return float(np.mean([ious[c] for c in np.flatnonzero(conf.sum(axis=1) > 0)]))


def _track_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Spatio-temporal IoU ``[D, G]`` of masks ``[D, T, H, W]`` and ``[G, T, H, W]``; 0 where the union is empty."""
    p = pred.reshape(len(pred), -1).astype(np.float64)
    g = gt.reshape(len(gt), p.shape[1]).astype(np.float64)  # G may be 0
    inter = p @ g.T
    union = p.sum(axis=1)[:, None] + g.sum(axis=1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1.0), 0.0)


def _match(ious: np.ndarray) -> np.ndarray:
    """True positives ``[thresholds, D]`` of score-sorted predictions against one video's gts ``ious [D, G]``.

    Greedy, COCO style: each prediction takes the unmatched gt with the highest IoU >= threshold.
    """
    tp = np.zeros((len(IOU_THRESHOLDS), len(ious)), bool)
    for t, threshold in enumerate(IOU_THRESHOLDS):
        free = np.ones(ious.shape[1], bool)
        for d, row in enumerate(ious):
            candidates = np.where(free & (row >= threshold), row, -1.0)
            if candidates.size and candidates.max() >= 0:
                free[candidates.argmax()] = False
                tp[t, d] = True
    return tp


def _average_precision(tp: np.ndarray, num_gt: int) -> float:
    """COCO's 101-point interpolated AP of score-sorted true-positive flags ``[D]`` (pycocotools ``accumulate``)."""
    if not len(tp):
        return 0.0
    tps = np.cumsum(tp)
    recall = tps / num_gt
    precision = tps / np.arange(1, len(tp) + 1)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this recall or beyond
    first = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")  # first index with recall >= r
    reached = first < len(tp)
    return float(np.where(reached, precision[np.minimum(first, len(tp) - 1)], 0.0).mean())


def mask_map(predictions, ground_truths) -> dict[str, float]:
    """YouTube-VIS mask mAP (``map`` over IoU .50:.05:.95, ``map50``, ``map75``; each 0..1).

    ``predictions``: one list per video of ``{"mask": bool [T, H, W], "score": float, "category": int}``;
    ``ground_truths``: one list per video of ``{"mask": bool [T, H, W], "category": int}``.
    Per category and IoU threshold, the category's predictions of all videos are ranked by score
    (descending, stable: ties keep video order, then list order), matched greedily within their
    video (``_match``) and scored with COCO's 101-point interpolated AP; the results are averaged
    over thresholds and over the categories with at least one gt (predictions of other categories
    are ignored). No cap on detections per video is applied (COCO's maxDets=100).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"got {len(predictions)} predicted videos and {len(ground_truths)} ground-truth videos")
    categories = sorted({g["category"] for video in ground_truths for g in video})
    if not categories:
        raise ValueError("no ground-truth instance in any video")
    ap = np.zeros((len(categories), len(IOU_THRESHOLDS)))
    for k, category in enumerate(categories):
        scores, flags = [], []
        for preds, gts in zip(predictions, ground_truths):
            preds = [p for p in preds if p["category"] == category]
            if not preds:
                continue
            preds = [preds[i] for i in np.argsort([-p["score"] for p in preds], kind="stable")]
            pred_masks = np.stack([np.asarray(p["mask"], bool) for p in preds])  # [D, T, H, W]
            gt_masks = [np.asarray(g["mask"], bool) for g in gts if g["category"] == category]
            gt_masks = np.stack(gt_masks) if gt_masks else np.zeros((0, *pred_masks.shape[1:]), bool)
            if pred_masks.shape[1:] != gt_masks.shape[1:]:
                raise ValueError(f"pred and gt masks differ in shape: {pred_masks.shape[1:]} and {gt_masks.shape[1:]}")
            scores.extend(p["score"] for p in preds)
            flags.append(_match(_track_iou(pred_masks, gt_masks)))
        num_gt = sum(g["category"] == category for video in ground_truths for g in video)
        if not flags:
            continue  # no prediction of this category: AP 0
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
        tp = np.concatenate(flags, axis=1)[:, order]
        ap[k] = [_average_precision(row, num_gt) for row in tp]
    at = {t: int(np.argmin(np.abs(IOU_THRESHOLDS - t))) for t in (0.5, 0.75)}
    return {"map": float(ap.mean()), "map50": float(ap[:, at[0.5]].mean()), "map75": float(ap[:, at[0.75]].mean())}
