"""RefDet accuracy: AP@0.5 (with its PR curve), precision, recall and ST-IoU, per video and overall.

Definitions (docs/refdet.md, "Metrics"):

- matching: per frame, predictions in descending score claim the unclaimed ground-truth box of
  highest IoU; a claim with IoU >= 0.5 is a true positive (:func:`edgekit.core.metrics.match_predictions`);
- AP@0.5: all-point interpolated area under the PR curve (precision made monotone from the right,
  summed over every recall step), over every prediction whatever its score;
- precision / recall: over the predictions scoring >= ``conf``;
- ST-IoU: over the frames where the prediction (a box scoring >= ``conf``) or the ground truth has a
  box, the mean frame IoU; a frame with a box on one side only scores 0; with several predictions
  the top-scoring one is the frame's prediction, with several ground-truth boxes its best match;
- overall: AP, precision and recall pooled over every evaluated frame of every video; ``map50`` the
  mean of the per-video APs (each video is its own target, so its own class); ``st_iou`` the mean
  of the per-video ST-IoUs.

A value that is undefined is None (JSON null), never a made-up 0 or 1: AP and recall without
ground truth, precision without predictions, ST-IoU when neither side has a box in any frame.
Numpy only: the metrics run wherever the detections are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.geometry import box_iou_matrix
from edgekit.core.metrics import match_predictions

IOU_THRESHOLD = 0.5


@dataclass
class VideoDetections:
    """One video's evaluated frames: the detections (frame pixels) and the ground truth (xyxy) of each."""

    video_id: str
    frames: List[int]
    predictions: List[Detections]
    ground_truth: List[np.ndarray]  # per frame (K, 4) float xyxy pixels

    def __post_init__(self) -> None:
        if not len(self.frames) == len(self.predictions) == len(self.ground_truth):
            raise ValueError(f"video {self.video_id}: {len(self.frames)} frames, {len(self.predictions)} "
                             f"prediction sets, {len(self.ground_truth)} ground-truth sets")


@dataclass
class Scored:
    """Every prediction of a set of frames, each marked true/false positive at IoU 0.5."""

    scores: np.ndarray  # (D,) float64
    tp: np.ndarray  # (D,) bool
    n_gt: int


@dataclass
class Metrics:
    """The metrics of one video, or of all of them (``map50`` only then)."""

    ap50: Optional[float]
    precision: Optional[float]
    recall: Optional[float]
    st_iou: Optional[float]
    n_frames: int
    n_gt: int
    n_pred: int  # predictions scoring >= conf
    n_tp: int  # of those, true positives
    curve: Tuple[np.ndarray, np.ndarray] = field(default=(np.zeros(0), np.zeros(0)), repr=False)  # recall, precision
    map50: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        out = {k: getattr(self, k) for k in ("ap50", "precision", "recall", "st_iou", "n_frames", "n_gt",
                                             "n_pred", "n_tp")}
        if self.map50 is not None:
            out["map50"] = self.map50
        return out


@dataclass
class RefDetReport:
    """Per-video and overall metrics at one confidence threshold."""

    conf: float
    per_video: Dict[str, Metrics]
    overall: Metrics
    iou: float = IOU_THRESHOLD

    def to_dict(self) -> Dict[str, Any]:
        return {"conf": self.conf, "iou": self.iou, "overall": self.overall.to_dict(),
                "per_video": {k: m.to_dict() for k, m in self.per_video.items()}}


def _xyxy(dets: Detections) -> np.ndarray:
    return np.asarray(dets.xyxy, np.float64).reshape(-1, 4)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # an eps far below any real union keeps a perfect match at exactly 1.0 (the default 1e-12 does not)
    return box_iou_matrix(a, b, eps=1e-300)


def score_frame(dets: Detections, gt: np.ndarray, iou: float = IOU_THRESHOLD) -> Scored:
    """One frame's predictions, sorted by descending score, each marked TP when it claims a ground-truth box."""
    order = np.argsort(-dets.scores, kind="stable")
    boxes, scores = _xyxy(dets)[order], dets.scores[order].astype(np.float64)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    ious = _iou(gt, boxes) if len(gt) and len(boxes) else np.zeros((len(gt), len(boxes)))
    correct = match_predictions(np.zeros(len(boxes), np.int64), np.zeros(len(gt), np.int64), ious,
                                np.array([iou]))
    return Scored(scores, correct[:, 0], len(gt))


def pool(items: Sequence[Scored]) -> Scored:
    items = list(items)
    if not items:
        return Scored(np.zeros(0), np.zeros(0, bool), 0)
    return Scored(np.concatenate([s.scores for s in items]), np.concatenate([s.tp for s in items]),
                  sum(s.n_gt for s in items))


def average_precision(scored: Scored) -> Tuple[Optional[float], np.ndarray, np.ndarray]:
    """(AP, recall, precision): all-point interpolated AP of the PR curve over every prediction.

    >>> average_precision(Scored(np.array([0.9, 0.8]), np.array([True, False]), n_gt=2))[0]
    0.5
    """
    if scored.n_gt == 0:
        return None, np.zeros(0), np.zeros(0)
    order = np.argsort(-scored.scores, kind="stable")
    tp = scored.tp[order].astype(np.float64)
    tpc, fpc = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = tpc / scored.n_gt
    precision = tpc / np.maximum(tpc + fpc, 1e-16)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # the envelope: best precision at >= this recall
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1])), recall, precision


