"""Run a RefDet model: load it from a run, a checkpoint or a bundle, score it on a data set, predict on a video.

Every source gives one interface, ``set_target(images)`` (1-3 BGR reference photos) and
``__call__(frame) -> Detections`` (frame pixels):

- RUN (a ``runs/<id>`` directory): its ``checkpoints/best.pt``;
- CHECKPOINT (``.pt``): :func:`edgekit.train.fewshot.checkpoint.load_refdet_checkpoint` (``weights_only``)
  into :class:`edgekit.train.fewshot.predict.RefDetPredictor` (PyTorch);
- BUNDLE (a directory holding ``manifest.json``): ``Bundle.open(dir).detector()``, the deploy
  RefDet detector (reference encoder + per-frame graph, ONNX Runtime by default).

:func:`evaluate_on_data` runs a model over every (or every ``stride``-th) frame of each video of a
RefDet root, with that video's own reference photos as the target; :func:`predict_video` runs it on
one video and writes the per-frame predictions and an annotated copy of the video.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgekit.core.errors import ConfigError, DataError, ModelError
from edgekit.core.image_files import imread
from edgekit.core.predictions import ImagePredictions, PredictionsFile

from .evaluate import RefDetReport, VideoDetections, evaluate_videos, plot_pr_curve

PathLike = Union[str, Path]
CLASS_NAMES = ["target"]
MAX_REFERENCES = 3
EVAL_MODEL_CONF = 0.001  # AP needs the whole ranking; --conf applies afterwards (docs/refdet.md, "Metrics")
_SOURCES = "pass runs/<id>, a RefDet .pt checkpoint or a RefDet bundle directory"


@dataclass
class LoadedRefDet:
    """A loaded model and what it is (for reports)."""
    predictor: Any  # set_target(images) + __call__(frame) -> Detections
    source: str  # the checkpoint or bundle path actually loaded
    kind: str  # "checkpoint" | "bundle"
    imgsz: Optional[int]


def _is_bundle(path: Path) -> bool:
    return path.is_dir() and (path / "manifest.json").is_file()


def _checkpoint_file(source: Path) -> Path:
    if source.is_dir():
        ckpt = source / "checkpoints" / "best.pt"
        if not ckpt.is_file():
            raise ModelError(f"{source} is neither a run (no checkpoints/best.pt) nor a bundle (no manifest.json)",
                             _SOURCES)
        return ckpt
    if not source.is_file():
        raise ModelError(f"model {source} does not exist", _SOURCES)
    if source.suffix != ".pt":
        raise ModelError(f"model {source} is not a .pt checkpoint, a run or a bundle", _SOURCES)
    return source


def _bundle(source: Path, conf: Optional[float], iou: Optional[float], backend: str, precision: str
            ) -> LoadedRefDet:
    from edgekit.deploy.bundle import Bundle

    bundle = Bundle.open(source)
    if bundle.task != "refdet":
        raise ModelError(f"bundle {source} is a {bundle.task!r} bundle, not a RefDet one",
                         f"use `edgekit predict {bundle.task}` for it, or pass a bundle exported from a RefDet run")
    det = bundle.detector(backend, precision)
    update = {k: v for k, v in (("conf", conf), ("iou", iou)) if v is not None}
    if update:
        det.postprocess = det.postprocess.model_copy(update=update)
    return LoadedRefDet(det, str(source), "bundle", int(det.letterbox.imgsz[0]))


def _checkpoint(ckpt: Path, device: str, trust: bool, conf: Optional[float], iou: Optional[float]) -> LoadedRefDet:
    from .checkpoint import load_refdet_checkpoint
    from .predict import RefDetPredictor

    model, meta = load_refdet_checkpoint(ckpt, trust=trust)
    imgsz = int(meta["imgsz"])
    kwargs = {k: v for k, v in (("conf", conf), ("iou", iou)) if v is not None}
    return LoadedRefDet(RefDetPredictor(model, imgsz, device=device, **kwargs), str(ckpt), "checkpoint", imgsz)


def load_refdet(source: PathLike, device: str = "cpu", trust: bool = False, conf: Optional[float] = None,
                iou: Optional[float] = None, backend: str = "onnxruntime", precision: str = "fp32") -> LoadedRefDet:
    """:func:`load_refdet_predictor` plus what was loaded. ``conf``/``iou`` None keep the model's own;
    ``backend``/``precision`` choose a bundle's runner (ignored for checkpoints)."""
    source = Path(source)
    if _is_bundle(source):
        return _bundle(source, conf, iou, backend, precision)
    return _checkpoint(_checkpoint_file(source), device, trust, conf, iou)


