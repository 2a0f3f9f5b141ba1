"""TensorRT calibration cache format, host-computed caches, and the sidecar that refuses stale reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.calib.cache import (
    CacheSidecar,
    hex_to_scale,
    read_cache,
    scale_to_hex,
    sidecar_path,
    trt_version_int,
    verify_cache,
    write_cache,
    write_calibration_cache,
    write_sidecar,
)
from edgekit.core.errors import CalibrationError
from edgekit.core.manifest import file_sha256


@pytest.mark.parametrize("scale, hex_text", [(0.0078125, "3c000000"), (1.0, "3f800000"), (2.0 / 127, "3c810204")])
def test_scale_hex_is_big_endian_float32(scale, hex_text):
    assert scale_to_hex(scale) == hex_text
    assert hex_to_scale(hex_text) == np.float32(scale)


@pytest.mark.parametrize("version, expected", [("8.5.2.2", "8502"), ("8.6.1", "8601"), ("10.3.0.26", "100300"),
                                               ("11.4.0.106", "110400")])
def test_trt_version_int(version, expected):
    assert trt_version_int(version) == expected


def test_round_trip(tmp_path):
    scales = {"images": 0.0078125, "/model.0/conv/Conv_output_0": 0.123, "x: y": 3.5e-4}
    path = write_cache(tmp_path / "m.cache", "8502", "EntropyCalibration2", scales)
    text = path.read_text()
    assert text.splitlines()[:2] == ["TRT-8502-EntropyCalibration2", "images: 3c000000"]
    cache = read_cache(path)
    assert (cache.header, cache.trt_version, cache.algorithm) == ("TRT-8502-EntropyCalibration2", "8502",
                                                                  "EntropyCalibration2")
    assert cache.scales == {k: float(np.float32(v)) for k, v in scales.items()}


@pytest.mark.parametrize("text, match", [("", "header"), ("TRT-8502\nimages: 3c000000\n", "header"),
                                         ("TRT-8502-MinMaxCalibration\nimages 3c000000\n", "malformed")])
def test_malformed_cache_refused(tmp_path, text, match):
    path = tmp_path / "bad.cache"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        read_cache(path)


def _sidecar(**over):
    fields = dict(trt_version="8502", cache_header="TRT-8502-MinMaxCalibration", onnx_sha256="1234" * 16,
                  calib_data_hash="ab" * 32, method="minmax", imgsz=(320, 320), batch=1, n_images=32,
                  created_utc="2026-11-21T00:00:00+00:00")
    fields.update(over)
    return CacheSidecar(**fields)


@pytest.fixture
def cache_with_sidecar(tmp_path):
    path = write_cache(tmp_path / "model.minmax.calib.cache", "8502", "MinMaxCalibration", {"images": 0.0078125})
    write_sidecar(path, _sidecar())
    return path


def test_matching_sidecar_accepted(cache_with_sidecar):
    expected = _sidecar(created_utc="later").model_dump()
    assert verify_cache(cache_with_sidecar, expected).onnx_sha256 == "1234" * 16
    assert verify_cache(cache_with_sidecar, {"onnx_sha256": "1234" * 16}).batch == 1  # partial expectations


@pytest.mark.parametrize("field, value", [
    ("onnx_sha256", "abcd" * 16), ("calib_data_hash", "cd" * 32), ("trt_version", "100300"),
    ("imgsz", (640, 640)), ("batch", 8), ("method", "entropy"), ("n_images", 4),
    ("cache_header", "TRT-8502-EntropyCalibration2"),
])
def test_each_mismatching_field_refused_by_name(cache_with_sidecar, field, value):
    expected = _sidecar().model_dump()
    expected[field] = value
    with pytest.raises(CalibrationError) as err:
        verify_cache(cache_with_sidecar, expected)
    message = str(err.value)
    assert str(cache_with_sidecar) in message and field.replace("_", " ") in message
    assert "delete it or re-run calibration" in message


def test_onnx_mismatch_message_reads_well(cache_with_sidecar):
    with pytest.raises(CalibrationError, match=r"was made for onnx sha256 123412341234\.\.\., this build has "
                                               r"abcdabcdabcd\.\.\."):
        verify_cache(cache_with_sidecar, {"onnx_sha256": "abcd" * 16})


def test_missing_sidecar_refused(cache_with_sidecar):
    sidecar_path(cache_with_sidecar).unlink()
    with pytest.raises(CalibrationError, match="has no sidecar"):
        verify_cache(cache_with_sidecar, {})


def test_cache_overwritten_by_another_tool_refused(cache_with_sidecar):
    write_cache(cache_with_sidecar, "8502", "EntropyCalibration2", {"images": 0.01})
    with pytest.raises(CalibrationError, match="header is TRT-8502-EntropyCalibration2"):
        verify_cache(cache_with_sidecar, {})


@pytest.mark.parametrize("method, algorithm", [("minmax", "MinMaxCalibration"), ("entropy", "EntropyCalibration2")])
def test_host_cache_from_onnxruntime_ranges(tmp_path, tiny_onnx, tiny_calib, method, algorithm):
    cache_path, side_path = write_calibration_cache(tiny_onnx, tiny_calib, method, tmp_path, imgsz=16, batch=1)
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
