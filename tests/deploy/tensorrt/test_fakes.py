"""The fakes are as strict as the real TensorRT / CUDA where edgekit's audit found the old ones lax."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fakes.fake_cuda import ALIGNMENT

from .conftest import VERSIONS


def test_fake_cuda_aligns_and_completes_async_copies_only_at_synchronize(fake_trt):
    from polygraphy import cuda
    from polygraphy.exception import PolygraphyException

    env = fake_trt("8.5.2.2")
    stream = cuda.Stream()
    arr = cuda.DeviceArray.raw((100,))
    assert arr.ptr % ALIGNMENT == 0
    src = np.arange(100, dtype=np.uint8)
    arr.copy_from(src, stream)
    out = np.zeros(100, np.uint8)
    arr.copy_to(out, stream)
    assert not out.any()  # nothing happened yet
    stream.synchronize()
    np.testing.assert_array_equal(out, src)
    ptr = arr.ptr
    arr.free()
    with pytest.raises(PolygraphyException, match="CUDA Error"):
        cuda.wrapper().free(ptr)  # double free
    stream.free()
    assert env.cuda.allocations == {}


def test_a_runner_that_skips_synchronize_gets_no_outputs(tmp_path, fake_trt, onnx_models, monkeypatch):
    from polygraphy import cuda

    from edgekit.deploy.tensorrt import EngineBuildOptions, TensorRTRunner, build_engine

    env = fake_trt("8.5.2.2")
    plan = build_engine(onnx_models["static"], tmp_path, EngineBuildOptions(precision="fp32", timing_cache="")).plan_path
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32) + 1
    monkeypatch.setattr(cuda.Stream, "synchronize", lambda self: None)
    with TensorRTRunner(plan) as runner:
        out = runner.infer({"images": x})["output0"]  # what infer() handed back, at return
        staged = runner._staged("out:output0", out.shape, out.dtype)  # the pinned buffer the copy targets
        assert env.cuda.cudaStreamSynchronize(runner.stream.ptr) == 0  # the synchronize the runner skipped
        late = staged.copy()
    import onnxruntime as ort

    ref = ort.InferenceSession(str(onnx_models["static"])).run(None, {"images": x})[0]
    assert not np.allclose(out, ref)
    np.testing.assert_allclose(late, ref, rtol=1e-6)  # completed once the device synchronized


@pytest.mark.parametrize("version", VERSIONS)
def test_fake_exposes_only_the_real_surface(version, fake_trt):
    trt = fake_trt(version).trt
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    with pytest.raises(AttributeError):
        builder.num_DLA_cores = 2  # read-only in every version
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, pool_size=1 << 20)
    with pytest.raises(TypeError, match="no keyword 'size'"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, size=1 << 20)
    with pytest.raises(AttributeError):
        config.profiles  # noqa: B018 (the old fake's invention)
    runtime = trt.Runtime(trt.Logger())
    runtime.DLA_core = 1
    assert runtime.DLA_core == 1
    assert hasattr(trt.BuilderFlag, "FP16") == (not version.startswith("11"))
    assert hasattr(trt, "IInt8MinMaxCalibrator") == (not version.startswith("11"))
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") == (not version.startswith("11"))
    if version.startswith("11"):
        assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0


def test_fake_returns_what_real_tensorrt_returns_on_failure(fake_trt):
    trt = fake_trt("10.3.0.26").trt
    builder = trt.Builder(trt.Logger())
    config = builder.create_builder_config()
    other = config.create_timing_cache(b"FAKE-TIMING trt9.9.9 3")
    assert config.set_timing_cache(other, ignore_mismatch=False) is False
    profile = builder.create_optimization_profile()
    with pytest.raises(RuntimeError):
        profile.set_shape("images", (1, 3, 8, 8), (1, 3, 4, 4), (1, 3, 8, 8))  # opt < min
    assert not profile and config.add_optimization_profile(profile) == -1


def test_calibrator_base_must_be_initialised_and_dynamic_calibration_needs_a_profile(fake_trt, onnx_models):
    trt = fake_trt("8.5.2.2").trt

    class Skips(trt.IInt8MinMaxCalibrator):
        def __init__(self):  # no base __init__: pybind refuses at construction
            pass

    with pytest.raises(TypeError, match="__init__\\(\\) must be called"):
        Skips()

    class Feeds(trt.IInt8MinMaxCalibrator):
        def __init__(self):
            trt.IInt8MinMaxCalibrator.__init__(self)

        def get_batch_size(self):
            return 1

        def get_batch(self, names):
            return None

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache):
            pass

    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(onnx_models["dynamic"]))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.INT8)
    config.int8_calibrator = Feeds()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None  # no calibration profile
    assert any("Calibration optimization profile must be set" in c[2] for c in trt._calls if c[0] == "log")


def test_fake_85_parser_needs_an_explicit_batch_network(fake_trt, onnx_models):
    trt = fake_trt("8.5.2.2").trt
    logger = trt.Logger()
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert not parser.parse_from_file(str(onnx_models["static"]))
    assert "explicit-batch" in parser.get_error(0).desc()
    assert not hasattr(parser.get_error(0), "node_name")  # 8.5's ParserError has no node_name()


def test_fake_85_parser_applies_the_85_qdq_rules_through_the_build(tmp_path, fake_trt):
    """An asymmetric (non-zero zero point) Q/DQ model is refused by 8.5's parser rules, not by the 10 fake."""
    from edgekit.core.errors import ModelError
    from edgekit.deploy.tensorrt import EngineBuildOptions, build_engine
    from tests.fakes.onnx_graphs import qdq_conv_model, save

    path = save(qdq_conv_model(act_zp=np.array(3, np.uint8)), tmp_path / "cpu.qdq.onnx")
    opts = EngineBuildOptions(precision="int8", timing_cache="")
    fake_trt("8.5.2.2")
    with pytest.raises(ModelError, match="TensorRT 8.5.2.2 cannot parse .*cpu.qdq.onnx: In node 0 .*zeroPt must be all zeros"):
        build_engine(path, tmp_path / "e85", opts)
    fake_trt("10.3.0.26")
    assert build_engine(path, tmp_path / "e10", opts).plan_path.is_file()
