"""Engine builds through Polygraphy's real TensorRT backend on fake TensorRT 8.5 / 10 / 11 (strict to the
real binding surface) and a fake libcudart; the built plans run and must match onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from edgekit.core.errors import CalibrationError, ConfigError, DeviceError, ModelError
from edgekit.deploy.tensorrt import (
    EngineBuildOptions,
    ShapeProfile,
    TensorRTRunner,
    build_engine,
    read_sidecar,
)
from edgekit.deploy.tensorrt.build import heartbeat

from .conftest import LEGACY, VERSIONS

PROFILE = {"images": ShapeProfile(min=(1, 3, 16, 16), opt=(4, 3, 24, 24), max=(4, 3, 32, 32))}


def _polygraphy_handles(version: str) -> None:
    import polygraphy

    if version.startswith("11") and tuple(int(p) for p in polygraphy.__version__.split(".")[:2]) < (0, 53):
        pytest.skip(f"polygraphy {polygraphy.__version__} predates TensorRT 11 (the Python 3.8 pin)")


def _opts(**kw) -> EngineBuildOptions:
    kw.setdefault("timing_cache", "")
    return EngineBuildOptions(**kw)


def _flags(trt) -> set:
    return {c[1] for c in trt._calls if c[0] == "config.set_flag"}


def _run(plan, x):
    with TensorRTRunner(plan) as runner:
        return runner.infer({"images": x})["output0"]


def _ref(onnx_path, x):
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]


@pytest.mark.parametrize("version", VERSIONS)
def test_fp32_build_runs_like_onnxruntime(tmp_path, fake_trt, onnx_models, version):
    _polygraphy_handles(version)
    env = fake_trt(version)
    lines = []
    result = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp32"), progress=lines.append)
    assert not result.reused and result.plan_path.is_file() and result.plan_path.parent == tmp_path
    assert [ln.split(":")[0] for ln in lines] == ["parse", "configure", "build", "write"]
    assert env.trt._plugins_initialised >= 1  # Polygraphy initialises the plugin library before parsing
    side = read_sidecar(result.plan_path)
    assert side.trt_version == version and side.compute_capability == "sm_72" and side.device_name == "Fake Xavier NX"
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(_run(result.plan_path, x), _ref(onnx_models["static"], x), rtol=1e-6)
    explicit = [c[1] for c in env.trt._calls if c[0] == "create_network"]
    assert explicit == ([1] if version.startswith("8") else [0] if version.startswith("10") else [1])  # 11: STRONGLY_TYPED=0


@pytest.mark.parametrize("version", LEGACY)
def test_fp16_sets_the_fp16_flag_and_workspace(tmp_path, fake_trt, onnx_models, version):
    env = fake_trt(version)
    build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16", workspace_mb=256))
    assert "FP16" in _flags(env.trt) and "INT8" not in _flags(env.trt)
    assert ("config.set_memory_pool_limit", "WORKSPACE", 256 << 20) in env.trt._calls


def test_trt11_refuses_fp16_and_calibration_with_the_fix(tmp_path, fake_trt, onnx_models):
    _polygraphy_handles("11.1.0.5")
    fake_trt("11.1.0.5")
    with pytest.raises(ConfigError, match="TensorRT 11 has no FP16 builder flag.*export an FP16 ONNX"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16"))
    with pytest.raises(ConfigError, match="removed INT8 calibration.*Q/DQ ONNX"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="int8", int8_source="calib-cache"))
    with pytest.raises(ModelError, match="no Q/DQ nodes and TensorRT 11 has no INT8 calibration"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="int8"))


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_from_qdq(tmp_path, fake_trt, qdq_model, version):
    _polygraphy_handles(version)
    env = fake_trt(version)
    result = build_engine(qdq_model, tmp_path, _opts(precision="int8"))
    side = read_sidecar(result.plan_path)
    assert side.int8_source == "qdq" and side.calib_algorithm is None
    assert _flags(env.trt) >= ({"INT8", "FP16"} if version in LEGACY else set())
    if version not in LEGACY:
        assert not {"INT8", "FP16"} & _flags(env.trt)  # strongly typed: precision from the Q/DQ nodes
    assert not [c for c in env.trt._calls if c[0] == "calibrate_batch"]


def test_qdq_source_refuses_a_float_onnx(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    with pytest.raises(ModelError, match="no Q/DQ nodes.*FP32 engine"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="int8", int8_source="qdq"))


def _host_cache(tmp_path, onnx_path, version_int="8502", algorithm="MinMaxCalibration"):
    from edgekit.calib.cache import CacheSidecar, utc_now, write_cache, write_sidecar
    from edgekit.core.manifest import file_sha256

    cache = tmp_path / "model.minmax.calib.cache"
    write_cache(cache, version_int, algorithm, {"images": 0.0078125, "c1": 0.05})
    write_sidecar(cache, CacheSidecar(trt_version=version_int, cache_header=f"TRT-{version_int}-{algorithm}",
                                      onnx_sha256=file_sha256(onnx_path), calib_data_hash="x" * 64, method="minmax",
                                      imgsz=(16, 16), batch=1, n_images=8, created_utc=utc_now()))
    return cache


@pytest.mark.parametrize("version,vint", [("8.5.2.2", "8502"), ("10.3.0.26", "100300")])
def test_int8_from_calibration_cache_uses_the_cache(tmp_path, fake_trt, onnx_models, version, vint):
    env = fake_trt(version)
    cache = _host_cache(tmp_path, onnx_models["static"], vint)
    result = build_engine(onnx_models["static"], tmp_path / "e", _opts(precision="int8"), calib_cache=cache)
    side = read_sidecar(result.plan_path)
    assert (side.int8_source, side.calib_algorithm) == ("calib-cache", "MinMaxCalibration")
    assert ("calibrator.read_calibration_cache", True) in env.trt._calls
    assert not [c for c in env.trt._calls if c[0] == "calibrate_batch"]  # TensorRT took the cache
    assert {"INT8", "FP16"} <= _flags(env.trt)


def test_calibration_cache_for_another_trt_version_is_refused(tmp_path, fake_trt, onnx_models):
    fake_trt("10.3.0.26")
    cache = _host_cache(tmp_path, onnx_models["static"], "8502")
    with pytest.raises(CalibrationError, match="re-export the bundle for TensorRT 10.3.0.26"):
        build_engine(onnx_models["static"], tmp_path / "e", _opts(precision="int8"), calib_cache=cache)


def test_calibration_algorithm_must_match_the_cache(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    cache = _host_cache(tmp_path, onnx_models["static"])
    with pytest.raises(ConfigError, match="holds MinMaxCalibration ranges"):
        build_engine(onnx_models["static"], tmp_path / "e", _opts(precision="int8", calib_algorithm="EntropyCalibration2"),
                     calib_cache=cache)


def test_calibration_reads_exactly_the_network_batches(tmp_path, fake_trt, onnx_models):
    """10 images, network batch 4 (calibration profile OPT) at 24x24 while the set's imgsz is 16:
    two whole batches reach TensorRT, each image letterboxed to the network's 24x24."""
    from edgekit.calib.cache import verify_cache
    from edgekit.calib.dataset import CalibrationSet
    from edgekit.core.letterbox import LetterboxSpec
    from tests.fakes.onnx_graphs import write_images

    env = fake_trt("8.5.2.2")
    paths = write_images(tmp_path / "imgs", 10)
    calib = CalibrationSet(paths, LetterboxSpec(imgsz=16), source=str(tmp_path / "imgs"))
    lines = []
    result = build_engine(onnx_models["dynamic"], tmp_path / "e", _opts(precision="int8", profiles=PROFILE),
                          calib_images=calib, progress=lines.append)
    batches = [c for c in env.trt._calls if c[0] == "calibrate_batch"]
    assert [b[1] for b in batches] == [(4, 3, 24, 24), (4, 3, 24, 24)]
    # the bytes TensorRT read are the first 8 images, preprocessed at 24x24
    first = CalibrationSet(paths[:4], LetterboxSpec(imgsz=24))
    assert batches[0][2] == pytest.approx(float(next(first.batches(4)).mean()), rel=1e-6)
    assert [ln for ln in lines if ln.startswith("calibrate: batch")][-1].startswith("calibrate: batch 2/2")
    assert ("config.set_calibration_profile", {"images": [(1, 3, 16, 16), (4, 3, 24, 24), (4, 3, 32, 32)]}) \
        in env.trt._calls
    kept = result.plan_path.with_suffix(".calib.cache")
    side = verify_cache(kept, {"trt_version": "8502", "n_images": 8, "batch": 4, "imgsz": (24, 24)})
    assert side.cache_header == "TRT-8502-MinMaxCalibration"


