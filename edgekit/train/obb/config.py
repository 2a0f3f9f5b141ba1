"""The typed configuration of ``edgekit train obb`` (a StrictModel tree; unknown keys fail by name).

Priority when loading: CLI ``key=value`` > config file > the defaults written here.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from pydantic import Field, field_validator, model_validator

from edgekit.core.config import (
    StrictModel,
    apply_overrides,
    build_config,
    multiple_of_stride,
    parse_override,
    read_mapping,
)
from edgekit.core.errors import ConfigError

DEFAULT_TEACHER = "vit_small_patch16_dinov3"
DEFAULT_DINO_DIR = "artifacts/models/dino"
# Ultralytics-side neck outputs of yolov8n-obb (strides 8/16/32); layer 22 is the OBB head.
DEFAULT_HOOK_LAYERS = (15, 18, 21)


class TeacherConfig(StrictModel):
    """The frozen DINOv3 teacher (timm)."""

    name: str = DEFAULT_TEACHER  # timm model name of the DINOv3 ViT
    # "auto": search weights_dir; a file path: that file; "random": random init (tests/benchmarks only).
    weights: str = "auto"
    weights_dir: str = DEFAULT_DINO_DIR  # where weights=auto looks for the teacher's weights file
    # Input side in pixels (multiple of 16); None = the student's imgsz.
    imgsz: Optional[int] = None
    # "auto": fp16 on CUDA, fp32 on CPU.
    dtype: str = "auto"
    # Transformer block whose patch tokens are distilled (python index; -1 = last block).
    layer: int = -1
    # Extra timm.create_model kwargs (e.g. depth=2 for a tiny test teacher with the same layout).
    model_kwargs: Dict[str, Any] = Field(default_factory=dict)
    # On CUDA, replay the frozen forward as a CUDA graph (one launch instead of ~150); eager if capture fails.
    cuda_graph: bool = True

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_16(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and (v < 16 or v % 16):
            raise ValueError(f"teacher.imgsz must be a positive multiple of 16 (DINOv3 patch size), got {v}")
        return v

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, v: str) -> str:
        if v not in ("auto", "fp16", "bf16", "fp32"):
            raise ValueError(f"teacher.dtype must be auto, fp16, bf16 or fp32, got {v!r}")
        return v


class DistillConfig(StrictModel):
    """Feature distillation from the teacher's patch tokens into hooked student layers."""

    enabled: bool = True  # false: plain Ultralytics training, no teacher
    layers: List[int] = Field(default_factory=lambda: list(DEFAULT_HOOK_LAYERS))  # student layers whose features are distilled
    weight: float = 1.0  # distillation loss weight (times each stage's distill_scale)
    # Linear ramp of the distillation weight from 0 over this many (global) epochs; 0 = no warmup.
    warmup_epochs: float = 1.0
    obj_weight: float = 1.0  # weight of feature-map cells inside labelled objects
    bg_weight: float = 0.25  # weight of background cells

    @field_validator("layers")
    @classmethod
    def _non_empty(cls, v: List[int]) -> List[int]:
        if not v:
            raise ValueError("distillation.layers must name at least one student layer (e.g. [15, 18, 21])")
        return v


class StageConfig(StrictModel):
    """One training stage: its epochs, frozen layers, learning rate and distillation scale."""

    name: str  # how overrides address the stage (stages.<name>.epochs=5) and its folder under stages/
    epochs: int = Field(ge=1)  # epochs of this stage
    freeze: int = Field(default=0, ge=0)  # first N student layers frozen (10 = the yolov8 backbone)
    lr0: float = 0.002  # initial learning rate
    distill_scale: float = 1.0  # multiplies distillation.weight in this stage


def _default_stages() -> List[StageConfig]:
    return [StageConfig(name="a", epochs=10, freeze=10, lr0=0.002, distill_scale=1.0),
            StageConfig(name="b", epochs=20, freeze=0, lr0=0.001, distill_scale=0.5)]


class LoggingConfig(StrictModel):
    """Where metrics go besides the run's JSONL reports."""

    wandb: str = "auto"  # auto (online with a key and network, else offline) | online | offline | disabled
    wandb_project: str = "edgekit"  # W&B project name
    mlflow: bool = False  # also log to MLflow: params, per-epoch metrics, best.pt and signal maps
    # MLflow tracking URI (sqlite:///..., http://server:5000, ...); None = <run>/mlflow.db (SQLite in the run)
    mlflow_tracking_uri: Optional[str] = None
    mlflow_experiment: str = "edgekit"  # MLflow experiment name (created when missing)
    tensorboard: bool = False  # also write TensorBoard scalars and signal-map images into <run>/tensorboard
    signal_maps_every: int = Field(default=1, ge=0)  # epochs between signal-map PNGs; 0 = never

    @field_validator("wandb")
    @classmethod
    def _wandb_mode(cls, v: str) -> str:
        if v not in ("auto", "online", "offline", "disabled"):
            raise ValueError(f"logging.wandb must be auto, online, offline or disabled, got {v!r}")
        return v


# Ultralytics arguments that edgekit derives from its own config (see api.stage_overrides).
ULTRALYTICS_OWNED_KEYS = frozenset({
    "model", "data", "epochs", "imgsz", "batch", "device", "workers", "seed", "deterministic", "optimizer", "lr0",
    "freeze", "amp", "mosaic", "close_mosaic", "val", "patience", "plots", "project", "name", "exist_ok",
    "verbose", "resume", "save_period"})


