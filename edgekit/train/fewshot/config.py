"""The typed configuration of ``edgekit train refdet`` (a StrictModel tree; unknown keys fail by name).

Priority when loading: CLI flags > CLI ``key=value`` > config file > the defaults written here.
Every key is described in ``docs/refdet.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from pydantic import Field, field_validator, model_validator

from edgekit.core.config import StrictModel, apply_overrides, build_config, multiple_of_stride, read_mapping

from .losses import CPE_REWEIGHTS, NEGATIVE_STRATEGIES
from .model import RefDetModelConfig

STAGES = (1, 2, 3)
LR_GROUPS = ("encoder", "backbone", "fusion", "head")


class EpisodeConfig(StrictModel):
    """How each optimisation step's episode is drawn (``edgekit.train.fewshot.data.EpisodeSampler``)."""

    n_way: int = Field(default=2, ge=1)  # targets per episode
    n_query: int = Field(default=4, ge=1)  # annotated frames per target
    n_negative: int = Field(default=2, ge=0)  # frames without the target per target (background + other targets')
    cross_class_ratio: float = Field(default=0.5, ge=0.0, le=1.0)  # share of negatives taken from other targets
    episodes_per_epoch: int = Field(default=50, ge=1)  # optimisation micro-steps per epoch


class AugmentConfig(StrictModel):
    """Frame augmentation (boxes follow every transform) and reference-photo augmentation."""

    fliplr: float = Field(default=0.5, ge=0.0, le=1.0)  # probability of a horizontal flip
    scale: float = Field(default=0.3, ge=0.0, lt=1.0)  # zoom factor drawn from [1 - scale, 1 + scale]
    translate: float = Field(default=0.1, ge=0.0, le=0.5)  # shift up to this fraction of the side
    hsv_h: float = Field(default=0.015, ge=0.0, le=0.5)  # hue jitter (fraction of the hue circle)
    hsv_s: float = Field(default=0.5, ge=0.0, le=1.0)  # saturation gain jitter
    hsv_v: float = Field(default=0.3, ge=0.0, le=1.0)  # value gain jitter
    min_visible: float = Field(default=0.3, ge=0.0, le=1.0)  # a box keeps at least this share of its area, else dropped
    refs: bool = True  # also flip/HSV-jitter the reference photos


class LossConfig(StrictModel):
    """Loss weights and parameters (formulas: docs/fewshot_losses.md)."""

    box: str = "wiou"  # wiou (WIoU v3) | ciou
    box_weight: float = Field(default=7.5, ge=0.0)
    cls_weight: float = Field(default=0.5, ge=0.0)
    dfl_weight: float = Field(default=1.5, ge=0.0)
    supcon_weight: float = Field(default=0.5, ge=0.0)  # stages 2-3: SupCon on support/query embeddings
    supcon_temperature: float = Field(default=0.07, gt=0.0)
    cpe_weight: float = Field(default=0.5, ge=0.0)  # stages 2-3: CPE on proposal embeddings
    cpe_temperature: float = Field(default=0.2, gt=0.0)
    cpe_iou: float = Field(default=0.7, ge=0.0, le=1.0)  # proposals below this IoU are no CPE anchors
    cpe_reweight: str = "none"  # none | linear | exp
    cpe_negatives: int = Field(default=64, ge=0)  # hardest background proposals per step in the CPE pool
    triplet_weight: float = Field(default=1.0, ge=0.0)  # stage 3 with use_triplet
    triplet_margin: float = Field(default=0.3, ge=0.0)
    tal_topk: int = Field(default=10, ge=1)  # task-aligned assigner: candidates per box
    tal_alpha: float = 0.5
    tal_beta: float = 6.0

    @field_validator("box")
    @classmethod
    def _box(cls, v: str) -> str:
        if v not in ("wiou", "ciou"):
            raise ValueError(f"loss.box must be wiou or ciou, got {v!r}")
        return v

    @field_validator("cpe_reweight")
    @classmethod
    def _reweight(cls, v: str) -> str:
        if v not in CPE_REWEIGHTS:
            raise ValueError(f"loss.cpe_reweight must be one of {', '.join(CPE_REWEIGHTS)}, got {v!r}")
        return v


class OptimConfig(StrictModel):
    """AdamW with layer-wise learning rates, warmup + cosine decay, accumulation, clipping, EMA."""

    lr0: float = Field(default=1e-3, gt=0.0)  # base learning rate (times each group's multiplier)
    lrf: float = Field(default=0.05, gt=0.0, le=1.0)  # final lr = lr0 * lrf (cosine)
    warmup_steps: int = Field(default=20, ge=0)  # linear warmup, in optimizer steps
    weight_decay: float = Field(default=0.05, ge=0.0)  # on conv/linear weights only (not biases, norms)
    lr_mult: Dict[str, float] = Field(default_factory=lambda: {"encoder": 0.1, "backbone": 1.0, "fusion": 2.0,
                                                               "head": 2.0})
    accumulate: int = Field(default=1, ge=1)  # micro-steps (episodes) per optimizer step
    grad_clip: float = Field(default=10.0, ge=0.0)  # max gradient norm; 0 = off
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    ema: bool = True  # keep an EMA of the weights; checkpoints and validation use it
    ema_decay: float = Field(default=0.999, gt=0.0, lt=1.0)
    ema_tau: float = Field(default=200.0, gt=0.0)  # EMA warmup: decay * (1 - exp(-updates / tau))

    @field_validator("lr_mult")
    @classmethod
    def _groups(cls, v: Dict[str, float]) -> Dict[str, float]:
        unknown = sorted(set(v) - set(LR_GROUPS))
        if unknown:
            raise ValueError(f"optim.lr_mult.{unknown[0]} is not a parameter group; groups are {', '.join(LR_GROUPS)}")
        return {**{"encoder": 0.1, "backbone": 1.0, "fusion": 2.0, "head": 2.0}, **v}


