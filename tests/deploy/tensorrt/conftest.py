"""Fixtures for the TensorRT device package: tiny real ONNX graphs and fake TensorRT 8.5 / 10 / 11
installed under Polygraphy's real TensorRT backend (tests/fakes/fake_tensorrt.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from tests.fakes.fake_tensorrt import FakeTensorRT  # noqa: E402
from tests.fakes.onnx_graphs import save, tiny_conv_model  # noqa: E402

VERSIONS = ["8.5.2.2", "10.3.0.26", "11.1.0.5"]
LEGACY = ["8.5.2.2", "10.3.0.26"]  # versions with FP16/INT8 flags and calibrators
DEVICE_SM = ("Fake Xavier NX", (7, 2))


@pytest.fixture
def fake_trt():
    """``fake_trt(version, **kw)`` installs a fake TensorRT + CUDA for the rest of the test."""
    entered = []

    def install(version: str = "8.5.2.2", **kwargs) -> FakeTensorRT:
        env = FakeTensorRT(version, **kwargs).__enter__()
        entered.append(env)
        return env

    yield install
    for env in reversed(entered):
        env.__exit__(None, None, None)


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("onnx")
    return {
        "static": save(tiny_conv_model(), d / "tiny.onnx"),
        "dynamic": save(tiny_conv_model(dynamic=True), d / "dyn.onnx"),
        "unsupported": save(tiny_conv_model(unsupported=True), d / "bad.onnx"),
    }


@pytest.fixture(scope="session")
def qdq_model(tmp_path_factory) -> Path:
    """A Q/DQ version of the tiny model, made the way edgekit's export makes one (symmetric int8)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    base = tiny_conv_model()
    graph = base.graph
    scale = numpy_helper.from_array(np.array(0.02, np.float32), "act_scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "act_zero")
    q = helper.make_node("QuantizeLinear", ["images", "act_scale", "act_zero"], ["images_q"], name="images_QuantizeLinear")
    dq = helper.make_node("DequantizeLinear", ["images_q", "act_scale", "act_zero"], ["images_dq"],
                          name="images_DequantizeLinear")
    nodes = [q, dq] + list(graph.node)
    nodes[2].input[0] = "images_dq"
    new = helper.make_graph(nodes, "tiny_qdq", list(graph.input), list(graph.output),
                            initializer=list(graph.initializer) + [scale, zero])
    model = helper.make_model(new, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return save(model, tmp_path_factory.mktemp("qdq") / "model.int8.qdq.onnx")