def load_refdet_predictor(source: PathLike, device: str = "cpu", trust: bool = False, **options: Any) -> Any:
    """The predictor of a run directory, a ``.pt`` or a bundle directory, ready to call: ``set_target`` +
    ``__call__``. A bundle's detector comes activated (its runtime sessions held until
    ``predictor.__exit__(None, None, None)`` or garbage collection). ``options``: ``conf``, ``iou``,
    ``backend``, ``precision`` (see :func:`load_refdet`).
    """
    predictor = load_refdet(source, device=device, trust=trust, **options).predictor
    if hasattr(predictor, "__enter__"):
        predictor = predictor.__enter__() or predictor
    return predictor


@contextlib.contextmanager
def activated(predictor: Any) -> Iterator[Any]:
    """``with predictor`` when it is a context manager (a bundle detector's runner), else the predictor as is."""
    if hasattr(predictor, "__enter__") and hasattr(predictor, "__exit__"):
        with predictor as active:
            yield active if active is not None else predictor
    else:
        yield predictor


# -- reference photos -----------------------------------------------------------------------------
def read_references(paths: Sequence[PathLike]) -> List[np.ndarray]:
    """1-3 reference photos as BGR uint8 (ConfigError for a wrong count, DataError naming a bad file)."""
    if not 1 <= len(paths) <= MAX_REFERENCES:
        raise ConfigError(f"{len(paths)} reference photos given; RefDet takes 1 to {MAX_REFERENCES}",
                          "pass --refs with one, two or three image files")
    images = []
    for path in map(Path, paths):
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            raise DataError(f"reference photo {path} {what}", "pass --refs existing image files")
        image = imread(path)
        if image is None:
            raise DataError(f"reference photo {path} cannot be decoded", "pass a JPEG or PNG image")
        images.append(image)
    return images


# -- evaluation over a RefDet root ----------------------------------------------------------------
def refdet_eval_root(data: PathLike) -> Path:
    """The RefDet root to score: ``data`` itself, or its ``test/`` split (a few-shot dataset root)."""
    from edgekit.data.check import detect_format
    from edgekit.data.formats.refdet import ANNOTATIONS, is_refdet_root

    data = Path(data)
    if not data.is_dir():
        raise DataError(f"--data {data} is not a directory", "pass a RefDet root or a dataset root holding test/")
    for root in (data, data / "test"):
        if is_refdet_root(root) and (root / ANNOTATIONS).is_file():
            return root
    fmt = detect_format(data)
    if fmt != "refdet":
        raise DataError(f"--data {data} is a {fmt} dataset, not a RefDet one",
                        "pass a RefDet root (samples/ + annotations/annotations.json), e.g. from `edgekit data synth refdet`")
    raise DataError(f"--data {data} holds RefDet splits but no test/ split with {ANNOTATIONS}",
                    f"pass one split directly, e.g. --data {data}/<split>")


@dataclass
class EvalRun:
    """What :func:`evaluate_on_data` saw: per-video detections and timing."""
    root: Path
    videos: List[VideoDetections]
    frames: int
    seconds: float


def _video_frames(stride: int, frame_count: int) -> List[int]:
    return list(range(0, frame_count, stride))


def evaluate_on_data(predictor: Any, data: PathLike, stride: int = 1, progress: bool = True) -> EvalRun:
    """Every ``stride``-th frame of each video through ``predictor``, targeted with that video's references."""
    from tqdm import tqdm

    from .data import RefDetDataset

    if stride < 1:
        raise ConfigError(f"--stride {stride} is below 1", "pass --stride 1 (every frame) or more")
    root = refdet_eval_root(data)
    dataset = RefDetDataset(root, cache_size=0, seek="auto")
    total = sum(len(_video_frames(stride, r.frame_count)) for r in dataset.records)
    videos: List[VideoDetections] = []
    start = time.perf_counter()
    try:
        with activated(predictor) as model, tqdm(total=total, desc="eval refdet", unit="frame",
                                                  disable=not progress) as bar:
            for rec in dataset.records:
                model.set_target(dataset.references(rec.video_id))
                frames = _video_frames(stride, rec.frame_count)
                preds = []
                for i in frames:
                    preds.append(model(dataset.frame(rec.video_id, i)))
                    bar.update(1)
                videos.append(VideoDetections(rec.video_id, frames, preds, [rec.boxes_at(i) for i in frames]))
    finally:
        dataset.close()
    return EvalRun(root, videos, total, time.perf_counter() - start)


def evaluate_model(source: PathLike, data: PathLike, conf: float = 0.25, stride: int = 1, device: str = "cpu",
                   trust: bool = False, backend: str = "onnxruntime", precision: str = "fp32",
                   progress: bool = True) -> Tuple[RefDetReport, Dict[str, Any]]:
    """``edgekit eval refdet``: the model of ``source`` on ``data`` -> (report, the eval.json document).

    The model runs at :data:`EVAL_MODEL_CONF` (AP ranks every box); ``conf`` applies to P, R and ST-IoU.
    """
    refdet_eval_root(data)  # a wrong --data fails here, before the model loads
    loaded = load_refdet(source, device=device, trust=trust, conf=EVAL_MODEL_CONF, backend=backend,
                         precision=precision)
    run = evaluate_on_data(loaded.predictor, data, stride=stride, progress=progress)
    report = evaluate_videos(run.videos, conf=conf)
    doc = {"model": loaded.source, "model_kind": loaded.kind, "imgsz": loaded.imgsz, "data": str(run.root),
           "stride": stride, "model_conf": EVAL_MODEL_CONF, "frames": run.frames, "seconds": round(run.seconds, 3),
           "fps": round(run.frames / run.seconds, 2) if run.seconds > 0 else None, **report.to_dict()}
    return report, doc


