"""The snapshotted TensorRT surface records what docs/tensorrt.md says, and the strictness helpers refuse
what real pybind refuses."""

from __future__ import annotations

import enum
import types

import pytest

from tests.fakes.trt_surface import available_versions, enforce, load_surface, make_enum, strict_class


def test_versions_resolve() -> None:
    assert {"8.5.2", "10.16.0", "11.1.0"} <= set(available_versions())
    assert load_surface(8).version == "8.5.2"
    assert load_surface("8.5.2.2").version == "8.5.2"
    assert load_surface(10).version == "10.16.0"
    assert load_surface("10.3").version == "10.3.0"
    assert load_surface("10.8.0").version == "10.16.0"  # untracked minor: the major's snapshot
    assert load_surface(11).version == "11.1.0"
    with pytest.raises(KeyError):
        load_surface(7)


def test_source_recorded() -> None:
    src = load_surface(8).data["source"]
    assert src["repo"] == "NVIDIA/TensorRT" and src["tag"] == "8.5.2" and len(src["commit"]) == 40
    assert "python/src/infer/pyCore.cpp" in src["files"]


@pytest.mark.parametrize("major", [8, 10, 11])
def test_named_tensor_runtime_is_in_every_version(major: int) -> None:
    s = load_surface(major)
    for attr in ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype"):
        assert s.has("ICudaEngine", attr)
    for attr in ("set_input_shape", "set_tensor_address", "execute_async_v3"):
        assert s.has("IExecutionContext", attr)
    assert s.has("Builder", "build_serialized_network") and s.has("IBuilderConfig", "set_memory_pool_limit")
    assert s.has("Runtime", "DLA_core") and s.has("IBuilderConfig", "DLA_core")
    assert s.readonly("Builder", "num_DLA_cores")
    assert s.kwargs("IOptimizationProfile", "set_shape") == ["input", "min", "opt", "max"]
    assert s.kwargs("IBuilderConfig", "set_memory_pool_limit") == ["pool", "pool_size"]
    assert s.kwargs("IExecutionContext", "set_tensor_address") == ["name", "memory"]
    assert s.kwargs("Logger", "__init__") == ["min_severity"]
    assert s.kwargs(None, "init_libnvinfer_plugins") == ["logger", "namespace"]
    assert s.has("Logger", "WARNING") and s.has(None, "nptype")


def test_version_differences() -> None:
    v8, v10, v11 = load_surface(8), load_surface(10), load_surface(11)
    assert v8.has("Builder", "build_engine") and not v10.has("Builder", "build_engine")
    assert v8.has("IExecutionContext", "execute_async_v2") and not v10.has("IExecutionContext", "execute_async_v2")
    assert v8.has("IBuilderConfig", "max_workspace_size") and not v10.has("IBuilderConfig", "max_workspace_size")
    assert v8.enum_value("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH") == 0
    assert v10.enum_value("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") == 1
    assert not v11.has("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH")
    assert v11.enum_value("NetworkDefinitionCreationFlag", "STRONGLY_TYPED") == 0
    assert v11.enum_value("NetworkDefinitionCreationFlag", "PREFER_JIT_PYTHON_PLUGINS") == 1
    for s in (v8, v10):
        assert s.enum_value("BuilderFlag", "FP16") == 0 and s.enum_value("BuilderFlag", "INT8") == 1
        assert s.has(None, "IInt8EntropyCalibrator2") and s.has("IBuilderConfig", "set_calibration_profile")
    assert not v11.has("BuilderFlag", "FP16") and not v11.has(None, "IInt8EntropyCalibrator2")
    assert not v11.has("IBuilderConfig", "int8_calibrator")
    # 8.5's nptype needs np.bool, which numpy 1.24 removed; 10+ uses np.bool_.
    assert "bool" in v8.functions["nptype"]["numpy_attrs"]
    assert "bool" not in v10.functions["nptype"]["numpy_attrs"]


