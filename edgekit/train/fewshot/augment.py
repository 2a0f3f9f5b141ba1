"""Frame and reference-photo augmentation for RefDet training; boxes follow every geometric transform.

Frames are letterboxed first (:func:`edgekit.core.letterbox.letterbox`, the inference geometry), then
zoomed/shifted about the centre (``cv2.warpAffine``, pad 114), flipped and HSV-jittered. Boxes are
``(N, 4)`` float32 ``x1, y1, x2, y2`` pixels; a box whose visible part falls below ``min_visible`` of its
transformed area (or under 2 px) is dropped. Hand-written rather than Ultralytics' ``RandomPerspective``
because that one works on its ``Instances`` objects and its own random state; here every draw comes from
the caller's seeded generator, which makes a resumed run repeat the same augmentations.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from edgekit.core.letterbox import LetterboxSpec, letterbox

from .config import AugmentConfig

PAD = 114
MIN_SIDE = 2.0


def _cv2():
    import cv2

    return cv2


def letterbox_with_boxes(frame: np.ndarray, boxes: np.ndarray, imgsz: int) -> Tuple[np.ndarray, np.ndarray]:
    """Letterbox a BGR frame to ``imgsz`` square and map its boxes into the network pixels."""
    img, info = letterbox(frame, LetterboxSpec(imgsz=imgsz))
    b = np.asarray(boxes, np.float32).reshape(-1, 4) * info.ratio
    b[:, [0, 2]] += info.pad[0]
    b[:, [1, 3]] += info.pad[1]
    return img, b


def _keep_visible(raw: np.ndarray, w: int, h: int, min_visible: float) -> np.ndarray:
    """Clip boxes to the image; drop the ones with too little left."""
    clipped = raw.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, w)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, h)
    area = (raw[:, 2] - raw[:, 0]) * (raw[:, 3] - raw[:, 1])
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (cw >= MIN_SIDE) & (ch >= MIN_SIDE) & (cw * ch >= min_visible * np.maximum(area, 1e-6))
    return clipped[keep].astype(np.float32)


def affine(img: np.ndarray, boxes: np.ndarray, scale: float, shift: Tuple[float, float],
           min_visible: float = 0.3) -> Tuple[np.ndarray, np.ndarray]:
    """Zoom by ``scale`` about the image centre, then shift by ``shift`` pixels; boxes mapped the same way."""
    h, w = img.shape[:2]
    cx, cy = w / 2.0, h / 2.0
    m = np.array([[scale, 0.0, (1 - scale) * cx + shift[0]], [0.0, scale, (1 - scale) * cy + shift[1]]], np.float32)
    out = _cv2().warpAffine(img, m, (w, h), flags=_cv2().INTER_LINEAR, borderValue=(PAD, PAD, PAD))
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]] * scale + m[0, 2]
    b[:, [1, 3]] = b[:, [1, 3]] * scale + m[1, 2]
    return out, _keep_visible(b, w, h, min_visible)


def hflip(img: np.ndarray, boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    w = img.shape[1]
    b = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] = w - b[:, [2, 0]]
    return np.ascontiguousarray(img[:, ::-1]), b


def hsv_jitter(img: np.ndarray, rng: np.random.Generator, h: float, s: float, v: float) -> np.ndarray:
    """Random hue shift and saturation/value gains through lookup tables (Ultralytics' ``RandomHSV`` recipe)."""
    if not (h or s or v):
        return img
    cv2 = _cv2()
    gains = rng.uniform(-1, 1, 3) * np.array([h, s, v]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def augment_frame(img: np.ndarray, boxes: np.ndarray, rng: np.random.Generator,
                  cfg: AugmentConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Zoom/shift, flip and HSV-jitter a letterboxed frame; every draw comes from ``rng``."""
    h, w = img.shape[:2]
    scale = float(rng.uniform(1 - cfg.scale, 1 + cfg.scale))
    shift = (float(rng.uniform(-cfg.translate, cfg.translate) * w), float(rng.uniform(-cfg.translate, cfg.translate) * h))
    flip = bool(rng.random() < cfg.fliplr)
    if cfg.scale or cfg.translate:
        img, boxes = affine(img, boxes, scale, shift, cfg.min_visible)
    if flip:
        img, boxes = hflip(img, boxes)
    return hsv_jitter(img, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v), boxes


def augment_reference(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Flip and HSV-jitter a reference photo (no geometry beyond the flip: the photo is the whole target)."""
    if rng.random() < cfg.fliplr:
        img = np.ascontiguousarray(img[:, ::-1])
    return hsv_jitter(img, rng, cfg.hsv_h, cfg.hsv_s * 0.5, cfg.hsv_v * 0.5)


def to_chw_rgb(img: np.ndarray) -> np.ndarray:
    """HWC BGR uint8 -> CHW RGB float32 0..1 (the network input of :func:`edgekit.core.letterbox.preprocess`)."""
    # times float32(1/255), as preprocess's lookup table computes it: bit-identical network inputs
    return np.ascontiguousarray(img[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32) * np.float32(1.0 / 255.0)


def crop_box(frame: np.ndarray, box: np.ndarray, context: float = 0.1) -> np.ndarray:
    """The box's region of a frame with ``context`` of its size added on each side (clipped to the frame)."""
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    dx, dy = (x2 - x1) * context, (y2 - y1) * context
    xa, ya = int(max(0, np.floor(x1 - dx))), int(max(0, np.floor(y1 - dy)))
    xb, yb = int(min(w, np.ceil(x2 + dx))), int(min(h, np.ceil(y2 + dy)))
    if xb - xa < 2 or yb - ya < 2:
        return np.full((2, 2, 3), PAD, np.uint8)
    return frame[ya:yb, xa:xb]


__all__ = ["letterbox_with_boxes", "affine", "hflip", "hsv_jitter", "augment_frame", "augment_reference",
           "to_chw_rgb", "crop_box"]
