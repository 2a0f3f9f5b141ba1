"""The model-specific half of export, behind one small :class:`ExportAdapter` per task.

The pipeline (``edgekit.export.pipeline``) knows nothing about Ultralytics: it asks the adapter for
the graphs to export, their reference runner, how an image becomes a feed, how raw outputs decode
into :class:`~edgekit.core.detections.Detections` and what the ground truth of an image is. An
adapter may export several graphs, and a graph may take inputs other than the image (the few-shot
detector's per-frame graph also takes the target embedding its reference encoder computes): the
adapter builds each graph's complete feeds, so such a task joins by registering one more adapter,
without touching the pipeline. Exactly one graph decodes into detections; INT8, the accuracy
report and engines are about that one.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Type

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError, DataError, EdgekitError, ModelError, foreign_message
from edgekit.core.image_files import imread
from edgekit.core.letterbox import LetterboxInfo, LetterboxSpec, preprocess, unletterbox_xywhr
from edgekit.core.postprocess import PostprocessSpec, decode_obb
from edgekit.core.vocab import MODEL_ROLES
from edgekit.deploy.runners.base import Runner


@dataclass
class LoadedCheckpoint:
    """A checkpoint loaded once, with what export needs to know about it."""
    path: Path
    model: Any  # torch.nn.Module (unfused, eval, FP32)
    task: str
    names: Dict[int, str]
    imgsz: int  # training image size, the default export size
    train_args: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphSpec:
    """One ONNX graph an adapter exports: its bundle model role, file name and I/O names."""
    role: str  # a ModelRole (edgekit.core.vocab): "fp32" for a one-graph detector; "reference_encoder", "detector"
    filename: str
    input_names: Tuple[str, ...]
    output_names: Tuple[str, ...]
    detections: bool = True  # whether its outputs decode into Detections (parity on detections)
    engine_precision: Optional[str] = None  # a fixed TensorRT build precision (RefDet's encoder: "fp16")

    def __post_init__(self) -> None:
        if self.role not in MODEL_ROLES or self.role == "int8_qdq":  # int8_qdq is export's, from the detection graph
            raise ValueError(f"graph role {self.role!r} is not a model role; use one of {', '.join(MODEL_ROLES)}")


#: A zero-argument function returning a fresh iterable of complete feeds ({input name: array}).
FeedFactory = Callable[[], Iterable[Dict[str, np.ndarray]]]


def detection_graph(graphs: Sequence[GraphSpec]) -> GraphSpec:
    """The one graph whose outputs decode into detections."""
    found = [g for g in graphs if g.detections]
    if len(found) != 1:
        raise ModelError(f"the export adapter names {len(found)} detection graphs ({[g.role for g in graphs]})",
                         "this is a bug in the task's ExportAdapter: exactly one graph must have detections=True")
    return found[0]


class ExportAdapter(abc.ABC):
    """Model-specific export knowledge for one task."""
    task: str = ""
    default_iou: Optional[float] = None  # the task's NMS IoU for the manifest when the options leave it unset

    @abc.abstractmethod
    def graphs(self) -> List[GraphSpec]:
        """The graphs to export, in the order they are exported (exactly one with ``detections``)."""
    @abc.abstractmethod
    def export_graph(self, ckpt: LoadedCheckpoint, graph: GraphSpec, out_path: Path, imgsz: int, opset: int,
                     dynamic: bool) -> None:
        """Write ``graph`` of ``ckpt`` as ONNX to ``out_path`` (IR pinning and simplification come after)."""
    @abc.abstractmethod
    def reference_runner(self, ckpt: LoadedCheckpoint, graph: GraphSpec) -> Runner:
        """A runner for the PyTorch original of ``graph`` (the parity reference)."""
    @abc.abstractmethod
    def letterbox_spec(self, imgsz: int) -> LetterboxSpec:
        """The preprocessing the model was trained with."""
    @abc.abstractmethod
    def feed(self, image_path: Path, graph: GraphSpec, spec: LetterboxSpec) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        """One real image as the graph's complete feed (every input, e.g. image + embedding), plus how
        it was letterboxed. The same feed goes to the reference runner and to ONNX Runtime."""

    @abc.abstractmethod
    def decode(self, outputs: Dict[str, np.ndarray], post: PostprocessSpec) -> List[Detections]:
        """Raw outputs -> detections in network pixels, one per batch item."""
    @abc.abstractmethod
    def ground_truth(self, image_path: Path, label_path: Path, info: LetterboxInfo) -> Detections:
        """The labelled objects of one image, in source-image pixels."""
    def calibration_feeds(self, graph: GraphSpec, calib: Any) -> Optional[FeedFactory]:
        """Complete INT8 calibration feeds for ``graph``; None: its one input takes ``calib``'s images."""
        if len(graph.input_names) == 1:
            return None
        raise ConfigError(f"{type(self).__name__} gives no calibration feeds for {graph.filename}, whose inputs "
                          f"are {list(graph.input_names)}", "implement ExportAdapter.calibration_feeds for the task")

    def choose_images(self, options: Any, source: Any, ckpt: LoadedCheckpoint, imgsz: int) -> Any:
        """The task's own :class:`~edgekit.export.context.ExportImages`; None: the pipeline's choice
        (a YOLO dataset's val split and a calibration image folder)."""
        return None

    def calibration_set(self, ctx: Any) -> Any:
        """The task's own INT8 calibration set (size, ``data_hash()``, images); None: ``--calib-data`` images."""
        return None

    def golden_tolerances(self) -> Dict[str, Any]:
        """Device tolerances of the task's own graphs (``"<role>:<precision>"`` -> Tolerance), added to golden.json."""
        return {}

    def manifest_extras(self, ctx: Any, bundle: Path) -> Dict[str, Any]:
        """Files the task adds to the bundle and the manifest keys naming them (RefDet: its default target)."""
        return {}

    def int8_excluded_nodes(self, graph: GraphSpec, onnx_path: Path, float_scope: str) -> Optional[List[str]]:
        """Nodes of ``graph`` that stay float in the Q/DQ model; None: the Ultralytics head rule of
        :func:`edgekit.calib.qdq.default_excluded_nodes`."""
        return None

    def to_image_space(self, dets: Detections, info: LetterboxInfo) -> Detections:
        """Map network-pixel detections back to source-image pixels."""
        if len(dets) == 0:
            return dets
        return Detections(unletterbox_xywhr(dets.boxes, info), dets.scores, dets.class_ids)


