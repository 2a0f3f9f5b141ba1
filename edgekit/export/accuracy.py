"""FP32 vs INT8 accuracy on the labelled val split, with ONNX Runtime (the INT8 accuracy report).

Predictions are decoded by the adapter, mapped back to source-image pixels and scored against the
labels with :func:`edgekit.core.metrics.evaluate_map`. The confidence threshold is low (0.001, as
Ultralytics validates) because mAP integrates over the whole precision-recall curve.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from edgekit.core.letterbox import LetterboxSpec
from edgekit.core.postprocess import PostprocessSpec
from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

from .adapters import ExportAdapter, GraphSpec, detection_graph

VAL_CONF = 0.001


def evaluate_onnx(onnx_path: Path, images: Sequence[Path], label_paths: Sequence[Path], adapter: ExportAdapter,
                  spec: LetterboxSpec, nc: int, iou: float = 0.7, intra_op_threads: int = 0,
                  graph: Optional[GraphSpec] = None) -> Dict[str, Any]:
    """mAP50 / mAP50-95 of ``onnx_path`` (the adapter's detection graph, or ``graph``) over ``images``
    plus the mean ORT latency per image."""
    from edgekit.core.metrics import evaluate_map

    graph = graph or detection_graph(adapter.graphs())
    post = PostprocessSpec(conf=VAL_CONF, iou=iou, task=adapter.task if adapter.task in ("obb", "detect") else "obb")
    preds: List[Any] = []
    gts: List[Any] = []
    seconds = 0.0
    with OnnxRuntimeRunner(onnx_path, intra_op_threads=intra_op_threads or None) as runner:
        for image, label in zip(images, label_paths):
            feed, info = adapter.feed(image, graph, spec)
            outputs = runner.infer(feed)
            seconds += runner.last_inference_time() or 0.0
            preds.append(adapter.to_image_space(adapter.decode(outputs, post)[0], info))
            gts.append(adapter.ground_truth(image, label, info))
    start = time.perf_counter()
    result = evaluate_map(preds, gts, nc)
    return {"model": Path(onnx_path).name, "map50": float(result.map50), "map50_95": float(result.map50_95),
            "n_images": len(images), "ort_ms_per_image": 1000.0 * seconds / max(1, len(images)),
            "metric_seconds": time.perf_counter() - start}


def int8_delta(fp32: Dict[str, Any], int8: Dict[str, Any], max_drop: Any = None) -> Dict[str, Any]:
    """FP32 minus INT8 in mAP50 points (x100), and whether it is within ``max_drop`` if one is set."""
    drop = 100.0 * (fp32["map50"] - int8["map50"])
    return {"fp32": fp32, "int8": int8, "map50_drop_points": drop, "target_drop_points": 1.0,
            "within_target": drop <= 1.0, "max_drop_points": max_drop,
            "ok": True if max_drop is None else drop <= float(max_drop)}


__all__ = ["evaluate_onnx", "int8_delta", "VAL_CONF"]