class ObbTrainConfig(StrictModel):
    """Everything ``edgekit train obb`` needs; dumped as ``reports/config_resolved.yaml``."""

    student: str = "yolov8n-obb.yaml"  # Ultralytics model yaml (from scratch) or .pt checkpoint to start from
    data: str  # a dataset root holding data.yaml, or the yaml itself (edgekit.data.layout.DatasetLayout)
    imgsz: int = Field(default=640, ge=32)  # training image side in pixels, a multiple of 32
    batch: int = Field(default=16, ge=1)  # images per batch (over all GPUs)
    device: str = "cpu"  # cpu, cuda, a GPU index (0) or several (0,1: DDP)
    workers: int = Field(default=4, ge=0)  # dataloader worker processes
    seed: int = 0  # random seed (training is deterministic per seed)
    optimizer: str = "AdamW"  # Ultralytics optimizer name (SGD, Adam, AdamW, ...)
    amp: bool = True  # mixed precision on CUDA
    mosaic: float = 1.0  # probability of mosaic augmentation
    close_mosaic: int = 0  # turn mosaic off for the last N epochs of a stage
    val: bool = True  # validate after every epoch
    patience: int = 100  # stop a stage after this many epochs without improvement
    # Also keep checkpoints/<stage>_epoch<NNN>.pt every N epochs (NNN: the run's global epoch); 0 = never
    save_period: int = Field(default=0, ge=0)
    project: str = "runs"  # directory holding the run directories (<project>/<run_id>/)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    distillation: DistillConfig = Field(default_factory=DistillConfig)
    stages: List[StageConfig] = Field(default_factory=_default_stages)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # Extra Ultralytics train arguments (e.g. nbs, warmup_epochs, scale, hsv_h), passed through as they
    # are; keys edgekit sets itself are refused, unknown ones fail with Ultralytics' key list.
    ultralytics: Dict[str, Any] = Field(default_factory=dict)

    @field_validator("ultralytics")
    @classmethod
    def _ultralytics_keys(cls, v: Dict[str, Any]) -> Dict[str, Any]:
        owned = sorted(set(v) & ULTRALYTICS_OWNED_KEYS)
        if owned:
            raise ValueError(f"ultralytics.{owned[0]} is set by edgekit itself; use the edgekit key instead")
        return v

    @classmethod
    def unknown_key_hint(cls, key: str) -> Optional[str]:
        """Where an unknown top-level key belongs when it is (close to) an Ultralytics train argument:
        ``warmup_epochs`` -> ``ultralytics.warmup_epochs`` (read by :func:`edgekit.core.config._explain`)."""
        try:
            from ultralytics.cfg import DEFAULT_CFG_DICT  # lazy: the config module stays light
        except ImportError:
            return None
        # the closest of all its arguments (a word it starts with first: warmup -> warmup_epochs); one
        # edgekit sets itself (epochs, lr0) has an edgekit key instead, so no hint then
        names = list(DEFAULT_CFG_DICT)
        starts = sorted((k for k in names if k.startswith(key + "_")), key=len)
        close = [key] if key in names else starts[:1] or difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        return f"ultralytics.{close[0]}" if close and close[0] not in ULTRALYTICS_OWNED_KEYS else None

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        return multiple_of_stride(v)

    @field_validator("device", mode="before")
    @classmethod
    def _device_text(cls, v: Any) -> str:
        return str(v)  # `device=0` on the CLI parses as an int

    @model_validator(mode="after")
    def _unique_stage_names(self) -> ObbTrainConfig:
        names = [s.name for s in self.stages]
        if not names:
            raise ValueError("stages must hold at least one stage")
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)


def _apply_stage_override(data: Dict[str, Any], item: str) -> None:
    """``stages.<name|index>.<key>=value`` edits one entry of the stage list (dotted overrides can't index lists)."""
    keys, value = parse_override(item)
    stages = data.setdefault("stages", [s.model_dump() for s in _default_stages()])
    if len(keys) != 3 or not isinstance(stages, list):
        raise ConfigError(f"override '{item}' must look like stages.<name or index>.<key>=value")
    ref, key = keys[1], keys[2]
    matches = [s for i, s in enumerate(stages) if isinstance(s, dict) and (s.get("name") == ref or str(i) == ref)]
    if not matches:
        names = [s.get("name") for s in stages if isinstance(s, dict)]
        raise ConfigError(f"override '{item}': no stage named {ref!r}", f"stages are {names}")
    matches[0][key] = value


def load_train_config(path: Optional[Path] = None, overrides: Sequence[str] = ()) -> ObbTrainConfig:
    """File + ``key=value`` overrides -> ObbTrainConfig (CLI > file > defaults; unknown keys fail by name)."""
    data: Dict[str, Any] = read_mapping(Path(path)) if path else {}
    stage_items = [o for o in overrides if o.startswith("stages.")]
    other = [o for o in overrides if not o.startswith("stages.")]
    data = apply_overrides(data, other)
    for item in stage_items:
        _apply_stage_override(data, item)
    source = Path(path).name if path else "overrides"
    return build_config(ObbTrainConfig, data, f"{source} (with overrides)" if path and overrides else source,
                        finite=True)


__all__ = ["load_train_config", "TeacherConfig", "DistillConfig", "StageConfig", "LoggingConfig", "ObbTrainConfig",
           "DEFAULT_TEACHER", "DEFAULT_DINO_DIR", "DEFAULT_HOOK_LAYERS"]