# ---- Ultralytics OBB -------------------------------------------------------------------------------
class UltralyticsObbAdapter(ExportAdapter):
    """YOLOv8-OBB (and any Ultralytics OBB head): one graph ``images`` -> ``output0`` (B, 4+nc+1, A).

    Export goes through Ultralytics' own ``Exporter`` (format onnx, its simplifier off): it owns the
    export-mode switches of its heads (``Detect.export``, ``C2f.forward_split``, fusing) and writes
    the metadata that lets plain ``YOLO("model.onnx", task="obb")`` load the file, and we would
    otherwise copy that logic and drift from it between 8.4.x releases. IR pinning and
    simplification are ours, so both are verified.
    """

    task = "obb"
    GRAPH = GraphSpec("fp32", "model.onnx", ("images",), ("output0",))

    def graphs(self) -> List[GraphSpec]:
        return [self.GRAPH]

    def export_graph(self, ckpt: LoadedCheckpoint, graph: GraphSpec, out_path: Path, imgsz: int, opset: int,
                     dynamic: bool) -> None:
        from ultralytics.engine.exporter import Exporter

        overrides = {"format": "onnx", "imgsz": imgsz, "opset": opset, "dynamic": dynamic, "simplify": False,
                     "batch": 1, "nms": False, "device": "cpu", "data": None,
                     "verbose": False, "mode": "export"}
        # Beside out_path (export's staging dir), not in /tmp: a kill leaves it where the next run cleans.
        with tempfile.TemporaryDirectory(prefix="edgekit-onnx-", dir=str(out_path.parent)) as tmp:
            # The exporter writes beside `pt_path`; point it at a scratch dir, never the user's run.
            saved_path = getattr(ckpt.model, "pt_path", None)
            ckpt.model.pt_path = str(Path(tmp) / "model.pt")
            try:
                with quiet_ultralytics():
                    written = Exporter(overrides=overrides)(model=ckpt.model)
            finally:
                ckpt.model.pt_path = saved_path
            shutil.move(str(written), str(out_path))

    def reference_runner(self, ckpt: LoadedCheckpoint, graph: GraphSpec) -> Runner:
        from edgekit.deploy.runners.torch import TorchRunner

        return TorchRunner(ckpt.model, input_name=graph.input_names[0], output_names=graph.output_names,
                           name=f"torch:{ckpt.path.name}")

    def letterbox_spec(self, imgsz: int) -> LetterboxSpec:
        return LetterboxSpec(imgsz=imgsz)  # Ultralytics: letterbox 114, RGB, /255, no mean/std

    def feed(self, image_path: Path, graph: GraphSpec, spec: LetterboxSpec) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        x, info = preprocess(read_image(image_path), spec)
        return {graph.input_names[0]: x}, info

    def decode(self, outputs: Dict[str, np.ndarray], post: PostprocessSpec) -> List[Detections]:
        return decode_obb(outputs[self.GRAPH.output_names[0]], post)

    def ground_truth(self, image_path: Path, label_path: Path, info: LetterboxInfo) -> Detections:
        from edgekit.core.geometry import corners_to_xywhr
        from edgekit.data.formats.yolo_obb import read_yolo_obb

        labels = read_yolo_obb(label_path) if label_path.is_file() else []
        if not labels:
            return Detections.empty(obb=True)
        h, w = info.orig_shape
        corners = np.asarray([lb.corners for lb in labels], np.float64).reshape(-1, 4, 2) * np.array([w, h])
        boxes = corners_to_xywhr(corners).astype(np.float32)
        return Detections(boxes, np.ones(len(labels), np.float32), np.array([lb.class_id for lb in labels], np.int64))