def write_eval_outputs(report: RefDetReport, doc: Dict[str, Any], directory: Path) -> Path:
    """``eval.json`` and ``pr_curve.png`` into ``directory`` (an edgekit-owned one); returns eval.json."""
    from edgekit.core.atomic import write_json_atomic

    png = plot_pr_curve(report, directory / "pr_curve.png")
    doc = dict(doc, plots={"pr_curve": png.name if png else None})
    if png is None:
        doc["notes"] = ["matplotlib is not installed: no PR-curve PNG (pip install 'edgekit[train]')"]
    return write_json_atomic(directory / "eval.json", doc)


# -- prediction on one video ----------------------------------------------------------------------
def check_video(video: PathLike) -> Any:
    """The video's :class:`~edgekit.data.formats.media.VideoInfo`; DataError when OpenCV cannot decode it."""
    from edgekit.data.formats.media import read_video_info

    info = read_video_info(Path(video))
    if info is None:
        raise DataError(f"video {video} does not exist or OpenCV cannot decode a frame of it",
                        "pass a readable video (e.g. H.264 or MPEG-4 .mp4)")
    return info


def _annotate(frame: np.ndarray, pred: ImagePredictions) -> np.ndarray:
    """A copy of ``frame`` with each box and its score; the top box (ST-IoU's pick) thicker."""
    import cv2

    out = frame.copy()
    order = np.argsort(-np.asarray(pred.scores)) if pred.scores else []
    for rank, i in enumerate(order):
        cx, cy, w, h, _ = pred.boxes[i]
        p1, p2 = (int(round(cx - w / 2)), int(round(cy - h / 2))), (int(round(cx + w / 2)), int(round(cy + h / 2)))
        colour = (0, 255, 0) if rank == 0 else (0, 200, 255)
        cv2.rectangle(out, p1, p2, colour, 2 if rank == 0 else 1)
        cv2.putText(out, f"target {pred.scores[i]:.2f}", (p1[0], max(p1[1] - 3, 9)), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    colour, 1)
    return out


def predict_video(loaded: LoadedRefDet, references: Sequence[PathLike], video: PathLike,
                  out_dir: Optional[Path] = None, progress: bool = True) -> PredictionsFile:
    """Detections of the target of ``references`` in every frame of ``video``; with ``out_dir``, also
    ``out_dir/video.mp4`` annotated (mp4v, the input's frame rate)."""
    import cv2
    from tqdm import tqdm

    from edgekit.deploy.sources import video_frames

    video = Path(video)
    refs = read_references(references)
    info = check_video(video)
    images: List[ImagePredictions] = []
    writer = None
    try:
        with activated(loaded.predictor) as model:
            model.set_target(refs)
            for i, frame in enumerate(tqdm(video_frames(video), total=info.frame_count or None, unit="frame",
                                           desc="predict refdet", disable=not progress)):
                h, w = frame.shape[:2]
                pred = ImagePredictions.from_detections(model(frame), str(video), w, h, CLASS_NAMES, i)
                images.append(pred)
                if out_dir is not None:
                    if writer is None:
                        fps = info.fps if info.fps and info.fps > 0 else 25.0
                        writer = cv2.VideoWriter(str(out_dir / "video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                    writer.write(_annotate(frame, pred))
    finally:
        if writer is not None:
            writer.release()
    post = _thresholds(loaded.predictor)
    return PredictionsFile(task="refdet", model=loaded.source, names=list(CLASS_NAMES), conf=post[0], iou=post[1],
                           imgsz=loaded.imgsz, references=[str(p) for p in references], images=images)


def _thresholds(predictor: Any) -> Tuple[Optional[float], Optional[float]]:
    """(conf, iou) of a bundle detector (its postprocess spec) or a torch predictor (its attributes)."""
    spec = getattr(predictor, "postprocess", None)
    src: Dict[str, Any] = spec.model_dump() if hasattr(spec, "model_dump") else vars(predictor)
    conf, iou = src.get("conf"), src.get("iou")
    return (float(conf) if isinstance(conf, (int, float)) else None, float(iou) if isinstance(iou, (int, float)) else None)


__all__ = ["LoadedRefDet", "load_refdet", "load_refdet_predictor", "activated", "read_references",
           "refdet_eval_root", "EvalRun", "evaluate_on_data", "evaluate_model", "write_eval_outputs", "check_video", "predict_video", "CLASS_NAMES", "MAX_REFERENCES",
           "EVAL_MODEL_CONF"]
