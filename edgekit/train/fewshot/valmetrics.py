"""Small validation metrics for training and the benchmark: AP@0.5 (single class) and ST-IoU.

Hand-written (numpy, a few lines each) so that training needs no evaluator: ``edgekit eval refdet``
has the full per-video report. Boxes are ``(N, 4)`` xyxy in one pixel frame.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``[len(a), len(b)]`` of xyxy boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-12)


def average_precision(preds: Sequence[Tuple[np.ndarray, np.ndarray]], gts: Sequence[np.ndarray],
                      iou_thr: float = 0.5, conf: float = 0.25) -> Dict[str, float]:
    """AP at ``iou_thr`` over frames: ``preds[i] = (boxes, scores)``, ``gts[i] = boxes``. Greedy matching by
    descending score (a ground-truth box matches once); AP = area under the all-point interpolated PR curve.
    Also precision and recall of the detections scoring >= ``conf``."""
    n_gt = int(sum(len(g) for g in gts))
    records = []  # (score, is_tp)
    for (boxes, scores), gt in zip(preds, gts):
        order = np.argsort(-np.asarray(scores))
        used = np.zeros(len(gt), bool)
        ious = box_iou(np.asarray(boxes)[order], gt) if len(gt) else np.zeros((len(order), 0))
        for row, i in enumerate(order):
            j = int(np.argmax(ious[row])) if len(gt) else -1
            tp = j >= 0 and ious[row, j] >= iou_thr and not used[j]
            if tp:
                used[j] = True
            records.append((float(scores[i]), tp))
    if not records or n_gt == 0:
        return {"ap50": 0.0, "precision": 0.0, "recall": 0.0, "n_gt": n_gt}
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records], dtype=np.float64)
    recall = tp / n_gt
    precision = tp / np.arange(1, len(records) + 1)
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [recall[-1]]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    above = [r for r in records if r[0] >= conf]
    hits = int(sum(r[1] for r in above))  # Python numbers: these land in checkpoints, which hold no numpy scalar
    return {"ap50": ap, "precision": hits / len(above) if above else 0.0, "recall": hits / n_gt, "n_gt": n_gt}


def st_iou(pred_boxes: Sequence[Optional[np.ndarray]], gt_boxes: Sequence[Optional[np.ndarray]]) -> float:
    """Spatio-temporal IoU of one video: per frame at most one box each side (None = no box).
    ``sum over frames with a box on either side of IoU(pred, gt) / number of such frames``; a frame with a
    box on one side only scores 0. 0 when neither side has any box."""
    total, count = 0.0, 0
    for p, g in zip(pred_boxes, gt_boxes):
        if p is None and g is None:
            continue
        count += 1
        if p is not None and g is not None:
            total += float(box_iou(p, g)[0, 0])
    return total / count if count else 0.0


def top1(boxes: np.ndarray, scores: np.ndarray, conf: float) -> Optional[np.ndarray]:
    """The best-scoring box if it reaches ``conf`` (the single-target-per-frame reading of detections)."""
    if len(scores) == 0 or float(np.max(scores)) < conf:
        return None
    return np.asarray(boxes)[int(np.argmax(scores))].reshape(1, 4)


def first_box(gt: np.ndarray) -> Optional[np.ndarray]:
    return np.asarray(gt)[:1].reshape(1, 4) if len(gt) else None


def video_st_iou(preds: List[Tuple[np.ndarray, np.ndarray]], gts: List[np.ndarray], conf: float) -> float:
    return st_iou([top1(b, s, conf) for b, s in preds], [first_box(g) for g in gts])


__all__ = ["box_iou", "average_precision", "st_iou", "top1", "first_box", "video_st_iou"]
