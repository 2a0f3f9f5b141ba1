"""How one TensorRT engine is built: the choices (``Literal`` aliases, the CLI derives its choices from
them) and :class:`EngineBuildOptions`.

Device side: Python 3.8, pydantic only. What each choice means on each TensorRT version is in
``docs/tensorrt-engines.md``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, get_args

from pydantic import Field, model_validator

from edgekit.core.config import StrictModel
from edgekit.core.manifest import TrtAlgorithm

Precision = Literal["fp32", "fp16", "int8"]
# auto: the Q/DQ ONNX when the network has Q/DQ layers (and the target takes it), else the
# calibration cache; on TensorRT 8.x DLA always the calibration cache (8.x DLA takes no explicit Q/DQ).
Int8Source = Literal["auto", "qdq", "calib-cache"]
EngineBuilder = Literal["polygraphy", "trtexec"]
# TensorRT's calibrator algorithm names as they appear in calibration cache headers (the manifest's
# own vocabulary: one definition).
CalibAlgorithm = TrtAlgorithm

# calibration cache header algorithm -> TensorRT calibrator base class
CALIBRATOR_CLASSES: Dict[str, str] = {
    "MinMaxCalibration": "IInt8MinMaxCalibrator",
    "EntropyCalibration2": "IInt8EntropyCalibrator2",
}


def choices(alias: object) -> List[str]:
    """The values of a ``Literal`` alias, e.g. for ``click.Choice``."""
    return [str(v) for v in get_args(alias)]


class ShapeProfile(StrictModel):
    """min/opt/max shapes of one input (one optimization-profile entry)."""

    min: Tuple[int, ...]
    opt: Tuple[int, ...]
    max: Tuple[int, ...]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeProfile:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError("min, opt and max must have the same rank")
        if any(d < 1 for d in self.min):
            raise ValueError(f"profile shapes must be >= 1 on every axis, got min {self.min}")
        if any(not (a <= b <= c) for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"need min <= opt <= max per axis, got {self.min} / {self.opt} / {self.max}")
        return self

    @property
    def is_static(self) -> bool:
        return self.min == self.opt == self.max


class EngineBuildOptions(StrictModel):
    """Every setting of one engine build; all of them (but the timing cache) go into the engine key."""

    precision: Precision = "fp16"
    int8_source: Int8Source = "auto"
    # None: from the calibration cache header (the bundle records which one it shipped).
    calib_algorithm: Optional[CalibAlgorithm] = None
    fp16_fallback: bool = True  # INT8 builds let layers without INT8 kernels run in FP16 (8.5/10)
    dla_core: Optional[int] = Field(None, ge=0)
    gpu_fallback: bool = True  # DLA builds let layers DLA cannot run fall back to the GPU
    workspace_mb: int = Field(1024, ge=1)
    # None: the per-user cache keyed by TensorRT version and SM (default_timing_cache_path);
    # "" (empty string): no timing cache.
    timing_cache: Optional[str] = None
    profiles: Dict[str, ShapeProfile] = {}
    builder: EngineBuilder = "polygraphy"

    @model_validator(mode="after")
    def _dla(self) -> EngineBuildOptions:
        if self.dla_core is not None:
            if self.precision == "fp32":
                raise ValueError("DLA runs FP16 or INT8 only; set precision to fp16 or int8")
            dynamic = sorted(name for name, p in self.profiles.items() if not p.is_static)
            if dynamic:
                raise ValueError(f"DLA takes static shapes only; inputs {dynamic} have min != max")
        return self


def default_timing_cache_path(trt_version: str, sm: str) -> Path:
    """``$XDG_CACHE_HOME/edgekit/timing/trt<version>-<sm>.cache`` (``~/.cache`` by default).

    A timing cache holds tactic timings of one GPU under one TensorRT version; keying the file by
    both means a cache from another GPU or version is never offered to the builder.
    """
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    safe_sm = "".join(c for c in sm if c.isalnum() or c == ".") or "unknown"  # 'sm_72' -> 'sm72'
    return root / "edgekit" / "timing" / f"trt{trt_version}-{safe_sm}.cache"


__all__ = ["Precision", "Int8Source", "EngineBuilder", "CalibAlgorithm", "CALIBRATOR_CLASSES", "choices",
           "ShapeProfile", "EngineBuildOptions", "default_timing_cache_path"]
