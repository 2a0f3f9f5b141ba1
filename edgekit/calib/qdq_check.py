"""Static check of a Q/DQ ONNX against what TensorRT 8.5's ONNX parser accepts (REFERENCE.md §3).

Xavier NX stays on TensorRT 8.5 for good, and nothing on the host can run 8.5, so these rules are
checked here, before a bundle leaves the host:

==========================  ===============================================================
rule                        what 8.5 needs
==========================  ===============================================================
``opset``                   default-domain opset <= 17
``zero_point_missing``      the zero point is an explicit third input
``uint8``                   INT8 only: no UINT8 zero point (=> no UINT8 tensors) anywhere
``dtype``                   no other quantized type (int16, int4, fp8, ...)
``zero_point_nonzero``      every zero point is 0 (symmetric quantization)
``scale_not_constant``      scales and zero points are build-time constants
``scale_invalid``           scales are positive and finite
``per_channel_activation``  per-channel scales (rank 1, > 1 element) only on weights
``per_channel_axis``        per-channel only along axis 0 (Conv output channels)
``int32_bias``              no DequantizeLinear of an int32 bias
==========================  ===============================================================

Host only (needs onnx, imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set, Union

from edgekit.core.errors import ModelError

MAX_OPSET = 17
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QdqViolation(NamedTuple):
    node: str
    rule: str
    detail: str


def _constants(graph: Any) -> Dict[str, Any]:
    """Tensor name -> numpy value for initializers and Constant node outputs."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def _opset_violations(model: Any) -> List[QdqViolation]:
    out = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > MAX_OPSET:
            out.append(QdqViolation("<model>", "opset", f"opset {imp.version} > {MAX_OPSET}; re-export with opset 17"))
    return out


def _weight_tensors(graph: Any, initializers: Set[str]) -> Set[str]:
    """Weights: initializers, and the outputs of QuantizeLinear nodes that quantize an initializer."""
    weights = set(initializers)
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in initializers:
            weights.update(node.output)
    return weights


def _zero_point_violations(name: str, node: Any, consts: Dict[str, Any]) -> List[QdqViolation]:
    import numpy as np

    if len(node.input) < 3 or not node.input[2]:
        return [QdqViolation(name, "zero_point_missing", "zero point must be an explicit int8 third input")]
    zp = consts.get(node.input[2])
    if zp is None:
        return [QdqViolation(name, "scale_not_constant", f"zero point {node.input[2]} is not a constant")]
    if zp.dtype == np.uint8:
        return [QdqViolation(name, "uint8", "uint8 zero point; TRT 8.5 takes INT8 only (ActivationSymmetric + QInt8)")]
    if zp.dtype == np.int32 and node.op_type == "DequantizeLinear":
        return []  # reported once, as int32_bias
    if zp.dtype != np.int8:
        return [QdqViolation(name, "dtype", f"zero point type {zp.dtype}; TRT 8.5 takes int8 only")]
    if np.any(zp != 0):
        return [QdqViolation(name, "zero_point_nonzero", f"zero point(s) {np.unique(zp)[:4].tolist()} != 0; "
                                                         "quantize symmetrically")]
    return []


def _scale_violations(name: str, node: Any, consts: Dict[str, Any], weights: Set[str]) -> List[QdqViolation]:
    import numpy as np

    scale = consts.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [QdqViolation(name, "scale_not_constant", f"scale {node.input[1] if len(node.input) > 1 else '?'} "
                                                         "is not a constant")]
    out = []
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        out.append(QdqViolation(name, "scale_invalid", "scales must be positive and finite"))
    if scale.ndim >= 1 and scale.size > 1:
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)  # ONNX's default axis is 1
        if node.input[0] not in weights:
            out.append(QdqViolation(name, "per_channel_activation",
                                    f"per-channel scale ({scale.size} values) on activation {node.input[0]}; "
                                    "activations must be per-tensor"))
        elif axis != 0:
            out.append(QdqViolation(name, "per_channel_axis", f"per-channel axis {axis}; TRT 8.5 takes axis 0 only"))
    return out


def _node_violations(node: Any, consts: Dict[str, Any], weights: Set[str]) -> List[QdqViolation]:
    import numpy as np

    name = node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"
    x = consts.get(node.input[0])
    if node.op_type == "DequantizeLinear" and x is not None and x.dtype == np.int32:
        return [QdqViolation(name, "int32_bias", "int32 bias DequantizeLinear; quantize with QuantizeBias=False")]
    return _zero_point_violations(name, node, consts) + _scale_violations(name, node, consts, weights)


def check_qdq_trt85(onnx_path_or_model: Union[str, Path, Any]) -> List[QdqViolation]:
    """Every rule violation in the model (empty list: TRT 8.5's parser rules are met)."""
    import onnx

    model = onnx_path_or_model
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"Q/DQ model {path} does not exist", "run quantization first")
        model = onnx.load(str(path))
    graph = model.graph
    consts = _constants(graph)
    weights = _weight_tensors(graph, {t.name for t in graph.initializer})
    violations = _opset_violations(model)
    for node in graph.node:
        if node.op_type in QDQ_OPS and node.domain in ("", "ai.onnx"):
            violations.extend(_node_violations(node, consts, weights))
    return violations


def assert_qdq_trt85(onnx_path_or_model: Union[str, Path, Any], source: Optional[str] = None) -> None:
    """Raise ModelError listing every offending node, or return quietly."""
    violations = check_qdq_trt85(onnx_path_or_model)
    if violations:
        where = source or (str(onnx_path_or_model) if isinstance(onnx_path_or_model, (str, Path)) else "Q/DQ model")
        listed = "; ".join(f"{v.node}: {v.rule} ({v.detail})" for v in violations)
        raise ModelError(f"{where} breaks TensorRT 8.5's Q/DQ rules at {len(violations)} node(s): {listed}",
                         "quantize with edgekit's profile='trt' (REFERENCE.md §3 settings)")


__all__ = ["QdqViolation", "check_qdq_trt85", "assert_qdq_trt85", "MAX_OPSET"]
