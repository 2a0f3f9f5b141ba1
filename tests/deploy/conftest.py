"""Tiny real models for the runner contract: one torch module and the ONNX file exported from it."""

from __future__ import annotations

from pathlib import Path

import pytest

INPUT_SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="session")
def tiny_torch_model():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return y.mean(dim=(2, 3)), y  # two outputs, like a head's (decoded, raw maps)

    return Tiny().eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, request) -> Path:
    """The tiny model as ONNX: exported from torch where torch exists, else the same graph built with
    onnx.helper (the device has no torch; the ONNX-only backends still run the contract there)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    try:
        import torch
    except ImportError:
        return _tiny_onnx_without_torch(path)
    model = request.getfixturevalue("tiny_torch_model")
    torch.onnx.export(model, torch.zeros(INPUT_SHAPE), str(path), input_names=["images"],
                      output_names=["pooled", "maps"], opset_version=17, dynamo=False)
    return path


def _tiny_onnx_without_torch(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["maps"]),
             helper.make_node("ReduceMean", ["maps"], ["pooled"], axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, INPUT_SHAPE)],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 4, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
