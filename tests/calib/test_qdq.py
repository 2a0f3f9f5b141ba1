"""Q/DQ quantization with onnxruntime: TRT-profile output meets TRT 8.5's rules, and on a real
yolov8n-obb graph the default exclusions keep the head decode in float and INT8 close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fakes.onnx_graphs import save, tiny_conv_model

from edgekit.calib import qdq as qdq_module
from edgekit.calib.qdq import default_excluded_nodes, head_prefix, quantize_qdq
from edgekit.calib.qdq_check import check_qdq_trt85
from edgekit.core.errors import ConfigError, ModelError


@pytest.mark.parametrize("method", ["minmax", "entropy", "percentile"])
def test_trt_profile_passes_the_trt85_checker(tmp_path, tiny_onnx, tiny_calib, method):
    result = quantize_qdq(tiny_onnx, tmp_path / "q.onnx", tiny_calib, method=method, exclude_nodes=[])
    assert result.path.is_file() and (result.method, result.profile, result.n_calib) == (method, "trt", 8)
    assert check_qdq_trt85(result.path) == []
    ops = [n.op_type for n in onnx.load(str(result.path)).graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 4


def test_cpu_profile_is_u8s8_and_not_for_trt(tmp_path, tiny_onnx, tiny_calib):
    result = quantize_qdq(tiny_onnx, tmp_path / "q.onnx", tiny_calib, profile="cpu", exclude_nodes=[])
    rules = {v.rule for v in check_qdq_trt85(result.path)}
    assert "uint8" in rules  # asymmetric uint8 activations: fast on CPU, rejected by TRT 8.5


def test_default_exclusion_needs_a_recognisable_head(tmp_path, tiny_calib):
    model = tiny_conv_model()
    for node in model.graph.node:
        node.name = node.name.replace("/model.", "/layer")
    path = save(model, tmp_path / "anon.onnx")
    with pytest.raises(ModelError, match="cannot find the detection head"):
        quantize_qdq(path, tmp_path / "q.onnx", tiny_calib)
    assert not (tmp_path / "q.onnx").exists()


def test_head_prefix_is_the_last_module(tiny_onnx):
    assert head_prefix(tiny_onnx) == "/model.1/"
    assert default_excluded_nodes(tiny_onnx, "decode") == ["/model.1/Sigmoid"]
    head = default_excluded_nodes(tiny_onnx)  # default scope: the whole head stays float
    assert "/model.1/Sigmoid" in head and all(n.startswith("/model.1/") for n in head)
    assert len(head) > 1


@pytest.mark.parametrize("kwargs, error", [({"method": "kl"}, ConfigError), ({"profile": "gpu"}, ConfigError)])
def test_bad_arguments(tmp_path, tiny_onnx, tiny_calib, kwargs, error):
    with pytest.raises(error):
        quantize_qdq(tiny_onnx, tmp_path / "q.onnx", tiny_calib, **kwargs)


def test_failed_check_leaves_no_file(tmp_path, tiny_onnx, tiny_calib, monkeypatch):
    import edgekit.calib.qdq_check as checker

    def reject(path, source=None):
        raise ModelError(f"{source} rejected")

    monkeypatch.setattr(checker, "assert_qdq_trt85", reject)
    with pytest.raises(ModelError, match="q.onnx rejected"):
        quantize_qdq(tiny_onnx, tmp_path / "q.onnx", tiny_calib, exclude_nodes=[])
    assert list(tmp_path.iterdir()) == []
    assert qdq_module.QdqResult  # module import kept for monkeypatch target clarity


# ---- real yolov8n-obb ------------------------------------------------------------------------------
def _errors(fp32_path, int8_path, calib):
    """Mean |INT8 - FP32| per output group: boxes (px), class scores, angle (rad)."""
    ref, got = ort.InferenceSession(str(fp32_path)), ort.InferenceSession(str(int8_path))
    diffs = []
    for x in calib.batches(1):
        a, b = ref.run(None, {"images": x})[0], got.run(None, {"images": x})[0]
        d = np.abs(a - b)
        diffs.append((d[:, :4].mean(), d[:, 4:-1].mean(), d[:, -1].mean()))
    return np.mean(diffs, axis=0)


@pytest.fixture(scope="module")
def obb_int8(tmp_path_factory, obb_onnx, obb_calib):
    out = tmp_path_factory.mktemp("obb_q")
    decode = quantize_qdq(obb_onnx, out / "decode.onnx", obb_calib, method="minmax", float_scope="decode")
    whole = quantize_qdq(obb_onnx, out / "whole.onnx", obb_calib, method="minmax", exclude_nodes=[])
    return decode, whole


def test_obb_default_scope_keeps_the_whole_head_float(obb_onnx):
    head = [n.name for n in onnx.load(str(obb_onnx)).graph.node if n.name.startswith("/model.22/")]
    assert default_excluded_nodes(obb_onnx) == head
    assert set(default_excluded_nodes(obb_onnx, "decode")) < set(head)


def test_obb_decode_scope_keeps_head_decode_in_float(obb_onnx, obb_int8):
    default, _ = obb_int8
    excluded = set(default.excluded_nodes)
    fp32_head = [n for n in onnx.load(str(obb_onnx)).graph.node if n.name.startswith("/model.22/")]
    assert excluded == {n.name for n in fp32_head if n.op_type != "Conv"} | {"/model.22/dfl/conv/Conv"}
    assert {"/model.22/dfl/Softmax", "/model.22/Sigmoid", "/model.22/Concat_2"} <= excluded
    graph = onnx.load(str(default.path)).graph
    produced_by = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for node in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        producer = produced_by.get(node.input[0])
        if producer is None or producer.name not in excluded:
            continue
        # The only float head tensors quantized are SiLU outputs entering the head's next Conv.
        dequant = consumers[node.output[0]]
        assert "/act/" in producer.name, f"{node.name} quantizes decode tensor {producer.name}"
        assert {c.op_type for d in dequant for c in consumers[d.output[0]]} == {"Conv"}, node.name
    assert produced_by[graph.output[0].name].op_type not in ("DequantizeLinear", "QuantizeLinear")
    assert check_qdq_trt85(default.path) == []


def test_obb_int8_close_to_fp32_and_whole_graph_collapses(obb_onnx, obb_calib, obb_int8):
    default, whole = obb_int8
    box_d, score_d, angle_d = _errors(obb_onnx, default.path, obb_calib)
    box_w, score_w, angle_w = _errors(obb_onnx, whole.path, obb_calib)
    # Scores live in 0..1 next to pixel coordinates in one tensor: one int8 scale for both zeroes them.
    assert score_d < 0.15 and score_w > 0.3, (score_d, score_w)
    assert angle_d < 0.5 * angle_w, (angle_d, angle_w)
    assert box_d <= box_w * 1.05, (box_d, box_w)


def test_entropy_is_not_minmax_in_disguise(tmp_path, obb_onnx, obb_calib):
    """onnxruntime's entropy calibrator with its default 128 bins returns exactly the MinMax ranges."""
    import onnx
    from onnx import numpy_helper

    def act_scales(method):
        out = quantize_qdq(obb_onnx, tmp_path / f"{method}.onnx", obb_calib, method=method)
        m = onnx.load(str(out.path))
        inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        return [float(inits[n.input[1]].ravel()[0]) for n in m.graph.node
                if n.op_type == "QuantizeLinear" and inits[n.input[1]].size == 1]

    assert act_scales("entropy") != act_scales("minmax")
