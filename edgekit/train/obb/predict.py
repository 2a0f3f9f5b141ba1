"""``edgekit predict obb``: a run, a checkpoint or a deploy bundle on images, a folder or a video.

Every model goes through the same :class:`~edgekit.deploy.detector.Detector` (letterbox, decode, NMS,
mapping back to the frame) that export parity and the device runtime use:

- RUN (a ``runs/<id>`` directory): its ``checkpoints/best.pt`` at the run's ``imgsz``;
- CHECKPOINT (``.pt``): PyTorch via the torch runner, loaded through ``edgekit.checkpoints``
  (``weights_only`` + allow-list), at the checkpoint's training ``imgsz`` unless given;
- BUNDLE (a directory holding ``manifest.json``): ``Bundle.open(dir).detector()`` (ONNX Runtime).

The result is a :class:`~edgekit.core.predictions.PredictionsFile`; annotated images/video are optional.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError, DataError, ModelError
from edgekit.core.image_files import imread
from edgekit.core.predictions import ImagePredictions, PredictionsFile

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


@dataclass
class LoadedModel:
    detector: Any  # edgekit.deploy.detector.Detector
    names: List[str]
    imgsz: int
    source: str


def _checkpoint_meta(path: Path, trust: bool) -> Tuple[List[str], Optional[int]]:
    from edgekit.checkpoints import safe_load

    ckpt = safe_load(path, trust=trust)
    if not isinstance(ckpt, dict) or ckpt.get("model", ckpt.get("ema")) is None:
        raise ModelError(f"{path} is not an Ultralytics checkpoint (no 'model' entry)",
                         "pass runs/<id>/checkpoints/best.pt or another YOLOv8-OBB .pt")
    model = ckpt.get("ema") or ckpt["model"]
    names = getattr(model, "names", None) or {}
    names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    args = ckpt.get("train_args") or {}
    imgsz = args.get("imgsz") if isinstance(args, dict) else getattr(args, "imgsz", None)
    return names, int(imgsz) if isinstance(imgsz, int) else None


def load_model(source: Path, imgsz: Optional[int] = None, conf: float = 0.25, iou: float = 0.7,
               device: str = "cpu", trust: bool = False, tile: Optional[int] = None,
               tile_overlap: Optional[int] = None) -> LoadedModel:
    """A Detector for a run directory, a .pt checkpoint or a bundle directory (ModelError otherwise).

    ``tile`` > 0 slices each frame (:class:`edgekit.deploy.tiling.TiledDetector`); for a bundle, ``None``
    keeps the bundle's own tiling plan and 0 runs whole frames.
    """
    from edgekit.core.letterbox import LetterboxSpec
    from edgekit.core.postprocess import PostprocessSpec

    source = Path(source)
    if source.is_dir() and (source / "manifest.json").is_file():
        from edgekit.deploy.bundle import Bundle

        bundle = Bundle.open(source)
        if bundle.task == "refdet":  # its graph needs a target: decoded as OBB it gives boxes of nothing
            raise ModelError(f"bundle {source} is a 'refdet' bundle, not an OBB one",
                             "use `edgekit predict refdet` for it, or pass a bundle exported from an OBB run")
        det = bundle.detector(tile=tile, tile_overlap=tile_overlap)
        det.postprocess = det.postprocess.model_copy(update={"conf": conf, "iou": iou})
        return LoadedModel(det, list(bundle.classes), int(det.letterbox.imgsz[0]), str(source))
    ckpt = source
    if source.is_dir():
        ckpt = source / "checkpoints" / "best.pt"
        if not ckpt.is_file():
            raise ModelError(f"{source} is neither a run (no checkpoints/best.pt) nor a bundle (no manifest.json)",
                             "pass runs/<id>, a .pt checkpoint or a deploy bundle directory")
    elif not source.is_file():
        raise ModelError(f"model {source} does not exist", "pass runs/<id>, a .pt checkpoint or a bundle directory")
    names, trained = _checkpoint_meta(ckpt, trust)
    size = int(imgsz or trained or 640)
    from edgekit.deploy.detector import Detector
    from edgekit.deploy.runners.torch import TorchRunner

    runner = TorchRunner(str(ckpt), device=device)
    det = Detector(runner, letterbox=LetterboxSpec(imgsz=size),
                   postprocess=PostprocessSpec(conf=conf, iou=iou, task="obb"))
    if tile:
        from edgekit.deploy.tiling import tiled

        det = tiled(det, tile, tile_overlap if tile_overlap is not None else tile // 5)
    return LoadedModel(det, names, size, str(ckpt))


def decode_multi_label(raw: np.ndarray, spec: Any) -> Detections:
    """One image's raw OBB output (1, 4+nc+1, A) -> detections with every class above ``conf`` per anchor.

    Ultralytics' validator decodes this way (``non_max_suppression(multi_label=True)``): an anchor
    scoring 0.4 "ship" and 0.3 "vehicle" yields both boxes, which lifts recall at low confidence.
    Deployment keeps the best class per anchor (``edgekit.core.postprocess``); ``--multi-label``
    makes predictions that score like ``YOLO.val()``.
    """
    from edgekit.core.geometry import regularize_xywhr, rotated_nms

    pred = np.asarray(raw, np.float32).reshape(raw.shape[-2], raw.shape[-1])
    nc = pred.shape[0] - 5
    cls_idx, cols = np.nonzero(pred[4:4 + nc] > spec.conf)
    scores = pred[4 + cls_idx, cols]
    if len(scores) > spec.max_nms:
        top = np.argsort(-scores, kind="stable")[:spec.max_nms]
        cls_idx, cols, scores = cls_idx[top], cols[top], scores[top]
    boxes = np.concatenate([pred[:4, cols], pred[-1:, cols]], 0).T.astype(np.float64)
    keep = rotated_nms(boxes, scores, spec.iou, None if spec.agnostic else cls_idx, spec.max_det, iou=spec.obb_iou,
                       fast=spec.obb_fast_nms)
    return Detections(regularize_xywhr(boxes[keep]).astype(np.float32), scores[keep], cls_idx[keep].astype(np.int64))


def detect(det: Any, frame: np.ndarray, multi_label: bool) -> Detections:
    """``det(frame)``, or with :func:`decode_multi_label` instead of the deploy decode."""
    if not multi_label:
        return det(frame)
    from edgekit.core.letterbox import unletterbox_xywhr

    feed, info = det.prepare(frame)
    outputs = det.infer(feed)
    raw = outputs[det.output_name] if det.output_name else next(iter(outputs.values()))
    dets = decode_multi_label(raw, det.postprocess)
    if len(dets) == 0:
        return dets
    return Detections(unletterbox_xywhr(dets.boxes, info), dets.scores, dets.class_ids)


def iter_source(source: Path) -> Iterator[Tuple[str, Optional[int], np.ndarray]]:
    """(path, frame index or None, BGR frame) for an image, a folder of images or a video."""
    from edgekit.deploy.sources import IMAGE_SUFFIXES, list_image_files, video_frames

    source = Path(source)
    if source.is_dir():
        files = list_image_files(source)
    elif source.suffix.lower() in VIDEO_SUFFIXES:
        for i, frame in enumerate(video_frames(source)):
            yield str(source), i, frame
        return
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        if not source.is_file():
            raise DataError(f"image {source} does not exist", "pass an image, a folder of images or a video")
        files = [source]
    else:
        raise DataError(f"source {source} is not an image ({', '.join(IMAGE_SUFFIXES)}), a folder or a video "
                        f"({', '.join(VIDEO_SUFFIXES)})", "pass an image, a folder of images or a video")
    for path in files:
        frame = imread(path)
        if frame is None:
            raise DataError(f"cannot decode image {path}", "remove or replace the file")
        yield str(path), None, frame


def annotate(frame: np.ndarray, pred: ImagePredictions) -> np.ndarray:
    """A copy of ``frame`` with every box's polygon and ``name score`` drawn."""
    import cv2

    out = frame.copy()
    for corners, score, cls, name in zip(pred.corners, pred.scores, pred.classes, pred.class_names):
        colour = tuple(int(c) for c in np.random.default_rng(cls).integers(64, 256, 3))
        poly = np.round(np.asarray(corners)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [poly], True, colour, 1 if min(frame.shape[:2]) < 320 else 2)
        x, y = poly[:, 0].min(0)
        cv2.putText(out, f"{name} {score:.2f}", (int(x), max(int(y) - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    colour, 1)
    return out


def predict(model: LoadedModel, source: Path, out_dir: Optional[Path] = None, save_images: bool = False,
            save_video: bool = False, multi_label: bool = False) -> PredictionsFile:
    """Run ``model`` over ``source``; annotated outputs go under ``out_dir`` (images/, video.mp4)."""
    import cv2

    if (save_images or save_video) and out_dir is None:
        raise ConfigError("--save-images/--save-video need an output directory", "pass --out DIR")
    images: List[ImagePredictions] = []
    writer = None
    try:
        with model.detector as det:
            for path, frame_i, frame in iter_source(source):
                h, w = frame.shape[:2]
                pred = ImagePredictions.from_detections(detect(det, frame, multi_label), path, w, h, model.names,
                                                        frame_i)
                images.append(pred)
                if save_images:
                    name = Path(path).stem + (f"_{frame_i:06d}" if frame_i is not None else "") + ".jpg"
                    (out_dir / "images").mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(out_dir / "images" / name), annotate(frame, pred))
                if save_video:
                    if writer is None:
                        writer = cv2.VideoWriter(str(out_dir / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25.0,
                                                 (w, h))
                    writer.write(annotate(frame, pred))
    finally:
        if writer is not None:
            writer.release()
    post = model.detector.postprocess
    return PredictionsFile(model=model.source, names=model.names, conf=post.conf, iou=post.iou, imgsz=model.imgsz,
                           multi_label=multi_label, images=images)


__all__ = ["LoadedModel", "load_model", "decode_multi_label", "detect", "iter_source", "annotate", "predict", "VIDEO_SUFFIXES"]
