"""The INT8 step of export: entropy ranges computed once for Q/DQ and cache; TRT 8.5 rules bind only Xavier NX."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import numpy_helper


def test_entropy_export_computes_ranges_once_and_cache_matches_qdq(obb_run_dir, tmp_path, monkeypatch):
    import edgekit.calib.ranges as ranges_mod
    from edgekit.calib.cache import read_cache
    from edgekit.export import ExportOptions, export_model

    monkeypatch.setattr(ranges_mod, "ENTROPY_BINS", 128 * 2)  # keeps the threshold search quick; still entropy
    calls = []
    real = ranges_mod.host_activation_ranges

    def counting(onnx_path, calib, method, batch, **kwargs):
        calls.append(method)
        return real(onnx_path, calib, method, batch, **kwargs)

    monkeypatch.setattr(ranges_mod, "host_activation_ranges", counting)
    out = tmp_path / "bundle"
    export_model(ExportOptions(source=obb_run_dir, out=out, int8=True, calib_method="entropy", calib_size=8,
                               val_size=2, target="x86"))
    assert calls == ["entropy"]  # once, not once for quantize_qdq and again for the calibration cache

    cache = read_cache(out / "model.entropy.calib.cache")
    assert cache.algorithm == "EntropyCalibration2"
    assert json.loads((out / "model.entropy.calib.cache.json").read_text())["method"] == "entropy"
    # The cache's scales are the Q/DQ model's activation scales (symmetric int8: scale = range / 127).
    qdq = onnx.load(str(out / "model.int8.qdq.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in qdq.graph.initializer}
    producer = {o: n.op_type for n in qdq.graph.node for o in n.output}
    tied = {"Split", "Concat", "MaxPool", "Resize", "Reshape", "Transpose", "Slice"}  # onnxruntime ties their scales
    shared = 0
    for node in qdq.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in cache.scales and producer.get(node.input[0]) not in tied:
            np.testing.assert_allclose(float(inits[node.input[1]]), cache.scales[node.input[0]], rtol=1e-5)
            shared += 1
    assert shared > 10


def test_x86_int8_export_at_opset_18_is_not_held_to_trt85(obb_run_dir, tmp_path):
    """--target x86 (TensorRT 10/11) may use opset 18; only jetson-xavier-nx applies TRT 8.5's opset <= 17."""
    from edgekit.export import ExportOptions, export_model

    out = tmp_path / "bundle"
    result = export_model(ExportOptions(source=obb_run_dir, out=out, int8=True, calib_size=8, val_size=2,
                                        target="x86", opset=18))
    assert result.report["onnx"]["opset"] == 18
    imports = onnx.load(str(out / "model.int8.qdq.onnx")).opset_import
    assert max(i.version for i in imports if i.domain in ("", "ai.onnx")) >= 18
    assert result.report["int8"]["trt85_violations"] >= 1  # recorded, not fatal, for x86


def test_percentile_export_ships_a_minmax_cache_and_says_so(obb_run_dir, tmp_path):
    """TensorRT has no percentile calibrator: the manifest names the MinMax cache it really ships, and an
    x86 export on a host without TensorRT claims no TensorRT version (header 0: the device recalibrates)."""
    from edgekit.calib.cache import read_cache
    from edgekit.core.manifest import load_manifest
    from edgekit.export import ExportOptions, export_model
    from edgekit.export.stages import target_trt_version

    out = tmp_path / "bundle"
    result = export_model(ExportOptions(source=obb_run_dir, out=out, int8=True, calib_method="percentile",
                                        calib_size=8, val_size=2, target="x86"))
    calibration = load_manifest(out).calibration
    assert (calibration.method, calibration.trt_algorithm) == ("minmax", "MinMaxCalibration")
    assert result.report["int8"]["method"] == "percentile" and calibration.cache == "model.minmax.calib.cache"
    version, _ = target_trt_version("x86")
    header = read_cache(out / calibration.cache).header
    if version == "0":
        assert header == "TRT-0-MinMaxCalibration" and calibration.trt_version == "0"
    assert target_trt_version("jetson-xavier-nx") == ("8.5.2", "the jetson-xavier-nx target")
