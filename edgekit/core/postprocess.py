"""Decode raw Ultralytics detector outputs into :class:`Detections` (numpy only, runs on device).

Raw outputs, as exported to ONNX by Ultralytics 8.4.190 (its ``OBB``/``Detect`` head export):

- OBB: (B, 4 + nc + 1, A): rows ``cx, cy, w, h`` in network pixels, ``nc`` class scores
  (already sigmoid), then the angle in radians (in ``[-pi/4, 3pi/4)``); one column per anchor.
- detect: (B, 4 + nc, A): ``cx, cy, w, h`` then class scores.

The decode reproduces ``ultralytics.utils.nms.non_max_suppression`` with its predictor defaults
(best class per anchor, ``score > conf``, at most ``max_nms`` candidates, class-aware NMS unless
``agnostic``, ``max_det``): OBB uses ProbIoU with Fast-NMS, detect uses greedy IoU NMS. Boxes
stay in network pixels; map them back with :func:`edgekit.core.letterbox.unletterbox_xywhr`.
"""

from __future__ import annotations

from typing import List, Literal, Tuple

import numpy as np
from pydantic import Field

from .config import StrictModel
from .detections import Detections
from .errors import ModelError
from .geometry import nms_xyxy, regularize_xywhr, rotated_nms


class PostprocessSpec(StrictModel):
    """Thresholds and NMS choices; travels in the bundle manifest."""

    conf: float = Field(0.25, ge=0.0, le=1.0)
    iou: float = Field(0.7, ge=0.0, le=1.0)
    max_det: int = Field(300, ge=1)
    task: Literal["obb", "detect"] = "obb"
    agnostic: bool = False
    max_nms: int = Field(30000, ge=1)  # candidates kept (best scores) before NMS, as Ultralytics
    obb_iou: Literal["probiou", "polygon"] = "probiou"  # ProbIoU = Ultralytics; polygon = exact overlap
    obb_fast_nms: bool = True  # Fast-NMS = Ultralytics; False = classic greedy NMS


def _batched(raw: np.ndarray, min_rows: int, what: str) -> np.ndarray:
    arr = np.asarray(raw)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] < min_rows:
        raise ModelError(
            f"{what} output must be (B, C, A) or (C, A) with C >= {min_rows}, got shape {np.shape(raw)}",
            "check the model's task matches postprocess.task in the manifest",
        )
    return arr.astype(np.float32, copy=False)


