"""The same engine build as a ``trtexec`` command line, for users who build with the tool JetPack ships.

Flags by TensorRT version (``docs/tensorrt-engines.md``, "trtexec"):

* 8.5: ``--onnx --saveEngine --fp16 --int8 --calib --useDLACore --allowGPUFallback
  --timingCacheFile --memPoolSize=workspace:<MiB> --minShapes/--optShapes/--maxShapes``, ``--buildOnly``;
* 8.6 and 10: the same, ``--skipInference`` instead of ``--buildOnly``; calibration deprecated in 10;
* 11: no ``--int8/--fp16/--best/--calib`` (strongly typed networks): FP16 and calibration-cache INT8
  are refused, Q/DQ INT8 builds as typed.

Two trtexec traps are refused rather than passed through: ``--int8`` without ``--calib`` uses fake
ranges (timing only), so it is emitted only for a Q/DQ ONNX; and ``--calib`` naming a missing file
makes trtexec silently calibrate on random data.

Device side: Python 3.8, standard library only (trtexec runs as a subprocess).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from edgekit import __version__
from edgekit.core.errors import ConfigError, DeviceError, ModelError
from edgekit.core.manifest import file_sha256

from .gates import check_version, resolve_int8_source
from .options import EngineBuildOptions

PathLike = Union[str, Path]
JETPACK_TRTEXEC = Path("/usr/src/tensorrt/bin/trtexec")


def _version_tuple(trt_version: str) -> Tuple[int, int]:
    parts = (str(trt_version).split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


def onnx_has_qdq(onnx_path: PathLike) -> bool:
    """Whether the ONNX holds QuantizeLinear/DequantizeLinear nodes.

    Node op types are stored as plain strings in the protobuf, so a byte search answers this on the
    device, where the onnx package is not installed.
    """
    with open(onnx_path, "rb") as f:
        return b"QuantizeLinear" in f.read()


def _shape_spec(profiles: Dict[str, Any], which: str) -> str:
    return ",".join(f"{name}:{'x'.join(str(d) for d in getattr(p, which))}" for name, p in sorted(profiles.items()))


def trtexec_command(onnx: PathLike, plan: PathLike, options: EngineBuildOptions, trt_version: str,
                    calib_cache: Optional[PathLike] = None, timing_cache: Optional[PathLike] = None,
                    int8_source: Optional[str] = None, executable: str = "trtexec") -> List[str]:
    """The argv of ``trtexec`` building ``plan`` from ``onnx`` exactly as :func:`build_engine` would.

    ``int8_source`` is the resolved INT8 path ('qdq' or 'calib-cache'); when None it is resolved
    from ``options`` and the ONNX itself.
    """
    major, minor = _version_tuple(trt_version)
    check_version(options, major)
    if options.precision == "int8" and int8_source is None:
        int8_source = resolve_int8_source(options, major, onnx_has_qdq(onnx), calib_cache is not None, Path(onnx).name)
    cmd = [executable, f"--onnx={onnx}", f"--saveEngine={plan}"]
    legacy = major < 11  # trtexec 11 dropped --int8/--fp16/--best/--calib
    if legacy and (options.precision == "fp16" or (options.precision == "int8" and options.fp16_fallback)):
        cmd.append("--fp16")
    if options.precision == "int8" and legacy:
        cmd.append("--int8")  # with a Q/DQ ONNX the ranges come from its Q/DQ nodes
        if int8_source == "calib-cache":
            if calib_cache is None:
                raise ConfigError("trtexec --int8 without --calib uses fake +-2 ranges (timing only)",
                                  "give the calibration cache, or build from the Q/DQ ONNX")
            if not Path(calib_cache).is_file():
                raise ConfigError(f"calibration cache {calib_cache} does not exist (trtexec would silently calibrate "
                                  "on random data)", "pass the bundle's calibration cache file")
            cmd.append(f"--calib={calib_cache}")
    if options.dla_core is not None:
        cmd.append(f"--useDLACore={options.dla_core}")
        if options.gpu_fallback:
            cmd.append("--allowGPUFallback")
    # plain MiB: 8.5 reads `pool:sizeInMiB`, 8.6+ reads a number without unit as MiB
    cmd.append(f"--memPoolSize=workspace:{int(options.workspace_mb)}")
    if timing_cache is not None:
        cmd.append(f"--timingCacheFile={timing_cache}")
    if options.profiles:
        for flag, which in (("--minShapes", "min"), ("--optShapes", "opt"), ("--maxShapes", "max")):
            cmd.append(f"{flag}={_shape_spec(options.profiles, which)}")
        if int8_source == "calib-cache" and any(not p.is_static for p in options.profiles.values()):
            opt = _shape_spec(options.profiles, "opt")  # TensorRT calibrates at one shape: the OPT one
            cmd += [f"--minShapesCalib={opt}", f"--optShapesCalib={opt}", f"--maxShapesCalib={opt}"]
    cmd.append("--buildOnly" if (major, minor) < (8, 6) else "--skipInference")
    return cmd


def find_trtexec() -> str:
    found = shutil.which("trtexec")
    if found:
        return found
    if JETPACK_TRTEXEC.is_file() and os.access(str(JETPACK_TRTEXEC), os.X_OK):
        return str(JETPACK_TRTEXEC)
    raise DeviceError("trtexec is not on PATH (nor at /usr/src/tensorrt/bin/trtexec)",
                      "install TensorRT's samples (JetPack ships trtexec), or use --builder polygraphy")


def build_with_trtexec(onnx_path: Path, out_dir: Path, options: EngineBuildOptions, trt_version: str,
                       calib_cache: Optional[PathLike] = None, progress: Optional[Callable[[str], None]] = None,
                       force: bool = False, device: Any = None) -> Any:
    """Run trtexec for the build; same key, same sidecar, same atomic write as the Polygraphy builder."""
    from edgekit.calib.cache import utc_now

    from .build import EngineResult, heartbeat, timing_cache_path, write_engine
    from .calibration import plan_calibration
    from .device import device_info
    from .keys import EngineSidecar, engine_key, key_fields, plan_name, reusable, sidecar_path

    say = progress or (lambda _msg: None)
    major = _version_tuple(trt_version)[0]
    onnx_sha = file_sha256(onnx_path)
    cache = Path(calib_cache) if calib_cache is not None else None
    source = resolve_int8_source(options, major, onnx_has_qdq(onnx_path), cache is not None, onnx_path.name)
    calib = plan_calibration(trt_version, onnx_sha, cache, None, options.calib_algorithm) \
        if source == "calib-cache" else None
    device = device or device_info()
    fields = key_fields(device.name, device.sm, trt_version, options, source, calib.algorithm if calib else None,
                        onnx_sha, calib.cache_sha256 if calib else None)
    key = engine_key(fields)
    plan_path = Path(out_dir) / plan_name(fields, key)
    if not force and reusable(plan_path, key) is not None:
        say(f"reuse: {plan_path} (same key, plan sha256 verified)")
        return EngineResult(plan_path, sidecar_path(plan_path), key, True)
    timing = timing_cache_path(options, trt_version, device.sm)
    staging = plan_path.with_name(f".{plan_path.stem}.trtexec-{os.getpid()}.plan")
    cmd = trtexec_command(onnx_path, staging, options, trt_version, calib_cache=cache, timing_cache=timing,
                          int8_source=source, executable=find_trtexec())
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    if timing is not None:
        timing.parent.mkdir(parents=True, exist_ok=True)
    timing_used = bool(timing is not None and timing.is_file())
    say("build: " + " ".join(cmd))
    start = time.monotonic()
    try:
        with heartbeat(say, "build (trtexec)"):
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not staging.is_file():
            raise ModelError(f"trtexec failed (exit {proc.returncode}) building {onnx_path.name}: {_last_error(proc.stdout)}",
                             "run the printed trtexec command by hand to see its whole log")
        data = staging.read_bytes()
    finally:
        staging.unlink(missing_ok=True)
    shapes = {n: [list(p.min), list(p.opt), list(p.max)] for n, p in options.profiles.items()}
    sidecar = EngineSidecar(
        key=key, key_fields=fields, trt_version=trt_version, device_name=device.name, compute_capability=device.sm,
        precision=options.precision, int8_source=source, calib_algorithm=fields["calib_algorithm"],
        dla_core=options.dla_core, onnx=str(onnx_path), onnx_sha256=onnx_sha,
        calib_cache=str(cache) if calib else None, calib_cache_sha256=calib.cache_sha256 if calib else None,
        shapes=shapes, workspace_mb=options.workspace_mb, builder="trtexec",
        timing_cache=str(timing) if timing else None, timing_cache_used=timing_used,
        plan_sha256=hashlib.sha256(data).hexdigest(), build_seconds=round(time.monotonic() - start, 3),
        created_utc=utc_now(), edgekit_version=__version__)
    return write_engine(plan_path, data, sidecar, say)


def _last_error(log: str) -> str:
    lines = [ln.strip() for ln in (log or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "[E]" in ln or "error" in ln.lower()]
    return (errors or lines or ["no output"])[-1][:300]


__all__ = ["trtexec_command", "build_with_trtexec", "find_trtexec", "onnx_has_qdq"]
