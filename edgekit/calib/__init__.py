"""INT8 calibration: calibration image sets, Q/DQ quantization and its TensorRT 8.5 checker,
TensorRT calibration caches with their sidecars (the on-device calibrator is Polygraphy's, driven by
edgekit.deploy.tensorrt).

Importing this package imports no heavy library: onnx, onnxruntime and tensorrt are imported
inside the functions that need them, so the TensorRT part runs on the Jetson (Python 3.8).
"""

from .cache import (
    CacheSidecar,
    CalibrationCache,
    read_cache,
    verify_cache,
    write_cache,
    write_cache_with_sidecar,
)
from .dataset import CalibrationSet
from .qdq import QdqResult, default_excluded_nodes, quantize_qdq
from .qdq_check import QdqViolation, assert_qdq_trt85, check_qdq_trt85
from .ranges import host_activation_ranges, write_calibration_cache

__all__ = [
    "CalibrationSet",
    "QdqResult", "quantize_qdq", "default_excluded_nodes",
    "QdqViolation", "check_qdq_trt85", "assert_qdq_trt85",
    "CalibrationCache", "CacheSidecar", "read_cache", "write_cache", "verify_cache", "write_cache_with_sidecar",
    "host_activation_ranges", "write_calibration_cache",
]
