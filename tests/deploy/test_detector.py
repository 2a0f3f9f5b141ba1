"""Detector: frame -> letterbox -> runner -> decode -> frame pixels, on a real ONNX Runtime session.

The model is a real ONNX graph whose output is a known raw OBB tensor (plus 0 x the input, so the
input is really consumed): every box the detector returns can be computed by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.letterbox import LetterboxSpec
from edgekit.core.postprocess import PostprocessSpec
from edgekit.deploy import Detector, create_runner

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _constant_obb_model(path, raw: np.ndarray, imgsz: int = 64):
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["raw", "z"], ["output0"])]
    inits = [numpy_helper.from_array(raw, "raw"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    model = helper.make_model(helper.make_graph(nodes, "const_obb", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture
def raw():
    r = np.zeros((1, 4 + 2 + 1, 3), np.float32)  # 2 classes, 3 anchors
    r[0, :, 0] = [32, 32, 20, 10, 0.9, 0.1, 0.5]  # kept: class 0
    r[0, :, 1] = [10, 40, 6, 4, 0.05, 0.6, 0.0]  # kept: class 1
    r[0, :, 2] = [50, 20, 6, 4, 0.1, 0.2, 0.0]  # below conf
    return r


@pytest.mark.parametrize("frame_hw,expected", [
    # 128x64 frame -> ratio 0.5, padded 16 px top and bottom: x / 0.5, (y - 16) / 0.5
    ((64, 128), [[64, 32, 40, 20, 0.5], [20, 48, 12, 8, 0.0]]),
    ((64, 64), [[32, 32, 20, 10, 0.5], [10, 40, 6, 4, 0.0]]),  # no resize, no padding
])
def test_detector_maps_boxes_back_to_the_frame(tmp_path, raw, frame_hw, expected):
    model = _constant_obb_model(tmp_path / "m.onnx", raw)
    det = Detector(create_runner("onnxruntime", model), letterbox=LetterboxSpec(imgsz=64),
                   postprocess=PostprocessSpec(conf=0.25))
    with det:
        out = det(np.zeros((*frame_hw, 3), np.uint8))
    order = np.argsort(-out.scores)
    np.testing.assert_allclose(out.boxes[order], np.asarray(expected, np.float32), atol=1e-4)
    assert out.class_ids[order].tolist() == [0, 1] and out.scores[order].tolist() == pytest.approx([0.9, 0.6])
    assert set(det.timings) == {"preprocess_s", "infer_s", "postprocess_s", "total_s"}


def test_detector_reads_specs_from_manifest(tmp_path, raw):
    from edgekit.core.manifest import BundleManifest, ModelEntry, TensorSpec

    manifest = BundleManifest(
        task="obb", classes=["a", "b"], preprocess=LetterboxSpec(imgsz=64), postprocess=PostprocessSpec(conf=0.7),
        models={"fp32": ModelEntry(file="m.onnx", inputs=[TensorSpec(name="images", shape=[1, 3, 64, 64])],
                                   outputs=[TensorSpec(name="output0", shape=[1, 7, 3])])})
    with Detector(create_runner("onnxruntime", _constant_obb_model(tmp_path / "m.onnx", raw)), manifest) as det:
        out = det(np.zeros((64, 64, 3), np.uint8))
    assert det.input_name == "images" and det.output_name == "output0"
    assert len(out) == 1 and out.class_ids.tolist() == [0]  # conf 0.7 from the manifest drops the 0.6 box


def test_feed_checks_are_skipped_only_for_a_feed_like_the_last_checked_one():
    """The detector checks a feed once per (name, shape, dtype): a later feed that differs is checked again."""
    from edgekit.core.errors import DataError
    from edgekit.deploy.runners.base import Runner, TensorMeta

    class Echo(Runner):
        backend = "echo"
        checks = 0

        def _activate(self):
            return {"images": TensorMeta("images", (1, 3, 8, 8), np.dtype(np.float32))}

        def _check_feed(self, feed):
            Echo.checks += 1
            super()._check_feed(feed)

        def _infer(self, feed):
            return {"out": feed["images"]}

        def _deactivate(self):
            pass

    det = Detector(Echo("echo"))
    with det:
        good = {"images": np.zeros((1, 3, 8, 8), np.float32)}
        det.infer(good), det.infer(good), det.collect(det.submit(good))
        assert Echo.checks == 1
        with pytest.raises(DataError, match="dtype"):
            det.infer({"images": np.zeros((1, 3, 8, 8), np.float64)})
        with pytest.raises(DataError, match="shape"):
            det.infer({"images": np.zeros((1, 3, 8, 9), np.float32)})
        det.infer(good)  # a refused feed leaves the last checked one as it was: no new check
        assert Echo.checks == 3
