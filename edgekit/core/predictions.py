"""The predictions file of ``edgekit predict obb``, read by ``edgekit eval obb`` (and by anyone else).

A versioned JSON document, validated by pydantic, so a file written elsewhere (another framework, an
older edgekit) is checked key by key and a wrong one fails in one line naming the key::

    {"version": 1, "task": "obb", "model": "runs/x/checkpoints/best.pt", "names": ["plane", "ship"],
     "images": [{"path": "val/0001.jpg", "frame": null, "width": 640, "height": 480,
                 "boxes": [[cx, cy, w, h, angle_rad]], "corners": [[[x1, y1], .., [x4, y4]]],
                 "scores": [0.9], "classes": [1], "class_names": ["ship"]}]}

Boxes are in image pixels; ``corners`` follow Ultralytics' ``xyxyxyxy`` order and are informative
(evaluation uses ``boxes``). ``frame`` is the frame index for video sources (null for images).

``task`` says which model wrote the file: ``obb`` (``edgekit predict obb``) or ``refdet``
(``edgekit predict refdet``: one class, ``target``; axis-aligned boxes as angle-0 rows; ``references``
lists the reference photos that set the target).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Union

import numpy as np
from pydantic import Field, model_validator

from .config import StrictModel, build_config
from .detections import Detections
from .errors import ConfigError, DataError

PREDICTIONS_VERSION = 1
TASKS = ("obb", "refdet")


class ImagePredictions(StrictModel):
    """The detections of one image (or one video frame)."""

    path: str  # the image (or video) path as given to predict
    frame: Optional[int] = None  # frame index for videos; null for images
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    boxes: List[List[float]] = Field(default_factory=list)  # (N, 5) cx, cy, w, h, angle (radians), pixels
    corners: List[List[List[float]]] = Field(default_factory=list)  # (N, 4, 2) pixels
    scores: List[float] = Field(default_factory=list)
    classes: List[int] = Field(default_factory=list)
    class_names: List[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> ImagePredictions:
        n = len(self.boxes)
        if any(len(b) != 5 for b in self.boxes):
            raise ValueError("boxes must be [cx, cy, w, h, angle] rows (5 numbers each)")
        for key in ("scores", "classes"):
            if len(getattr(self, key)) != n:
                raise ValueError(f"{key} has {len(getattr(self, key))} entries for {n} boxes")
        for key in ("corners", "class_names"):
            if getattr(self, key) and len(getattr(self, key)) != n:
                raise ValueError(f"{key} has {len(getattr(self, key))} entries for {n} boxes")
        if any(c < 0 for c in self.classes):
            raise ValueError("classes must be >= 0")
        return self

    def detections(self) -> Detections:
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 5)
        return Detections(boxes, np.asarray(self.scores, np.float32), np.asarray(self.classes, np.int64))

    @classmethod
    def from_detections(cls, dets: Detections, path: str, width: int, height: int, names: List[str],
                        frame: Optional[int] = None) -> ImagePredictions:
        xywhr = dets.xywhr
        return cls(path=path, frame=frame, width=width, height=height, boxes=xywhr.tolist(),
                   corners=dets.corners().tolist(), scores=dets.scores.tolist(),
                   classes=dets.class_ids.tolist(),
                   class_names=[names[c] if 0 <= c < len(names) else str(c) for c in dets.class_ids.tolist()])


class PredictionsFile(StrictModel):
    """A whole predictions file."""

    version: int = PREDICTIONS_VERSION  # file format version (this reader knows 1)
    task: str = "obb"  # one of TASKS
    model: str  # what produced the predictions (checkpoint, run or bundle path)
    names: List[str] = Field(default_factory=list)  # class names, index = class id
    conf: Optional[float] = None  # confidence threshold used (mAP wants a low one, e.g. 0.001)
    iou: Optional[float] = None  # NMS IoU threshold used
    imgsz: Optional[int] = None  # network input side
    multi_label: bool = False  # every class above conf per anchor (as Ultralytics' val), not only the best
    references: Optional[List[str]] = None  # refdet: the reference photos of the target
    images: List[ImagePredictions] = Field(default_factory=list)

    @model_validator(mode="after")
    def _known(self) -> PredictionsFile:
        if self.version != PREDICTIONS_VERSION:
            raise ValueError(f"version {self.version} is not known (this edgekit reads version {PREDICTIONS_VERSION})")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.references is not None and self.task != "refdet":
            raise ValueError(f"references belong to refdet predictions, not to task {self.task!r}")
        return self

    def write(self, path: Union[str, Path]) -> Path:
        from .atomic import write_text_atomic

        return write_text_atomic(Path(path), json.dumps(self.model_dump(mode="json"), indent=1) + "\n")


def read_predictions(path: Union[str, Path]) -> PredictionsFile:
    """Load and validate a predictions file; DataError/ConfigError in one line naming the bad key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"predictions file {path} does not exist", "pass the JSON written by edgekit predict obb")
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {str(e).splitlines()[0]}", "fix or re-create the file") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object with 'version', 'model' and 'images'",
                        "pass the JSON written by edgekit predict obb")
    try:
        return build_config(PredictionsFile, data, path.name)
    except ConfigError as e:  # a predictions file is no config: docs/config.md does not describe it
        fix = e.fix if e.fix and "did you mean" in e.fix else "re-create it with edgekit predict, or fix that entry"
        raise ConfigError(e.message, fix) from None


__all__ = ["PREDICTIONS_VERSION", "TASKS", "ImagePredictions", "PredictionsFile", "read_predictions"]