class ValConfig(StrictModel):
    """Validation after every epoch: val loss and AP50 on the validation targets' frames."""

    enabled: bool = True
    frames_per_video: int = Field(default=16, ge=1)  # frames evaluated per video (evenly spaced, all kinds)
    conf: float = Field(default=0.001, ge=0.0, le=1.0)  # score threshold of the AP computation
    iou: float = Field(default=0.6, ge=0.0, le=1.0)  # NMS IoU


class RefDetTrainConfig(StrictModel):
    """Everything ``edgekit train refdet`` needs; dumped as ``reports/config_resolved.yaml``."""

    data: str  # few-shot root with train/ (and val/ or test/), or one RefDet root
    val: str = "auto"  # auto: <data>/val, else <data>/test, else none | none | a RefDet root
    stage: int = 2  # 1 base detection, 2 episodic meta-learning, 3 triplet fine-tuning (needs weights)
    weights: Optional[str] = None  # RefDet checkpoint to start from (required by stage 3: a stage-2 checkpoint)
    model: RefDetModelConfig = Field(default_factory=RefDetModelConfig)
    imgsz: int = Field(default=320, ge=32)  # frame side, multiple of 32
    epochs: int = Field(default=10, ge=1)
    device: str = "cpu"
    seed: int = 0
    workers: int = Field(default=0, ge=0)  # episode-building worker processes
    cache_size: int = Field(default=4096, ge=0)  # decoded frames kept per dataset (and per worker)
    freeze_encoder: Optional[bool] = None  # None: frozen in stage 1, trained (lr x0.1) in stages 2-3
    use_triplet: bool = False  # stage 3: add the triplet loss
    triplet_ratio: float = Field(default=0.3, ge=0.0, le=1.0)  # triplet share of the metric loss (contrastive x 1-r)
    negative_strategy: str = "mixed"  # triplet negatives: background | cross_class | mixed
    episode: EpisodeConfig = Field(default_factory=EpisodeConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    validation: ValConfig = Field(default_factory=ValConfig)
    save_interval: int = Field(default=0, ge=0)  # also keep checkpoints/epoch<NNN>.pt every N epochs; 0 = never
    # Wall-clock budget of training (s): stop after the epoch that reaches it, the LR schedule follows the elapsed
    # share of it (then a resume is not step-exact); 0 = off, epochs alone decide.
    max_time_s: float = Field(default=0.0, ge=0.0)
    project: str = "runs"  # directory holding the run directories

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: int) -> int:
        if v not in STAGES:
            raise ValueError(f"stage must be 1, 2 or 3, got {v}")
        return v

    @field_validator("imgsz")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        return multiple_of_stride(v)

    @field_validator("negative_strategy")
    @classmethod
    def _strategy(cls, v: str) -> str:
        if v not in NEGATIVE_STRATEGIES:
            raise ValueError(f"negative_strategy must be one of {', '.join(NEGATIVE_STRATEGIES)}, got {v!r}")
        return v

    @field_validator("device", mode="before")
    @classmethod
    def _device_text(cls, v: Any) -> str:
        return str(v)

    @model_validator(mode="after")
    def _stage_rules(self) -> RefDetTrainConfig:
        if self.use_triplet and self.stage != 3:
            raise ValueError(f"use_triplet is a stage-3 option (stage is {self.stage}): pass --stage 3")
        return self

    @property
    def encoder_frozen(self) -> bool:
        return self.stage == 1 if self.freeze_encoder is None else bool(self.freeze_encoder)

    @property
    def contrastive(self) -> bool:
        """Stages 2 and 3 train SupCon and CPE; stage 1 only detection."""
        return self.stage >= 2


def load_refdet_config(path: Optional[Path] = None, overrides: Sequence[str] = (),
                       flags: Optional[Dict[str, Any]] = None) -> RefDetTrainConfig:
    """File + ``key=value`` overrides + CLI flags (dotted keys) -> RefDetTrainConfig (unknown keys fail by name)."""
    data: Dict[str, Any] = read_mapping(Path(path)) if path else {}
    data = apply_overrides(data, overrides)
    for key, value in (flags or {}).items():
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    source = Path(path).name if path else "overrides"
    return build_config(RefDetTrainConfig, data, f"{source} (with overrides)" if path and overrides else source,
                        finite=True)


def config_table() -> str:
    """The Markdown table of every key (docs/refdet.md holds it between ``<!-- config-table -->`` markers)."""
    from edgekit.core.config_doc import model_rows, render_table

    return render_table(model_rows(RefDetTrainConfig))


__all__ = ["config_table", "RefDetTrainConfig", "EpisodeConfig", "AugmentConfig", "LossConfig", "OptimConfig", "ValConfig",
           "load_refdet_config", "STAGES", "LR_GROUPS"]
