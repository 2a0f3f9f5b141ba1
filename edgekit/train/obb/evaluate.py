"""``edgekit eval obb``: score a predictions file against a YOLO-OBB dataset's val split.

Any producer's file works as long as it validates (:mod:`edgekit.core.predictions`). Two scores:

- ``ultralytics``: ProbIoU matching + Ultralytics' AP integration - the numbers ``YOLO.val()`` prints
  for the same detections (its OBB validator uses ProbIoU, not the polygon overlap);
- ``polygon``: the exact rotated-polygon IoU with pycocotools' 101-point AP, reported beside.

Images are matched by resolved path, else by file name; a val image without predictions, or a
prediction for an image outside the split, is an error (a silently partial eval would lie).
No torch here: evaluation runs wherever the predictions file is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import DataError
from edgekit.core.image_files import imread
from edgekit.core.metrics import MapResult, evaluate_map
from edgekit.core.predictions import ImagePredictions, PredictionsFile

VARIANTS = {"ultralytics": ("probiou", "ultralytics"), "polygon": ("polygon", "coco")}


def ground_truth(data: Path) -> Tuple[List[str], List[Path], List[Detections]]:
    """(class names, val image paths, ground truths in pixels) of the dataset at ``data``."""
    import cv2

    from edgekit.bench.accuracy import label_path_for, read_obb_labels, read_val_split

    names, images = read_val_split(Path(data))
    gts = []
    for path in images:
        frame = imread(path, cv2.IMREAD_UNCHANGED)
        if frame is None:
            raise DataError(f"cannot decode image {path}", "remove or replace the file")
        gts.append(read_obb_labels(label_path_for(path), frame.shape[0], frame.shape[1]))
    return names, images, gts


def align(preds: PredictionsFile, images: List[Path], source: str) -> List[Detections]:
    """Predictions in the order of ``images`` (DataError naming the first image that does not match)."""
    by_path: Dict[str, ImagePredictions] = {}
    by_name: Dict[str, ImagePredictions] = {}
    for p in preds.images:
        if p.frame is not None:
            raise DataError(f"{source}: images.{p.path} is a video frame; eval scores image datasets",
                            "predict on the dataset's val image folder")
        by_path[str(Path(p.path).resolve())] = p
        by_name[Path(p.path).name] = p
    out, used = [], set()
    for img in images:
        p = by_path.get(str(img.resolve())) or by_name.get(img.name)
        if p is None:
            raise DataError(f"{source} has no predictions for val image {img} ({len(preds.images)} images predicted, "
                            f"{len(images)} in the split)", f"run edgekit predict obb on {img.parent}")
        used.add(id(p))
        out.append(p.detections())
    extra = [p.path for p in preds.images if id(p) not in used]
    if extra:
        raise DataError(f"{source} predicts {extra[0]}, which is not in the val split ({len(extra)} such images)",
                        "predict on the dataset's val image folder only")
    return out


def evaluate_predictions(preds: PredictionsFile, data: Path, source: str = "predictions") -> Dict[str, Any]:
    """Both score variants plus the per-class table; raw MapResults under ``_results`` (not JSON)."""
    if preds.task != "obb":
        raise DataError(f"{source} holds {preds.task} predictions; eval obb scores obb ones",
                        f"score a {preds.task} model with `edgekit eval {preds.task}`")
    names, images, gts = ground_truth(data)
    if preds.names and list(preds.names) != list(names):
        raise DataError(f"{source} names {preds.names} differ from the dataset's {names}",
                        "evaluate on the dataset the model was trained for")
    dets = align(preds, images, source)
    top = max([int(d.class_ids.max()) for d in dets if len(d)] or [-1])
    if top >= len(names):
        raise DataError(f"{source} holds class id {top}, the dataset has {len(names)} classes ({names})",
                        "evaluate on the dataset the model was trained for")
    results = {k: evaluate_map(dets, gts, len(names), iou=iou, ap_method=ap) for k, (iou, ap) in VARIANTS.items()}
    report: Dict[str, Any] = {"data": str(data), "model": preds.model, "n_images": len(images), "names": names,
                              "conf": preds.conf}
    for key, r in results.items():
        report[key] = r.to_dict()
    report["_results"] = results
    return report


def format_table(report: Dict[str, Any]) -> str:
    """A plain-text table: one row per class, then ``all``, for both variants."""
    u, p = report["ultralytics"], report["polygon"]
    rows = [f"{'class':<16}{'n_gt':>6}{'P':>8}{'R':>8}{'mAP50':>8}{'mAP50-95':>10}  |  {'poly50':>7}{'poly50-95':>10}"]

    def fmt(v: Optional[float]) -> str:
        return "   -" if v is None else f"{v:.3f}"

    for i, name in enumerate(report["names"]):
        rows.append(f"{name[:15]:<16}{u['n_gt'][i]:>6}{fmt(u['per_class_precision'][i]):>8}"
                    f"{fmt(u['per_class_recall'][i]):>8}{fmt(u['per_class_ap50'][i]):>8}"
                    f"{fmt(u['per_class_ap50_95'][i]):>10}  |  {fmt(p['per_class_ap50'][i]):>7}"
                    f"{fmt(p['per_class_ap50_95'][i]):>10}")
    rows.append(f"{'all':<16}{sum(u['n_gt']):>6}{fmt(u['precision']):>8}{fmt(u['recall']):>8}{fmt(u['map50']):>8}"
                f"{fmt(u['map50_95']):>10}  |  {fmt(p['map50']):>7}{fmt(p['map50_95']):>10}")
    return "\n".join(rows)


def plot_pr_curve(result: MapResult, names: List[str], path: Path) -> Optional[Path]:
    """The PR curve at IoU 0.5 per class and their mean, as a PNG (None when matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    curve = result.pr_curve
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    has = np.asarray(result.n_gt) > 0
    for c in np.flatnonzero(has):
        ax.plot(curve.recall, curve.precision_at_recall[c], lw=1, label=f"{names[c]} {result.per_class_ap50[c]:.3f}")
    if has.any():
        ax.plot(curve.recall, curve.precision_at_recall[has].mean(0), lw=3, color="blue",
                label=f"all classes {result.map50:.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title=f"Precision-Recall ({result.iou} IoU)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path))
    plt.close(fig)
    return path


__all__ = ["evaluate_predictions", "format_table", "plot_pr_curve", "ground_truth", "align", "VARIANTS"]