ADAPTERS: Dict[str, Type[ExportAdapter]] = {"obb": UltralyticsObbAdapter}


def register_adapter(task: str, adapter: Type[ExportAdapter]) -> None:
    ADAPTERS[task] = adapter


def get_adapter(task: str) -> ExportAdapter:
    if task not in ADAPTERS:
        raise ConfigError(f"export does not support task '{task}' yet",
                          f"export a checkpoint of one of: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[task]()


def load_checkpoint(path: Path, trust: bool = False) -> LoadedCheckpoint:
    """Load an Ultralytics checkpoint (or a RefDet one, :mod:`edgekit.export.refdet`); a corrupt or
    foreign file is a one-line :class:`ModelError`.

    Loaded restricted (``edgekit.checkpoints``): a file naming anything outside the allow-list is
    refused unless ``trust`` (``--trust-checkpoint``).
    """
    from edgekit.checkpoints import guarded_loading

    path = Path(path)
    from .refdet import is_refdet_checkpoint, load_refdet

    if is_refdet_checkpoint(path):
        return load_refdet(path, trust)
    try:
        from ultralytics.nn.tasks import load_checkpoint as ul_load

        with quiet_ultralytics(), guarded_loading(trust):
            model, ckpt = ul_load(str(path), device="cpu", fuse=False)
    except EdgekitError:
        raise
    except Exception as e:  # pickle, zip, torch and ultralytics all raise their own types
        # foreign_message drops torch's "re-run with weights_only=False" and Ultralytics' "use yolo26n.pt"
        raise ModelError(f"cannot load checkpoint {path}: {foreign_message(e)}",
                         "pass an Ultralytics checkpoint such as runs/<id>/checkpoints/best.pt") from None
    train_args = dict(ckpt.get("train_args") or {})
    imgsz = train_args.get("imgsz", 640)
    imgsz = int(max(imgsz) if isinstance(imgsz, (list, tuple)) else imgsz)
    names = getattr(model, "names", None) or {}
    names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else {int(k): str(v) for k, v in names.items()}
    return LoadedCheckpoint(path, model.float().eval(), str(getattr(model, "task", "") or "detect"), names, imgsz,
                            train_args)


def read_image(path: Path) -> np.ndarray:
    img = imread(path)
    if img is None:
        raise DataError(f"cannot read image {path}", "remove or replace the file")
    return img


@contextlib.contextmanager
def quiet_ultralytics() -> Iterator[None]:
    """Silence Ultralytics' INFO banners while it works for us (warnings still show)."""
    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


__all__ = ["ExportAdapter", "UltralyticsObbAdapter", "GraphSpec", "FeedFactory", "LoadedCheckpoint", "ADAPTERS",
           "detection_graph",
           "register_adapter", "get_adapter", "load_checkpoint", "read_image", "quiet_ultralytics"]
