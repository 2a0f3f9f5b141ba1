"""mAP of the bundle as the device runs it, on a YOLO-OBB dataset's val split.

The device cannot import ``edgekit.data`` (host-only; the import contracts forbid it), so this module
reads what it needs itself: ``data.yaml`` (``names`` and the ``val`` image folder, resolved against
the yaml's own directory as ``edgekit.data`` does) and label lines ``cls x1 y1 x2 y2 x3 y3 x4 y4``
(normalised corners; the label of ``.../images/x.jpg`` is ``.../labels/x.txt``, Ultralytics' rule).
It does not validate datasets (``edgekit data check`` does, on the host); a malformed line is one
error naming the file and line.

Predictions come from the same :class:`~edgekit.deploy.detector.Detector` the daemon uses, at the
validation confidence 0.001 (mAP integrates over the whole precision-recall curve), and are scored
with :func:`edgekit.core.metrics.evaluate_map` exactly as export's host evaluation scores the FP32
ONNX model, so the two figures are comparable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import DataError

VAL_CONF = 0.001  # as export's accuracy report and Ultralytics' validator
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_FIX = "point --data at a YOLO-OBB dataset root holding data.yaml (edgekit data check validates it)"


def read_val_split(data_dir: Path) -> Tuple[List[str], List[Path]]:
    """(class names, val image paths) of the dataset at ``data_dir`` (its root or its data.yaml)."""
    import yaml

    data_dir = Path(data_dir)
    yaml_path = data_dir if data_dir.suffix in (".yaml", ".yml") else data_dir / "data.yaml"
    if not yaml_path.is_file():
        raise DataError(f"{yaml_path} does not exist", _FIX)
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"cannot read {yaml_path}: {str(e).splitlines()[0]}", "fix the YAML syntax") from None
    if not isinstance(data, dict) or "names" not in data or not isinstance(data.get("val"), str):
        raise DataError(f"{yaml_path} needs 'names' and a 'val' image folder", _FIX)
    names = data["names"]
    names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    folder = yaml_path.parent / data["val"]
    if not folder.is_dir():
        raise DataError(f"val image folder {folder} (from {yaml_path}) does not exist", f"fix 'val:' in {yaml_path}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"val image folder {folder} holds no images", f"fix 'val:' in {yaml_path}")
    return names, images


def label_path_for(image: Path) -> Path:
    text, marker = str(image), f"{os.sep}images{os.sep}"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = f"{head}{os.sep}labels{os.sep}{tail}"
    return Path(text).with_suffix(".txt")


def read_obb_labels(path: Path, height: int, width: int) -> Detections:
    """One YOLO-OBB label file -> ground-truth Detections (xywhr) in image pixels (a missing file: none)."""
    from edgekit.core.geometry import corners_to_xywhr

    if not path.is_file():
        return Detections.empty(obb=True)
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values = []
        if len(values) != 9 or values[0] != int(values[0]) or values[0] < 0:
            raise DataError(f"{path}:{lineno} is not 'cls x1 y1 x2 y2 x3 y3 x4 y4'", "run edgekit data check on the dataset")
        rows.append(values)
    if not rows:
        return Detections.empty(obb=True)
    arr = np.asarray(rows, np.float64)
    corners = arr[:, 1:].reshape(-1, 4, 2) * np.array([width, height])
    return Detections(corners_to_xywhr(corners).astype(np.float32), np.ones(len(arr), np.float32),
                      arr[:, 0].astype(np.int64))


def evaluate_detector(detector: Any, data_dir: Path, on_image: Optional[Callable[[], None]] = None
                      ) -> Dict[str, Any]:
    """mAP50 / mAP50-95 of ``detector`` (an active Detector) over the val split of ``data_dir``.

    The detector's confidence threshold is lowered to :data:`VAL_CONF` for the run and restored.
    """
    import cv2

    from edgekit.core.metrics import evaluate_map

    names, images = read_val_split(data_dir)
    saved = detector.postprocess
    detector.postprocess = saved.model_copy(update={"conf": VAL_CONF})
    preds: List[Detections] = []
    gts: List[Detections] = []
    try:
        for path in images:
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is None:
                raise DataError(f"cannot decode image {path}", "remove or replace the file")
            preds.append(detector.detect(frame))
            gts.append(read_obb_labels(label_path_for(path), frame.shape[0], frame.shape[1]))
            if on_image:
                on_image()
    finally:
        detector.postprocess = saved
    result = evaluate_map(preds, gts, len(names))
    return {"n_images": len(images), "map50": float(result.map50), "map50_95": float(result.map50_95),
            "conf": VAL_CONF, "nc": len(names)}


__all__ = ["VAL_CONF", "read_val_split", "label_path_for", "read_obb_labels", "evaluate_detector"]
