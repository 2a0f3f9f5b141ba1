"""TensorRT on the device: engine builds (Polygraphy's TensorRT backend, or trtexec), engine keys and
sidecars, and the TensorRT runner of the runner contract.

Importing this package imports neither tensorrt nor polygraphy: they load when a build or a runner
activation needs them. Runs on the Jetson (Python 3.8). The TensorRT facts the code relies on are
in ``docs/tensorrt.md``; how edgekit uses them in ``docs/tensorrt-engines.md``.
"""

from __future__ import annotations

from .build import EngineResult, build_engine
from .device import DeviceInfo, device_info, tensorrt_available
from .from_bundle import build_from_bundle, find_engine
from .keys import EngineSidecar, engine_key, key_fields, read_sidecar, sidecar_path
from .options import (
    CalibAlgorithm,
    EngineBuilder,
    EngineBuildOptions,
    Int8Source,
    Precision,
    ShapeProfile,
    choices,
    default_timing_cache_path,
)
from .runner import TensorRTRunner, check_plan_sidecar
from .trtexec import trtexec_command

__all__ = [
    "EngineBuildOptions", "ShapeProfile", "Precision", "Int8Source", "EngineBuilder", "CalibAlgorithm", "choices",
    "default_timing_cache_path",
    "build_engine", "build_from_bundle", "find_engine", "EngineResult",
    "EngineSidecar", "engine_key", "key_fields", "read_sidecar", "sidecar_path",
    "trtexec_command", "TensorRTRunner", "check_plan_sidecar",
    "DeviceInfo", "device_info", "tensorrt_available",
]