def test_calibration_with_too_few_images_is_one_clear_error(tmp_path, fake_trt, onnx_models):
    from edgekit.calib.dataset import CalibrationSet
    from edgekit.core.letterbox import LetterboxSpec
    from tests.fakes.onnx_graphs import write_images

    fake_trt("8.5.2.2")
    calib = CalibrationSet(write_images(tmp_path / "imgs", 3), LetterboxSpec(imgsz=16), source="imgs")
    with pytest.raises(CalibrationError, match="3 images, fewer than one batch"):
        build_engine(onnx_models["dynamic"], tmp_path / "e", _opts(precision="int8", profiles=PROFILE),
                     calib_images=calib)


def test_dynamic_input_without_profile_is_refused(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    with pytest.raises(ConfigError, match="input 'images' has dynamic shape .* no optimization profile"):
        build_engine(onnx_models["dynamic"], tmp_path, _opts(precision="fp16"))
    with pytest.raises(ConfigError, match="profiles name inputs \\['nope'\\]"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16", profiles={
            "images": ShapeProfile(min=(1, 3, 16, 16), opt=(1, 3, 16, 16), max=(1, 3, 16, 16)),
            "nope": ShapeProfile(min=(1,), opt=(1,), max=(1,))}))


@pytest.mark.parametrize("version", VERSIONS)
def test_dynamic_profile_build_and_run(tmp_path, fake_trt, onnx_models, version):
    _polygraphy_handles(version)
    env = fake_trt(version)
    result = build_engine(onnx_models["dynamic"], tmp_path, _opts(precision="fp32", profiles=PROFILE))
    assert read_sidecar(result.plan_path).shapes == {"images": [[1, 3, 16, 16], [4, 3, 24, 24], [4, 3, 32, 32]]}
    for shape in [(1, 3, 16, 16), (4, 3, 32, 32), (2, 3, 24, 24)]:
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        np.testing.assert_allclose(_run(result.plan_path, x), _ref(onnx_models["dynamic"], x), rtol=1e-6)
    assert env.cuda.allocations == {}  # every device buffer freed