@pytest.mark.parametrize("major", [8, 10, 11])
def test_required_enum_values_known(major: int) -> None:
    s = load_surface(major)
    for name in ("BuilderFlag", "NetworkDefinitionCreationFlag", "MemoryPoolType", "DeviceType", "DataType",
                 "TensorIOMode", "LayerType", "ProfilingVerbosity", "ILogger.Severity"):
        assert all(v is not None for v in s.enums[name].values()), name
    assert s.enum_value("DataType", "INT8") == 2 and s.enum_value("DeviceType", "DLA") == 1
    assert s.enum_value("MemoryPoolType", "WORKSPACE") == 0 and s.enum_value("TensorIOMode", "INPUT") == 1


# --------------------------------------------------------------------------------------- strictness
class _Config:
    def __init__(self) -> None:
        self._flags = 0
        self.DLA_core = -1

    @property
    def num_optimization_profiles(self) -> int:
        return 0

    def set_memory_pool_limit(self, pool: int, pool_size: int) -> None:
        self._limit = (pool, pool_size)

    def not_in_trt(self) -> None:
        pass


def test_strict_class_refuses_what_pybind_refuses() -> None:
    Config = strict_class(load_surface(8), "IBuilderConfig", _Config)
    with pytest.raises(TypeError, match="No constructor"):
        Config()
    cfg = Config._create()
    cfg.set_memory_pool_limit(0, pool_size=1 << 20)
    with pytest.raises(TypeError, match="pool_size"):
        cfg.set_memory_pool_limit(pool=0, size=1 << 20)
    with pytest.raises(AttributeError):
        cfg.not_in_trt()
    with pytest.raises(AttributeError):
        cfg.profiles = []
    with pytest.raises(AttributeError, match="read-only"):
        cfg.num_optimization_profiles = 3
    cfg.DLA_core = 1
    assert cfg.DLA_core == 1
    with pytest.raises(AttributeError):
        _ = Config.not_in_trt


class _Calibrator:
    def __init__(self) -> None:
        pass

    def get_batch_size(self) -> int:
        return 1


def test_user_subclass_may_add_attributes_but_must_call_base_init() -> None:
    Base = strict_class(load_surface(8), "IInt8EntropyCalibrator2", _Calibrator)

    class Good(Base):
        def __init__(self) -> None:
            Base.__init__(self)
            self.cache_file = "x"

        def get_batch(self, names):
            return None

    good = Good()
    assert good.cache_file == "x" and good.get_batch(["a"]) is None and good.get_batch_size() == 1

    class Bad(Base):
        def __init__(self) -> None:
            self.cache_file = "x"

    with pytest.raises(TypeError, match="must be called"):
        Bad()
    with pytest.raises(TypeError, match="No constructor"):
        strict_class(load_surface(11), "IBuilderConfig", _Config)()
    with pytest.raises(KeyError):
        strict_class(load_surface(11), "IInt8EntropyCalibrator2", _Calibrator)


def test_enforce_module() -> None:
    s = load_surface(11)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "11.1.0"
    trt.NetworkDefinitionCreationFlag = make_enum(s, "NetworkDefinitionCreationFlag")
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.IBuilderConfig = _Config
    trt.calls = []
    enforce(trt, s, extra=["calls"])
    assert trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED == 0
    assert trt.init_libnvinfer_plugins(None, namespace="") is True
    with pytest.raises(TypeError):
        trt.init_libnvinfer_plugins(None, ns="")
    with pytest.raises(AttributeError):
        _ = trt.BuilderFlag
    with pytest.raises(AttributeError):
        _ = trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH
    assert trt.calls == [] and trt.IBuilderConfig._trt_surface_name == "IBuilderConfig"


def test_enforce_catches_a_drifted_fake() -> None:
    s = load_surface(11)
    wrong = types.ModuleType("tensorrt")
    wrong.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 1})
    with pytest.raises(AssertionError, match="real value 0"):
        enforce(wrong, s)
    extra = types.ModuleType("tensorrt")
    extra.IInt8EntropyCalibrator2 = _Calibrator
    with pytest.raises(AssertionError, match="lacks"):
        enforce(extra, s)
