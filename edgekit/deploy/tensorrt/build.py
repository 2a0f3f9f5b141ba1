"""Build a TensorRT engine from an ONNX file on Polygraphy's TensorRT backend (TensorRT 8.5 to 11).

Polygraphy (NVIDIA's own, tested on real TensorRT) does the TensorRT work: ``NetworkFromOnnxPath``
(plugins initialised, EXPLICIT_BATCH on 8.x, ``parse_from_file`` so external weights resolve),
``CreateConfig`` (FP16/INT8 flags, calibrator, optimization and calibration profiles, DLA + GPU
fallback, memory pools), its ``Calibrator`` (batches sized from the network input, device copies)
and ``EngineBytesFromNetwork``. edgekit adds what Polygraphy leaves to the caller:

* version gates (:mod:`.gates`) and a refusal of dynamic inputs without a profile (Polygraphy
  would silently pin them to a default size);
* return values Polygraphy ignores: ``add_optimization_profile`` (-1), ``set_timing_cache``
  (False: warn and build without it), the DLA core count;
* the timing cache keyed by TensorRT version and SM, the engine key and sidecar (:mod:`.keys`),
  atomic writes, and progress lines with an elapsed-seconds heartbeat while TensorRT builds.

Device side: Python 3.8; tensorrt and polygraphy are imported lazily.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

from edgekit import __version__
from edgekit.calib.cache import utc_now
from edgekit.core.atomic import write_bytes_atomic, write_json_atomic
from edgekit.core.errors import ConfigError, DeviceError, ModelError
from edgekit.core.manifest import file_sha256

from .calibration import make_calibrator, plan_calibration, save_device_cache
from .device import DeviceInfo, device_info, import_tensorrt, polygraphy_log, require_polygraphy, trt_major
from .gates import check_version, resolve_int8_source
from .keys import EngineSidecar, engine_key, key_fields, plan_name, reusable, sidecar_path
from .options import EngineBuildOptions, default_timing_cache_path

LOG = logging.getLogger("edgekit.deploy.tensorrt")
PathLike = Union[str, Path]
Progress = Callable[[str], None]
Shapes = Dict[str, List[List[int]]]
HEARTBEAT_S = 10.0


class EngineResult(NamedTuple):
    plan_path: Path
    sidecar_path: Path
    key: str
    reused: bool


def _quiet(_msg: str) -> None:
    return None


@contextlib.contextmanager
def heartbeat(progress: Progress, phase: str, every: float = HEARTBEAT_S) -> Iterator[None]:
    """Print ``<phase>: N s elapsed`` every ``every`` seconds from a thread while the block runs."""
    stop, start = threading.Event(), time.monotonic()

    def beat() -> None:
        while not stop.wait(every):
            progress(f"{phase}: {time.monotonic() - start:.0f} s elapsed")

    thread = threading.Thread(target=beat, name="edgekit-build-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def timing_cache_path(options: EngineBuildOptions, trt_version: str, sm: str) -> Optional[Path]:
    if options.timing_cache == "":
        return None
    return Path(options.timing_cache) if options.timing_cache else default_timing_cache_path(trt_version, sm)


def build_engine(onnx_path: PathLike, out_dir: PathLike, options: EngineBuildOptions,
                 calib_cache: Optional[PathLike] = None, progress: Optional[Progress] = None, force: bool = False,
                 trt_module: Any = None, calib_images: Any = None, device: Optional[DeviceInfo] = None) -> EngineResult:
    """Build ``<out_dir>/<precision>[-dlaN]-<key>.plan`` + its sidecar, or reuse it when already built.

    ``calib_cache``: a calibration cache (with its edgekit sidecar) for INT8 from a cache;
    ``calib_images``: a :class:`~edgekit.calib.dataset.CalibrationSet` to calibrate on here instead.
    ``progress`` receives one line per phase. ``trt_module``/``device`` let tests inject fakes.
    """
    say = progress or _quiet
    trt = import_tensorrt(trt_module)
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise ModelError(f"ONNX model {onnx_path} does not exist", "export the model first (edgekit export)")
    version, major = str(trt.__version__), trt_major(trt)
    check_version(options, major)
    if options.builder == "trtexec":
        from .trtexec import build_with_trtexec

        return build_with_trtexec(onnx_path, out_dir, options, trt_version=version, calib_cache=calib_cache,
                                  progress=say, force=force, device=device)
    require_polygraphy(major)
    device = device or device_info()
    with polygraphy_log() as plog:
        say(f"parse: {onnx_path.name} with TensorRT {version} (Polygraphy)")
        job = _plan_job(trt, onnx_path, out_dir, options, device, calib_cache, calib_images, plog, say)
        if not force and reusable(job.plan_path, job.key) is not None:
            say(f"reuse: {job.plan_path} (same key, plan sha256 verified)")
            return EngineResult(job.plan_path, sidecar_path(job.plan_path), job.key, True)
        return _run_job(trt, job, options, device, plog, say)


class _Job(NamedTuple):
    """A parsed network and everything decided about its build before TensorRT builds it."""

    onnx_path: Path
    builder: Any
    network: Any
    shapes: Shapes
    source: Optional[str]
    calib: Any  # CalibrationPlan or None
    fields: Dict[str, Any]
    key: str
    plan_path: Path


def _plan_job(trt: Any, onnx_path: Path, out_dir: Path, options: EngineBuildOptions, device: DeviceInfo,
              calib_cache: Optional[PathLike], calib_images: Any, plog: Any, say: Progress) -> _Job:
    version, major = str(trt.__version__), trt_major(trt)
    cache = Path(calib_cache) if calib_cache is not None else None
    builder, network = _parse(trt, onnx_path, major, plog)
    shapes = network_shapes(network, options)
    source = resolve_int8_source(options, major, _has_qdq(trt, network), cache is not None or calib_images is not None,
                                 onnx_path.name)
    calib = None
    onnx_sha = file_sha256(onnx_path)
    if source == "calib-cache":
        calib = plan_calibration(version, onnx_sha, cache, calib_images, options.calib_algorithm)
        say(f"calibrate: {len(calib.images)} images, {calib.algorithm}" if calib.images is not None
            else f"calibrate: calibration cache {calib.cache_path} ({calib.algorithm}, sidecar verified)")
    fields = key_fields(device.name, device.sm, version, options, source, calib.algorithm if calib else None,
                        onnx_sha, _calib_identity(calib))
    key = engine_key(fields)
    return _Job(onnx_path, builder, network, shapes, source, calib, fields, key, out_dir / plan_name(fields, key))


def _run_job(trt: Any, job: _Job, options: EngineBuildOptions, device: DeviceInfo, plog: Any,
             say: Progress) -> EngineResult:
    version = str(trt.__version__)
    timing = timing_cache_path(options, version, device.sm)
    calib = job.calib
    with tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        calibrator, loader = make_calibrator(trt, calib, Path(tmp) / "calib.cache", say) if calib else (None, None)
        try:
            say(f"configure: {options.precision}" + (f", INT8 from {job.source}" if job.source else "")
                + (f", DLA core {options.dla_core}" if options.dla_core is not None else "")
                + f", workspace {options.workspace_mb} MB")
            config, timing_used = _configure(trt, job.builder, job.network, options, job.shapes, calibrator, timing, say)
            start = time.monotonic()
            say("build: TensorRT is building the engine (minutes on a Jetson)")
            data = _build(trt, job.builder, job.network, config, plog, loader, say)
            seconds = time.monotonic() - start
            kept = save_device_cache(calibrator, loader, calib, version, job.fields["onnx_sha256"],
                                     job.plan_path.with_suffix(".calib.cache")) if calib else None
        finally:
            if calibrator is not None:
                calibrator.free()  # its device buffers, also when the build failed
    if kept is not None:
        say(f"calibrate: TensorRT's cache kept as {kept}")
    if timing is not None:
        _save_timing_cache(config, timing)
    sidecar = EngineSidecar(
        key=job.key, key_fields=job.fields, trt_version=version, device_name=device.name,
        compute_capability=device.sm, precision=options.precision, int8_source=job.source,
        calib_algorithm=job.fields["calib_algorithm"], dla_core=options.dla_core, onnx=str(job.onnx_path),
        onnx_sha256=job.fields["onnx_sha256"], calib_cache=str(calib.cache_path) if calib and calib.cache_path else None,
        calib_cache_sha256=calib.cache_sha256 if calib else None, shapes=job.shapes, workspace_mb=options.workspace_mb,
        builder=options.builder, timing_cache=str(timing) if timing else None, timing_cache_used=timing_used,
        plan_sha256=hashlib.sha256(data).hexdigest(), build_seconds=round(seconds, 3), created_utc=utc_now(),
        edgekit_version=__version__)
    return write_engine(job.plan_path, data, sidecar, say)


def write_engine(plan_path: Path, data: bytes, sidecar: EngineSidecar, say: Progress) -> EngineResult:
    """Plan, then sidecar, both atomic; the old sidecar goes first so a crash never pairs them wrongly."""
    say(f"write: {plan_path} ({len(data) / 1e6:.1f} MB)")
    sidecar_path(plan_path).unlink(missing_ok=True)
    write_bytes_atomic(plan_path, data)
    side = write_json_atomic(sidecar_path(plan_path), sidecar.model_dump(mode="json"))
    return EngineResult(plan_path, side, sidecar.key, False)


def _calib_identity(calib: Any) -> Optional[str]:
    if calib is None:
        return None
    return calib.cache_sha256 if calib.images is None else "images:" + calib.images.data_hash()


def _parse(trt: Any, onnx_path: Path, major: int, plog: Any) -> Tuple[Any, Any]:
    from polygraphy.backend.trt import NetworkFromOnnxPath
    from polygraphy.exception import PolygraphyException

    try:
        # TensorRT 11 networks are strongly typed: precision comes from the ONNX (Q/DQ nodes, casts).
        builder, network, parser = NetworkFromOnnxPath(str(onnx_path), strongly_typed=major >= 11)()
    except PolygraphyException as e:
        detail = plog.summary() or str(e).strip().splitlines()[0]
        raise ModelError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {detail}",
                         "check the opset (<= 17 for TensorRT 8.5) and the failing node's op (docs/tensorrt.md)") from None
    return builder, network


def network_shapes(network: Any, options: EngineBuildOptions) -> Shapes:
    """input -> [min, opt, max]; a dynamic input needs a profile, a profile must fit its input."""
    shapes: Shapes = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        dims = [int(d) for d in tensor.shape]
        profile = options.profiles.get(tensor.name)
        if profile is not None:
            if len(profile.min) != len(dims) or any(
                    d >= 0 and not (lo == opt == hi == d) for d, lo, opt, hi in zip(dims, profile.min, profile.opt, profile.max)):
                raise ConfigError(f"profile for input '{tensor.name}' {list(profile.min)}..{list(profile.max)} does not "
                                  f"fit its shape {dims}", "give min/opt/max of the same rank, differing only on "
                                  "dynamic (-1) axes")
            shapes[tensor.name] = [list(profile.min), list(profile.opt), list(profile.max)]
        elif any(d < 0 for d in dims):
            raise ConfigError(f"input '{tensor.name}' has dynamic shape {dims} and no optimization profile",
                              f"pass profiles={{'{tensor.name}': {{'min': ..., 'opt': ..., 'max': ...}}}} "
                              "(a bundle records one in its manifest)")
        else:
            shapes[tensor.name] = [dims, dims, dims]
    unknown = sorted(set(options.profiles) - set(shapes))
    if unknown:
        raise ConfigError(f"profiles name inputs {unknown} that the network does not have",
                          f"network inputs: {sorted(shapes)}")
    if options.dla_core is not None and any(s[0] != s[2] for s in shapes.values()):
        raise ConfigError("DLA takes static shapes only; this build has a dynamic profile",
                          "build DLA engines with min == opt == max")
    return shapes


def _has_qdq(trt: Any, network: Any) -> bool:
    kinds = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    return any(network.get_layer(i).type in kinds for i in range(network.num_layers))


def _configure(trt: Any, builder: Any, network: Any, options: EngineBuildOptions, shapes: Shapes, calibrator: Any,
               timing: Optional[Path], say: Progress) -> Tuple[Any, bool]:
    from polygraphy.backend.trt import CreateConfig, Profile
    from polygraphy.exception import PolygraphyException

    major = trt_major(trt)
    legacy = major < 11  # 11: no precision flags (strongly typed)
    profile = Profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.add(name, tuple(lo), tuple(opt), tuple(hi))
    dla = options.dla_core is not None
    if dla:
        cores = int(builder.num_DLA_cores)
        if options.dla_core >= cores:
            raise DeviceError(f"DLA core {options.dla_core} requested; this device has {cores} DLA core(s)",
                              "use --dla-core 0 or 1 on a Xavier NX, or leave it unset on a GPU without DLA")
    try:
        config = CreateConfig(
            fp16=legacy and (options.precision == "fp16" or (options.precision == "int8" and options.fp16_fallback)),
            int8=legacy and options.precision == "int8", calibrator=calibrator, profiles=[profile],
            memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(options.workspace_mb) << 20},
            use_dla=dla, allow_gpu_fallback=dla and options.gpu_fallback)(builder, network)
    except PolygraphyException as e:
        raise ModelError(f"TensorRT {trt.__version__} refused the build configuration: {str(e).splitlines()[0]}",
                         "see docs/tensorrt.md for what each TensorRT version supports") from None
    if dla:
        config.DLA_core = int(options.dla_core)  # CreateConfig always picks core 0
    if config.num_optimization_profiles < 1:  # add_optimization_profile returned -1
        raise ModelError(f"TensorRT refused the optimization profile {shapes}",
                         "check min <= opt <= max and that the shapes fit the model")
    return config, _load_timing_cache(config, timing, say)


def _load_timing_cache(config: Any, timing: Optional[Path], say: Progress) -> bool:
    """Offer the timing cache; if TensorRT refuses it (other GPU/version, corrupt), build without it."""
    if timing is None:
        return False
    data = timing.read_bytes() if timing.is_file() else b""
    cache = None
    with contextlib.suppress(Exception):  # a corrupt file may make TensorRT raise instead of returning None
        cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if data:
            say(f"configure: timing cache {timing} ({len(data)} bytes)")
        return bool(data)
    say(f"configure: TensorRT refused timing cache {timing}; building without it (it will be rewritten)")
    LOG.warning("TensorRT refused timing cache %s (another GPU or TensorRT version, or corrupt)", timing)
    fresh = config.create_timing_cache(b"")
    config.set_timing_cache(fresh, ignore_mismatch=False)
    return False


def _build(trt: Any, builder: Any, network: Any, config: Any, plog: Any, loader: Any, say: Progress) -> bytes:
    from polygraphy.backend.trt import EngineBytesFromNetwork
    from polygraphy.exception import PolygraphyException

    error: Optional[str] = None
    with heartbeat(say, "build"):
        try:
            plan = EngineBytesFromNetwork((builder, network), config=config)()
        except PolygraphyException as e:
            plan, error = None, plog.summary() or str(e).strip().splitlines()[0]
    if loader is not None and loader.error is not None:
        raise loader.error
    if not plan:
        raise ModelError(f"TensorRT {trt.__version__} failed to build the engine: {error or 'no plan returned'}",
                         "see TensorRT's log above (unsupported layer, workspace too small, DLA limits)")
    return bytes(plan)


def _save_timing_cache(config: Any, timing: Path) -> None:
    try:
        cache = config.get_timing_cache()
        data = bytes(cache.serialize()) if cache is not None else b""
    except Exception as e:  # the engine is built; a lost timing cache only slows the next build
        LOG.warning("could not serialize the timing cache: %s", e)
        return
    if data:
        write_bytes_atomic(timing, data)


__all__ = ["EngineResult", "build_engine", "write_engine", "network_shapes", "heartbeat", "timing_cache_path"]
