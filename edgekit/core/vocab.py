"""One vocabulary per concept: every choice edgekit offers, defined once as a ``Literal``.

Options models (pydantic), CLI choices (click) and runtime checks all derive from these aliases,
so adding a value here is the whole change and a typo anywhere else is a type or validation error.
The tuples are ``typing.get_args`` of the aliases, in the alias's order (the first is the default
where a default exists). Device-safe: no imports beyond ``typing``.
"""

from __future__ import annotations

from typing import Dict, Literal, Optional, Tuple, get_args

# --- INT8 calibration ---------------------------------------------------------------------------
#: How export computes activation ranges for the Q/DQ model (onnxruntime's calibrators).
CalibMethod = Literal["minmax", "entropy", "percentile"]
CALIB_METHODS: Tuple[str, ...] = get_args(CalibMethod)

#: TensorRT's calibration algorithms as they appear in a calibration cache header
#: (``TRT-8502-MinMaxCalibration``); the only two edgekit writes or builds with.
TrtCalibAlgorithm = Literal["MinMaxCalibration", "EntropyCalibration2"]
TRT_CALIB_ALGORITHMS: Tuple[str, ...] = get_args(TrtCalibAlgorithm)

#: What a calibration method ships as a TensorRT cache. TensorRT has no percentile calibrator:
#: a ``percentile`` export ships a MinMax cache (its Q/DQ model keeps the percentile ranges).
TRT_ALGORITHM_FOR_METHOD: Dict[str, str] = {
    "minmax": "MinMaxCalibration",
    "entropy": "EntropyCalibration2",
    "percentile": "MinMaxCalibration",
}
#: The cache-file method for each TensorRT algorithm (``model.<method>.calib.cache``).
CACHE_METHOD_FOR_ALGORITHM: Dict[str, str] = {"MinMaxCalibration": "minmax", "EntropyCalibration2": "entropy"}

#: What stays float in the Q/DQ model: the whole detection head, or only its decode.
FloatScope = Literal["head", "decode"]
FLOAT_SCOPES: Tuple[str, ...] = get_args(FloatScope)

# --- export -------------------------------------------------------------------------------------
#: Deployment targets. A target fixes the TensorRT version its engines and caches are for.
Target = Literal["jetson-xavier-nx", "x86"]
TARGETS: Tuple[str, ...] = get_args(Target)

#: The TensorRT release of each target; None where the target does not pin one (x86 hosts run
#: whatever TensorRT 10/11 they have). Xavier NX's last JetPack (5.1.x) ships TensorRT 8.5.2.
TARGET_TRT_VERSION: Dict[str, Optional[str]] = {"jetson-xavier-nx": "8.5.2", "x86": None}

#: ONNX simplifiers export can run (each verified under onnxruntime).
Simplifier = Literal["onnxslim", "onnxsim", "none"]
SIMPLIFIERS: Tuple[str, ...] = get_args(Simplifier)

# --- bundles and the device ---------------------------------------------------------------------
#: Roles of the models in a bundle (``manifest.json`` ``models`` keys). A one-graph detector
#: ships ``fp32`` (+ ``int8_qdq``); RefDet ships ``reference_encoder`` plus its per-frame graph as
#: ``fp32`` (+ ``int8_qdq``). ``detector`` names a per-frame graph of other multi-graph exports.
ModelRole = Literal["fp32", "int8_qdq", "reference_encoder", "detector"]
MODEL_ROLES: Tuple[str, ...] = get_args(ModelRole)

#: Engine / golden-reference precisions.
Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: Tuple[str, ...] = get_args(Precision)

#: Inference backends of the Runner contract (``edgekit.deploy.runners.RUNNERS`` keys).
Backend = Literal["onnxruntime", "tensorrt", "torch"]
BACKENDS: Tuple[str, ...] = get_args(Backend)

# --- datasets -----------------------------------------------------------------------------------
#: Label formats ``edgekit data`` reads (``check``) and writes (``convert --to``).
DataFormat = Literal["yolo-obb", "yolo", "dota", "coco", "refdet"]
DATA_FORMATS: Tuple[str, ...] = get_args(DataFormat)
#: ``data convert``: what it reads and what it writes.
ConvertSource = Literal["dota", "coco"]
CONVERT_SOURCES: Tuple[str, ...] = get_args(ConvertSource)
ConvertTarget = Literal["yolo-obb", "yolo"]
CONVERT_TARGETS: Tuple[str, ...] = get_args(ConvertTarget)


def trt_algorithm(method: str) -> str:
    """The TensorRT calibration algorithm a calibration method ships (``percentile`` -> MinMax)."""
    try:
        return TRT_ALGORITHM_FOR_METHOD[method]
    except KeyError:
        raise ValueError(f"unknown calibration method {method!r}; one of {', '.join(CALIB_METHODS)}") from None


def cache_method(method: str) -> str:
    """The cache-file method name a calibration method ships (``percentile`` -> ``minmax``)."""
    return CACHE_METHOD_FOR_ALGORITHM[trt_algorithm(method)]


__all__ = [
    "CalibMethod", "CALIB_METHODS", "TrtCalibAlgorithm", "TRT_CALIB_ALGORITHMS", "TRT_ALGORITHM_FOR_METHOD",
    "CACHE_METHOD_FOR_ALGORITHM", "FloatScope", "FLOAT_SCOPES", "Target", "TARGETS", "TARGET_TRT_VERSION",
    "Simplifier", "SIMPLIFIERS", "ModelRole", "MODEL_ROLES", "Precision", "PRECISIONS", "Backend", "BACKENDS",
    "DataFormat", "DATA_FORMATS", "ConvertSource", "CONVERT_SOURCES", "ConvertTarget", "CONVERT_TARGETS",
    "trt_algorithm", "cache_method",
]
