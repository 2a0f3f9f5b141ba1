"""Torch inference of a RefDet model: set a target from 1-3 photos, then detect it frame by frame.

Preprocessing is the deploy contract's: frames are letterboxed by :func:`edgekit.core.letterbox.preprocess`
(pad 114, RGB, 0..1) exactly as the OBB detector's; reference photos are letterboxed the same way to
``ref_size`` square. Boxes come back in frame pixels as ``Detections`` xywhr rows with angle 0, class 0.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from edgekit.core.detections import Detections
from edgekit.core.errors import DataError
from edgekit.core.letterbox import LetterboxInfo, LetterboxSpec, preprocess, unletterbox_xyxy
from edgekit.core.postprocess import PostprocessSpec, decode_detect

from .model import RefDetModel

CLASS_NAMES = ("target",)


def reference_tensor(images: Sequence[np.ndarray], ref_size: int) -> torch.Tensor:
    """1-3 BGR uint8 photos -> ``[K,3,R,R]`` float32 RGB 0..1, letterboxed (pad 114) to ``ref_size``."""
    if not 1 <= len(images) <= 3:
        raise DataError(f"a target needs 1-3 reference photos, got {len(images)}", "pass 1, 2 or 3 images")
    spec = LetterboxSpec(imgsz=ref_size)
    return torch.from_numpy(np.concatenate([preprocess(im, spec)[0] for im in images]))


def frame_tensor(frame: np.ndarray, imgsz: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, LetterboxInfo]:
    """BGR uint8 frame -> ``[1,3,H,W]`` RGB 0..1 letterboxed network input, and the letterbox info."""
    x, info = preprocess(frame, LetterboxSpec(imgsz=imgsz))
    return torch.from_numpy(x), info


def xyxy_to_xywhr(boxes: np.ndarray) -> np.ndarray:
    """(N,4) corners -> (N,5) centre, size, angle 0 (edgekit's Detections rows for axis-aligned boxes)."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2], np.zeros((len(b), 1), np.float32)], 1)


def decode_refdet(raw: np.ndarray, infos: Sequence[LetterboxInfo], conf: float, iou: float,
                  max_det: int = 300) -> List[Detections]:
    """``[B,5,A]`` network output -> per-image Detections in frame pixels (xywhr, angle 0, class 0)."""
    spec = PostprocessSpec(task="detect", conf=conf, iou=iou, max_det=max_det)
    out = []
    for dets, info in zip(decode_detect(raw, spec), infos):
        out.append(Detections(xyxy_to_xywhr(unletterbox_xyxy(dets.boxes, info)), dets.scores, dets.class_ids))
    return out


class RefDetPredictor:
    """``set_target(photos)`` once, then ``predictor(frame) -> Detections`` per BGR frame."""

    def __init__(self, model: RefDetModel, imgsz: Union[int, Tuple[int, int]], conf: float = 0.25, iou: float = 0.5,
                 device: Union[str, torch.device] = "cpu", max_det: int = 300) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.imgsz, self.conf, self.iou, self.max_det = imgsz, float(conf), float(iou), int(max_det)
        self.embedding: Optional[torch.Tensor] = None
        self.class_names = CLASS_NAMES

    @torch.no_grad()
    def set_target(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Encode 1-3 BGR photos of the target (mean of the normalised embeddings, normalised); returns ``[1,D]``."""
        refs = reference_tensor(images, self.model.cfg.ref_size).to(self.device)
        self.embedding = self.model.encode(refs)
        return self.embedding

    @torch.no_grad()
    def raw(self, frame: np.ndarray) -> Tuple[np.ndarray, LetterboxInfo]:
        if self.embedding is None:
            raise DataError("no target set", "call set_target(images) with 1-3 reference photos first")
        x, info = frame_tensor(frame, self.imgsz)
        return self.model(x.to(self.device), self.embedding).float().cpu().numpy(), info

    def __call__(self, frame: np.ndarray) -> Detections:
        raw, info = self.raw(frame)
        return decode_refdet(raw, [info], self.conf, self.iou, self.max_det)[0]


__all__ = ["RefDetPredictor", "reference_tensor", "frame_tensor", "decode_refdet", "xyxy_to_xywhr", "CLASS_NAMES"]
