"""TensorRT calibration cache format, host-computed caches, and the sidecar that refuses stale reuse."""

from __future__ import annotations

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
    write_cache_with_sidecar,
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


@pytest.mark.parametrize("version, header", [("8.5.2", "TRT-8502-MinMaxCalibration"),
                                             ("100300", "TRT-100300-MinMaxCalibration")])
def test_cache_with_sidecar_carries_the_given_tensorrt_version(tmp_path, version, header):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"graph")
    cache, side = write_cache_with_sidecar(onnx_file, {"images": 0.01}, "minmax", tmp_path, 64, 1,
                                           trt_version=version, calib_data_hash="ab" * 32, n_images=8)
    assert read_cache(cache).header == header and cache.name == "m.minmax.calib.cache"
    assert verify_cache(cache, {"trt_version": header.split("-")[1], "onnx_sha256": file_sha256(onnx_file)})
    with pytest.raises(TypeError):  # no default version: a cache for the wrong TensorRT is silently skipped
        write_cache_with_sidecar(onnx_file, {"images": 0.01}, "minmax", tmp_path, 64, 1,  # type: ignore[call-arg]
                                 calib_data_hash="ab" * 32, n_images=8)
    with pytest.raises(CalibrationError, match="not like 8.5.2"):
        write_cache_with_sidecar(onnx_file, {"images": 0.01}, "minmax", tmp_path, 64, 1, trt_version="latest",
                                 calib_data_hash="ab" * 32, n_images=8)
