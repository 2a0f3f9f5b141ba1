"""build_engine against fake TensorRT 8.5 / 10 / 11 modules (removed APIs raise), plus a real-TRT test.

The fakes record every call, so these tests pin the version-dependent behaviour: EXPLICIT_BATCH on
8.x only, STRONGLY_TYPED and no precision flags on 11, a calibrator on 8.5/10 INT8 and Q/DQ on 11,
DLA settings, optimization profiles, parser errors named by node, atomic plain plans + sidecars.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/fakes importable as `fakes`

from fakes.fake_cuda import HostCudaMemory  # noqa: E402
from fakes.fake_tensorrt import make_fake_tensorrt  # noqa: E402
from fakes.onnx_graphs import save, tiny_conv_model, write_images  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from edgekit.core.errors import ConfigError, ModelError  # noqa: E402
from edgekit.core.letterbox import LetterboxSpec  # noqa: E402
from edgekit.export.tensorrt_build import (  # noqa: E402
    EngineBuildOptions,
    build_engine,
    engine_key,
    tensorrt_available,
)

V85, V10, V11 = "8.5.2.2", "10.3.0.26", "11.4.0.106"
ALL = [V85, V10, V11]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {"static": save(tiny_conv_model(), d / "tiny.onnx"),
            "dynamic": save(tiny_conv_model(dynamic=True), d / "dyn.onnx"),
            "unsupported": save(tiny_conv_model(unsupported=True), d / "bad.onnx")}


@pytest.fixture(scope="module")
def qdq_onnx(tmp_path_factory, onnx_files, calib):
    from edgekit.calib.qdq import quantize_qdq

    return quantize_qdq(onnx_files["static"], tmp_path_factory.mktemp("q") / "q.onnx", calib, exclude_nodes=[]).path


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    from edgekit.calib.dataset import CalibrationSet

    folder = tmp_path_factory.mktemp("imgs")
    write_images(folder, 8)
    return CalibrationSet.from_dir(folder, LetterboxSpec(imgsz=16), size=8)


def _fake(version, dla=0):
    cuda = HostCudaMemory()
    return make_fake_tensorrt(version, memory=cuda, num_dla_cores=dla), cuda


def _names(trt, call):
    return [c[1:] for c in trt.calls if c[0] == call]


@pytest.mark.parametrize("version, explicit_batch, strongly_typed", [(V85, True, False), (V10, False, False),
                                                                     (V11, False, True)])
def test_fp32_build_uses_the_version_subset(tmp_path, onnx_files, version, explicit_batch, strongly_typed):
    trt, cuda = _fake(version)
    result = build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(precision="fp32", workspace_mb=64),
                          trt_module=trt, cuda=cuda)
    (flags,) = _names(trt, "create_network")[0]
    kinds = trt.NetworkDefinitionCreationFlag.__members__
    assert ("EXPLICIT_BATCH" in kinds and bool(flags & 1 << kinds["EXPLICIT_BATCH"])) == explicit_batch
    assert ("STRONGLY_TYPED" in kinds and bool(flags & 1 << kinds["STRONGLY_TYPED"])) == strongly_typed
    assert _names(trt, "config.set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, 64 << 20)]
    assert _names(trt, "config.set_flag") == []
    plan = result.plan_path.read_bytes()
    assert plan[:1] == b"{" and json.loads(plan)["fake_trt"] == version  # plain plan: no length+JSON prefix
    sidecar = json.loads(result.sidecar_path.read_text())
    assert result.plan_path.name == f"{result.key}.plan" and sidecar["key"] == result.key
    assert (sidecar["trt_version"], sidecar["compute_capability"], sidecar["precision"]) == (version, "sm_72", "fp32")
    assert sidecar["shapes"] == {"images": [[1, 3, 16, 16]] * 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([result.plan_path.name, result.sidecar_path.name])


@pytest.mark.parametrize("version", [V85, V10])
def test_fp16_sets_the_flag_on_85_and_10(tmp_path, onnx_files, version):
    trt, cuda = _fake(version)
    build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(precision="fp16"), trt_module=trt, cuda=cuda)
    assert _names(trt, "config.set_flag") == [(trt.BuilderFlag.FP16,)]


def test_fp16_refused_on_11(tmp_path, onnx_files):
    trt, cuda = _fake(V11)
    with pytest.raises(ConfigError, match="no FP16 builder flag"):
        build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(precision="fp16"), trt_module=trt, cuda=cuda)


@pytest.mark.parametrize("version", [V85, V10])
def test_implicit_int8_attaches_a_calibrator_and_writes_a_guarded_cache(tmp_path, onnx_files, calib, version):
    from edgekit.calib.cache import verify_cache

    trt, cuda = _fake(version)
    cache = tmp_path / "tiny.calib.cache"
    options = EngineBuildOptions(precision="int8", calib_cache=str(cache), calib_batch=2)
    result = build_engine(onnx_files["static"], tmp_path / "engines", options, trt_module=trt, cuda=cuda, calib=calib)
    assert {trt.BuilderFlag.INT8, trt.BuilderFlag.FP16} == {f for (f,) in _names(trt, "config.set_flag")}
    (attached,) = _names(trt, "config.int8_calibrator")[-1:]
    assert isinstance(attached[0], trt.IInt8MinMaxCalibrator)
    assert _names(trt, "calibrated_batches") == [(4,)]
    assert json.loads(result.sidecar_path.read_text())["int8_mode"] == "implicit"
    verify_cache(cache, {"calib_data_hash": calib.data_hash(), "batch": 2, "n_images": 8})
    assert cuda.live == {}  # calibration buffers freed

    trt2, cuda2 = _fake(version)  # rebuild: the verified cache is used, no images needed
    build_engine(onnx_files["static"], tmp_path / "engines", options, trt_module=trt2, cuda=cuda2, force=True)
    assert _names(trt2, "calibrator.read_calibration_cache") == [(True,)]
    assert _names(trt2, "calibrated_batches") == []


def test_int8_on_11_needs_qdq(tmp_path, onnx_files, qdq_onnx):
    trt, cuda = _fake(V11)
    with pytest.raises(ModelError, match="no Q/DQ nodes"):
        build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(precision="int8"), trt_module=trt, cuda=cuda)
    with pytest.raises(ConfigError, match="removed"):
        build_engine(qdq_onnx, tmp_path, EngineBuildOptions(precision="int8", int8_mode="implicit", calib_cache="c"),
                     trt_module=trt, cuda=cuda)
    result = build_engine(qdq_onnx, tmp_path, EngineBuildOptions(precision="int8"), trt_module=trt, cuda=cuda)
    assert _names(trt, "config.set_flag") == [] and _names(trt, "config.int8_calibrator") == []
    assert json.loads(result.sidecar_path.read_text())["int8_mode"] == "explicit"


@pytest.mark.parametrize("version", [V85, V10])
def test_explicit_int8_on_85_and_10_sets_int8_without_calibrator(tmp_path, qdq_onnx, version):
    trt, cuda = _fake(version)
    build_engine(qdq_onnx, tmp_path, EngineBuildOptions(precision="int8", int8_fp16_fallback=False),
                 trt_module=trt, cuda=cuda)
    assert _names(trt, "config.set_flag") == [(trt.BuilderFlag.INT8,)]
    assert _names(trt, "config.int8_calibrator") == []


@pytest.mark.parametrize("gpu_fallback", [True, False])
def test_dla_settings(tmp_path, onnx_files, gpu_fallback):
    trt, cuda = _fake(V85, dla=2)
    options = EngineBuildOptions(precision="fp16", dla_core=1, gpu_fallback=gpu_fallback)
    result = build_engine(onnx_files["static"], tmp_path, options, trt_module=trt, cuda=cuda)
    assert _names(trt, "config.default_device_type") == [(trt.DeviceType.DLA,)]
    assert _names(trt, "config.DLA_core") == [(1,)]
    assert ((trt.BuilderFlag.GPU_FALLBACK,) in _names(trt, "config.set_flag")) == gpu_fallback
    assert "dla1" in result.key


@pytest.mark.parametrize("kwargs, match", [
    ({"precision": "fp32", "dla_core": 0}, "FP16 or INT8 only"),
    ({"precision": "fp16", "dla_core": 0, "profiles": {"images": {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16],
                                                                  "max": [4, 3, 16, 16]}}}, "static shapes only"),
    ({"precision": "int4"}, "precision must be"),
    ({"profiles": {"images": {"min": [2, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [4, 3, 16, 16]}}}, "min <= opt"),
])
def test_invalid_options_refused(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        EngineBuildOptions(**kwargs)


@pytest.mark.parametrize("version, options, match", [
    (V85, {"precision": "fp16", "dla_core": 2}, "has 2 DLA core"),
    (V85, {"precision": "int8", "dla_core": 0, "int8_mode": "explicit"}, "DLA does not take explicit"),
])
def test_dla_refusals(tmp_path, onnx_files, version, options, match):
    trt, cuda = _fake(version, dla=2)
    with pytest.raises(ConfigError, match=match):
        build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(**options), trt_module=trt, cuda=cuda)


@pytest.mark.parametrize("version", ALL)
def test_dynamic_input_needs_and_gets_a_profile(tmp_path, onnx_files, version):
    trt, cuda = _fake(version)
    with pytest.raises(ConfigError, match="input 'images' has dynamic shape"):
        build_engine(onnx_files["dynamic"], tmp_path, EngineBuildOptions(precision="fp32"), trt_module=trt, cuda=cuda)
    profile = {"min": [1, 3, 16, 16], "opt": [2, 3, 32, 32], "max": [4, 3, 64, 64]}
    result = build_engine(onnx_files["dynamic"], tmp_path, EngineBuildOptions(precision="fp32",
                          profiles={"images": profile}), trt_module=trt, cuda=cuda)
    assert _names(trt, "profile.set_shape") == [("images", (1, 3, 16, 16), (2, 3, 32, 32), (4, 3, 64, 64))]
    assert len(_names(trt, "config.add_optimization_profile")) == 1
    assert json.loads(result.sidecar_path.read_text())["shapes"]["images"] == [profile["min"], profile["opt"],
                                                                               profile["max"]]


@pytest.mark.parametrize("version", ALL)
def test_parser_errors_name_the_node(tmp_path, onnx_files, version):
    trt, cuda = _fake(version)
    with pytest.raises(ModelError, match=r"node '/model.1/Sigmoid'.*No importer registered for op: EdgekitUnsupportedOp"):
        build_engine(onnx_files["unsupported"], tmp_path, EngineBuildOptions(precision="fp32"), trt_module=trt,
                     cuda=cuda)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_reuses_an_identical_build_and_keeps_a_timing_cache(tmp_path, onnx_files):
    trt, cuda = _fake(V85)
    timing = tmp_path / "timing.cache"
    options = EngineBuildOptions(precision="fp16", timing_cache=str(timing))
    first = build_engine(onnx_files["static"], tmp_path / "e", options, trt_module=trt, cuda=cuda)
    assert timing.read_bytes().startswith(b"FAKE-TIMING-CACHE") and _names(trt, "config.set_timing_cache") == [(False,)]
    trt2, _ = _fake(V85)
    second = build_engine(onnx_files["static"], tmp_path / "e", options, trt_module=trt2, cuda=cuda)
    assert second == first and _names(trt2, "build_serialized_network") == []
    first.plan_path.write_bytes(b"tampered")
    build_engine(onnx_files["static"], tmp_path / "e", options, trt_module=trt2, cuda=cuda)
    assert len(_names(trt2, "build_serialized_network")) == 1


def test_engine_key_separates_what_matters():
    base = dict(device_name="Xavier-sm_72", trt_version="8.5.2.2", precision="fp16", onnx_sha256="ab" * 32,
                shapes={"images": [[1, 3, 640, 640]] * 3})
    key = engine_key(**base)
    assert key.startswith("xavier-sm-72-trt8-5-2-2-fp16-abababababab-") and "/" not in key
    for field, value in [("device_name", "Orin-sm_87"), ("trt_version", "10.3.0"), ("precision", "int8"),
                         ("onnx_sha256", "cd" * 32), ("shapes", {"images": [[1, 3, 320, 320]] * 3})]:
        assert engine_key(**{**base, field: value}) != key


def test_tensorrt_available_rejects_stubs(monkeypatch):
    import types

    stub = types.ModuleType("tensorrt")  # what PyPI's placeholder leaves behind: no API
    monkeypatch.setitem(sys.modules, "tensorrt", stub)
    assert tensorrt_available() is False
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(V10))
    assert tensorrt_available() is True


@pytest.mark.trt
@pytest.mark.skipif(not tensorrt_available(), reason="needs a real, importable TensorRT")
def test_real_tensorrt_build_and_run_matches_onnxruntime(tmp_path, onnx_files):
    import onnxruntime as ort

    from edgekit.deploy.runners.tensorrt import TensorRTRunner

    result = build_engine(onnx_files["static"], tmp_path, EngineBuildOptions(precision="fp32"))
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    expected = ort.InferenceSession(str(onnx_files["static"])).run(None, {"images": x})[0]
    with TensorRTRunner(result.plan_path) as runner:
        got = runner.infer({"images": x})["output0"]
    np.testing.assert_allclose(got, expected, atol=1e-4)
