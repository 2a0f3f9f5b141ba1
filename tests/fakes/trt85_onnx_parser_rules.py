"""TensorRT 8.5.2's ONNX parser Q/DQ checks, re-implemented from its source for the fake 8.5 parser.

Source: onnx/onnx-tensorrt at commit 7583da4 ("Integrate 8.5.2.2 changes", the parser TensorRT 8.5.2
pins), written independently of ``edgekit.calib.qdq_check`` so the two can be tested against each other:

* ``ModelImporter.cpp`` ``parseGraph``: initializers are imported first (``convertOnnxWeights``: UINT8
  and INT64 become INT32 weights, DOUBLE becomes FLOAT, types other than FLOAT/FLOAT16/INT8/INT32/BOOL
  fail); nodes are then imported in the DFS post-order of ``toposort.hpp``, the importer picked by
  ``op_type`` alone (the domain is ignored, :151), and the first failing node ends the parse, its
  index recorded with the error;
* ``builtin_op_importers.cpp`` ``QuantDequantLinearHelper`` (:1184-1306), in order: input 0 not a UINT8
  tensor (:1187), a Q's zero point not UINT8 (:1192), exactly 3 inputs (:1206), a constant scale non-empty
  (:1219) and positive (:1222), a constant zero point all zeros -- read as int8 bytes (:1240), scale and
  zero point of equal size (:1253), ``axis`` within [-rank, rank] (``convertAxis``, absent = rank), and
  for more than one scale the input's size on the axis (absent: axis 0) equal to the scale count (:1273);
* the Python binding prints an error as ``In node N (func): CODE: desc`` (``pyOnnx.cpp`` 8.5.2);
  ``ASSERT`` makes desc ``"Assertion failed: " #condition``.

The helper then creates the layer and asserts it exists: ``ASSERT(q && "Failed to create Quantize layer.")``
/ ``ASSERT(dq && "Failed to create Dequantize layer.")`` (kUNSUPPORTED_NODE). ``addQuantize``/``addDequantize``
are closed source; ``layer_checks=True`` (default) assumes they return null for what ``NvInfer.h`` 8.5.2
forbids (IQuantizeLayer :5914, IDequantizeLayer :6003): a scale or zero point of rank >= 2, a
DequantizeLinear input that is not INT8 (an int32 bias; uint8 weights, which the parser made INT32) --
inferred from the header, unverified on a device. Opset <= 17 is documented, not enforced in code.
"""

from __future__ import annotations

from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

QDQ = ("QuantizeLinear", "DequantizeLinear")
HELPER = "QuantDequantLinearHelper"
# onnx.TensorProto data types -> the type name TensorOrWeights::getType() reports for weights (after
# convertOnnxWeights' proxy conversion) and for tensors (convertDtype).
_WEIGHT_TYPES = {1: "FLOAT", 11: "FLOAT", 3: "INT8", 2: "INT32", 10: "HALF", 9: "BOOL", 6: "INT32", 7: "INT32"}
_TENSOR_TYPES = {1: "FLOAT", 11: "FLOAT", 3: "INT8", 2: "UINT8", 10: "HALF", 9: "BOOL", 6: "INT32", 7: "INT32"}


class ParserError(NamedTuple):
    node: int  # the node's index in graph.node (-1: before any node)
    name: str  # getNodeName: the node's name, or "node_of_<first output>"
    message: str  # str(trt.ParserError) as 8.5.2's binding prints it


def _error(node: int, name: str, func: str, code: str, desc: str) -> ParserError:
    return ParserError(node, name, f"In node {node} ({func}): {code}: {desc}")


def _assert(node: int, name: str, condition: str, code: str = "INVALID_NODE") -> ParserError:
    return _error(node, name, HELPER, code, "Assertion failed: " + condition)


class _Weights(NamedTuple):
    type: str
    values: np.ndarray  # after the proxy conversion (uint8 -> int32 etc.)


def _convert(array: np.ndarray, onnx_type: int) -> Optional[_Weights]:
    kind = _WEIGHT_TYPES.get(onnx_type)
    if kind is None:
        return None
    if onnx_type in (2, 7):  # UINT8, INT64 -> INT32
        array = array.astype(np.int32)
    elif onnx_type == 11:  # DOUBLE -> FLOAT
        array = array.astype(np.float32)
    return _Weights(kind, array)