def test_profile_refused_by_tensorrt_is_an_error(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2", faults={"profile_refused"})
    with pytest.raises(ModelError, match="TensorRT refused the optimization profile"):
        build_engine(onnx_models["dynamic"], tmp_path, _opts(precision="fp16", profiles=PROFILE))


def test_dla_core_and_gpu_fallback(tmp_path, fake_trt, onnx_models):
    env = fake_trt("8.5.2.2", num_dla_cores=2)
    result = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16", dla_core=1))
    plan = json.loads(result.plan_path.read_bytes())
    assert plan["dla_core"] == 1 and "GPU_FALLBACK" in _flags(env.trt)
    assert result.plan_path.name.startswith("fp16-dla1-")
    env.trt._calls.clear()
    x = np.random.default_rng(2).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(_run(result.plan_path, x), _ref(onnx_models["static"], x), rtol=1e-6)
    assert ("deserialize_cuda_engine", 1) in env.trt._calls  # Runtime.DLA_core set before deserializing
    with pytest.raises(DeviceError, match="DLA core 2 requested; this device has 2"):
        build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16", dla_core=2))


def test_dla_int8_on_8x_uses_the_calibration_cache_and_refuses_qdq(tmp_path, fake_trt, onnx_models, qdq_model):
    fake_trt("8.5.2.2", num_dla_cores=2)
    with pytest.raises(ConfigError, match="8.x DLA takes no explicit \\(Q/DQ\\) quantization"):
        build_engine(qdq_model, tmp_path, _opts(precision="int8", int8_source="qdq", dla_core=0))
    with pytest.raises(ModelError, match="has Q/DQ nodes"):  # auto on 8.x DLA means the calibration cache
        build_engine(qdq_model, tmp_path, _opts(precision="int8", dla_core=0), calib_cache=tmp_path / "x")
    cache = _host_cache(tmp_path, onnx_models["static"])
    result = build_engine(onnx_models["static"], tmp_path, _opts(precision="int8", dla_core=0), calib_cache=cache)
    assert read_sidecar(result.plan_path).int8_source == "calib-cache"


def test_timing_cache_written_reused_and_refused(tmp_path, fake_trt, onnx_models, caplog):
    env = fake_trt("8.5.2.2")
    timing = tmp_path / "timing.cache"
    opts = _opts(precision="fp16", timing_cache=str(timing))
    first = build_engine(onnx_models["static"], tmp_path / "e", opts)
    assert timing.read_bytes().startswith(b"FAKE-TIMING trt8.5.2.2")
    assert not read_sidecar(first.plan_path).timing_cache_used
    second = build_engine(onnx_models["static"], tmp_path / "e", opts, force=True)
    assert read_sidecar(second.plan_path).timing_cache_used
    timing.write_bytes(b"FAKE-TIMING trt8.4.0 7")  # another TensorRT's cache: set_timing_cache -> False
    lines = []
    third = build_engine(onnx_models["static"], tmp_path / "e", opts, force=True, progress=lines.append)
    assert any("refused timing cache" in ln for ln in lines)
    assert ("config.set_timing_cache", False) in env.trt._calls
    assert not read_sidecar(third.plan_path).timing_cache_used
    assert timing.read_bytes().startswith(b"FAKE-TIMING trt8.5.2.2")  # rewritten for this version


def test_default_timing_cache_is_keyed_by_version_and_sm(tmp_path, fake_trt, onnx_models, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    fake_trt("10.3.0.26")
    build_engine(onnx_models["static"], tmp_path / "e", EngineBuildOptions(precision="fp16"))
    assert (tmp_path / "xdg" / "edgekit" / "timing" / "trt10.3.0.26-sm72.cache").is_file()


def test_reuse_needs_same_key_and_intact_plan(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    first = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16"))
    again = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16"))
    assert again.reused and again.plan_path == first.plan_path
    other = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16", workspace_mb=512))
    assert not other.reused and other.key != first.key
    first.plan_path.write_bytes(first.plan_path.read_bytes()[:-3])  # truncated plan
    rebuilt = build_engine(onnx_models["static"], tmp_path, _opts(precision="fp16"))
    assert not rebuilt.reused and rebuilt.plan_path == first.plan_path


def test_unparsable_onnx_is_one_line_naming_file_and_node(tmp_path, fake_trt, onnx_models):
    fake_trt("10.3.0.26")
    with pytest.raises(ModelError) as err:
        build_engine(onnx_models["unsupported"], tmp_path, _opts(precision="fp16"))
    text = err.value.format()
    assert "bad.onnx" in text and "No importer registered for op: EdgekitUnsupportedOp" in text
    assert "\n" not in text


def test_missing_onnx(tmp_path, fake_trt):
    fake_trt("8.5.2.2")
    with pytest.raises(ModelError, match="does not exist"):
        build_engine(tmp_path / "none.onnx", tmp_path, _opts())


def test_heartbeat_prints_elapsed_seconds_while_the_block_runs():
    import time

    lines = []
    with heartbeat(lines.append, "build", every=0.02):
        time.sleep(0.11)
    assert len(lines) >= 3 and all(ln.startswith("build: ") and ln.endswith(" s elapsed") for ln in lines)
    n = len(lines)
    time.sleep(0.05)
    assert len(lines) == n  # the thread stopped with the block


@pytest.mark.trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_real_tensorrt_build_and_run(tmp_path, onnx_models, precision):
    """Real TensorRT + real CUDA, where importable: the build and the runner match onnxruntime."""
    from edgekit.deploy.tensorrt import tensorrt_available

    if not tensorrt_available():
        pytest.skip("tensorrt not importable")
    if precision == "fp16" and int(__import__("tensorrt").__version__.split(".")[0]) >= 11:
        pytest.skip("TensorRT 11 builds FP16 only from an FP16 ONNX")
    result = build_engine(onnx_models["static"], tmp_path, _opts(precision=precision))
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(_run(result.plan_path, x), _ref(onnx_models["static"], x), atol=2e-2 if precision == "fp16"
                               else 1e-4)
    assert build_engine(onnx_models["static"], tmp_path, _opts(precision=precision)).reused