def _candidates(pred: np.ndarray, nc: int, spec: PostprocessSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, A) one image -> (columns, scores, class ids) above ``conf``, best ``max_nms`` first."""
    cls_scores = pred[4 : 4 + nc]
    scores = cls_scores.max(0)
    cols = np.nonzero(scores > spec.conf)[0]
    if len(cols) > spec.max_nms:
        cols = cols[np.argsort(-scores[cols], kind="stable")[: spec.max_nms]]
    # argmax of the candidates only: numpy's argmax along axis 0 of (nc, A) is a slow strided loop
    # (0.13 ms at A = 8400, a third of a typical decode) and most anchors are dropped anyway.
    return cols, scores[cols], cls_scores[:, cols].argmax(0).astype(np.int64)


def decode_obb(raw: np.ndarray, spec: PostprocessSpec = PostprocessSpec()) -> List[Detections]:
    """Raw OBB output (B, 4+nc+1, A) or (4+nc+1, A) -> one Detections (xywhr, le135) per image.

    >>> raw = np.zeros((1, 4 + 2 + 1, 3), np.float32)
    >>> raw[0, :4, 0], raw[0, 4, 0] = (32, 32, 10, 4), 0.9
    >>> decode_obb(raw)[0].boxes.tolist()
    [[32.0, 32.0, 10.0, 4.0, 0.0]]
    """
    batch = _batched(raw, 6, "OBB")
    nc = batch.shape[1] - 5
    out = []
    for pred in batch:
        cols, scores, class_ids = _candidates(pred, nc, spec)
        boxes = np.concatenate([pred[:4, cols], pred[-1:, cols]], 0).T.astype(np.float64)
        out.append(_suppress_obb(boxes, scores, class_ids, spec))
    return out


def _suppress_obb(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, spec: PostprocessSpec) -> Detections:
    """Rotated NMS over one image's candidates (float64 ``xywhr``) -> regularised Detections."""
    keep = rotated_nms(boxes, scores, spec.iou, None if spec.agnostic else class_ids, spec.max_det,
                       iou=spec.obb_iou, fast=spec.obb_fast_nms)
    return Detections(regularize_xywhr(boxes[keep]).astype(np.float32), scores[keep], class_ids[keep])


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre-size boxes -> (N, 4) corner boxes."""
    b = np.asarray(boxes)
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], 1)


def decode_detect(raw: np.ndarray, spec: PostprocessSpec = PostprocessSpec(task="detect")) -> List[Detections]:
    """Raw detect output (B, 4+nc, A) or (4+nc, A) -> one Detections (xyxy) per image.

    >>> raw = np.zeros((4 + 1, 2), np.float32)
    >>> raw[:, 0] = (20, 20, 10, 6, 0.8)
    >>> decode_detect(raw)[0].boxes.tolist()
    [[15.0, 17.0, 25.0, 23.0]]
    """
    batch = _batched(raw, 5, "detect")
    nc = batch.shape[1] - 4
    out = []
    for pred in batch:
        cols, scores, class_ids = _candidates(pred, nc, spec)
        boxes = xywh_to_xyxy(pred[:4, cols].T)
        keep = nms_xyxy(boxes, scores, spec.iou, None if spec.agnostic else class_ids, spec.max_det)
        out.append(Detections(boxes[keep], scores[keep], class_ids[keep]))
    return out


def decode(raw: np.ndarray, spec: PostprocessSpec) -> List[Detections]:
    """Dispatch on ``spec.task``."""
    return decode_obb(raw, spec) if spec.task == "obb" else decode_detect(raw, spec)


# A runner that decodes on its own device (the torch runner's GPU decode) returns this output instead
# of the raw one: (max_det + 2, 7) float32, row 0 = [kept, overflow, candidates, regularised, 0, 0, 0],
# rows 1..kept = [cx, cy, w, h, angle, score, class], best score first: raw box values when
# regularised is 0; else boxes already regularised (regularize_xywhr), except rows whose class is
# written -(class + 1), which hold raw values.
DECODED_OUTPUT = "edgekit:decoded_obb"
# A runner that only trims the decode's input on its device returns this output: (k + 1, 7) float32,
# row 0 = [rows, overflow, candidates, 0, 0, 0, 0], rows 1..rows = [cx, cy, w, h, angle, score, class]
# of the candidates (score > conf, at most max_nms), best score first (ties: lower anchor first).
CANDIDATE_OUTPUT = "edgekit:obb_candidates"


def detections_from_rows(rows: np.ndarray) -> Detections:
    """Decoded rows (:data:`DECODED_OUTPUT`) -> the Detections :func:`decode_obb` gives for the same output.

    The boxes are regularised here, on the host, exactly as :func:`decode_obb` does (float64, then
    float32), so both paths give identical arrays.
    """
    arr = np.asarray(rows, np.float32)
    if arr.ndim != 2 or arr.shape[1] != 7 or not 0 <= arr[0, 0] < arr.shape[0] or arr[0, 1] != 0:
        raise ValueError(f"not decoded OBB rows (shape {arr.shape}, header {arr[0].tolist() if arr.ndim == 2 else '?'})")
    body = arr[1:1 + int(arr[0, 0])]
    if arr[0, 3] == 0:  # raw box values: regularised here
        boxes = regularize_xywhr(body[:, :5].astype(np.float64)).astype(np.float32)
        classes = body[:, 6].astype(np.int64)
    else:  # regularised on the device, except rows whose class is -(class + 1)
        boxes, classes = body[:, :5].copy(), body[:, 6].astype(np.int64)
        raw = classes < 0
        if raw.any():
            boxes[raw] = regularize_xywhr(boxes[raw].astype(np.float64)).astype(np.float32)
            classes[raw] = -classes[raw] - 1
    # the arrays are built in Detections' checked form here: no second pass of checks per frame
    return Detections.trusted(boxes, body[:, 5].copy(), classes)


def detections_from_candidates(rows: np.ndarray, spec: PostprocessSpec) -> Detections:
    """Candidate rows (:data:`CANDIDATE_OUTPUT`) -> the Detections :func:`decode_obb` gives for the same output.

    The candidates are the ones :func:`decode_obb` examines, so the same suppression over them gives
    the same detections (the NMS orders by score with a stable sort either way).
    """
    arr = np.asarray(rows, np.float32)
    if arr.ndim != 2 or arr.shape[1] != 7 or not 0 <= arr[0, 0] < arr.shape[0] or arr[0, 1] != 0:
        raise ValueError(f"not OBB candidate rows (shape {arr.shape}, header {arr[0].tolist() if arr.ndim == 2 else '?'})")
    body = arr[1:1 + int(arr[0, 0])]
    return _suppress_obb(body[:, :5].astype(np.float64), body[:, 5].copy(), body[:, 6].astype(np.int64), spec)


def decode_refdet(raw: np.ndarray, spec: PostprocessSpec = PostprocessSpec(task="detect")) -> List[Detections]:
    """RefDet's per-frame output (B, 5, A): ``cx, cy, w, h, score`` (one class, "is the target") ->
    one Detections per image as ``xywhr`` rows with angle 0 and class 0 (the RefDet convention).

    Thresholds and NMS are :func:`decode_detect`'s (greedy IoU NMS on the axis-aligned boxes).

    >>> raw = np.zeros((1, 5, 2), np.float32)
    >>> raw[0, :, 0] = (20, 20, 10, 6, 0.8)
    >>> decode_refdet(raw)[0].boxes.tolist()
    [[20.0, 20.0, 10.0, 6.0, 0.0]]
    """
    batch = _batched(raw, 5, "RefDet")
    if batch.shape[1] != 5:
        raise ModelError(f"RefDet output must be (B, 5, A) (cx, cy, w, h, score), got shape {np.shape(raw)}",
                         "export the per-frame graph of a RefDet model (edgekit export)")
    out = []
    for dets in decode_detect(batch, spec.model_copy(update={"task": "detect"})):
        b = dets.boxes.astype(np.float32)
        xywhr = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                          np.zeros(len(b), np.float32)], 1) if len(b) else np.zeros((0, 5), np.float32)
        out.append(Detections(xywhr, dets.scores, np.zeros(len(b), np.int64)))
    return out


__all__ = ["PostprocessSpec", "decode_obb", "decode_detect", "decode", "decode_refdet", "xywh_to_xyxy", "DECODED_OUTPUT",
           "CANDIDATE_OUTPUT", "detections_from_rows", "detections_from_candidates"]
