"""The uint8-input variant computes exactly what the float graph computes on preprocess()'s output."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.errors import ModelError
from edgekit.core.letterbox import LetterboxSpec, letterbox, preprocess
from edgekit.deploy.uint8_input import uint8_input_variant

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _identity_conv(path, imgsz=32):
    """A graph whose output is its input scaled per channel: any preprocessing error shows."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, imgsz, imgsz])
    w = np.zeros((3, 3, 1, 1), np.float32)
    for c in range(3):
        w[c, c] = c + 1.0
    model = helper.make_model(helper.make_graph([helper.make_node("Conv", ["images", "w"], ["out"])], "g", [x], [y],
                                                [numpy_helper.from_array(w, "w")]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("spec_kwargs", [{}, {"color_order": "BGR"},
                                         {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
                                         {"mean": (0.1, 0.2, 0.3), "std": (0.5, 0.6, 0.7), "color_order": "BGR"}])
def test_variant_equals_float_graph_on_preprocessed_input(tmp_path, spec_kwargs):
    spec = LetterboxSpec(imgsz=32, **spec_kwargs)
    path = _identity_conv(tmp_path / "m.onnx")
    frame = np.random.default_rng(1).integers(0, 256, (20, 50, 3), dtype=np.uint8)
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    var = ort.InferenceSession(uint8_input_variant(path, spec), providers=["CPUExecutionProvider"])
    assert var.get_inputs()[0].name == "images_u8" and var.get_inputs()[0].type == "tensor(uint8)"
    want = ref.run(None, {"images": preprocess(frame, spec)[0]})[0]
    got = var.run(None, {"images_u8": letterbox(frame, spec)[0][None]})[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if "mean" not in spec_kwargs:
        assert np.array_equal(got, want)


def test_bundle_detector_with_uint8_input_gives_the_same_detections(tmp_path):

    from edgekit.deploy.bundle import Bundle
    from tests.deploy.bundles import write_test_bundle

    b = Bundle.open(write_test_bundle(tmp_path / "b"))
    frame = np.zeros((48, 80, 3), np.uint8)
    with b.detector() as plain, b.detector(uint8_input=True) as fast:
        want, got = plain(frame), fast(frame)
        assert fast.runner.input_metadata()["images_u8"].dtype == np.uint8
    assert np.array_equal(want.boxes, got.boxes) and np.array_equal(want.class_ids, got.class_ids)


def test_non_image_models_are_refused(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 384])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 384])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["emb"], ["out"])], "g", [x], [y]))
    with pytest.raises(ModelError, match="is not a float \\(N, 3, H, W\\) image"):
        uint8_input_variant(m.SerializeToString(), LetterboxSpec(imgsz=32))
