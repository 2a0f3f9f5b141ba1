"""Engines for real deploy bundles (Bundle.open on a bundle written like edgekit export writes one)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.core.errors import ConfigError, ModelError
from edgekit.deploy.bundle import Bundle
from edgekit.deploy.tensorrt import EngineBuildOptions, build_from_bundle, find_engine, read_sidecar
from edgekit.deploy.tensorrt.from_bundle import bundle_build_inputs
from tests.deploy.bundles import write_test_bundle


@pytest.fixture
def bundle(tmp_path) -> Bundle:
    return Bundle.open(write_test_bundle(tmp_path / "bundle", imgsz=32))


def _opts(**kw) -> EngineBuildOptions:
    kw.setdefault("timing_cache", "")
    return EngineBuildOptions(**kw)


def test_build_into_the_engine_cache_then_find_and_reuse(bundle, fake_trt):
    fake_trt("8.5.2.2")
    assert find_engine(bundle, _opts(precision="fp16")) is None
    result = build_from_bundle(bundle, _opts(precision="fp16"))
    assert result.plan_path.parent == bundle.engine_cache_dir and not result.reused
    assert read_sidecar(result.plan_path).shapes == {"images": [[1, 3, 32, 32]] * 3}  # from engine_profile
    assert find_engine(bundle, _opts(precision="fp16")) == result.plan_path
    assert find_engine(bundle, _opts(precision="fp16", workspace_mb=64)) is None  # another key
    assert build_from_bundle(bundle, _opts(precision="fp16")).reused


def test_bundle_detector_runs_on_the_tensorrt_backend(bundle, fake_trt):
    fake_trt("10.3.0.26")
    detector = bundle.detector(backend="tensorrt", precision="fp16", timing_cache="")
    frame = np.full((48, 64, 3), 127, np.uint8)
    with detector:
        detector(frame)
    assert find_engine(bundle, _opts(precision="fp16")) is not None


def test_int8_auto_picks_the_graph_and_cache(tmp_path):
    calib = SimpleNamespace(cache=tmp_path / "c.cache", trt_algorithm="EntropyCalibration2", model_role="fp32")
    fake = SimpleNamespace(root=tmp_path, roles=["fp32", "int8_qdq"], calibration=calib,
                           model_path=lambda role: tmp_path / f"{role}.onnx",
                           engine_profile=lambda role: {"images": ((1, 3, 32, 32),) * 3})
    onnx, resolved, cache = bundle_build_inputs(fake, _opts(precision="int8"), 8)
    assert (onnx.name, resolved.int8_source, cache) == ("int8_qdq.onnx", "qdq", None)
    onnx, resolved, cache = bundle_build_inputs(fake, _opts(precision="int8", dla_core=0), 8)  # 8.x DLA: the cache
    assert (onnx.name, resolved.int8_source, cache, resolved.calib_algorithm) == \
        ("fp32.onnx", "calib-cache", calib.cache, "EntropyCalibration2")
    onnx, resolved, _ = bundle_build_inputs(fake, _opts(precision="int8", dla_core=0), 10)  # 10 DLA takes Q/DQ
    assert resolved.int8_source == "qdq"
    with pytest.raises(ConfigError, match="removed INT8 calibration"):
        bundle_build_inputs(fake, _opts(precision="int8", int8_source="calib-cache"), 11)
    no_qdq = SimpleNamespace(**{**vars(fake), "roles": ["fp32"], "calibration": None})
    with pytest.raises(ConfigError, match="ships no calibration cache"):
        bundle_build_inputs(no_qdq, _opts(precision="int8"), 8)
    with pytest.raises(ModelError, match="has no 'int8_qdq' model.*--int8"):
        bundle_build_inputs(no_qdq, _opts(precision="int8", int8_source="qdq"), 8)


def test_tampered_bundle_is_refused_before_any_build(tmp_path, fake_trt):
    root = write_test_bundle(tmp_path / "b", imgsz=32)
    with open(root / "model.onnx", "ab") as f:
        f.write(b"x")
    with pytest.raises(ModelError, match="model.onnx"):
        Bundle.open(root)
