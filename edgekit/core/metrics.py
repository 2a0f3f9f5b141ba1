"""Detection accuracy in numpy: mAP over a dataset and one-to-one matching of two result sets.

:func:`evaluate_map` follows Ultralytics 8.4 (``engine/validator.py`` ``match_predictions`` and
``utils/metrics.py`` ``ap_per_class``/``compute_ap``): per image, predictions in descending
confidence claim the best unclaimed ground truth of their class at each IoU threshold; AP uses
101 recall points (pycocotools' rule by default, Ultralytics' trapezoid on request); precision and
recall are read at the confidence that maximises the (smoothed) mean F1; only classes with ground
truth count.

OBB overlap defaults to the exact polygon IoU. Ultralytics' OBB validator uses ProbIoU instead
(a Gaussian similarity, not an area ratio), so its numbers differ slightly; pass
``iou="probiou"`` to reproduce them. :func:`match_detections` pairs two result lists (e.g. ONNX
vs TensorRT outputs) for parity checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .detections import Detections
from .geometry import box_iou_matrix, obb_iou_matrix, probiou_matrix

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_AP_X = np.linspace(0, 1, 101)  # 101-point interpolation (COCO)
_CURVE_X = np.linspace(0, 1, 1000)


def pairwise_iou(a: Detections, b: Detections, iou: str = "polygon") -> np.ndarray:
    """(len(a), len(b)) IoU. OBB pairs use ``iou`` ("polygon" or "probiou"); xyxy pairs box IoU.

    Mixing an OBB with an axis-aligned set treats the axis-aligned boxes as angle-0 OBBs.
    """
    if iou not in ("polygon", "probiou"):
        raise ValueError(f"iou must be 'polygon' or 'probiou', got {iou!r}")
    if not a.is_obb and not b.is_obb:
        return box_iou_matrix(a.boxes, b.boxes)
    fn = obb_iou_matrix if iou == "polygon" else probiou_matrix
    return fn(a.xywhr, b.xywhr)


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    # np.trapz is gone in numpy 2.x and np.trapezoid absent before 2.0; the device has numpy < 1.24
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def _envelope(recall: np.ndarray, precision: np.ndarray):
    """Sentinel-padded recall axis and monotone precision envelope (as Ultralytics)."""
    mrec = np.concatenate(([0.0], recall, [recall[-1] if len(recall) else 1.0], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    return mrec, np.flip(np.maximum.accumulate(np.flip(mpre)))


def compute_ap(recall: np.ndarray, precision: np.ndarray, method: str = "coco") -> float:
    """AP of one cumulative recall/precision curve (recall non-decreasing).

    ``"coco"``: pycocotools' 101-point rule, the mean over r in {0, .01, .., 1} of the best
    precision at recall >= r (a perfect detector scores 1.0). ``"ultralytics"``: ``compute_ap``
    of Ultralytics 8.4, the trapezoid over 101 interpolated points of the padded envelope (a
    perfect detector scores 0.995).
    """
    recall, precision = np.asarray(recall, np.float64), np.asarray(precision, np.float64)
    if method == "ultralytics":
        mrec, mpre = _envelope(recall, precision)
        return _trapezoid(np.interp(_AP_X, mrec, mpre), _AP_X)
    if method != "coco":
        raise ValueError(f"ap method must be 'coco' or 'ultralytics', got {method!r}")
    if len(recall) == 0:
        return 0.0
    env = np.flip(np.maximum.accumulate(np.flip(precision)))
    idx = np.searchsorted(recall, _AP_X, side="left")
    return float(np.where(idx < len(recall), env[np.minimum(idx, len(recall) - 1)], 0.0).mean())


def match_predictions(pred_classes: np.ndarray, true_classes: np.ndarray, iou: np.ndarray,
                      thresholds: np.ndarray) -> np.ndarray:
    """(D, T) bool "correct" matrix. ``iou`` is (L, D), predictions in descending confidence."""
    correct = np.zeros((len(pred_classes), len(thresholds)), bool)
    if iou.size == 0:
        return correct
    iou = iou * (true_classes[:, None] == pred_classes[None, :])
    matched = np.zeros((iou.shape[0], len(thresholds)), bool)  # targets claimed at each threshold
    cols = range(len(thresholds))
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(matched, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, cols] >= thresholds
        matched[k, cols] |= correct[j]
    return correct


def _smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(nf) / nf, mode="valid")


@dataclass
class PRCurve:
    """Curves for plotting. ``precision_at_recall[c]`` is class c's PR curve at the first IoU
    threshold over ``recall``; the ``*_at_conf`` curves are over ``confidence``."""

    recall: np.ndarray
    precision_at_recall: np.ndarray
    confidence: np.ndarray
    precision_at_conf: np.ndarray
    recall_at_conf: np.ndarray
    f1_at_conf: np.ndarray


@dataclass
class MapResult:
    """mAP and friends. Per-class arrays have length ``nc``; classes without ground truth are NaN
    and are left out of every mean."""

    map50: float
    map50_95: float
    precision: float
    recall: float
    f1: float
    conf_threshold: float  # confidence at which precision/recall/f1 are read (max mean F1)
    per_class_ap50: np.ndarray
    per_class_ap50_95: np.ndarray
    per_class_precision: np.ndarray
    per_class_recall: np.ndarray
    ap: np.ndarray  # (nc, T) AP at every IoU threshold
    iou_thresholds: np.ndarray
    n_gt: np.ndarray  # (nc,) ground-truth boxes per class
    n_images: int
    iou: str
    pr_curve: Optional[PRCurve] = field(default=None, repr=False)

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready summary (no curves); NaN becomes None."""

        def clean(a: np.ndarray) -> List[Optional[float]]:
            return [None if np.isnan(v) else float(v) for v in np.asarray(a, np.float64)]

        return {
            "map50": self.map50, "map50_95": self.map50_95, "precision": self.precision, "recall": self.recall,
            "f1": self.f1, "conf_threshold": self.conf_threshold, "iou": self.iou, "n_images": self.n_images,
            "n_gt": self.n_gt.tolist(), "per_class_ap50": clean(self.per_class_ap50),
            "per_class_ap50_95": clean(self.per_class_ap50_95),
            "per_class_precision": clean(self.per_class_precision),
            "per_class_recall": clean(self.per_class_recall),
        }


