"""Build a TensorRT engine from an ONNX file, on TensorRT 8.5 (Jetson) through 11 (x86 hosts).

Only the API subset common to those versions is used (REFERENCE.md §2), with version checks
where they differ:

* ``EXPLICIT_BATCH`` network flag on 8.x only (ignored in 10, removed in 11);
* ``BuilderFlag.FP16/INT8`` and ``config.int8_calibrator`` on 8.5/10 only; TensorRT 11 networks
  are strongly typed (``STRONGLY_TYPED``), precision comes from the ONNX (Q/DQ nodes);
* workspace through ``set_memory_pool_limit``, never ``max_workspace_size``; the plan through
  ``build_serialized_network``, never ``build_engine``.

INT8 has two modes: ``implicit`` (calibrator + sidecar-guarded cache, 8.5/10; the only INT8 that
DLA takes on 8.x) and ``explicit`` (a Q/DQ ONNX, any version, the only one on 11). The engine is
written as a plain plan, atomically, named by :func:`engine_key`; what it was built from goes in a
sidecar JSON (no Ultralytics-style metadata prefix, which trtexec/Triton/DeepStream refuse).

Runs on the device as well as the host (Python 3.8; tensorrt imported lazily).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

from pydantic import Field, field_validator, model_validator

from edgekit.core.atomic import write_bytes_atomic, write_json_atomic
from edgekit.core.config import StrictModel
from edgekit.core.errors import ConfigError, DeviceError, ModelError
from edgekit.core.manifest import file_sha256
from edgekit.deploy.runners.tensorrt import CudaMemory, EngineSidecar, engine_sidecar_path, import_tensorrt

LOG = logging.getLogger(__name__)
PathLike = Union[str, Path]


class ShapeProfile(StrictModel):
    """min/opt/max shapes of one input (an optimization profile entry)."""

    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeProfile:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError("min, opt and max must have the same rank")
        if any(not (a <= b <= c) for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"need min <= opt <= max per axis, got {self.min} / {self.opt} / {self.max}")
        return self

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max


class EngineBuildOptions(StrictModel):
    """How to build one engine. DLA: FP16/INT8 and static shapes only (validated)."""

    precision: str = "fp16"
    int8_mode: str = "auto"  # auto: implicit when a calibration cache/set is given (8.5/10), else explicit
    calib_method: str = "minmax"  # minmax | entropy2 (implicit INT8); MinMax keeps OBB heads intact (#19518)
    calib_batch: int = Field(1, ge=1)
    calib_cache: Optional[str] = None
    int8_fp16_fallback: bool = True  # layers without INT8 kernels run FP16 rather than FP32 (8.5/10)
    workspace_mb: int = Field(1024, ge=1)
    dla_core: Optional[int] = Field(None, ge=0)
    gpu_fallback: bool = True
    profiles: Dict[str, ShapeProfile] = {}
    timing_cache: Optional[str] = None

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        if v not in ("fp32", "fp16", "int8"):
            raise ValueError("precision must be fp32, fp16 or int8")
        return v

    @field_validator("int8_mode")
    @classmethod
    def _mode(cls, v: str) -> str:
        if v not in ("auto", "implicit", "explicit"):
            raise ValueError("int8_mode must be auto, implicit or explicit")
        return v

    @field_validator("calib_method")
    @classmethod
    def _method(cls, v: str) -> str:
        if v not in ("minmax", "entropy2"):
            raise ValueError("calib_method must be minmax or entropy2")
        return v

    @model_validator(mode="after")
    def _dla(self) -> EngineBuildOptions:
        if self.dla_core is not None:
            if self.precision == "fp32":
                raise ValueError("DLA runs FP16 or INT8 only; set precision to fp16 or int8")
            dynamic = [name for name, p in self.profiles.items() if not p.is_static]
            if dynamic:
                raise ValueError(f"DLA takes static shapes only; inputs {dynamic} have min != max")
        return self


class EngineResult(NamedTuple):
    plan_path: Path
    sidecar_path: Path
    key: str


def tensorrt_available() -> bool:
    """True when a working ``tensorrt`` imports (PyPI's stub packages count as unavailable)."""
    try:
        import_tensorrt()
    except DeviceError:
        return False
    return True


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def engine_key(device_name: str, trt_version: str, precision: str, onnx_sha256: str,
               shapes: Dict[str, Any]) -> str:
    """A file-name-safe key: device, TRT version, precision, ONNX hash and a hash of the shapes."""
    shape_hash = hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:8]
    return f"{_slug(device_name)}-trt{_slug(trt_version)}-{_slug(precision)}-{onnx_sha256[:12]}-{shape_hash}"