def _constant_weights(node: Any) -> Optional[_Weights]:
    from onnx import helper, numpy_helper

    for attr in node.attribute:
        if attr.name == "value":
            return _convert(numpy_helper.to_array(attr.t), attr.t.data_type)
        if attr.name in ("value_float", "value_floats"):
            return _Weights("FLOAT", np.asarray(helper.get_attribute_value(attr), np.float32))
        if attr.name in ("value_int", "value_ints"):
            return _Weights("INT32", np.asarray(helper.get_attribute_value(attr), np.int32))
    return None


def _toposort(nodes: List[Any]) -> List[int]:
    """toposort.hpp: DFS post-order over producers, nodes visited in graph order."""
    producer = {out: i for i, n in enumerate(nodes) for out in n.output}
    order: List[int] = []
    state = [0] * len(nodes)  # 0 unvisited, 1 active, 2 visited
    for root in range(len(nodes)):
        stack: List[Tuple[int, int]] = [(root, 0)]
        while stack:
            i, k = stack.pop()
            if k == 0:
                if state[i]:
                    continue
                state[i] = 1
            inputs = [producer[x] for x in nodes[i].input if x in producer]
            if k < len(inputs):
                stack.append((i, k + 1))
                if state[inputs[k]] == 0:
                    stack.append((inputs[k], 0))
                continue
            state[i] = 2
            order.append(i)
    return order


def _tensor_info(model: Any) -> Tuple[Dict[str, str], Dict[str, Tuple[int, ...]]]:
    """Tensor types and static shapes (-1: dynamic) as far as ONNX shape inference knows them."""
    import onnx

    try:
        graph = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        graph = model.graph
    types: Dict[str, str] = {}
    shapes: Dict[str, Tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = info.type.tensor_type
        types[info.name] = _TENSOR_TYPES.get(t.elem_type, "UNKNOWN TYPE")
        if t.HasField("shape"):
            shapes[info.name] = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim)
    return types, shapes


def first_qdq_error(model: Any, layer_checks: bool = True) -> Optional[ParserError]:
    """The error TensorRT 8.5.2's parser reports for the first Q/DQ node it refuses, or None.

    Only Q/DQ checks (and the initializer import that precedes them) are modelled: other nodes are
    taken as importable. Stops at the first failure, as the parser does.
    """
    from onnx import numpy_helper

    graph = model.graph
    weights: Dict[str, _Weights] = {}
    for init in graph.initializer:
        converted = _convert(numpy_helper.to_array(init), init.data_type)
        if converted is None:
            return _error(-1, "", "parseGraph", "UNSUPPORTED_NODE", 'Assertion failed: convertOnnxWeights('
                          'initializer, &weights, ctx) && "Failed to import initializer."')
        weights[init.name] = converted
    types, shapes = _tensor_info(model)
    nodes = list(graph.node)
    for index in _toposort(nodes):
        node = nodes[index]
        if node.op_type == "Constant" and node.output:
            w = _constant_weights(node)
            if w is not None:
                weights[node.output[0]] = w
        elif node.op_type in QDQ:
            err = _qdq_error(index, node, weights, types, shapes)
            if err is None and layer_checks:
                err = _layer_error(index, node, weights, types, shapes)
            if err is not None:
                return err
            if node.output:  # IQuantizeLayer outputs INT8, IDequantizeLayer FLOAT, whatever ONNX says
                types[node.output[0]] = "INT8" if node.op_type == "QuantizeLinear" else "FLOAT"
                if node.input[0] in shapes:
                    shapes.setdefault(node.output[0], shapes[node.input[0]])
        elif node.op_type == "Cast" and node.output:
            to = next((a.i for a in node.attribute if a.name == "to"), 1)
            types[node.output[0]] = _TENSOR_TYPES.get(to, "UNKNOWN TYPE")
            if node.input and node.input[0] in weights:
                shapes.setdefault(node.output[0], tuple(weights[node.input[0]].values.shape))
    return None


def _type(name: str, weights: Dict[str, _Weights], types: Dict[str, str]) -> str:
    return weights[name].type if name in weights else types.get(name, "UNKNOWN TYPE")


def _size(name: str, weights: Dict[str, _Weights], shapes: Dict[str, Tuple[int, ...]]) -> Optional[int]:
    if name in weights:
        return int(weights[name].values.size)
    shape = shapes.get(name)
    return None if shape is None else int(np.prod(shape, dtype=np.int64))