def _collect(preds, gts, nc, iou, thresholds):
    """Concatenated (correct, conf, pred_cls) over images, plus all target classes."""
    if len(preds) != len(gts):
        raise ValueError(f"evaluate_map: {len(preds)} prediction sets but {len(gts)} ground-truth sets")
    tps, confs, pcls, tcls = [], [], [], []
    for i, (p, g) in enumerate(zip(preds, gts)):
        for name, d in (("preds", p), ("gts", g)):
            if len(d) and (d.class_ids.min() < 0 or d.class_ids.max() >= nc):
                raise ValueError(f"evaluate_map: {name}[{i}] has class ids outside [0, {nc})")
        p = p[np.argsort(-p.scores, kind="stable")]
        ious = pairwise_iou(g, p, iou) if len(g) and len(p) else np.zeros((len(g), len(p)))
        tps.append(match_predictions(p.class_ids, g.class_ids, ious, thresholds))
        confs.append(p.scores)
        pcls.append(p.class_ids)
        tcls.append(g.class_ids)
    n_t = len(thresholds)
    cat = np.concatenate
    return (cat(tps) if tps else np.zeros((0, n_t), bool), cat(confs) if confs else np.zeros(0),
            cat(pcls) if pcls else np.zeros(0, np.int64), cat(tcls) if tcls else np.zeros(0, np.int64))


def _class_curves(tp, conf, n_l, ap_method):
    """One class: AP per threshold, P/R/conf curves, PR curve at the first threshold."""
    fpc, tpc = (1 - tp).cumsum(0), tp.cumsum(0)
    recall = tpc / (n_l + 1e-16)
    precision = tpc / (tpc + fpc)
    r_curve = np.interp(-_CURVE_X, -conf, recall[:, 0], left=0)
    p_curve = np.interp(-_CURVE_X, -conf, precision[:, 0], left=1)
    aps = np.array([compute_ap(recall[:, j], precision[:, j], ap_method) for j in range(tp.shape[1])])
    mrec, mpre = _envelope(recall[:, 0], precision[:, 0])
    return aps, p_curve, r_curve, np.interp(_CURVE_X, mrec, mpre)


