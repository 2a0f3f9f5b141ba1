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


def test_uint8_input_engine_takes_letterboxed_frames_and_detects_the_same(bundle, fake_trt):
    fake_trt("8.5.2.2")
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with bundle.detector(backend="tensorrt", precision="fp16", timing_cache="") as plain:
        want_raw = plain.infer(plain.prepare(frame)[0])
    with bundle.detector(backend="tensorrt", precision="fp16", timing_cache="", uint8_input=True) as det:
        meta = det.runner.input_metadata()["images_u8"]
        assert meta.shape == (1, 32, 32, 3) and meta.dtype == np.uint8
        feed, _ = det.prepare(frame)
        got_raw = det.infer(feed)
    np.testing.assert_allclose(got_raw["output0"], want_raw["output0"], rtol=1e-5, atol=1e-5)
    variant = bundle.engine_cache_dir / "model_u8.onnx"
    assert variant.is_file() and find_engine(bundle, _opts(precision="fp16"), uint8_input=True) is not None
    assert read_sidecar(find_engine(bundle, _opts(precision="fp16"), uint8_input=True)).shapes == \
        {"images_u8": [[1, 32, 32, 3]] * 3}
    with pytest.raises(ConfigError, match="uint8-input graph cannot use a calibration cache"):
        bundle_build_inputs(bundle, _opts(precision="int8", int8_source="calib-cache"), 8, have_images=True,
                            uint8_input=True)


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
