"""Fake ``tensorrt`` modules (8.5.2, 10.x, 11.x) that Polygraphy's real TensorRT backend runs on.

``make_fake_tensorrt(version, cuda)`` builds a module whose classes and enums are made strict by
:func:`tests.fakes.trt_surface.enforce` against the binding surface snapshotted from NVIDIA's pybind
sources for that version: a name, keyword or writable property the real module lacks raises, so
neither edgekit nor the fake can drift from the real API. What it does, beyond being strict:

* the parser reads the ONNX (inputs, outputs, one layer per node, Q/DQ typed as such), requires an
  explicit-batch network on 8.x, and on 8.5 applies the 8.5 parser's Q/DQ rules
  (``trt85_onnx_parser_rules.first_qdq_error``) when that module is present;
* the builder checks dynamic inputs have a profile; with INT8 + a calibrator on a network without
  Q/DQ it runs the calibrator's whole protocol, requiring a calibration profile for dynamic inputs
  and reading *exactly the network input's volume* (static shape or calibration-profile OPT shape)
  at each pointer, range-checked in the fake CUDA memory; DLA needs FP16/INT8 and a core that exists;
* the runtime records the ``DLA_core`` it deserialized with; the engine executes the ONNX with
  onnxruntime on the bytes at the tensor addresses, enqueued on the CUDA stream it was given, so
  it runs in order with the (asynchronous) copies at ``cudaStreamSynchronize``;
* return values as the real API: ``add_optimization_profile`` -1, ``set_timing_cache`` False,
  ``create_execution_context`` None, ``set_tensor_address`` False for null/unaligned pointers,
  ``execute_async_v3`` False; ``faults`` switches the first four on;
* ``nptype`` is the real one of that version (8.5's builds its dict with ``np.bool``).

Test-only state is ``_``-prefixed: ``_calls``, ``_cuda``, ``_faults``, ``_plugins_initialised``.
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import types
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from tests.fakes.trt_surface import Surface, enforce, load_surface, make_enum

try:  # provided by the trt-surface work; the 8.5 parser's Q/DQ rules
    from tests.fakes.trt85_onnx_parser_rules import first_qdq_error
except ImportError:  # pragma: no cover - until that module exists
    first_qdq_error = None

UNSUPPORTED_OPS = {"EdgekitUnsupportedOp"}
FAULTS = {"timing_cache_refused", "profile_refused", "context_none", "execute_fails"}
ALGORITHM_HEADER = {"MINMAX_CALIBRATION": "MinMaxCalibration", "ENTROPY_CALIBRATION_2": "EntropyCalibration2",
                    "ENTROPY_CALIBRATION": "EntropyCalibration", "LEGACY_CALIBRATION": "LegacyCalibration"}


def version_int(version: str) -> str:
    major, minor, patch = (int(p) for p in (version.split(".") + ["0", "0"])[:3])
    return str(major * 10000 + minor * 100 + patch) if major >= 10 else str(major * 1000 + minor * 100 + patch)


def _volume(shape: Iterable[int]) -> int:
    out = 1
    for d in shape:
        out *= int(d)
    return out


def make_fake_tensorrt(version: str = "8.5.2.2", cuda: Any = None, num_dla_cores: int = 0,
                       faults: Iterable[str] = ()) -> types.ModuleType:
    surface = load_surface(version)
    bad = set(faults) - FAULTS
    assert not bad, f"unknown faults {bad}"
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.__file__ = __file__
    trt._calls, trt._cuda, trt._faults = [], cuda, set(faults)
    trt._num_dla_cores, trt._plugins_initialised, trt._major = num_dla_cores, 0, surface.major
    for name in surface.enums:
        if "." not in name:
            setattr(trt, name, make_enum(surface, name))
    for alias, member in (("float32", "FLOAT"), ("float16", "HALF"), ("int8", "INT8"), ("int32", "INT32"),
                          ("bool", "BOOL"), ("uint8", "UINT8"), ("int64", "INT64")):
        if alias in surface.module_attrs:
            setattr(trt, alias, trt.DataType[member])
    for name, cls in _classes(trt, surface).items():
        if name in surface.classes:
            setattr(trt, name, cls)
    trt.init_libnvinfer_plugins = _init_plugins(trt)
    trt.nptype = _nptype(trt, surface)
    trt.volume = _volume
    return enforce(trt, surface)


def _init_plugins(trt: types.ModuleType):
    def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
        trt._plugins_initialised += 1
        return True

    return init_libnvinfer_plugins


def _nptype(trt: types.ModuleType, surface: Surface):
    """The real ``tensorrt.nptype`` of this version (python/packaging/tensorrt/__init__.py)."""
    if surface.major < 10:
        def nptype(trt_type: Any) -> type:
            import numpy as np

            mapping = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8, trt.int32: np.int32,
                       trt.bool: np.bool, trt.uint8: np.uint8}  # np.bool: gone in numpy 1.24, as on 8.5
            if trt_type in mapping:
                return mapping[trt_type]
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    else:
        def nptype(trt_type: Any) -> type:
            import numpy as np

            mapping = {trt.float32: np.float32, trt.float16: np.float16, trt.int8: np.int8, trt.int32: np.int32,
                       trt.int64: np.int64, trt.bool: np.bool_, trt.uint8: np.uint8}
            if trt_type in mapping:
                return mapping[trt_type]
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
    return nptype


def _set(obj: Any, **attrs: Any) -> None:
    """Initial values of the real class's writable properties (bypassing the strict setter, since a
    property may be read-only or absent in this version; reading it is still checked)."""
    for name, value in attrs.items():
        object.__setattr__(obj, name, value)


def _log(logger: Any, trt: types.ModuleType, severity: str, msg: str) -> None:
    trt._calls.append(("log", severity, msg))
    if logger is not None:
        logger.log(getattr(trt.ILogger.Severity, severity), msg)


# ---------------------------------------------------------------------------------------- classes
def _classes(trt: types.ModuleType, surface: Surface) -> Dict[str, type]:
    major = surface.major
    ns: Dict[str, type] = {}

    class ILogger:
        def __init__(self) -> None:
            pass

        def log(self, severity: Any, msg: str) -> None:
            pass

    severity = make_enum(surface, "ILogger.Severity")
    ILogger.Severity = severity
    for member in severity:
        setattr(ILogger, member.name, member)

    class Logger(ILogger):
        def __init__(self, min_severity: Any = severity.WARNING) -> None:
            _set(self, min_severity=min_severity)

        def log(self, severity: Any, msg: str) -> None:
            pass

    ns.update(ILogger=ILogger, Logger=Logger)
    ns.update(_network_classes(trt, major))
    ns.update(_builder_classes(trt, major))
    ns.update(_runtime_classes(trt, major))
    ns.update(_calibrator_classes(trt))
    return ns


def _network_classes(trt: types.ModuleType, major: int) -> Dict[str, type]:
    class ITensor:
        def __init__(self, name: str, shape: Tuple[int, ...], dtype: Any, is_input: bool) -> None:
            _set(self, name=name, shape=tuple(shape), dtype=dtype)
            self._is_input = is_input

        @property
        def is_shape_tensor(self) -> bool:
            return False

        @property
        def is_network_input(self) -> bool:
            return self._is_input

        @property
        def is_network_output(self) -> bool:
            return not self._is_input

    class ILayer:
        def __init__(self, name: str, kind: Any) -> None:
            _set(self, name=name)
            self._type = kind

        @property
        def type(self) -> Any:
            return self._type

        @property
        def precision_is_set(self) -> bool:
            return False

        @property
        def num_inputs(self) -> int:
            return 0

        @property
        def num_outputs(self) -> int:
            return 0

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self._flags, self._inputs, self._outputs, self._layers, self._onnx = flags, [], [], [], b""
            _set(self, name="fake-network")

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: len(self._layers))
        has_implicit_batch_dimension = property(lambda self: False)
        flags = property(lambda self: self._flags)

        def get_input(self, index: int) -> Any:
            return self._inputs[index]

        def get_output(self, index: int) -> Any:
            return self._outputs[index]

        def get_layer(self, index: int) -> Any:
            return self._layers[index]

        def get_flag(self, flag: Any) -> bool:
            return bool(self._flags & (1 << int(flag)))

        def __len__(self) -> int:
            return len(self._layers)

        def __getitem__(self, index: int) -> Any:
            return self._layers[index]

    class ParserError:
        def __init__(self, node: int, desc: str, node_name: str, op: str, text: Optional[str] = None) -> None:
            self._node, self._desc, self._node_name, self._op, self._text = node, desc, node_name, op, text

        def node(self) -> int:
            return self._node

        def desc(self) -> str:
            return self._desc

        def code(self) -> Any:
            return "UNSUPPORTED_NODE"

        def file(self) -> str:
            return "ModelImporter.cpp"

        def func(self) -> str:
            return "parseGraph"

        def line(self) -> int:
            return 0

        def node_name(self) -> str:
            return self._node_name

        def node_operator(self) -> str:
            return self._op

        def __str__(self) -> str:
            return self._text or f"In node {self._node} ({self.func()}): UNSUPPORTED_NODE: {self._desc}"

    class OnnxParser:
        def __init__(self, network: Any, logger: Any) -> None:
            self._network, self._logger, self._errors = network, logger, []
            _set(self, flags=0)

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> Any:
            return self._errors[index]

        def clear_errors(self) -> None:
            self._errors = []

        def parse_from_file(self, model: str) -> bool:
            with open(model, "rb") as f:
                return self.parse(f.read(), model)

        def parse(self, model: bytes, path: Optional[str] = None) -> bool:
            import onnx

            trt._calls.append(("parse", path))
            proto = onnx.load_from_string(bytes(model))
            net = self._network
            if major < 10 and not net._flags & (1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)):
                return self._fail(-1, "ModelImporter.cpp: the ONNX parser only supports explicit-batch networks", "", "")
            if major < 10 and first_qdq_error is not None:
                problem = first_qdq_error(proto)
                if problem is not None:  # message is str(ParserError) as 8.5.2 prints it
                    op = proto.graph.node[problem.node].op_type if problem.node >= 0 else ""
                    return self._fail(problem.node, problem.message.split(": ", 2)[-1], problem.name, op,
                                      text=problem.message)
            for index, node in enumerate(proto.graph.node):
                if node.op_type in UNSUPPORTED_OPS:
                    desc = ("Plugin not found, are the plugin name, version, and namespace correct?" if major < 10
                            else f"No importer registered for op: {node.op_type}")
                    return self._fail(index, desc, node.name, node.op_type)
            _fill_network(trt, net, proto, bytes(model))
            return True

        def _fail(self, index: int, desc: str, node_name: str, op: str, text: Optional[str] = None) -> bool:
            error = trt.ParserError._create(index, desc, node_name, op, text)
            self._errors.append(error)
            _log(self._logger, trt, "ERROR", str(error))
            return False

        def supports_operator(self, op_name: str) -> bool:
            return op_name not in UNSUPPORTED_OPS

    return dict(ITensor=ITensor, ILayer=ILayer, INetworkDefinition=INetworkDefinition, ParserError=ParserError,
                OnnxParser=OnnxParser)


_ONNX_DTYPES = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL", 2: "UINT8"}


def _fill_network(trt: types.ModuleType, net: Any, proto: Any, data: bytes) -> None:
    inits = {t.name for t in proto.graph.initializer}

    def tensor(v: Any, is_input: bool) -> Any:
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
        dtype = trt.DataType[_ONNX_DTYPES.get(v.type.tensor_type.elem_type, "FLOAT")]
        return trt.ITensor._create(v.name, dims, dtype, is_input)

    kinds = {"QuantizeLinear": "QUANTIZE", "DequantizeLinear": "DEQUANTIZE", "Conv": "CONVOLUTION",
             "Relu": "ACTIVATION", "Sigmoid": "ACTIVATION"}
    net._inputs = [tensor(v, True) for v in proto.graph.input if v.name not in inits]
    net._outputs = [tensor(v, False) for v in proto.graph.output]
    net._layers = [trt.ILayer._create(n.name, trt.LayerType[kinds.get(n.op_type, "ELEMENTWISE")])
                   for n in proto.graph.node]
    net._onnx = data


def _builder_classes(trt: types.ModuleType, major: int) -> Dict[str, type]:
    class IHostMemory:
        def __init__(self, data: bytes) -> None:
            self._data = bytes(data)

        def __bytes__(self) -> bytes:
            return self._data

        nbytes = property(lambda self: len(self._data))
        dtype = property(lambda self: trt.DataType.UINT8)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

    class ITimingCache:
        def __init__(self, entries: int, stamp: str) -> None:
            self._entries, self._stamp = entries, stamp

        def serialize(self) -> Any:
            return trt.IHostMemory._create(f"FAKE-TIMING {self._stamp} {self._entries}".encode())

        def combine(self, input_cache: Any, ignore_mismatch: bool) -> bool:
            self._entries += input_cache._entries
            return True

        def reset(self) -> bool:
            self._entries = 0
            return True

    class IOptimizationProfile:
        def __init__(self) -> None:
            self._shapes: Dict[str, List[Tuple[int, ...]]] = {}
            _set(self, extra_memory_target=1.0)

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (TRT's names)
            shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
            trt._calls.append(("profile.set_shape", input, *shapes))
            lo, mid, hi = shapes
            if not (len(lo) == len(mid) == len(hi)) or any(d < 0 for d in lo) or \
                    any(not (a <= b <= c) for a, b, c in zip(lo, mid, hi)):
                self._shapes["__invalid__"] = shapes
                raise RuntimeError(f"set_shape: invalid dimensions for {input}: {shapes}")  # PY_ASSERT_RUNTIME_ERROR
            self._shapes[input] = shapes

        def get_shape(self, input: str) -> List[Tuple[int, ...]]:  # noqa: A002
            return list(self._shapes.get(input, []))

        def get_shape_input(self, input: str) -> List[Tuple[int, ...]]:  # noqa: A002
            return []

        def __bool__(self) -> bool:
            return "__invalid__" not in self._shapes

    class IBuilderConfig:
        def __init__(self) -> None:
            self._profiles: List[Any] = []
            self._calib_profile, self._pools, self._timing = None, {}, None
            self._calibrator = None
            _set(self, flags=0, default_device_type=trt.DeviceType.GPU, DLA_core=-1,
                 profiling_verbosity=list(trt.ProfilingVerbosity)[0], engine_capability=list(trt.EngineCapability)[0])
            self._tactics = 0

        int8_calibrator = property(lambda self: self._calibrator,
                                   lambda self, value: setattr(self, "_calibrator", value))
        num_optimization_profiles = property(lambda self: len(self._profiles))

        def set_flag(self, flag: Any) -> None:
            trt._calls.append(("config.set_flag", flag.name))
            self.flags = self.flags | (1 << int(flag))

        def clear_flag(self, flag: Any) -> None:
            self.flags = self.flags & ~(1 << int(flag))

        def get_flag(self, flag: Any) -> bool:
            return bool(self.flags & (1 << int(flag)))

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            trt._calls.append(("config.set_memory_pool_limit", pool.name, int(pool_size)))
            self._pools[int(pool)] = int(pool_size)

        def get_memory_pool_limit(self, pool: Any) -> int:
            return self._pools.get(int(pool), 1 << 40)

        def add_optimization_profile(self, profile: Any) -> int:
            trt._calls.append(("config.add_optimization_profile", dict(profile._shapes)))
            if "profile_refused" in trt._faults or not profile:
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def set_calibration_profile(self, profile: Any) -> bool:
            trt._calls.append(("config.set_calibration_profile", dict(profile._shapes)))
            if not profile:
                return False
            self._calib_profile = profile
            return True

        def get_calibration_profile(self) -> Any:
            return self._calib_profile

        def create_timing_cache(self, serialized_timing_cache: bytes) -> Any:
            data = bytes(serialized_timing_cache)
            trt._calls.append(("config.create_timing_cache", len(data)))
            if data and not data.startswith(b"FAKE-TIMING "):
                raise RuntimeError("Failed to deserialize the timing cache")
            stamp, entries = (data.decode().split(" ")[1:3] if data else (f"trt{trt.__version__}", "0"))
            return trt.ITimingCache._create(int(entries), stamp)

        def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
            ok = "timing_cache_refused" not in trt._faults and (
                ignore_mismatch or cache._stamp == f"trt{trt.__version__}")
            trt._calls.append(("config.set_timing_cache", ok))
            if ok:
                self._timing = cache
            return ok

        def get_timing_cache(self) -> Any:
            return self._timing

        def get_tactic_sources(self) -> int:
            return self._tactics

        def set_tactic_sources(self, tactic_sources: int) -> bool:
            self._tactics = int(tactic_sources)
            return True

        def get_preview_feature(self, feature: Any) -> bool:
            return False

        def set_preview_feature(self, feature: Any, enable: bool) -> None:
            return None

        def get_quantization_flag(self, flag: Any) -> bool:
            return False

    class Builder:
        def __init__(self, logger: Any) -> None:
            self._logger = logger
            trt._calls.append(("Builder",))

        num_DLA_cores = property(lambda self: trt._num_dla_cores)
        platform_has_fast_fp16 = property(lambda self: True)
        platform_has_fast_int8 = property(lambda self: True)
        platform_has_tf32 = property(lambda self: False)

        def create_network(self, flags: int = 0) -> Any:
            trt._calls.append(("create_network", int(flags)))
            return trt.INetworkDefinition._create(int(flags))

        def create_builder_config(self) -> Any:
            return trt.IBuilderConfig._create()

        def create_optimization_profile(self) -> Any:
            return trt.IOptimizationProfile._create()

        def build_serialized_network(self, network: Any, config: Any, kernel_text: Any = None) -> Any:
            trt._calls.append(("build_serialized_network",))
            return _build(trt, major, self._logger, network, config)

    return dict(IHostMemory=IHostMemory, ITimingCache=ITimingCache, IOptimizationProfile=IOptimizationProfile,
                IBuilderConfig=IBuilderConfig, Builder=Builder)


def _flag(trt: types.ModuleType, config: Any, name: str) -> bool:
    member = getattr(trt.BuilderFlag, "__members__", {}).get(name)
    return member is not None and config.get_flag(member)


def _build(trt: types.ModuleType, major: int, logger: Any, network: Any, config: Any) -> Any:
    def error(msg: str) -> None:
        _log(logger, trt, "ERROR", msg)
        trt._calls.append(("build_error", msg))

    profile = config._profiles[0]._shapes if config._profiles else {}
    for tensor in network._inputs:
        if any(d < 0 for d in tensor.shape) and tensor.name not in profile:
            return error(f"Network has dynamic or shape inputs, but no optimization profile has been defined "
                         f"({tensor.name})")
    dla = config.default_device_type == trt.DeviceType.DLA
    if dla:
        if major < 11 and not (_flag(trt, config, "FP16") or _flag(trt, config, "INT8")):
            return error("DLA supports only FP16 and INT8 precision")
        if not 0 <= config.DLA_core < trt._num_dla_cores:
            return error(f"DLA core {config.DLA_core} does not exist (this device has {trt._num_dla_cores})")
    qdq = any(layer._type in (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE) for layer in network._layers)
    calibrator = config._calibrator
    calibrate = calibrator is not None and _flag(trt, config, "INT8") and not qdq
    if calibrate and not _calibrate(trt, logger, network, config, calibrator):
        return None
    if config._timing is not None:
        config._timing._entries += len(network._layers)
    plan = {
        "fake_trt": trt.__version__, "onnx_b64": base64.b64encode(network._onnx).decode(),
        "inputs": [[t.name, list(t.shape), t.dtype.name] for t in network._inputs],
        "outputs": [[t.name, list(t.shape), t.dtype.name] for t in network._outputs],
        "profile": {k: [list(s) for s in v] for k, v in profile.items()}, "flags": int(config.flags),
        "dla_core": int(config.DLA_core) if dla else None,
    }
    return trt.IHostMemory._create(json.dumps(plan).encode())


def _calibrate(trt: types.ModuleType, logger: Any, network: Any, config: Any, calibrator: Any) -> bool:
    algo = calibrator.get_algorithm()
    header = f"TRT-{version_int(trt.__version__)}-{ALGORITHM_HEADER[algo.name]}"
    cached = calibrator.read_calibration_cache()
    trt._calls.append(("calibrator.read_calibration_cache", cached is not None and len(bytes(cached)) > 0))
    if cached and bytes(cached).decode("latin-1").splitlines()[0].strip() == header:
        return True  # TensorRT uses a cache whose header matches its algorithm and version
    shapes = []
    for tensor in network._inputs:
        if any(d < 0 for d in tensor.shape):
            calib = config._calib_profile
            if calib is None or tensor.name not in calib._shapes:
                _log(logger, trt, "ERROR", "Calibration optimization profile must be set if int8 calibration is "
                     "used to set scales for a network with runtime dimensions.")
                return False
            shapes.append(calib._shapes[tensor.name][1])
        else:
            shapes.append(tuple(tensor.shape))
    names = [t.name for t in network._inputs]
    peak, batches = 0.0, 0
    while True:
        pointers = calibrator.get_batch(names)
        if not pointers:
            break
        assert len(pointers) == len(names), "get_batch must return one pointer per input"
        nbytes = _volume(shapes[0]) * 4  # TensorRT reads the network input's volume, not get_batch_size() images
        data = np.frombuffer(trt._cuda.read(int(pointers[0]), nbytes), np.float32)
        trt._calls.append(("calibrate_batch", shapes[0], float(data.mean())))
        peak, batches = max(peak, float(np.abs(data).max())), batches + 1
    if batches == 0:
        _log(logger, trt, "ERROR", "Calibration failure occurred with no scaling factors detected.")
        return False
    scale = struct.pack(">f", max(peak, 1e-8) / 127.0).hex()
    calibrator.write_calibration_cache(memoryview(f"{header}\n{names[0]}: {scale}\n".encode()))
    return True


def _runtime_classes(trt: types.ModuleType, major: int) -> Dict[str, type]:
    class Runtime:
        def __init__(self, logger: Any) -> None:
            self._logger = logger
            _set(self, DLA_core=-1, engine_host_code_allowed=False)

        num_DLA_cores = property(lambda self: trt._num_dla_cores)

        def deserialize_cuda_engine(self, serialized_engine: Any, stream_reader_v2: Any = None) -> Any:
            trt._calls.append(("deserialize_cuda_engine", self.DLA_core))
            try:
                plan = json.loads(bytes(serialized_engine))
                assert plan.get("fake_trt") == trt.__version__
            except (ValueError, AssertionError):
                _log(self._logger, trt, "ERROR", "1: [stdArchiveReader.cpp] Serialization assertion failed: "
                     "magicTagRead == kMAGIC_TAG (version or format mismatch)")
                return None
            dla_core = None if plan.get("dla_core") is None else (self.DLA_core if self.DLA_core >= 0 else 0)
            return trt.ICudaEngine._create(plan, dla_core)

    class ICudaEngine:
        def __init__(self, plan: Dict[str, Any], dla_core: Optional[int]) -> None:
            self._plan, self._dla_core = plan, dla_core
            self._io = [(n, s, d, trt.TensorIOMode.INPUT) for n, s, d in plan["inputs"]] + \
                       [(n, s, d, trt.TensorIOMode.OUTPUT) for n, s, d in plan["outputs"]]

        num_io_tensors = property(lambda self: len(self._io))
        num_optimization_profiles = property(lambda self: 1)
        name = property(lambda self: "fake-engine")

        def _entry(self, name: str) -> tuple:
            return next(e for e in self._io if e[0] == name)

        def get_tensor_name(self, index: int) -> str:
            return self._io[index][0]

        def get_tensor_mode(self, name: str) -> Any:
            return self._entry(name)[3]

        def get_tensor_dtype(self, name: str) -> Any:
            return trt.DataType[self._entry(name)[2]]

        def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
            return tuple(self._entry(name)[1])

        def get_tensor_format(self, name: str, profile_index: int = 0) -> Any:
            return trt.TensorFormat.LINEAR

        def is_shape_inference_io(self, name: str) -> bool:
            return False

        def create_execution_context(self, strategy: Any = None, runtime_config: Any = None) -> Any:
            trt._calls.append(("create_execution_context",))
            if "context_none" in trt._faults:
                return None
            return trt.IExecutionContext._create(self)

        def serialize(self) -> Any:
            return trt.IHostMemory._create(json.dumps(self._plan).encode())

    class IExecutionContext:
        def __init__(self, engine: Any) -> None:
            self._engine, self._shapes, self._addresses, self._session = engine, {}, {}, None
            self._out_shapes: Dict[tuple, Dict[str, tuple]] = {}

        engine = property(lambda self: self._engine)

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            trt._calls.append(("set_input_shape", name, shape))
            static = self._engine.get_tensor_shape(name)
            lo, _, hi = self._engine._plan["profile"].get(name, [static] * 3)
            if len(shape) != len(lo) or any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
                _log(None, trt, "ERROR", f"setInputShape: {name} {shape} outside the profile")
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> Tuple[int, ...]:
            engine = self._engine
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                return self._shapes.get(name, engine.get_tensor_shape(name))
            static = engine.get_tensor_shape(name)
            if all(d >= 0 for d in static):
                return static
            key = tuple(sorted(self._shapes.items()))
            if key not in self._out_shapes:
                feed = {n: np.zeros(self._shapes[n], _np(d)) for n, _, d in engine._plan["inputs"]}
                names = [n for n, _, _ in engine._plan["outputs"]]
                self._out_shapes[key] = dict(zip(names, (o.shape for o in self._ort().run(names, feed))))
            return tuple(self._out_shapes[key][name])

        def set_tensor_address(self, name: str, memory: int) -> bool:
            trt._calls.append(("set_tensor_address", name))
            if not memory or int(memory) % 256:
                return False  # TensorRT requires non-null, 256-byte aligned addresses
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name: str) -> int:
            return self._addresses.get(name, 0)

        def _ort(self) -> Any:
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(base64.b64decode(self._engine._plan["onnx_b64"]),
                                                     providers=["CPUExecutionProvider"])
            return self._session

        def execute_async_v3(self, stream_handle: int) -> bool:
            trt._calls.append(("execute_async_v3", int(stream_handle)))
            plan = self._engine._plan
            if "execute_fails" in trt._faults or any(n not in self._addresses for n, _, _ in
                                                     plan["inputs"] + plan["outputs"]):
                return False
            shapes = {n: self._shapes.get(n, tuple(s)) for n, s, _ in plan["inputs"]}
            addresses = dict(self._addresses)

            def kernel() -> None:
                feed = {n: np.frombuffer(trt._cuda.read(addresses[n], _volume(shapes[n]) * np.dtype(_np(d)).itemsize),
                                         _np(d)).reshape(shapes[n]) for n, _, d in plan["inputs"]}
                names = [n for n, _, _ in plan["outputs"]]
                for name, value in zip(names, self._ort().run(names, feed)):
                    trt._cuda.write(addresses[name], np.ascontiguousarray(value).tobytes())

            trt._cuda.work(int(stream_handle), kernel)
            return True

    return dict(Runtime=Runtime, ICudaEngine=ICudaEngine, IExecutionContext=IExecutionContext)


def _np(dtype_name: str) -> Any:
    return {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
            "BOOL": np.bool_, "UINT8": np.uint8}[dtype_name]


def _calibrator_classes(trt: types.ModuleType) -> Dict[str, type]:
    if "CalibrationAlgoType" not in vars(trt):
        return {}
    algo = trt.CalibrationAlgoType

    def make(name: str, member: str, base: Any) -> type:
        def get_algorithm(self: Any) -> Any:
            return getattr(algo, member)

        return type(name, (base,), {"get_algorithm": get_algorithm})

    class IInt8Calibrator:
        def __init__(self) -> None:
            pass

        def get_algorithm(self) -> Any:
            return algo.ENTROPY_CALIBRATION_2

        def get_batch_size(self) -> int:  # pure virtual in TensorRT: a subclass must define it
            raise NotImplementedError("IInt8Calibrator.get_batch_size is pure virtual")

        def get_batch(self, names: List[str]) -> Any:
            raise NotImplementedError("IInt8Calibrator.get_batch is pure virtual")

        def read_calibration_cache(self) -> Any:
            raise NotImplementedError("IInt8Calibrator.read_calibration_cache is pure virtual")

        def write_calibration_cache(self, cache: Any) -> None:
            raise NotImplementedError("IInt8Calibrator.write_calibration_cache is pure virtual")

    return {
        "IInt8Calibrator": IInt8Calibrator,
        "IInt8LegacyCalibrator": make("IInt8LegacyCalibrator", "LEGACY_CALIBRATION", IInt8Calibrator),
        "IInt8EntropyCalibrator": make("IInt8EntropyCalibrator", "ENTROPY_CALIBRATION", IInt8Calibrator),
        "IInt8EntropyCalibrator2": make("IInt8EntropyCalibrator2", "ENTROPY_CALIBRATION_2", IInt8Calibrator),
        "IInt8MinMaxCalibrator": make("IInt8MinMaxCalibrator", "MINMAX_CALIBRATION", IInt8Calibrator),
    }


# ---------------------------------------------------------------------------------------- install
def reset_polygraphy() -> None:
    """Forget the tensorrt module Polygraphy's lazy imports cached, and its TensorRT logger."""
    for name, module in list(sys.modules.items()):
        if not name.startswith("polygraphy") or module is None:
            continue
        for value in list(vars(module).values()):
            if type(value).__name__ == "LazyModule":
                cached = object.__getattribute__(value, "module")
                if cached is not None and getattr(cached, "__name__", "") == "tensorrt":
                    object.__setattr__(value, "module", None)
    util = sys.modules.get("polygraphy.backend.trt.util")
    if util is not None:
        util.TRT_LOGGER = None