def resolve_int8_mode(options: EngineBuildOptions, major: int, have_calibration: bool) -> Optional[str]:
    """None for fp32/fp16; 'implicit' or 'explicit' for int8, refusing what the version cannot do."""
    if options.precision != "int8":
        return None
    mode = options.int8_mode
    if mode == "auto":
        mode = "implicit" if (have_calibration and major < 11) else "explicit"
    if mode == "implicit" and major >= 11:
        raise ConfigError(f"int8_mode 'implicit' needs a calibrator, which TensorRT {major} removed",
                          "build from the Q/DQ ONNX (model.int8.qdq.onnx) with int8_mode='explicit'")
    if mode == "implicit" and not have_calibration:
        raise ConfigError("int8_mode 'implicit' needs calib_cache or calibration images",
                          "pass calib_cache=... (from the bundle) and/or calibration images")
    if mode == "explicit" and options.dla_core is not None and major < 10:
        raise ConfigError("TensorRT 8.x DLA does not take explicit (Q/DQ) quantization",
                          "use int8_mode='implicit' with the bundle's calibration cache for DLA INT8")
    return mode


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    if parser.parse(onnx_path.read_bytes()):
        return parser
    problems = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        problems.append(f"{_error_node(err, onnx_path)}: {err.desc()}")
    raise ModelError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: " + "; ".join(problems),
                     "check the opset (<= 17 for TRT 8.5) and the failing node's op")


def _error_node(err: Any, onnx_path: Path) -> str:
    """The failing node's name: TRT >= 10 reports it; 8.5 only gives its index, mapped via onnx if present."""
    if hasattr(err, "node_name") and err.node_name():
        return f"node '{err.node_name()}'"
    index = err.node()
    try:
        import onnx  # host only; on the device the index is the best we have

        nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
        if 0 <= index < len(nodes):
            return f"node '{nodes[index].name}' (#{index}, {nodes[index].op_type})"
    except ImportError:
        pass
    return f"node #{index}"


def _input_shapes(trt: Any, network: Any, options: EngineBuildOptions) -> Dict[str, List[List[int]]]:
    """input -> [min, opt, max]; dynamic inputs must have a profile."""
    shapes: Dict[str, List[List[int]]] = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        profile = options.profiles.get(tensor.name)
        if profile is not None:
            if len(profile.min) != len(dims) or any(d >= 0 and d != m for d, m in zip(dims, profile.min)):
                raise ConfigError(f"profile for input '{tensor.name}' {list(profile.min)} does not fit its shape {dims}",
                                  "give min/opt/max with the same rank, differing only on dynamic (-1) axes")
            shapes[tensor.name] = [list(profile.min), list(profile.opt), list(profile.max)]
        elif any(d < 0 for d in dims):
            raise ConfigError(f"input '{tensor.name}' has dynamic shape {dims} and no profile",
                              f"add profiles: {{{tensor.name}: {{min: ..., opt: ..., max: ...}}}}")
        else:
            shapes[tensor.name] = [dims, dims, dims]
    unknown = sorted(set(options.profiles) - set(shapes))
    if unknown:
        raise ConfigError(f"profiles name inputs {unknown} that the network does not have",
                          f"network inputs: {sorted(shapes)}")
    return shapes


def _has_qdq(trt: Any, network: Any) -> bool:
    quantize = getattr(getattr(trt, "LayerType", None), "QUANTIZE", None)
    return any(network.get_layer(i).type == quantize for i in range(network.num_layers))


def _set_precision(trt: Any, config: Any, network: Any, options: EngineBuildOptions, mode: Optional[str],
                   calibrator: Any, onnx_path: Path) -> None:
    major = trt_major(trt)
    if mode == "explicit" and not _has_qdq(trt, network):
        raise ModelError(f"{onnx_path} has no Q/DQ nodes, so explicit INT8 would build an FP32 engine",
                         "build from model.int8.qdq.onnx, or use int8_mode='implicit' with a calibration cache")
    if major >= 11:
        if options.precision == "fp16":
            raise ConfigError("TensorRT 11 has no FP16 builder flag (networks are strongly typed)",
                              "export an FP16 ONNX and build it with precision='fp32' (as typed), or use int8 Q/DQ")
        return  # strongly typed: precision comes from the ONNX
    if options.precision == "fp16" or (options.precision == "int8" and options.int8_fp16_fallback):
        config.set_flag(trt.BuilderFlag.FP16)
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    if calibrator is not None:
        config.int8_calibrator = calibrator


def _set_dla(trt: Any, builder: Any, config: Any, options: EngineBuildOptions) -> None:
    if options.dla_core is None:
        return
    cores = builder.num_DLA_cores
    if options.dla_core >= cores:
        raise ConfigError(f"dla_core {options.dla_core} requested but this device has {cores} DLA core(s)",
                          "use dla_core 0 or 1 on Xavier NX, or leave dla_core unset on a GPU without DLA")
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(options.dla_core)
    if options.gpu_fallback:
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _set_profiles(builder: Any, config: Any, shapes: Dict[str, List[List[int]]], options: EngineBuildOptions) -> None:
    if not options.profiles and all(s[0] == s[2] for s in shapes.values()):
        return  # static network: no profile needed
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, tuple(lo), tuple(opt), tuple(hi))
    config.add_optimization_profile(profile)


