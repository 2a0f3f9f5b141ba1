"""edgekit's Q/DQ checker is at least as strict as TensorRT 8.5.2's ONNX parser (re-implemented from the
parser's source in tests/fakes/trt85_onnx_parser_rules.py): whatever the checker passes, the parser
rules pass; the onnxruntime "cpu" profile (uint8, asymmetric, int32 bias) fails both."""

from __future__ import annotations

import random

import numpy as np
import onnx
import pytest

from edgekit.calib.qdq import quantize_qdq
from edgekit.calib.qdq_check import check_qdq_trt85
from tests.fakes.onnx_graphs import qdq_conv_model
from tests.fakes.trt85_onnx_parser_rules import first_qdq_error

SHAPES = [(4, 3, 3, 3), (4, 6, 3, 3), (6, 4, 1, 1)]
ZP_TYPES = [np.int8, np.int8, np.int8, np.uint8, np.int32, np.int16]


def _variant(rng: random.Random) -> dict:
    """One Q/DQ model's knobs; each knob is valid most of the time, so both outcomes are common."""
    def pick(good, bad, p_bad=0.12):
        return rng.choice(bad) if rng.random() < p_bad else rng.choice(good)

    w_shape = rng.choice(SHAPES)
    axis = pick([0, 0, -4, None], [1, -3, 4, 5, -5])
    count = pick([w_shape[0]], [None, 1, w_shape[1], 3, 0])
    scale = np.float32(0.01) if count is None else np.full(count, 0.01, np.float32)
    if count and count > 1 and rng.random() < 0.08:
        scale = scale.reshape(count, 1)
    if scale.size and rng.random() < 0.08:
        scale.reshape(-1)[rng.randrange(scale.size)] = rng.choice([-0.01, 0.0])
    zp = np.zeros(scale.shape if rng.random() < 0.9 else (rng.choice([1, 2, w_shape[0]]),),
                  pick([np.int8], [np.uint8, np.int32, np.int16]))
    if zp.size and rng.random() < 0.08:
        zp.reshape(-1)[0] = 3
    return {
        "w_shape": w_shape, "w_scale": scale, "w_zp": "missing" if rng.random() < 0.04 else zp, "w_axis": axis,
        "act_scale": pick([0.02], [-0.02, 0.0], 0.08),
        "act_zp": pick([np.int8(0)], [np.int8(3), np.uint8(0), np.uint8(128), np.int32(0)]),
        "domain": rng.choice(["", "", "com.microsoft"]),
        "scale_source": rng.choice(["initializer", "initializer", "constant", "constant_float", "cast"]),
    }


def test_checker_pass_implies_parser_pass() -> None:
    rng = random.Random(20261129)
    passed = rejected_by_parser = 0
    for i in range(400):
        kwargs = _variant(rng)
        model = qdq_conv_model(**kwargs)
        violations = check_qdq_trt85(model)
        error = first_qdq_error(model)
        if not violations:
            passed += 1
            assert error is None, f"variant {i} {kwargs}: edgekit passes, 8.5's parser says {error.message}"
        rejected_by_parser += error is not None
    # The generator must exercise both sides, or the property proves nothing.
    assert passed >= 40 and rejected_by_parser >= 100, (passed, rejected_by_parser)


@pytest.mark.parametrize("kwargs, text", [
    ({"w_zp": np.zeros(2, np.int8)}, "The scale and zero-point must have the same size"),
    ({"w_scale": np.full(3, 0.01, np.float32)}, "The number of scales is not equal to the number of output channels"),
    ({"w_axis": 5}, "Axis must be in the range [0, nbDims]"),
    ({"act_zp": np.int8(3), "domain": "com.microsoft"}, "zeroPt must be all zeros"),
    ({"act_scale": -0.02}, "Scale coefficients must all be positive"),
    ({"w_zp": "missing"}, "requires 3 inputs"),
    ({"w_zp": np.zeros(4, np.int16)}, "Failed to import initializer"),
])
def test_parser_rules_and_checker_agree_on_planted_errors(kwargs, text) -> None:
    model = qdq_conv_model(**kwargs)
    error = first_qdq_error(model)
    assert error is not None and text in error.message
    assert check_qdq_trt85(model)


def test_parser_stops_at_the_first_bad_node_in_topological_order() -> None:
    model = qdq_conv_model(act_zp=np.int8(3), w_zp=np.zeros(2, np.int8))
    nodes = list(model.graph.node)
    model.graph.ClearField("node")
    model.graph.node.extend(nodes[::-1])  # reversed: the parser still imports producers first
    error = first_qdq_error(model)
    assert error.name == "x_QuantizeLinear" and error.node == len(nodes) - 1 - 0
    assert error.message.startswith(f"In node {error.node} (QuantDequantLinearHelper): INVALID_NODE: ")
    assert len([v for v in check_qdq_trt85(model)]) >= 4  # edgekit lists every offender


def test_axis_rules_match_the_parser() -> None:
    """Any axis whose size matches parses; an absent axis is axis 0 for 8.5."""
    six = np.full(6, 0.01, np.float32)
    assert first_qdq_error(qdq_conv_model(w_shape=(4, 6, 3, 3), w_scale=six, w_axis=1)) is None
    assert first_qdq_error(qdq_conv_model(w_axis=None)) is None  # 4 scales fit axis 0
    assert first_qdq_error(qdq_conv_model(w_shape=(4, 6, 3, 3), w_scale=six, w_axis=None)) is not None


def test_cpu_profile_fails_both(tmp_path, tiny_onnx, tiny_calib) -> None:
    """onnxruntime's default "cpu" settings (uint8 asymmetric activations, int32 bias) are refused by both."""
    out = quantize_qdq(tiny_onnx, tmp_path / "cpu.onnx", tiny_calib, profile="cpu", exclude_nodes=[])
    model = onnx.load(str(out.path))
    rules = {v.rule for v in check_qdq_trt85(model)}
    assert {"uint8", "int32_bias"} <= rules
    # onnxruntime's bias DequantizeLinear reads int32: IDequantizeLayer takes INT8 only (NvInfer.h).
    error = first_qdq_error(model)
    assert error is not None and "Failed to create Dequantize layer" in error.message, error
