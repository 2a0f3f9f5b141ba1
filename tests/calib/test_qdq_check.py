"""The TRT 8.5 Q/DQ rule checker: a clean quantized model passes; each planted violation is caught by name."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgekit.calib.qdq import quantize_qdq
from edgekit.calib.qdq_check import assert_qdq_trt85, check_qdq_trt85
from edgekit.core.errors import ModelError
from tests.fakes.onnx_graphs import qdq_conv_model


@pytest.fixture(scope="module")
def clean_qdq(tmp_path_factory, tiny_onnx, tiny_calib):
    out = tmp_path_factory.mktemp("qdq") / "clean.onnx"
    return onnx.load(str(quantize_qdq(tiny_onnx, out, tiny_calib, exclude_nodes=[]).path))


def _init(model, name):
    return next(t for t in model.graph.initializer if t.name == name)


def _set(model, name, array):
    _init(model, name).CopyFrom(numpy_helper.from_array(np.asarray(array), name))


def _users(model, tensor):
    """Every Q/DQ node reading ``tensor`` (onnxruntime shares one scale/zero point between a Q and its DQ)."""
    return {n.name for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and tensor in n.input[1:]}


def _activation_q(model):
    """The first QuantizeLinear of an activation (not of a weight initializer)."""
    inits = {t.name for t in model.graph.initializer}
    return next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in inits)


def _weight_dq(model):
    inits = {t.name for t in model.graph.initializer}
    weight_q = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in inits}
    return next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weight_q)


def plant_uint8(m):
    node = _activation_q(m)
    _set(m, node.input[2], np.uint8(128))
    return _users(m, node.input[2])


def plant_nonzero_zero_point(m):
    node = _activation_q(m)
    _set(m, node.input[2], np.int8(3))
    return _users(m, node.input[2])


def plant_missing_zero_point(m):
    node = _activation_q(m)
    del node.input[2]
    return {node.name}


def plant_negative_scale(m):
    node = _activation_q(m)
    _set(m, node.input[1], np.float32(-0.1))
    return _users(m, node.input[1])


def plant_per_channel_activation(m):
    node = _activation_q(m)
    _set(m, node.input[1], np.full(3, 0.01, np.float32))
    _set(m, node.input[2], np.zeros(3, np.int8))
    users = _users(m, node.input[1])
    for user in (n for n in m.graph.node if n.name in users):
        user.attribute.append(helper.make_attribute("axis", 1))
    return users


def plant_per_channel_axis(m):
    """Axis 1 of a (4, 3, 3, 3) weight has 3 channels, not the 4 scales."""
    node = _weight_dq(m)
    for attr in node.attribute:
        if attr.name == "axis":
            attr.i = 1
    return {node.name}


def plant_int32_bias(m):
    m.graph.initializer.extend([numpy_helper.from_array(np.arange(4, dtype=np.int32), "bias_q"),
                                numpy_helper.from_array(np.float32(0.01), "bias_s"),
                                numpy_helper.from_array(np.int32(0), "bias_zp")])
    m.graph.node.append(helper.make_node("DequantizeLinear", ["bias_q", "bias_s", "bias_zp"], ["bias_f"],
                                         name="planted_bias_DequantizeLinear"))
    return {"planted_bias_DequantizeLinear"}


def plant_opset_18(m):
    m.opset_import[0].version = 18
    return {"<model>"}


@pytest.mark.parametrize("plant, rule", [
    (plant_uint8, "uint8"), (plant_nonzero_zero_point, "zero_point_nonzero"),
    (plant_missing_zero_point, "zero_point_missing"), (plant_negative_scale, "scale_invalid"),
    (plant_per_channel_activation, "per_channel_activation"), (plant_per_channel_axis, "per_channel_size"),
    (plant_int32_bias, "int32_bias"), (plant_opset_18, "opset"),
])
def test_planted_violation_is_caught_and_named(clean_qdq, plant, rule):
    assert check_qdq_trt85(clean_qdq) == []
    model = onnx.ModelProto()
    model.CopyFrom(clean_qdq)
    nodes = plant(model)
    violations = check_qdq_trt85(model)
    assert sorted((v.node, v.rule) for v in violations) == sorted((n, rule) for n in nodes)
    with pytest.raises(ModelError) as err:
        assert_qdq_trt85(model, source="model.int8.qdq.onnx")
    assert all(n in str(err.value) for n in nodes) and rule in str(err.value)
    assert "model.int8.qdq.onnx" in str(err.value)


def test_every_offender_listed(clean_qdq, tmp_path):
    model = onnx.ModelProto()
    model.CopyFrom(clean_qdq)
    names = plant_uint8(model) | plant_opset_18(model) | plant_per_channel_axis(model)
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ModelError) as err:
        assert_qdq_trt85(path)
    assert all(name in str(err.value) for name in names) and f"{len(names)} node(s)" in str(err.value)


def test_missing_file_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        check_qdq_trt85(tmp_path / "nope.onnx")


# --- rules added/fixed against onnx-tensorrt 8.5's QuantDequantLinearHelper (docs/tensorrt.md) ---------
def _rules(model):
    return {(v.node, v.rule) for v in check_qdq_trt85(model)}


W = {"W_QuantizeLinear", "W_DequantizeLinear"}


def test_hand_built_model_is_clean():
    assert _rules(qdq_conv_model()) == set()


@pytest.mark.parametrize("kwargs, rule", [
    # (A) scale size != zero-point size (parser :1253)
    ({"w_zp": np.zeros(2, np.int8)}, "scale_zero_point_size"),
    # (B) per-channel scale count != the input's size on the axis (parser :1273)
    ({"w_scale": np.full(3, 0.01, np.float32)}, "per_channel_size"),
    # (C) a scale of rank 2 (IQuantizeLayer/IDequantizeLayer take scalar or 1-D)
    ({"w_scale": np.full((4, 1), 0.01, np.float32), "w_zp": np.zeros((4, 1), np.int8)}, "scale_rank"),
    # axis outside [-rank, rank] (convertAxis)
    ({"w_axis": 5}, "axis_range"),
])
def test_new_rules(kwargs, rule):
    assert _rules(qdq_conv_model(**kwargs)) == {(n, rule) for n in W}


def test_com_microsoft_qdq_is_checked():
    """(D) 8.5 imports Q/DQ by op_type alone, so retagging the domain must not hide a bad zero point."""
    model = qdq_conv_model(domain="com.microsoft", act_zp=np.int8(3))
    assert _rules(model) == {("x_QuantizeLinear", "zero_point_nonzero"), ("x_DequantizeLinear", "zero_point_nonzero")}


def test_any_axis_whose_size_matches_is_accepted():
    """Axis 1 with 6 scales on a (4, 6, 3, 3) weight: 8.5 accepts it (the old rule said axis 0 only)."""
    assert _rules(qdq_conv_model(w_shape=(4, 6, 3, 3), w_scale=np.full(6, 0.01, np.float32), w_axis=1)) == set()
    assert _rules(qdq_conv_model(w_shape=(4, 6, 3, 3), w_scale=np.full(6, 0.01, np.float32), w_axis=-3)) == set()


def test_absent_axis_is_axis_0_for_trt_and_reported():
    """8.5 reads axis 0 when the attribute is absent; ONNX's default is 1: the model means two things."""
    fits_0 = _rules(qdq_conv_model(w_axis=None))  # 4 scales, W (4, 3, 3, 3): fits axis 0 only
    assert fits_0 == {(n, "per_channel_axis_absent") for n in W}
    fits_1 = _rules(qdq_conv_model(w_shape=(4, 6, 3, 3), w_scale=np.full(6, 0.01, np.float32), w_axis=None))
    assert fits_1 == {(n, r) for n in W for r in ("per_channel_axis_absent", "per_channel_size")}
    msg = {v.detail for v in check_qdq_trt85(qdq_conv_model(w_axis=None))}
    assert any("fit axis 0" in d for d in msg)


@pytest.mark.parametrize("source", ["constant", "constant_float", "cast"])
def test_constant_scales_are_constants(source):
    """Constant ``value``/``value_floats`` and Constant -> Cast -> Q scales are build-time constants."""
    assert _rules(qdq_conv_model(scale_source=source)) == set()
    bad = _rules(qdq_conv_model(scale_source=source, w_scale=np.full(4, -0.01, np.float32)))
    assert bad == {(n, "scale_invalid") for n in W}


def test_scalar_value_float_scale():
    model = qdq_conv_model(scale_source="constant_float", w_scale=np.float32(0.02), w_zp=np.int8(0))
    assert _rules(model) == set()