def _timing_cache(config: Any, path: Optional[str]) -> Any:
    if not path:
        return None
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, False)
    return cache


def _make_calibrator(trt: Any, options: EngineBuildOptions, calib: Any, onnx_sha: str, cuda: Any) -> Any:
    from edgekit.calib.trt_calibrator import make_calibrator

    cache = options.calib_cache or ""
    if not cache:
        raise ConfigError("implicit INT8 needs calib_cache (where the cache is read or written)",
                          "pass calib_cache=PATH (the bundle's .calib.cache)")
    return make_calibrator(trt, calib, cache, method=options.calib_method, batch_size=options.calib_batch,
                           sidecar={"onnx_sha256": onnx_sha}, cuda=cuda)


def _existing(plan_path: Path, key: str) -> Optional[EngineResult]:
    side = engine_sidecar_path(plan_path)
    if not (plan_path.is_file() and side.is_file()):
        return None
    try:
        sidecar = EngineSidecar.model_validate(json.loads(side.read_text(encoding="utf-8")))
    except (ValueError, OSError):
        return None
    if sidecar.key != key or sidecar.plan_sha256 != file_sha256(plan_path):
        return None
    return EngineResult(plan_path, side, key)


def build_engine(onnx_path: PathLike, out_dir: PathLike, options: EngineBuildOptions, trt_module: Any = None,
                 calib: Any = None, cuda: Any = None, force: bool = False) -> EngineResult:
    """Build (or reuse, when the same key is already built) ``<out_dir>/<key>.plan`` + ``<key>.json``.

    ``calib`` is a CalibrationSet for implicit INT8 (optional when ``options.calib_cache`` holds a
    valid cache). ``trt_module``/``cuda`` let tests inject fakes.
    """
    from edgekit.calib.cache import utc_now

    trt = trt_module or import_tensorrt()
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model {onnx_path} does not exist", "export the model first (edgekit export)")
    major, onnx_sha = trt_major(trt), file_sha256(onnx_path)
    have_calibration = calib is not None or bool(options.calib_cache and Path(options.calib_cache).is_file())
    mode = resolve_int8_mode(options, major, have_calibration)
    cuda = cuda or CudaMemory()
    device_name, sm = cuda.device_info()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, major))
    _parse_onnx(trt, network, logger, onnx_path)
    shapes = _input_shapes(trt, network, options)
    label = options.precision + (f"-{mode}" if mode else "") + (f"-dla{options.dla_core}" if options.dla_core is not None else "")
    key = engine_key(f"{device_name}-{sm}", str(trt.__version__), label, onnx_sha, shapes)
    plan_path = out_dir / f"{key}.plan"
    if not force and _existing(plan_path, key):
        LOG.info("reusing engine %s", plan_path)
        return EngineResult(plan_path, engine_sidecar_path(plan_path), key)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    calibrator = _make_calibrator(trt, options, calib, onnx_sha, cuda) if mode == "implicit" else None
    try:
        _set_precision(trt, config, network, options, mode, calibrator, onnx_path)
        _set_dla(trt, builder, config, options)
        _set_profiles(builder, config, shapes, options)
        timing_cache = _timing_cache(config, options.timing_cache)
        plan = builder.build_serialized_network(network, config)
        if calibrator is not None and calibrator.error is not None:
            raise calibrator.error
    finally:
        if calibrator is not None:
            calibrator.free()
    if plan is None:
        raise ModelError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}",
                         "see TensorRT's log above (unsupported layer, workspace too small, DLA limits)")
    if timing_cache is not None:
        write_bytes_atomic(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    data = bytes(plan)
    sidecar = EngineSidecar(key=key, trt_version=str(trt.__version__), device_name=device_name,
                            compute_capability=sm, precision=options.precision, int8_mode=mode,
                            onnx_sha256=onnx_sha, shapes=shapes, dla_core=options.dla_core,
                            workspace_mb=options.workspace_mb, plan_sha256=hashlib.sha256(data).hexdigest(),
                            created_utc=utc_now())
    engine_sidecar_path(plan_path).unlink(missing_ok=True)  # a crash between the two writes leaves no stale pair
    write_bytes_atomic(plan_path, data)
    side = write_json_atomic(engine_sidecar_path(plan_path), sidecar.model_dump(mode="json"))
    LOG.info("built engine %s (%d bytes)", plan_path, len(data))
    return EngineResult(plan_path, side, key)


def _network_flags(trt: Any, major: int) -> int:
    flags = 0
    kinds = trt.NetworkDefinitionCreationFlag
    if major < 10:  # required on 8.x, ignored on 10, gone in 11
        flags |= 1 << int(kinds.EXPLICIT_BATCH)
    if major >= 11:  # strongly typed: precision from the ONNX (Q/DQ nodes, casts)
        flags |= 1 << int(kinds.STRONGLY_TYPED)
    return flags


__all__ = ["EngineBuildOptions", "ShapeProfile", "EngineResult", "build_engine", "engine_key",
           "tensorrt_available", "resolve_int8_mode"]
