"""The one result type: :class:`Detections`, a validated bundle of numpy arrays.

Postprocess produces it, metrics and bench parity compare it, the daemon serialises it. Oriented
boxes are first-class: ``boxes`` is (N, 5) ``xywhr`` (radians) for OBB models or (N, 4) ``xyxy``
for axis-aligned ones; the shape says which. Filtering is numpy-style, as in supervision::

    >>> dets = Detections(np.array([[5, 5, 4, 2, 0.0], [9, 9, 2, 2, 0.5]]), np.array([0.9, 0.2]), np.array([1, 0]))
    >>> len(dets[dets.scores > 0.5]), dets.is_obb
    (1, True)
    >>> Detections.from_json(dets.to_json()) == dets
    True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Optional

import numpy as np

from .geometry import xywhr_to_corners

_FORMATS = {5: "xywhr", 4: "xyxy"}
_KEYS = ("format", "boxes", "scores", "class_ids", "target_ids")


def _vector(name: str, value: Any, dtype: Any, n: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"Detections.{name} must have shape ({n},) to match boxes, got {arr.shape}")
    fractional = dtype is np.int64 and arr.size and not np.issubdtype(arr.dtype, np.integer)
    if fractional and not np.all(np.mod(arr, 1) == 0):
        raise ValueError(f"Detections.{name} must hold integers, got {arr.dtype} with fractions")
    return np.ascontiguousarray(arr, dtype=dtype)


@dataclass(eq=False)
class Detections:
    """N detections of one image.

    Attributes:
        boxes: (N, 5) float32 ``cx, cy, w, h, angle`` (radians) for OBB, or (N, 4) float32 ``xyxy``.
        scores: (N,) float32 confidences.
        class_ids: (N,) int64 class indices.
        target_ids: optional (N,) int64: the reference target (few-shot) or track id of each box.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    target_ids: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes)
        if boxes.ndim == 1 and boxes.size == 0:
            boxes = boxes.reshape(0, 5)
        if boxes.ndim != 2 or boxes.shape[1] not in _FORMATS:
            raise ValueError(f"Detections.boxes must have shape (N, 5) xywhr or (N, 4) xyxy, got {boxes.shape}")
        if not np.issubdtype(boxes.dtype, np.number):
            raise ValueError(f"Detections.boxes must be numeric, got dtype {boxes.dtype}")
        n = len(boxes)
        self.boxes = np.ascontiguousarray(boxes, dtype=np.float32)
        self.scores = _vector("scores", self.scores, np.float32, n)
        self.class_ids = _vector("class_ids", self.class_ids, np.int64, n)
        if self.target_ids is not None:
            self.target_ids = _vector("target_ids", self.target_ids, np.int64, n)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def trusted(cls, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> Detections:
        """Detections from arrays already in the checked form (C-contiguous float32 (N, 5|4) boxes, float32
        and int64 (N,) vectors), without the checks: for decoders that build them so, on the per-frame
        path where the checks would cost more than the decode (about 7 us per construction)."""
        dets = cls.__new__(cls)
        dets.boxes, dets.scores, dets.class_ids, dets.target_ids = boxes, scores, class_ids, None
        return dets

    @classmethod
    def empty(cls, obb: bool = True, with_target_ids: bool = False) -> Detections:
        """No detections, with (0, 5) or (0, 4) boxes.

        >>> len(Detections.empty()), Detections.empty(obb=False).boxes.shape
        (0, (0, 4))
        """
        targets = np.zeros(0, np.int64) if with_target_ids else None
        return cls(np.zeros((0, 5 if obb else 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), targets)

    @classmethod
    def concat(cls, items: Iterable[Detections], obb: Optional[bool] = None) -> Detections:
        """Stack several Detections of the same box format; ``obb`` sets the format of an empty result.

        >>> a = Detections(np.array([[0, 0, 2, 2]]), np.array([0.5]), np.array([0]))
        >>> len(Detections.concat([a, a]))
        2
        """
        items = list(items)
        if not items:
            return cls.empty(obb=True if obb is None else obb)
        widths = {d.boxes.shape[1] for d in items}
        if len(widths) > 1:
            raise ValueError("Detections.concat: cannot mix OBB (N, 5) and axis-aligned (N, 4) boxes")
        has_targets = {d.target_ids is not None for d in items}
        if len(has_targets) > 1:
            raise ValueError("Detections.concat: target_ids are set on some items but not on others")
        targets = np.concatenate([d.target_ids for d in items]) if has_targets == {True} else None
        return cls(
            np.concatenate([d.boxes for d in items]),
            np.concatenate([d.scores for d in items]),
            np.concatenate([d.class_ids for d in items]),
            targets,
        )

    # -- numpy-style access ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: Any) -> Detections:
        """Select with a boolean mask, an index array, a slice or an int (keeps a Detections)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        targets = None if self.target_ids is None else self.target_ids[index]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], targets)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Detections):
            return NotImplemented
        if (self.target_ids is None) != (other.target_ids is None):
            return False
        same_targets = self.target_ids is None or np.array_equal(self.target_ids, other.target_ids)
        return (
            self.boxes.shape == other.boxes.shape and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.scores, other.scores) and np.array_equal(self.class_ids, other.class_ids)
            and same_targets
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays

    def __repr__(self) -> str:
        fmt = _FORMATS[self.boxes.shape[1]]
        return f"Detections(n={len(self)}, format={fmt}, classes={sorted(set(self.class_ids.tolist()))})"

    # -- geometry -------------------------------------------------------------------------------
    @property
    def is_obb(self) -> bool:
        """True when boxes are (N, 5) xywhr."""
        return self.boxes.shape[1] == 5

    def corners(self) -> np.ndarray:
        """(N, 4, 2) float32 corners (Ultralytics ``xyxyxyxy`` order for OBB; TL, TR, BR, BL for xyxy)."""
        if self.is_obb:
            return xywhr_to_corners(self.boxes).astype(np.float32)
        x1, y1, x2, y2 = self.boxes.T
        return np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1),
                         np.stack([x2, y2], -1), np.stack([x1, y2], -1)], 1).astype(np.float32)

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) float32 axis-aligned boxes (for OBB, the axis-aligned hull of the corners)."""
        if not self.is_obb:
            return self.boxes
        c = self.corners()
        return np.concatenate([c.min(1), c.max(1)], 1).astype(np.float32)

    @property
    def xywhr(self) -> np.ndarray:
        """(N, 5) float32 xywhr boxes (axis-aligned boxes get angle 0)."""
        if self.is_obb:
            return self.boxes
        b = self.boxes
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                         np.zeros(len(b), np.float32)], 1).astype(np.float32)

    @property
    def areas(self) -> np.ndarray:
        """(N,) float32 box areas."""
        w, h = self.xywhr[:, 2], self.xywhr[:, 3]
        return (w * h).astype(np.float32)

    # -- serialisation --------------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON mapping. float32 values become the exact float64 of that float32, so
        :meth:`from_dict` restores bit-identical arrays.
        """
        return {
            "format": _FORMATS[self.boxes.shape[1]],
            "boxes": self.boxes.tolist(),
            "scores": self.scores.tolist(),
            "class_ids": self.class_ids.tolist(),
            "target_ids": None if self.target_ids is None else self.target_ids.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Detections:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ValueError naming the key."""
        unknown = sorted(set(data) - set(_KEYS))
        if unknown:
            raise ValueError(f"Detections.from_dict: unknown key '{unknown[0]}' (expected {', '.join(_KEYS)})")
        for key in ("boxes", "scores", "class_ids"):
            if key not in data:
                raise ValueError(f"Detections.from_dict: missing key '{key}'")
        fmt = data.get("format")
        width = {v: k for k, v in _FORMATS.items()}.get(fmt) if fmt is not None else None
        if fmt is not None and width is None:
            raise ValueError(f"Detections.from_dict: 'format' must be 'xywhr' or 'xyxy', got {fmt!r}")
        boxes = np.asarray(data["boxes"], dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, width or 5)
        if width is not None and boxes.ndim == 2 and boxes.shape[1] != width:
            raise ValueError(f"Detections.from_dict: format {fmt!r} needs (N, {width}) boxes, got {boxes.shape}")
        targets = data.get("target_ids")
        # ids are passed as parsed, not cast: __post_init__ rejects fractional ids instead of truncating them
        return cls(
            boxes,
            np.asarray(data["scores"], dtype=np.float32),
            np.asarray(data["class_ids"]),
            None if targets is None else np.asarray(targets),
        )

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> Detections:
        return cls.from_dict(json.loads(text))


__all__ = ["Detections"]
