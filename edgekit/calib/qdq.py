"""Explicit INT8: quantize an FP32 ONNX into a Q/DQ ONNX with onnxruntime, for TensorRT or the CPU.

Two profiles, two different files (docs/tensorrt.md, section 3):

* ``trt``: what TensorRT 8.5's ONNX parser accepts and what TensorRT 11 needs (it has no other
  INT8 path): signed int8 everywhere, symmetric, per-channel weights, a Q/DQ pair on every
  weight, no int32 bias. The result is checked with :func:`~edgekit.calib.qdq_check.assert_qdq_trt85`
  before it is renamed into place, so a file that 8.5 would reject is never written.
* ``cpu``: U8S8 (asymmetric uint8 activations, int8 weights), onnxruntime's fast CPU form.

Whole-graph Q/DQ collapses a YOLO detector's mAP to 0: the head's decode (DFL softmax, box
arithmetic, a concat of pixel coordinates with 0-1 scores, sigmoids) cannot share one int8 scale.
:func:`default_excluded_nodes` therefore keeps the head's non-Conv nodes in float, which measured
at FP32 accuracy. Host only: onnx and onnxruntime are imported inside the functions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Union

import numpy as np

from edgekit.core.atomic import atomic_path
from edgekit.core.errors import ConfigError, ModelError
from edgekit.core.vocab import CALIB_METHODS, FLOAT_SCOPES

from .feeds import CalibrationFeed, FeedFactory, calibration_reader, graph_input_names
from .feeds import load_onnx as _load

PathLike = Union[str, Path]

METHODS = CALIB_METHODS
PROFILES = ("trt", "cpu")
_MODULE_PREFIX = re.compile(r"^/model\.(\d+)/")


class QdqResult(NamedTuple):
    path: Path
    method: str
    profile: str
    excluded_nodes: List[str]
    n_calib: int
    # method "entropy": the host entropy ranges the Q/DQ scales came from (max |activation| per
    # tensor), so the TensorRT calibration cache can reuse them instead of recomputing (~20 s).
    activation_ranges: Optional[Dict[str, float]] = None


def head_prefix(model: Any) -> Optional[str]:
    """The detection head's node-name prefix, '/model.<last index>/', from an Ultralytics export."""
    indices = [int(m.group(1)) for m in (_MODULE_PREFIX.match(n.name) for n in _load(model).graph.node) if m]
    return f"/model.{max(indices)}/" if indices else None


def default_excluded_nodes(model: Any, scope: str = "head") -> List[str]:
    """Nodes that stay float: the whole detection head (``scope="head"``, the default) or only its
    decode (``"decode"``: the head's non-Conv nodes and its DFL Conv).

    Measured on the demo's yolov8n-obb (192 px, 60 val images, 64 MinMax images): FP32 mAP50 0.483;
    INT8 with the decode kept float 0.463 (-2.0 points), with the whole head float 0.477 (-0.7). The
    head's last convs feed box distributions and class logits whose ranges one per-tensor int8 scale
    serves poorly; they are a small share of the FLOPs, so the default favours accuracy.

    The head is the module with the highest index (``/model.22/`` in yolov8n-obb), found from the
    graph rather than hard-coded, so other depths work too. Raises ModelError when the graph has
    no Ultralytics-style node names: quantizing a detector whole is known to destroy it.
    """
    proto = _load(model)
    prefix = head_prefix(proto)
    if prefix is None:
        raise ModelError("cannot find the detection head in the ONNX graph (no node names like '/model.N/')",
                         "pass exclude_nodes=[...] naming the decode nodes to keep in float, "
                         "or exclude_nodes=[] to quantize everything")
    if scope not in FLOAT_SCOPES:
        raise ConfigError(f"unknown float scope {scope!r}", f"use one of {', '.join(FLOAT_SCOPES)}")
    head = [n for n in proto.graph.node if n.name.startswith(prefix)]
    if scope == "head":
        return [n.name for n in head]
    softmax_outputs = {o for n in head if n.op_type == "Softmax" for o in n.output}
    # The DFL's fixed Conv (weights = bin indices 0..15) is decode arithmetic, not a learned layer:
    # int8 cannot hold 0..15 exactly under one symmetric scale, and its input is a softmax.
    return [n.name for n in head if n.op_type != "Conv" or n.input[0] in softmax_outputs]


def _quant_settings(profile: str) -> Dict[str, Any]:
    from onnxruntime.quantization import QuantFormat, QuantType

    if profile == "trt":  # docs/tensorrt.md sections 3-4, exactly: what TensorRT 8.5's parser accepts
        return dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    per_channel=True, extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                                     "AddQDQPairToWeight": True, "QuantizeBias": False})
    return dict(quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                per_channel=True, extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})


def quantize_qdq(fp32_onnx: PathLike, out_path: PathLike, calib: Any, method: str = "minmax",
                 profile: str = "trt", exclude_nodes: Optional[Sequence[str]] = None,
                 float_scope: str = "head", check_trt85: bool = True,
                 feeds: Optional[FeedFactory] = None) -> QdqResult:
    """Calibrate on ``calib`` and write a Q/DQ ONNX to ``out_path`` atomically.

    ``exclude_nodes=None`` keeps :func:`default_excluded_nodes` (``float_scope``) in float; ``[]``
    quantizes all. ``check_trt85=False`` skips the TensorRT 8.5 check of the ``trt`` profile (for
    targets with a newer TensorRT, e.g. x86 at opset 18+, which 8.5 would refuse). ``feeds``
    (complete feeds, e.g. image + embedding) replaces ``calib``'s images for a graph with inputs
    other than one image; ``calib`` still names the calibration set (its size and hash).
    """
    from onnxruntime.quantization import CalibrationMethod, quantize_static

    if method not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}", f"use one of {', '.join(METHODS)}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown quantization profile {profile!r}", f"use one of {', '.join(PROFILES)}")
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    excluded = list(default_excluded_nodes(fp32_onnx, float_scope) if exclude_nodes is None else exclude_nodes)
    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[method]
    settings = _quant_settings(profile)
    ranges: Optional[Dict[str, float]] = None
    if method == "entropy":
        # quantize_static's entropy calibrator is fixed at 128 histogram bins = 128 quantized bins
        # (num_bins is not passed through), which leaves one candidate threshold, the full range: its
        # scales came out bit-identical to MinMax. So compute entropy ranges with more bins ourselves
        # and hand them over as range overrides.
        from . import ranges as host_ranges  # called through the module: tests count the calls

        ranges = host_ranges.host_activation_ranges(fp32_onnx, calib, "entropy", 1, feeds=feeds)
        settings["extra_options"]["TensorQuantOverrides"] = {
            name: [{"rmin": np.float32(-r), "rmax": np.float32(r)}] for name, r in ranges.items()}
        ort_method = CalibrationMethod.MinMax
    with atomic_path(out_path, suffix=".onnx") as tmp:
        quantize_static(str(fp32_onnx), str(tmp), CalibrationFeed(fp32_onnx, calib, feeds=feeds), nodes_to_exclude=excluded,
                        calibrate_method=ort_method, **settings)
        if profile == "trt" and check_trt85:
            from .qdq_check import assert_qdq_trt85

            assert_qdq_trt85(tmp, source=str(out_path))
    return QdqResult(out_path, method, profile, excluded, len(calib), ranges)


__all__ = ["QdqResult", "quantize_qdq", "default_excluded_nodes", "head_prefix", "graph_input_names",
           "calibration_reader", "CalibrationFeed", "METHODS", "PROFILES"]