def evaluate_map(
    preds: Sequence[Detections],
    gts: Sequence[Detections],
    nc: int,
    iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
    iou: str = "polygon",
    ap_method: str = "coco",
) -> MapResult:
    """mAP of per-image predictions against per-image ground truths (scores of gts are ignored).

    ``iou``: "polygon" (exact) or "probiou" (Ultralytics' OBB validator) for OBB boxes.
    ``ap_method``: "coco" (pycocotools 101-point) or "ultralytics" (see :func:`compute_ap`);
    ``iou="probiou", ap_method="ultralytics"`` reproduces Ultralytics' OBB val numbers.

    >>> gt = Detections(np.array([[10, 10, 8, 4, 0.2]]), np.array([1.0]), np.array([0]))
    >>> evaluate_map([gt], [gt], nc=1).map50_95
    1.0
    """
    thresholds = np.asarray(iou_thresholds, np.float64)
    tp, conf, pred_cls, target_cls = _collect(preds, gts, nc, iou, thresholds)
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order].astype(np.float64), conf[order], pred_cls[order]
    n_gt = np.bincount(target_cls, minlength=nc)[:nc]
    has_gt = n_gt > 0
    ap = np.full((nc, len(thresholds)), np.nan)
    p_curve, r_curve = np.zeros((nc, len(_CURVE_X))), np.zeros((nc, len(_CURVE_X)))
    pr = np.zeros((nc, len(_CURVE_X)))
    for c in np.flatnonzero(has_gt):
        sel = pred_cls == c
        if not sel.any():
            ap[c] = 0.0
            continue
        ap[c], p_curve[c], r_curve[c], pr[c] = _class_curves(tp[sel], conf[sel], n_gt[c], ap_method)
    f1_curve = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    best = int(_smooth(f1_curve[has_gt].mean(0), 0.1).argmax()) if has_gt.any() else 0
    nan = np.full(nc, np.nan)
    p_c = np.where(has_gt, p_curve[:, best], nan)
    r_c = np.where(has_gt, r_curve[:, best], nan)
    f1_c = np.where(has_gt, f1_curve[:, best], nan)

    def mean(a: np.ndarray) -> float:
        return float(np.mean(a[has_gt])) if has_gt.any() else 0.0

    return MapResult(
        map50=mean(ap[:, 0]), map50_95=mean(ap.mean(1)) if has_gt.any() else 0.0,
        precision=mean(p_c), recall=mean(r_c), f1=mean(f1_c), conf_threshold=float(_CURVE_X[best]),
        per_class_ap50=ap[:, 0].copy(), per_class_ap50_95=ap.mean(1), per_class_precision=p_c,
        per_class_recall=r_c, ap=ap, iou_thresholds=thresholds, n_gt=n_gt, n_images=len(gts), iou=iou,
        pr_curve=PRCurve(_CURVE_X, pr, _CURVE_X, p_curve, r_curve, f1_curve),
    )


@dataclass
class MatchResult:
    """One-to-one pairs between two detection sets (row i of ``pairs`` is (index in a, index in b))."""

    pairs: np.ndarray  # (K, 2) int64
    ious: np.ndarray  # (K,) IoU of each pair
    unmatched_a: np.ndarray  # indices into a
    unmatched_b: np.ndarray  # indices into b
    mean_iou: float  # over pairs; 1.0 when both sets are empty, 0.0 when nothing matched
    max_score_diff: float  # largest |score_a - score_b| over pairs (0.0 without pairs)

    @property
    def all_matched(self) -> bool:
        return len(self.unmatched_a) == 0 and len(self.unmatched_b) == 0


def match_detections(a: Detections, b: Detections, iou_thr: float = 0.5, same_class: bool = True,
                     iou: str = "polygon") -> MatchResult:
    """Greedy one-to-one matching by IoU, highest first; pairs need IoU >= ``iou_thr``.

    >>> d = Detections(np.array([[10, 10, 8, 4, 0.2], [30, 30, 6, 6, 0.0]]), np.array([0.9, 0.8]), np.array([0, 1]))
    >>> m = match_detections(d, d[::-1])
    >>> m.pairs.tolist(), m.mean_iou, m.all_matched
    ([[0, 1], [1, 0]], 1.0, True)
    """
    ious = pairwise_iou(a, b, iou) if len(a) and len(b) else np.zeros((len(a), len(b)))
    if same_class and ious.size:
        ious = ious * (a.class_ids[:, None] == b.class_ids[None, :])
    ii, jj = np.nonzero(ious >= iou_thr)
    order = np.argsort(-ious[ii, jj], kind="stable")
    used_a, used_b, pairs = np.zeros(len(a), bool), np.zeros(len(b), bool), []
    for i, j in zip(ii[order], jj[order]):
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            pairs.append((i, j))
    pairs_arr = np.asarray(sorted(pairs), np.int64).reshape(-1, 2)
    pair_ious = ious[pairs_arr[:, 0], pairs_arr[:, 1]] if len(pairs_arr) else np.zeros(0)
    if len(pairs_arr):
        mean_iou = float(pair_ious.mean())
        score_diff = float(np.abs(a.scores[pairs_arr[:, 0]] - b.scores[pairs_arr[:, 1]]).max())
    else:
        mean_iou, score_diff = (1.0 if len(a) == len(b) == 0 else 0.0), 0.0
    return MatchResult(pairs_arr, pair_ious, np.flatnonzero(~used_a), np.flatnonzero(~used_b), mean_iou, score_diff)


__all__ = [
    "evaluate_map", "MapResult", "PRCurve", "match_detections", "MatchResult", "pairwise_iou", "compute_ap",
    "match_predictions", "COCO_IOU_THRESHOLDS",
]
