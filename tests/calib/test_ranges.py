"""Host activation ranges (onnxruntime) and the host-written cache, for one-image and multi-input graphs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fakes.onnx_graphs import save

from edgekit.calib.cache import read_cache, verify_cache
from edgekit.calib.feeds import CalibrationFeed
from edgekit.calib.ranges import host_activation_ranges, write_calibration_cache
from edgekit.core.errors import ModelError
from edgekit.core.manifest import file_sha256


@pytest.mark.parametrize("method, algorithm", [("minmax", "MinMaxCalibration"), ("entropy", "EntropyCalibration2")])
def test_host_cache_from_onnxruntime_ranges(tmp_path, tiny_onnx, tiny_calib, method, algorithm):
    cache_path, side_path = write_calibration_cache(tiny_onnx, tiny_calib, method, tmp_path, imgsz=16, batch=1,
                                                    trt_version="8.5.2")
    cache = read_cache(cache_path)
    assert cache.header == f"TRT-8502-{algorithm}"
    assert {"images", "c1", "r1", "c2", "output0"} <= set(cache.scales)
    if method == "minmax":  # the input's range is exactly the largest preprocessed pixel
        peak = max(float(np.abs(b).max()) for b in tiny_calib.batches(1))
        assert cache.scales["images"] == pytest.approx(peak / 127, rel=1e-6)
        assert cache.scales["r1"] <= cache.scales["c1"] * (1 + 1e-6)  # Relu cannot widen the range
    sidecar = json.loads(side_path.read_text())
    assert sidecar["onnx_sha256"] == file_sha256(tiny_onnx)
    assert sidecar["calib_data_hash"] == tiny_calib.data_hash()
    assert (sidecar["imgsz"], sidecar["n_images"], sidecar["trt_version"]) == ([16, 16], len(tiny_calib), "8502")
    assert verify_cache(cache_path, {"onnx_sha256": file_sha256(tiny_onnx), "calib_data_hash": tiny_calib.data_hash()})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([cache_path.name, side_path.name])  # no temp left


def two_input_model():
    """images (1,3,4,4) -> GlobalAveragePool -> Flatten (1,3) + embedding (1,3) -> Add -> Relu -> output0."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Add", ["flat", "embedding"], ["sum"]),
             helper.make_node("Relu", ["sum"], ["output0"])]
    graph = helper.make_graph(nodes, "two_inputs",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 4, 4]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_a_graph_with_a_non_image_input_calibrates_from_complete_feeds(tmp_path):
    path = save(two_input_model(), tmp_path / "two.onnx")
    with pytest.raises(ModelError, match="has inputs \\['images', 'embedding'\\]"):
        CalibrationFeed(path, calib=None)
    rng = np.random.default_rng(0)
    feeds = [{"images": rng.uniform(0, 1, (1, 3, 4, 4)).astype(np.float32),
              "embedding": np.full((1, 3), 5.0 * (i + 1), np.float32)} for i in range(3)]
    ranges = host_activation_ranges(path, None, "minmax", 1, feeds=lambda: iter(feeds))
    assert ranges["embedding"] == pytest.approx(15.0)  # the largest embedding value fed
    assert ranges["output0"] > 15.0 and ranges["images"] <= 1.0
