"""Static check of a Q/DQ ONNX against what TensorRT 8.5's ONNX parser and Q/DQ layers accept
(docs/tensorrt.md, "Q/DQ rules for TensorRT 8.5").

Xavier NX stays on TensorRT 8.5 for good, and nothing on the host can run 8.5, so these rules are
checked here, before a bundle leaves the host. They are at least as strict as the parser
(onnx-tensorrt 8.5 ``QuantDequantLinearHelper``): a model this checker passes parses.

============================  ===============================================================
rule                          what 8.5 needs
============================  ===============================================================
``opset``                     default-domain opset <= 17
``zero_point_missing``        the zero point is an explicit third input
``uint8``                     INT8 only: no UINT8 zero point (=> no UINT8 tensors) anywhere
``dtype``                     no other quantized type (int16, int4, fp8, ...)
``zero_point_nonzero``        every zero point is 0 (symmetric quantization)
``scale_not_constant``        scales and zero points are build-time constants (Constant, Cast of one)
``scale_invalid``             scales are positive and finite
``scale_rank``                scale and zero point are scalars or 1-D (IQuantizeLayer/IDequantizeLayer)
``scale_zero_point_size``     scale and zero point have the same number of values
``per_channel_activation``    per-channel scales (> 1 element) only on weights
``per_channel_size``          the scale count equals the input's size on the axis (8.5 uses axis 0
                              when the attribute is absent)
``per_channel_axis_absent``   per-channel without an ``axis`` attribute: TensorRT 8.5 reads axis 0,
                              ONNX (and onnxruntime) axis 1 -- write the axis explicitly
``axis_range``                ``axis`` within [-rank, rank]
``int32_bias``                no DequantizeLinear of an int32 bias
============================  ===============================================================

Q/DQ nodes are checked in any domain: 8.5 dispatches on the op type alone, so a
``com.microsoft`` QuantizeLinear is imported (and refused) like a default-domain one.

Host only (needs onnx, imported lazily).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Set, Tuple, Union

from edgekit.core.errors import ModelError

MAX_OPSET = 17
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


class QdqViolation(NamedTuple):
    node: str
    rule: str
    detail: str


def _constants(graph: Any) -> Dict[str, Any]:
    """Tensor name -> numpy value for initializers, Constant node outputs (``value``, ``value_float(s)``,
    ``value_int(s)``) and Casts of those (a Constant -> Cast -> Q scale is still a build-time constant)."""
    import numpy as np
    from onnx import helper, numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if not node.output:
            continue
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
                elif attr.name in ("value_float", "value_floats"):
                    values[node.output[0]] = np.asarray(helper.get_attribute_value(attr), np.float32)
                elif attr.name in ("value_int", "value_ints"):
                    values[node.output[0]] = np.asarray(helper.get_attribute_value(attr), np.int64)
        elif node.op_type == "Cast" and node.input and node.input[0] in values:
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            if to is not None:
                values[node.output[0]] = values[node.input[0]].astype(helper.tensor_dtype_to_np_dtype(to))
    return values


def _shapes(model: Any, consts: Dict[str, Any]) -> Dict[str, Tuple[int, ...]]:
    """Static shapes where known (-1 for a dynamic dimension): constants, graph inputs, inferred tensors."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # an invalid model still gets its declared shapes checked
        graph = model.graph
    shapes: Dict[str, Tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = info.type.tensor_type
        if t.HasField("shape"):
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    shapes.update({name: tuple(v.shape) for name, v in consts.items()})
    for node in model.graph.node:  # Q/DQ keep their input's shape, in any domain (inference skips com.microsoft)
        if node.op_type in QDQ_OPS and node.input and node.output and node.input[0] in shapes:
            shapes.setdefault(node.output[0], shapes[node.input[0]])
    return shapes


def _opset_violations(model: Any) -> List[QdqViolation]:
    out = []
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version > MAX_OPSET:
            out.append(QdqViolation("<model>", "opset", f"opset {imp.version} > {MAX_OPSET}; re-export with opset 17"))
    return out


def _weight_tensors(graph: Any, consts: Dict[str, Any]) -> Set[str]:
    """Weights: constants, and the outputs of QuantizeLinear nodes that quantize a constant."""
    weights = set(consts)
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input and node.input[0] in consts:
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


def _scale_violations(name: str, node: Any, consts: Dict[str, Any], weights: Set[str],
                      shapes: Dict[str, Tuple[int, ...]]) -> List[QdqViolation]:
    import numpy as np

    scale = consts.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [QdqViolation(name, "scale_not_constant", f"scale {node.input[1] if len(node.input) > 1 else '?'} "
                                                         "is not a constant")]
    out = []
    if scale.size == 0 or not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        out.append(QdqViolation(name, "scale_invalid", "scales must be positive and finite"))
    zp = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale.ndim >= 2 or (zp is not None and zp.ndim >= 2):
        out.append(QdqViolation(name, "scale_rank", f"scale shape {list(scale.shape)}; TensorRT takes a scalar or "
                                                    "a 1-D scale and zero point"))
    if zp is not None and zp.size != scale.size:
        out.append(QdqViolation(name, "scale_zero_point_size", f"{scale.size} scale(s) but {zp.size} zero point(s)"))
    return out + _axis_violations(name, node, scale.size, weights, shapes)


def _axis_violations(name: str, node: Any, count: int, weights: Set[str],
                     shapes: Dict[str, Tuple[int, ...]]) -> List[QdqViolation]:
    """TensorRT 8.5 reads ``axis`` (absent: axis 0) and needs the input's size there to equal the scale count."""
    attr = next((a.i for a in node.attribute if a.name == "axis"), None)
    shape = shapes.get(node.input[0])
    if shape is not None and attr is not None and not -len(shape) <= attr <= len(shape):
        return [QdqViolation(name, "axis_range", f"axis {attr} outside [-{len(shape)}, {len(shape)}] for input "
                                                 f"{node.input[0]} of rank {len(shape)}")]
    if count <= 1:
        return []
    if node.input[0] not in weights:
        return [QdqViolation(name, "per_channel_activation", f"per-channel scale ({count} values) on activation "
                                                             f"{node.input[0]}; activations must be per-tensor")]
    if shape is None:
        return [QdqViolation(name, "per_channel_size", f"shape of {node.input[0]} unknown; cannot match "
                                                       f"{count} scales to an axis")]
    axis = 0 if attr is None else attr % len(shape) if len(shape) else 0
    out = []
    if attr is None:
        fits = [a for a in (0, 1) if a < len(shape) and shape[a] == count]
        out.append(QdqViolation(name, "per_channel_axis_absent",
                                f"no axis attribute: TensorRT 8.5 uses axis 0, ONNX axis 1 (the {count} scales fit "
                                f"axis {' and '.join(map(str, fits)) or 'neither'}); write axis explicitly"))
    if axis >= len(shape) or shape[axis] != count:
        size = shape[axis] if axis < len(shape) else None
        out.append(QdqViolation(name, "per_channel_size", f"{count} scales but {node.input[0]} has size {size} "
                                                          f"on axis {axis} (shape {list(shape)})"))
    return out


def _node_violations(node: Any, consts: Dict[str, Any], weights: Set[str],
                     shapes: Dict[str, Tuple[int, ...]]) -> List[QdqViolation]:
    import numpy as np

    name = node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"
    x = consts.get(node.input[0])
    if node.op_type == "DequantizeLinear" and x is not None and x.dtype == np.int32:
        return [QdqViolation(name, "int32_bias", "int32 bias DequantizeLinear; quantize with QuantizeBias=False")]
    return _zero_point_violations(name, node, consts) + _scale_violations(name, node, consts, weights, shapes)


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
    weights = _weight_tensors(graph, consts)
    shapes = _shapes(model, consts)
    violations = _opset_violations(model)
    for node in graph.node:
        # Any domain: TensorRT 8.5 picks the importer by op_type alone (docs/tensorrt.md).
        if node.op_type in QDQ_OPS:
            violations.extend(_node_violations(node, consts, weights, shapes))
    return violations


def assert_qdq_trt85(onnx_path_or_model: Union[str, Path, Any], source: Optional[str] = None) -> None:
    """Raise ModelError listing every offending node, or return quietly."""
    violations = check_qdq_trt85(onnx_path_or_model)
    if violations:
        where = source or (str(onnx_path_or_model) if isinstance(onnx_path_or_model, (str, Path)) else "Q/DQ model")
        listed = "; ".join(f"{v.node}: {v.rule} ({v.detail})" for v in violations)
        raise ModelError(f"{where} breaks TensorRT 8.5's Q/DQ rules at {len(violations)} node(s): {listed}",
                         "quantize with edgekit's profile='trt' (docs/tensorrt.md, Q/DQ rules)")


__all__ = ["QdqViolation", "check_qdq_trt85", "assert_qdq_trt85", "MAX_OPSET"]
