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

PathLike = Union[str, Path]

METHODS = ("minmax", "entropy", "percentile")
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


def _load(model: Any) -> Any:
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
    graph = _load(model).graph
    initializers = {t.name for t in graph.initializer}
    return [i.name for i in graph.input if i.name not in initializers]


def head_prefix(model: Any) -> Optional[str]:
    """The detection head's node-name prefix, '/model.<last index>/', from an Ultralytics export."""
    indices = [int(m.group(1)) for m in (_MODULE_PREFIX.match(n.name) for n in _load(model).graph.node) if m]
    return f"/model.{max(indices)}/" if indices else None


FLOAT_SCOPES = ("head", "decode")


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


def calibration_reader(input_name: str, calib: Any, batch_size: int = 1) -> Any:
    """An onnxruntime CalibrationDataReader over a CalibrationSet (float NCHW batches)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calib.batches(batch_size))

        def get_next(self) -> Optional[Dict[str, Any]]:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._batches = iter(calib.batches(batch_size))

    return _Reader()


def CalibrationFeed(onnx_path: PathLike, calib: Any, batch_size: int = 1) -> Any:  # noqa: N802 (a factory)
    """A CalibrationDataReader for the single image input of ``onnx_path``."""
    names = graph_input_names(onnx_path)
    if len(names) != 1:
        raise ModelError(f"ONNX model {onnx_path} has inputs {names}; image calibration needs exactly one",
                         "calibrate a single-input detector graph")
    return calibration_reader(names[0], calib, batch_size)


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
                 float_scope: str = "head", check_trt85: bool = True) -> QdqResult:
    """Calibrate on ``calib`` and write a Q/DQ ONNX to ``out_path`` atomically.

    ``exclude_nodes=None`` keeps :func:`default_excluded_nodes` (``float_scope``) in float; ``[]``
    quantizes all. ``check_trt85=False`` skips the TensorRT 8.5 check of the ``trt`` profile (for
    targets with a newer TensorRT, e.g. x86 at opset 18+, which 8.5 would refuse).
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
        from .cache import host_activation_ranges

        ranges = host_activation_ranges(fp32_onnx, calib, "entropy", 1)
        settings["extra_options"]["TensorQuantOverrides"] = {
            name: [{"rmin": np.float32(-r), "rmax": np.float32(r)}] for name, r in ranges.items()}
        ort_method = CalibrationMethod.MinMax
    with atomic_path(out_path, suffix=".onnx") as tmp:
        quantize_static(str(fp32_onnx), str(tmp), CalibrationFeed(fp32_onnx, calib), nodes_to_exclude=excluded,
                        calibrate_method=ort_method, **settings)
        if profile == "trt" and check_trt85:
            from .qdq_check import assert_qdq_trt85

            assert_qdq_trt85(tmp, source=str(out_path))
    return QdqResult(out_path, method, profile, excluded, len(calib), ranges)


__all__ = ["QdqResult", "quantize_qdq", "default_excluded_nodes", "head_prefix", "graph_input_names",
           "calibration_reader", "CalibrationFeed", "METHODS", "PROFILES"]
