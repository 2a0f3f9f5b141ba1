"""What each TensorRT version can build, decided before anything is parsed or built.

The facts (``docs/tensorrt.md`` sections 2, 3 and 6): TensorRT 11 removed the FP16/INT8 builder flags and the INT8
calibrators (networks are strongly typed: precision comes from the ONNX); TensorRT 8.x DLA takes no
explicit (Q/DQ) quantization, so DLA INT8 on a Xavier comes from a calibration cache.

Device side: Python 3.8, no imports beyond edgekit.core.
"""

from __future__ import annotations

from typing import Optional

from edgekit.core.errors import ConfigError, ModelError

from .options import EngineBuildOptions

QDQ_MODEL = "the Q/DQ ONNX (model.int8.qdq.onnx)"


def check_version(options: EngineBuildOptions, major: int) -> None:
    """Refuse what this TensorRT major version cannot build, naming the fix."""
    if major >= 11 and options.precision == "fp16":
        raise ConfigError(f"TensorRT {major} has no FP16 builder flag (networks are strongly typed)",
                          "export an FP16 ONNX and build it with --precision fp32 (built as typed), "
                          "or build INT8 from " + QDQ_MODEL)
    if major >= 11 and options.precision == "int8" and options.int8_source == "calib-cache":
        raise ConfigError(f"TensorRT {major} removed INT8 calibration (no calibrators, no calibration caches)",
                          "build INT8 from " + QDQ_MODEL + " (--int8-source qdq)")
    if options.dla_core is not None and major < 10 and options.precision == "int8" and options.int8_source == "qdq":
        raise ConfigError(f"TensorRT {major}.x DLA takes no explicit (Q/DQ) quantization",
                          "build DLA INT8 from model.onnx with the bundle's calibration cache "
                          "(--int8-source calib-cache or auto)")


def resolve_int8_source(options: EngineBuildOptions, major: int, has_qdq: bool, have_calibration: bool,
                        onnx_name: str) -> Optional[str]:
    """'qdq' or 'calib-cache' for an INT8 build of a network with/without Q/DQ layers; None otherwise."""
    check_version(options, major)
    if options.precision != "int8":
        return None
    source = options.int8_source
    if source == "auto":
        dla_8x = options.dla_core is not None and major < 10
        source = "qdq" if has_qdq and not dla_8x else "calib-cache"
        if source == "calib-cache" and major >= 11:
            raise ModelError(f"{onnx_name} has no Q/DQ nodes and TensorRT {major} has no INT8 calibration",
                             "build INT8 from " + QDQ_MODEL)
        check_version(options.model_copy(update={"int8_source": source}), major)
    if source == "qdq" and not has_qdq:
        raise ModelError(f"{onnx_name} has no Q/DQ nodes, so an INT8 'qdq' build would be an FP32 engine",
                         "build from " + QDQ_MODEL + ", or use --int8-source calib-cache with a calibration cache")
    if source == "calib-cache":
        if has_qdq:
            raise ModelError(f"{onnx_name} has Q/DQ nodes; TensorRT ignores a calibrator on such a network",
                             "build the calibration cache path from the float model.onnx")
        if not have_calibration:
            raise ConfigError("INT8 from a calibration cache needs the cache (or calibration images)",
                              "build from a bundle that ships one, or use " + QDQ_MODEL)
    return source


__all__ = ["check_version", "resolve_int8_source"]
