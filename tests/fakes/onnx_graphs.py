"""Tiny real ONNX graphs built with onnx.helper, and a folder of small real calibration images."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np


def tiny_conv_model(dynamic: bool = False, opset: int = 17, unsupported: bool = False, size: int = 16):
    """images (1,3,S,S) -> Conv 3x3 (4) -> Relu -> Conv 1x1 (2) -> Sigmoid -> output0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(0, 0.1, (2,)).astype(np.float32), "b2")
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/model.0/act/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/model.1/conv/Conv"),
        helper.make_node("EdgekitUnsupportedOp" if unsupported else "Sigmoid", ["c2"], ["output0"],
                         name="/model.1/Sigmoid", **({"domain": ""} if unsupported else {})),
    ]
    batch, side = ("batch", "side") if dynamic else (1, size)
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 2, side, side])],
        initializer=[w1, b1, w2, b2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what onnxruntime 1.17+ and TensorRT 8.5 both read
    if not unsupported:
        onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def write_images(folder: Path, n: int, seed: int = 0, size=(48, 64), suffixes=(".jpg",)) -> List[Path]:
    """``n`` small images with coloured rectangles (real JPEG/PNG/BMP files)."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((size[0], size[1], 3), rng.integers(0, 255, 3), np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, size[1] - 8)), int(rng.integers(0, size[0] - 8))
            color = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 20)), y + int(rng.integers(4, 20))), color, -1)
        path = folder / f"img_{i:03d}{suffixes[i % len(suffixes)]}"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def qdq_conv_model(w_shape=(4, 3, 3, 3), w_scale=None, w_zp=None, w_axis=0, act_scale=0.02, act_zp=None,
                   domain: str = "", scale_source: str = "initializer", opset: int = 17, side: int = 8):
    """x (1,C,S,S) -> Q -> DQ -> Conv(DQ(Q(W))) -> y, with every Q/DQ knob exposed (not checker-valid
    on purpose: the Q/DQ rule tests plant what ONNX itself may allow or not).

    ``w_scale``/``w_zp``/``act_zp`` are arrays (``w_zp="missing"`` drops the input); ``w_axis=None`` leaves
    the attribute out; ``domain`` is the Q/DQ nodes' domain; ``scale_source`` feeds the weight scale from
    an ``initializer``, a ``constant`` (``value`` tensor), ``constant_float(s)`` (``value_float(s)``) or
    ``cast`` (a float16 Constant -> Cast to float).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.5, w_shape).astype(np.float32)
    w_scale = np.full(w_shape[0], 0.01, np.float32) if w_scale is None else np.asarray(w_scale)
    w_zp = np.zeros(w_scale.shape, np.int8) if w_zp is None else w_zp
    act_zp = np.int8(0) if act_zp is None else np.asarray(act_zp)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.asarray(act_scale, np.float32), "xs"),
             numpy_helper.from_array(np.asarray(act_zp), "xz")]
    nodes = []
    if scale_source == "initializer":
        inits.append(numpy_helper.from_array(w_scale, "ws"))
    elif scale_source == "constant":
        nodes.append(helper.make_node("Constant", [], ["ws"], name="ws_const", value=numpy_helper.from_array(w_scale)))
    elif scale_source == "constant_float":
        values = w_scale.reshape(-1).tolist()
        const = helper.make_node("Constant", [], ["ws"], name="ws_const")
        const.attribute.append(helper.make_attribute("value_float", values[0]) if w_scale.ndim == 0 else
                               helper.make_attribute("value_floats", values, attr_type=onnx.AttributeProto.FLOATS))
        nodes.append(const)
    elif scale_source == "cast":
        nodes += [helper.make_node("Constant", [], ["ws16"], name="ws_const",
                                   value=numpy_helper.from_array(w_scale.astype(np.float16))),
                  helper.make_node("Cast", ["ws16"], ["ws"], name="ws_cast", to=TensorProto.FLOAT)]
    else:
        raise ValueError(scale_source)
    w_inputs = ["wq", "ws"]
    if not (isinstance(w_zp, str) and w_zp == "missing"):
        inits.append(numpy_helper.from_array(np.asarray(w_zp), "wz"))
        w_inputs.append("wz")
    axis = {} if w_axis is None else {"axis": w_axis}
    nodes += [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_QuantizeLinear", domain=domain),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_DequantizeLinear", domain=domain),
        helper.make_node("QuantizeLinear", ["W"] + w_inputs[1:], ["wq"], name="W_QuantizeLinear", domain=domain,
                         **axis),
        helper.make_node("DequantizeLinear", w_inputs, ["wd"], name="W_DequantizeLinear", domain=domain, **axis),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, w_shape[1], side, side])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model