class FakeTensorRT:
    """Context manager: ``sys.modules['tensorrt']`` is a fake of ``version`` and Polygraphy's CUDA
    wrapper runs on a :class:`~tests.fakes.fake_cuda.FakeCudart`; both restored on exit."""

    def __init__(self, version: str = "8.5.2.2", num_dla_cores: int = 0, faults: Iterable[str] = (),
                 cuda_fail: Iterable[str] = (), device: Tuple[str, Tuple[int, int]] = ("Fake Xavier NX", (7, 2))):
        from tests.fakes.fake_cuda import FakeCudart

        self.cuda = FakeCudart(name=device[0], sm=device[1], fail=cuda_fail)
        self.trt = make_fake_tensorrt(version, cuda=self.cuda, num_dla_cores=num_dla_cores, faults=faults)
        self._saved: Any = None

    def __enter__(self) -> FakeTensorRT:
        from tests.fakes import fake_cuda

        self._saved = sys.modules.get("tensorrt")
        sys.modules["tensorrt"] = self.trt
        reset_polygraphy()
        fake_cuda.install(self.cuda)
        return self

    def __exit__(self, *exc: Any) -> None:
        from tests.fakes import fake_cuda

        fake_cuda.uninstall()
        if self._saved is None:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = self._saved
        reset_polygraphy()


__all__ = ["make_fake_tensorrt", "FakeTensorRT", "reset_polygraphy", "version_int", "UNSUPPORTED_OPS", "FAULTS"]
