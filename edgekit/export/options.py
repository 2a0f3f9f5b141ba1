"""Typed options and results of ``edgekit export`` (the library entry point's contract)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pydantic import Field, model_validator

from edgekit.core.config import StrictModel
from edgekit.core.manifest import TilingPlan
from edgekit.core.parity import Tolerance
from edgekit.core.vocab import CalibMethod, FloatScope, Simplifier, Target

#: How close the ONNX FP32 graph must stay to PyTorch on real images: the one rule of
#: :mod:`edgekit.core.parity` (raw outputs against ``atol + rtol * channel range``, detections
#: matched one-to-one), with export's defaults.
ParityTolerance = Tolerance


class ExportOptions(StrictModel):
    """Everything ``edgekit export`` needs; the CLI only builds one of these."""

    source: Path  # a run directory (runs/<id>/) or an Ultralytics OBB checkpoint (.pt)
    imgsz: Optional[int] = Field(None, ge=32)  # default: the checkpoint's training size
    opset: int = 17
    dynamic: bool = False
    fp16: bool = False  # engine precision flag for the device build; model.onnx stays FP32
    int8: bool = False
    calib_data: Optional[Path] = None  # default: the dataset's train split (val is kept for the accuracy check)
    # The dataset: RefDet videos (a RefDet root, or train/ + test/ of them) for a RefDet checkpoint, the
    # YOLO-OBB root (data.yaml) for an OBB one. Default: the run's dataset.
    data: Optional[Path] = None
    calib_method: CalibMethod = "minmax"
    calib_size: int = Field(64, ge=1)
    int8_float_scope: FloatScope = "head"  # what stays float in model.int8.qdq.onnx
    calib_min_images: int = Field(8, ge=1)
    simplifier: Simplifier = "onnxslim"
    target: Target = "jetson-xavier-nx"
    engine: bool = False
    out: Optional[Path] = None  # default: RUN_DIR/export/bundle, or <checkpoint stem>_bundle beside it
    parity_gate: bool = True
    max_int8_drop: Optional[float] = Field(None, ge=0)  # mAP50 points; None = report only
    parity_images: int = Field(8, ge=1)
    golden_count: int = Field(4, ge=1)
    val_size: Optional[int] = Field(None, ge=1)  # cap on val images for the INT8 accuracy report
    conf: float = Field(0.25, ge=0, le=1)
    iou: float = Field(0.7, ge=0, le=1)
    tolerance: Tolerance = Tolerance()
    seed: int = 0
    trust_checkpoint: bool = False  # load the checkpoint unrestricted (edgekit.checkpoints): the user's risk
    # The bundle's sliced-inference plan (manifest ``tiling``); with dynamic, the engine profile covers its batch.
    tile_plan: Optional[TilingPlan] = None

    @model_validator(mode="after")
    def _tile_batch_needs_dynamic(self) -> ExportOptions:
        batch = self.tile_plan.batch if self.tile_plan is not None else None
        if batch is not None and batch > 1 and not self.dynamic:
            raise ValueError(f"a tile plan with batch {batch} needs a dynamic batch axis: add --dynamic "
                             "(or leave the tile batch out: a static model streams its tiles one by one)")
        return self

    @property
    def tile_batch(self) -> int:
        """The batch the engine profile must take: the tile plan's, else 1."""
        return self.tile_plan.batch or 1 if self.tile_plan is not None else 1


@dataclass
class ExportResult:
    """What :func:`edgekit.export.export_model` produced."""

    bundle_dir: Path
    report: Dict[str, Any]
    summary_rows: List[Tuple[str, str]] = field(default_factory=list)


__all__ = ["ExportOptions", "ExportResult", "ParityTolerance"]
