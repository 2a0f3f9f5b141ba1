"""Typed options and results of ``edgekit export`` (the library entry point's contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Tuple

from pydantic import Field

from edgekit.core.config import StrictModel


class ParityTolerance(StrictModel):
    """How close the ONNX FP32 graph must stay to PyTorch on real images.

    Raw outputs pass when every element satisfies ``|onnx - torch| <= atol + rtol * R`` where R is
    the largest magnitude in that element's channel (pixel coordinates reach hundreds, scores stay
    in 0-1: each is judged on its own scale). Decoded detections are matched one-to-one at IoU >=
    ``min_iou`` with equal classes; a leftover passes only if its score is within ``score_margin``
    of the threshold or the other side's pre-NMS candidates hold the same box (an NMS near-tie).
    """

    atol: float = Field(1e-4, gt=0)
    rtol: float = Field(1e-3, ge=0)
    min_iou: float = Field(0.9, gt=0, le=1)
    score_margin: float = Field(0.01, ge=0)


class ExportOptions(StrictModel):
    """Everything ``edgekit export`` needs; the CLI only builds one of these."""

    source: Path  # a run directory (runs/<id>/) or an Ultralytics OBB checkpoint (.pt)
    imgsz: Optional[int] = Field(None, ge=32)  # default: the checkpoint's training size
    opset: int = 17
    dynamic: bool = False
    fp16: bool = False  # engine precision flag for the device build; model.onnx stays FP32
    int8: bool = False
    calib_data: Optional[Path] = None  # default: the dataset's train split (val is kept for the accuracy check)
    calib_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calib_size: int = Field(64, ge=1)
    int8_float_scope: Literal["head", "decode"] = "head"  # what stays float in model.int8.qdq.onnx
    calib_min_images: int = Field(8, ge=1)
    simplifier: Literal["onnxslim", "onnxsim", "none"] = "onnxslim"
    target: Literal["jetson-xavier-nx", "x86"] = "jetson-xavier-nx"
    engine: bool = False
    out: Optional[Path] = None  # default: RUN_DIR/export/bundle, or <checkpoint stem>_bundle beside it
    parity_gate: bool = True
    max_int8_drop: Optional[float] = Field(None, ge=0)  # mAP50 points; None = report only
    parity_images: int = Field(8, ge=1)
    golden_count: int = Field(4, ge=1)
    val_size: Optional[int] = Field(None, ge=1)  # cap on val images for the INT8 accuracy report
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.7, ge=0, le=1)
    tolerance: ParityTolerance = ParityTolerance()
    seed: int = 0
    trust_checkpoint: bool = False  # load the checkpoint unrestricted (edgekit.checkpoints): the user's risk


@dataclass
class ExportResult:
    """What :func:`edgekit.export.export_model` produced."""

    bundle_dir: Path
    report: Dict[str, Any]
    summary_rows: List[Tuple[str, str]] = field(default_factory=list)


__all__ = ["ExportOptions", "ExportResult", "ParityTolerance"]
