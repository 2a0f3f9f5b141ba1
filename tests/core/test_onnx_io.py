"""read_onnx_io (a protobuf walk, no onnx package) agrees with onnx itself, and refuses non-ONNX files."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.errors import ModelError
from edgekit.core.onnx_io import OnnxTensor, read_onnx_io

onnx = pytest.importorskip("onnx")


def _model(path, initializer_as_input=False):
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 640, 640]),
              helper.make_tensor_value_info("embedding", TensorProto.FLOAT16, [1, 384]),
              helper.make_tensor_value_info("mask", TensorProto.UINT8, [1, 1, 80, 80])]
    w = numpy_helper.from_array(np.ones((3,), np.float32), "w")
    if initializer_as_input:  # old exporters list weights as graph inputs too
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [3]))
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3]),
               helper.make_tensor_value_info("ids", TensorProto.INT64, [None])]
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Mul", ["m", "w"], ["out"]),
             helper.make_node("Shape", ["mask"], ["ids"])]
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("initializer_as_input", [False, True])
def test_reads_what_onnx_reads(tmp_path, initializer_as_input):
    io = read_onnx_io(_model(tmp_path / "m.onnx", initializer_as_input))
    assert io.ir_version == 8
    assert io.inputs == [OnnxTensor("images", ("batch", 3, 640, 640), "float32"),
                         OnnxTensor("embedding", (1, 384), "float16"),
                         OnnxTensor("mask", (1, 1, 80, 80), "uint8")]
    assert [t.name for t in io.outputs] == ["out", "ids"] and io.outputs[1].dtype == "int64"
    assert io.outputs[1].shape == ("?",)  # a dim with neither value nor name


@pytest.mark.parametrize("damage", ["truncate", "text", "empty"])
def test_non_onnx_is_one_clear_line(tmp_path, damage):
    path = _model(tmp_path / "m.onnx")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) - 7], "text": b"hello, not a model\n", "empty": b""}[damage])
    with pytest.raises(ModelError, match=r"m.onnx is not a readable ONNX model .*; re-export the bundle"):
        read_onnx_io(path)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="cannot read ONNX model"):
        read_onnx_io(tmp_path / "nope.onnx")
