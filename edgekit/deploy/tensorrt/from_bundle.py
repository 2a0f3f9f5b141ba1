"""Engines for a deploy bundle: which model, profile and calibration cache a build uses, and where
the engine lives (the bundle's engine cache directory, named by the engine key).

``build_from_bundle`` builds (or reuses); ``find_engine`` only looks, for
``Bundle.detector(backend="tensorrt")``. Both derive the same key from the same inputs.

Device side: Python 3.8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from edgekit.core.errors import ConfigError, ModelError

from .build import EngineResult, build_engine
from .device import DeviceInfo, device_info, import_tensorrt, trt_major
from .gates import check_version
from .options import EngineBuildOptions, ShapeProfile

FP32_ROLE, QDQ_ROLE = "fp32", "int8_qdq"


def bundle_build_inputs(bundle: Any, options: EngineBuildOptions, major: int, have_images: bool = False,
                        role: Optional[str] = None) -> Tuple[Path, EngineBuildOptions, Optional[Path]]:
    """(ONNX to build, options with the INT8 source and profiles resolved, calibration cache or None).

    ``have_images``: calibration images will be given, so a calibration-cache build needs no cache.
    ``role``: a graph other than the frame detector's (RefDet's ``reference_encoder``): built from its
    own FP32 file at FP32/FP16, never INT8.
    """
    check_version(options, major)
    if role is not None and role not in (FP32_ROLE, QDQ_ROLE):
        if options.precision == "int8":
            raise ConfigError(f"the '{role}' graph is not built INT8", "build it at fp16 (or fp32)")
        profile = bundle.engine_profile(role) or {}
        profiles = options.profiles or {name: ShapeProfile(min=tuple(s[0]), opt=tuple(s[1]), max=tuple(s[2]))
                                        for name, s in profile.items()}
        return Path(bundle.model_path(role)), options.model_copy(update={"int8_source": "auto",
                                                                         "profiles": profiles}), None
    roles = list(bundle.roles)
    calibration = getattr(bundle, "calibration", None)
    source = options.int8_source if options.precision == "int8" else "auto"
    if options.precision == "int8" and source == "auto":
        dla_8x = options.dla_core is not None and major < 10
        source = "qdq" if QDQ_ROLE in roles and not dla_8x else "calib-cache"
    role = QDQ_ROLE if options.precision == "int8" and source == "qdq" else FP32_ROLE
    if options.precision == "int8" and source == "calib-cache" and calibration is not None:
        role = getattr(calibration, "model_role", None) or FP32_ROLE  # the graph whose tensor names the cache holds
    if role not in roles:
        raise ModelError(f"bundle {bundle.root} has no '{role}' model (roles: {', '.join(roles) or 'none'})",
                         "re-export with --int8 to get model.int8.qdq.onnx" if role == QDQ_ROLE
                         else "re-export the bundle (edgekit export)")
    cache = None
    if options.precision == "int8" and source == "calib-cache" and not have_images:
        if calibration is None:
            raise ConfigError(f"bundle {bundle.root} ships no calibration cache, which INT8 from a calibration cache "
                              "needs", "re-export with --int8, or build INT8 from the Q/DQ ONNX (--int8-source qdq)")
        cache = Path(calibration.cache)
    update: Dict[str, Any] = {"int8_source": source}
    if options.precision == "int8" and options.calib_algorithm is None and calibration is not None and \
            source == "calib-cache":
        update["calib_algorithm"] = calibration.trt_algorithm
    if not options.profiles:
        profile = bundle.engine_profile(role) or {}
        update["profiles"] = {name: ShapeProfile(min=tuple(s[0]), opt=tuple(s[1]), max=tuple(s[2]))
                              for name, s in profile.items()}
    return Path(bundle.model_path(role)), options.model_copy(update=update), cache


def build_from_bundle(bundle: Any, options: EngineBuildOptions, progress: Optional[Callable[[str], None]] = None,
                      force: bool = False, trt_module: Any = None, device: Optional[DeviceInfo] = None,
                      calib_images: Any = None, role: Optional[str] = None) -> EngineResult:
    """Build the engine for ``bundle`` (its ``role`` graph, default the frame detector) into
    ``bundle.engine_cache_dir`` (or reuse the one already there)."""
    trt = import_tensorrt(trt_module)
    onnx_path, resolved, cache = bundle_build_inputs(bundle, options, trt_major(trt), calib_images is not None,
                                                     role=role)
    return build_engine(onnx_path, bundle.engine_cache_dir, resolved, calib_cache=cache, progress=progress,
                        force=force, trt_module=trt, calib_images=calib_images, device=device)


def find_engine(bundle: Any, options: EngineBuildOptions, trt_module: Any = None,
                device: Optional[DeviceInfo] = None, role: Optional[str] = None) -> Optional[Path]:
    """The already-built plan for ``bundle`` + ``options`` on this device and TensorRT, or None."""
    from edgekit.calib.cache import read_cache
    from edgekit.core.manifest import file_sha256

    from .keys import engine_key, key_fields, plan_name, reusable

    trt = import_tensorrt(trt_module)
    onnx_path, resolved, cache = bundle_build_inputs(bundle, options, trt_major(trt), role=role)
    device = device or device_info()
    source = resolved.int8_source if resolved.precision == "int8" else None
    algorithm = None
    if cache is not None:
        algorithm = resolved.calib_algorithm or read_cache(cache).algorithm
    fields = key_fields(device.name, device.sm, str(trt.__version__), resolved, source, algorithm,
                        file_sha256(onnx_path), file_sha256(cache) if cache is not None else None)
    key = engine_key(fields)
    plan = Path(bundle.engine_cache_dir) / plan_name(fields, key)
    return plan if reusable(plan, key) is not None else None


__all__ = ["build_from_bundle", "find_engine", "bundle_build_inputs"]
