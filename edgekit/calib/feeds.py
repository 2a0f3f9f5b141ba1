"""Calibration feeds for onnxruntime's calibrators: ONNX input names and data readers (host only).

A graph with one image input is fed straight from a
:class:`~edgekit.calib.dataset.CalibrationSet`; a graph with other inputs too (e.g. a per-frame
detector that also takes a target embedding) is fed from any function that yields complete feeds
(``{input name: array}``), which the task's export adapter supplies. onnx and onnxruntime are
imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from edgekit.core.errors import ModelError

PathLike = Union[str, Path]
#: A zero-argument function returning a fresh iterable of complete feeds (called again on rewind).
FeedFactory = Callable[[], Iterable[Dict[str, np.ndarray]]]


def load_onnx(model: Any) -> Any:
    """An ``onnx.ModelProto`` as is, or the model at a path; a missing or corrupt file is a ModelError."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist", "export the FP32 model first")
    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and friends; name the file instead
        raise ModelError(f"cannot load ONNX model {path}: {type(e).__name__}", "re-export it") from None


def graph_input_names(model: Any) -> List[str]:
    """Real inputs of the graph (old exporters also list initializers as inputs)."""
    graph = load_onnx(model).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def feeds_reader(make_feeds: FeedFactory) -> Any:
    """An onnxruntime CalibrationDataReader over complete feeds (any number of inputs)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(make_feeds())

        def get_next(self) -> Optional[Dict[str, Any]]:
            return next(self._feeds, None)

        def rewind(self) -> None:
            self._feeds = iter(make_feeds())

    return _Reader()


def image_feeds(input_name: str, calib: Any, batch_size: int = 1) -> FeedFactory:
    """Feeds of one image input from a CalibrationSet (float NCHW batches)."""
    return lambda: ({input_name: batch} for batch in calib.batches(batch_size))


def calibration_reader(input_name: str, calib: Any, batch_size: int = 1) -> Any:
    """An onnxruntime CalibrationDataReader over a CalibrationSet for the image input ``input_name``."""
    return feeds_reader(image_feeds(input_name, calib, batch_size))


def CalibrationFeed(onnx_path: PathLike, calib: Any, batch_size: int = 1,  # noqa: N802 (a factory)
                    feeds: Optional[FeedFactory] = None) -> Any:
    """A CalibrationDataReader for ``onnx_path``: ``feeds`` if given, else its single image input from ``calib``."""
    if feeds is not None:
        return feeds_reader(feeds)
    names = graph_input_names(onnx_path)
    if len(names) != 1:
        raise ModelError(f"ONNX model {onnx_path} has inputs {names}; calibrating from images alone needs exactly one",
                         "give the calibration complete feeds (the export adapter's calibration_feeds)")
    return calibration_reader(names[0], calib, batch_size)


__all__ = ["FeedFactory", "load_onnx", "graph_input_names", "feeds_reader", "image_feeds", "calibration_reader",
           "CalibrationFeed"]