def precision_recall(scored: Scored, conf: float) -> Tuple[Optional[float], Optional[float], int, int]:
    """(precision, recall, predictions >= conf, true positives among them).

    Matching ran over all predictions in descending score, so the ones >= conf matched exactly as
    they would have alone.
    """
    keep = scored.scores >= conf
    n_pred, n_tp = int(keep.sum()), int(scored.tp[keep].sum())
    precision = n_tp / n_pred if n_pred else None
    recall = n_tp / scored.n_gt if scored.n_gt else None
    return precision, recall, n_pred, n_tp


def frame_iou(dets: Detections, gt: np.ndarray, conf: float) -> Optional[float]:
    """The frame's ST-IoU term: None when neither side has a box, 0 when one side only, else the IoU of
    the top-scoring prediction >= conf with its best-overlapping ground-truth box."""
    kept = dets[dets.scores >= conf]
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    if len(kept) == 0 and len(gt) == 0:
        return None
    if len(kept) == 0 or len(gt) == 0:
        return 0.0
    top = _xyxy(kept)[int(np.argmax(kept.scores))]
    return float(_iou(top[None], gt).max())


def st_iou(predictions: Sequence[Detections], ground_truth: Sequence[np.ndarray], conf: float) -> Optional[float]:
    """Sum of frame IoUs over the frames with a box on either side / the number of such frames.

    >>> box = np.array([[0.0, 0.0, 10.0, 10.0]])
    >>> hit = Detections(box, np.array([0.9]), np.array([0]))
    >>> st_iou([hit, Detections.empty(obb=False)], [box, box], conf=0.5)
    0.5
    """
    terms = [t for t in (frame_iou(d, g, conf) for d, g in zip(predictions, ground_truth)) if t is not None]
    return float(np.mean(terms)) if terms else None


def evaluate_video(video: VideoDetections, conf: float, iou: float = IOU_THRESHOLD) -> Tuple[Metrics, Scored]:
    """One video's metrics, plus its scored predictions (for pooling)."""
    scored = pool([score_frame(d, g, iou) for d, g in zip(video.predictions, video.ground_truth)])
    ap, rec, prec = average_precision(scored)
    precision, recall, n_pred, n_tp = precision_recall(scored, conf)
    return Metrics(ap, precision, recall, st_iou(video.predictions, video.ground_truth, conf), len(video.frames),
                   scored.n_gt, n_pred, n_tp, (rec, prec)), scored


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def evaluate_videos(videos: Sequence[VideoDetections], conf: float = 0.25, iou: float = IOU_THRESHOLD) -> RefDetReport:
    """Per-video metrics and the overall ones (pooled AP/P/R, mean per-video AP and ST-IoU)."""
    per_video: Dict[str, Metrics] = {}
    scored: List[Scored] = []
    for video in videos:
        if video.video_id in per_video:
            raise ValueError(f"video {video.video_id} is evaluated twice")
        per_video[video.video_id], s = evaluate_video(video, conf, iou)
        scored.append(s)
    pooled = pool(scored)
    ap, rec, prec = average_precision(pooled)
    precision, recall, n_pred, n_tp = precision_recall(pooled, conf)
    metrics = list(per_video.values())
    overall = Metrics(ap, precision, recall, _mean([m.st_iou for m in metrics]), sum(m.n_frames for m in metrics),
                      pooled.n_gt, n_pred, n_tp, (rec, prec), map50=_mean([m.ap50 for m in metrics]))
    return RefDetReport(float(conf), per_video, overall, float(iou))


# -- presentation ---------------------------------------------------------------------------------
_COLUMNS = ("video", "frames", "gt", "pred", "TP", "AP50", "P", "R", "ST-IoU")


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def table_rows(report: RefDetReport) -> List[Tuple[str, ...]]:
    """One row per video, then ``all`` (pooled AP/P/R, mean ST-IoU)."""
    rows = []
    for name, m in list(report.per_video.items()) + [("all", report.overall)]:
        rows.append((name, str(m.n_frames), str(m.n_gt), str(m.n_pred), str(m.n_tp), _fmt(m.ap50),
                     _fmt(m.precision), _fmt(m.recall), _fmt(m.st_iou)))
    return rows


def format_table(report: RefDetReport, width: int = 110) -> str:
    """The table as text: rich's box drawing when rich is installed, aligned plain columns otherwise."""
    rows = table_rows(report)
    title = f"RefDet eval (IoU {report.iou:g}, conf {report.conf:g}); mAP50 over videos {_fmt(report.overall.map50)}"
    try:
        import io

        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(r[i]) for r in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
        lines = [title] + ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                           for r in [_COLUMNS, *rows]]
        return "\n".join(lines)
    table = Table(title=title)
    for i, col in enumerate(_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right")
    for i, row in enumerate(rows):
        table.add_row(*row, end_section=i == len(rows) - 2)
    buf = io.StringIO()
    Console(file=buf, width=width, color_system=None).print(table)
    return buf.getvalue().rstrip("\n")


def plot_pr_curve(report: RefDetReport, path: Path) -> Optional[Path]:
    """The PR curve at IoU 0.5 of every video (thin) and of all frames pooled (thick); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    for name, m in report.per_video.items():
        rec, prec = m.curve
        if len(rec):
            ax.plot(rec, prec, lw=1, alpha=0.6, label=f"{name[:20]} {_fmt(m.ap50)}")
    rec, prec = report.overall.curve
    if len(rec):
        ax.plot(rec, prec, lw=3, color="blue", label=f"all frames {_fmt(report.overall.ap50)} AP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title=f"RefDet precision-recall "
           f"(IoU {report.iou:g})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return path


__all__ = ["IOU_THRESHOLD", "VideoDetections", "Scored", "Metrics", "RefDetReport", "score_frame", "pool",
           "average_precision", "precision_recall", "frame_iou", "st_iou", "evaluate_video", "evaluate_videos",
           "table_rows", "format_table", "plot_pr_curve"]
