"""YOLOv8-OBB training with DINOv3 feature distillation (Ultralytics student, timm teacher).

``train_obb(cfg, run_id=None, resume=False) -> TrainResult`` is the entry point. The torch-heavy
parts (trainer, distiller, teacher, masks) import on first attribute access, so importing this
package (e.g. for the config) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from .api import TrainResult, plan_stages, train_obb
from .config import DistillConfig, LoggingConfig, ObbTrainConfig, StageConfig, TeacherConfig

_LAZY: Dict[str, str] = {
    "DistillOBBTrainer": "trainer", "TrainSpec": "trainer", "read_edgekit_state": "trainer",
    "Distiller": "distill", "DistilledCriterion": "distill", "FeatureTaps": "distill", "Projectors": "distill",
    "masked_cosine_distance": "distill", "distill_weight": "distill",
    "Teacher": "teacher", "build_teacher": "teacher", "resolve_teacher_weights": "teacher",
    "obb_mask": "masks", "MetricSinks": "monitoring", "write_signal_map": "monitoring",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["train_obb", "TrainResult", "plan_stages", "ObbTrainConfig", "TeacherConfig", "DistillConfig",
           "StageConfig", "LoggingConfig", *_LAZY]
