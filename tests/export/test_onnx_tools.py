"""IR pinning, opset rules and verified simplification, on real ONNX files and onnxruntime sessions."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekit.core.errors import ConfigError, ModelError
from edgekit.export import onnx_tools


def _affine_model(path, ir_version=None, opset=17):
    """y = x * 2 + 1 written as Mul(Constant) + Add(Constant): onnxslim folds nothing but must keep values."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    two = numpy_helper.from_array(np.full((1, 4), 2.0, np.float32), "two")
    one = numpy_helper.from_array(np.ones((1, 4), np.float32), "one")
    ident = helper.make_node("Identity", ["x"], ["x_id"])  # removable: gives the simplifier work
    nodes = [ident, helper.make_node("Mul", ["x_id", "two"], ["m"]), helper.make_node("Add", ["m", "one"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "affine", [x], [y], [two, one]),
                              opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.save(model, str(path))
    return path


def test_runtime_ir_is_detected_and_loadable(tmp_path):
    import onnxruntime as ort

    ir = onnx_tools.max_runtime_ir_version()
    assert 7 <= ir <= onnx.IR_VERSION
    ort.InferenceSession(str(_affine_model(tmp_path / "ok.onnx", ir)), providers=["CPUExecutionProvider"])
    if ir < onnx.IR_VERSION:  # the next IR up is what the probe found unloadable
        with pytest.raises(Exception, match="IR version"):  # noqa: B017 (ORT's Fail type is not importable)
            ort.InferenceSession(str(_affine_model(tmp_path / "bad.onnx", ir + 1)), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("opset,target,expected", [
    (17, "jetson-xavier-nx", onnx_tools.TRT85_MAX_IR),
    (17, "x86", None),  # None: whatever onnxruntime accepts
    (13, "jetson-xavier-nx", onnx_tools.TRT85_MAX_IR),
])
def test_pinned_ir_version(opset, target, expected):
    got = onnx_tools.pinned_ir_version(opset, target)
    assert got == (expected if expected is not None else onnx_tools.max_runtime_ir_version())
    assert got >= onnx_tools.min_ir_for_opset(opset)


@pytest.mark.parametrize("opset,target,error", [
    (17, "jetson-xavier-nx", None),
    (18, "jetson-xavier-nx", "above what TensorRT 8.5"),
    (19, "x86", None),
    (9, "x86", "too old"),
    (17, "orin", "unknown target"),
])
def test_check_opset(opset, target, error):
    if error is None:
        onnx_tools.check_opset(opset, target)
    else:
        with pytest.raises(ConfigError, match=error):
            onnx_tools.check_opset(opset, target)


def test_pin_ir_version_rewrites_file(tmp_path):
    path = _affine_model(tmp_path / "m.onnx")  # onnx 1.23 default IR
    previous = onnx_tools.pin_ir_version(path, 8)
    assert previous == onnx.IR_VERSION and onnx.load(str(path)).ir_version == 8


@pytest.mark.parametrize("simplifier", ["onnxslim", "none"])
def test_simplify_is_verified_and_keeps_outputs(tmp_path, simplifier):
    src = _affine_model(tmp_path / "src.onnx", 8)
    feed = {"x": np.arange(4, dtype=np.float32)[None]}
    report = onnx_tools.simplify_onnx(src, tmp_path / "dst.onnx", simplifier, feed, ir_version=8)
    assert report["max_abs_diff"] == 0.0 and report["simplifier"] == simplifier
    out = onnx_tools.ort_outputs(tmp_path / "dst.onnx", feed)["y"]
    np.testing.assert_array_equal(out, feed["x"] * 2 + 1)
    assert onnx.load(str(tmp_path / "dst.onnx")).ir_version == 8
    if simplifier == "onnxslim":
        assert report["nodes_after"] < report["nodes_before"]


def test_simplifier_that_changes_results_fails_and_writes_nothing(tmp_path, monkeypatch):
    src = _affine_model(tmp_path / "src.onnx", 8)

    def broken(model, name):  # a "simplifier" that changes a constant: what the check must catch
        model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.full((1, 4), 1.5, np.float32), "one"))
        return model, "broken"

    monkeypatch.setattr(onnx_tools, "_run_simplifier", broken)
    feed = {"x": np.ones((1, 4), np.float32)}
    with pytest.raises(ModelError, match="changed what src.onnx computes"):
        onnx_tools.simplify_onnx(src, tmp_path / "dst.onnx", "onnxslim", feed, ir_version=8)
    assert not (tmp_path / "dst.onnx").exists()


def test_onnxsim_missing_is_a_clear_error(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnxsim(name, *args, **kwargs):
        if name == "onnxsim":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxsim)
    src = _affine_model(tmp_path / "src.onnx", 8)
    with pytest.raises(ConfigError, match="needs the onnxsim package"):
        onnx_tools.simplify_onnx(src, tmp_path / "d.onnx", "onnxsim", {"x": np.ones((1, 4), np.float32)}, 8)