def _qdq_error(index: int, node: Any, weights: Dict[str, _Weights], types: Dict[str, str],
               shapes: Dict[str, Tuple[int, ...]]) -> Optional[ParserError]:
    name = node.name or (f"node_of_{node.output[0]}" if node.output else "")
    ins = list(node.input)
    for i in (0, 2) if node.op_type == "QuantizeLinear" else (0,):  # :1187, :1192
        if i < len(ins) and ins[i] and _type(ins[i], weights, types) == "UINT8":
            return _error(index, name, "notInvalidType", "UNSUPPORTED_NODE", "Found invalid input type of UINT8")
    if len(ins) != 3:  # :1206 (the text says DequantizeLinear for both ops)
        return _assert(index, name, '(inputs.size() == 3) && "This version of TensorRT requires 3 inputs for the '
                                    'DequantizeLinear operator."')
    if ins[1] in weights:  # :1219, :1222
        scale = weights[ins[1]].values.astype(np.float64).reshape(-1)
        if scale.size == 0:
            return _assert(index, name, 'scale.count() > 0 && "Cannot have scale with no coefficients."')
        if not np.all(scale > 0):
            return _assert(index, name, 'scaleAllPositive && "Scale coefficients must all be positive"')
    if not ins[2]:
        return _assert(index, name, "zero point input present (8.5 dereferences an absent one: unverified)")
    if ins[2] in weights:  # :1240 shiftIsAllZeros reads count() int8 values from the (converted) buffer
        zp = weights[ins[2]].values
        raw = np.frombuffer(np.ascontiguousarray(zp).tobytes(), np.int8)[:zp.size]
        if np.any(raw != 0):
            return _assert(index, name, 'shiftIsAllZeros(zeroPoint) && "TRT only supports symmetric quantization - '
                                        'zeroPt must be all zeros"')
    scale_size, zp_size = _size(ins[1], weights, shapes), _size(ins[2], weights, shapes)
    if scale_size is not None and zp_size is not None and scale_size != zp_size:  # :1253
        return _assert(index, name, 'zeroPointSize == scaleSize && "The scale and zero-point must have the same size"')
    return _axis_error(index, name, node, ins, scale_size, weights, shapes)


def _axis_error(index: int, name: str, node: Any, ins: List[str], scale_size: Optional[int],
                weights: Dict[str, _Weights], shapes: Dict[str, Tuple[int, ...]]) -> Optional[ParserError]:
    dims = tuple(weights[ins[0]].values.shape) if ins[0] in weights else shapes.get(ins[0])
    if dims is None:
        return None  # rank unknown here; the real parser knows it -- not modelled
    nb = len(dims)
    axis = next((a.i for a in node.attribute if a.name == "axis"), nb)
    if axis < 0:
        axis += nb
    if not 0 <= axis <= nb:  # convertAxis
        return _error(index, name, "convertAxis", "UNSUPPORTED_NODE",
                      'Assertion failed: (axis >= 0 && axis <= nbDims) && "Axis must be in the range [0, nbDims]."')
    if scale_size is not None and scale_size != 1:  # :1259-1273
        axis = 0 if axis == nb else axis
        k = dims[axis] if axis < nb else None
        if k != scale_size:
            return _assert(index, name, 'K == scaleSize && "The number of scales is not equal to the number of '
                                        'output channels."')
    return None


def _layer_error(index: int, node: Any, weights: Dict[str, _Weights], types: Dict[str, str],
                 shapes: Dict[str, Tuple[int, ...]]) -> Optional[ParserError]:
    """addQuantize/addDequantize returning null for what NvInfer.h forbids (inferred, see module doc)."""
    name = node.name or (f"node_of_{node.output[0]}" if node.output else "")
    is_dq = node.op_type == "DequantizeLinear"
    ranks = [len(weights[x].values.shape) if x in weights else len(shapes.get(x, ())) for x in node.input[1:3]]
    bad_input = _type(node.input[0], weights, types) not in (("INT8",) if is_dq else ("FLOAT", "HALF"))
    if any(r >= 2 for r in ranks) or bad_input:
        layer = "dq" if is_dq else "q"
        kind = "Dequantize" if is_dq else "Quantize"
        return _assert(index, name, f'{layer} && "Failed to create {kind} layer."', "UNSUPPORTED_NODE")
    return None
