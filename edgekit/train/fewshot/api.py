"""``train_refdet``: one RefDet training stage into ``runs/<run_id>/`` (the run contract of ``edgekit/train/run.py``).

Every refusal (bad data dir, missing weights, stage 3 without a stage-2 checkpoint, a run that already
has checkpoints, a changed config on ``--resume``) happens before anything is written.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

from edgekit.core.atomic import write_text_atomic
from edgekit.core.config import dump_config
from edgekit.core.errors import ConfigError, DataError, EdgekitError, ModelError
from edgekit.data.formats.refdet import ANNOTATIONS

from ..run import (
    RunDir,
    TrainResult,
    check_run_id,
    check_saved_config,
    git_sha,
    hold_run,
    host_info,
    keep_jsonl,
    new_run_id,
    package_versions,
    plan_run,
    read_jsonl,
    release_run,
    update_run_meta,
)
from .config import RefDetTrainConfig

LOG = logging.getLogger(__name__)
VERSIONED = ("torch", "ultralytics", "timm", "numpy", "opencv-python-headless")
# Keys that may differ on --resume: where and how fast the run executes, not what it trains.
RESUME_MUTABLE = ("device", "workers", "project", "data", "val", "cache_size", "save_interval")


def _is_refdet_root(path: Path) -> bool:
    # the annotations file, not format's is_refdet_root (which also takes a bare samples/ folder):
    # training needs the boxes
    return (path / ANNOTATIONS).is_file()


def resolve_data(cfg: RefDetTrainConfig) -> Tuple[Path, Optional[Path]]:
    """(train root, val root or None): ``data`` is a RefDet root or a few-shot root holding ``train/``."""
    data = Path(cfg.data).expanduser()
    if _is_refdet_root(data / "train"):
        train, candidates = data / "train", [data / "val", data / "test"]
    elif _is_refdet_root(data):
        train, candidates = data, []
    else:
        raise DataError(f"--data {data} is not a RefDet dataset: neither {data / ANNOTATIONS} nor "
                        f"{data / 'train' / ANNOTATIONS} exists",
                        "point --data at a RefDet root or a root with train/ (e.g. from `edgekit data synth refdet`)")
    if cfg.val == "none":
        return train, None
    if cfg.val != "auto":
        val = Path(cfg.val).expanduser()
        if not _is_refdet_root(val):
            raise DataError(f"val={val} is not a RefDet root ({val / ANNOTATIONS} does not exist)",
                            "pass val=none, val=auto or a RefDet root")
        return train, val
    return train, next((c for c in candidates if _is_refdet_root(c)), None)


def check_episodes(cfg: RefDetTrainConfig, train_root: Path) -> None:
    """``episode.n_way`` distinct targets must exist (checked before the run directory is made)."""
    from edgekit.data.formats.refdet import read_refdet_annotations

    n = sum(1 for v in read_refdet_annotations(train_root) if any(t.bboxes for t in v.annotations))
    if cfg.episode.n_way > n:
        raise ConfigError(f"episode.n_way={cfg.episode.n_way} but {train_root} has {n} annotated targets",
                          f"pass episode.n_way <= {n} or add videos")


def check_weights(cfg: RefDetTrainConfig, trust: bool) -> None:
    """Stage 3 needs a stage-2 (or 3) checkpoint; any ``weights`` must be a loadable RefDet checkpoint; without
    ``weights`` the encoder's pretrained file (unless ``random``) must be found."""
    from .checkpoint import read_refdet_checkpoint
    from .model import resolve_encoder_weights

    if cfg.stage == 3 and not cfg.weights:
        raise ConfigError("stage 3 fine-tunes a stage-2 model but no --weights checkpoint was given",
                          "pass --weights runs/<stage-2 run>/checkpoints/best.pt")
    if not cfg.weights:
        resolve_encoder_weights(cfg.model)
        return
    try:
        ckpt = read_refdet_checkpoint(cfg.weights, trust=trust)
    except ModelError as e:
        raise ModelError(f"--weights: {e.message}", e.fix) from None
    if cfg.stage == 3 and int(ckpt.get("stage", 0)) < 2:
        raise ConfigError(f"stage 3 fine-tunes a stage-2 model but --weights {cfg.weights} is from stage "
                          f"{ckpt.get('stage')}", "train stage 2 first and pass its best.pt")


def adopt_checkpoint_model(cfg: RefDetTrainConfig, trust: bool = False) -> RefDetTrainConfig:
    """With ``weights``, the model is the checkpoint's: its ``model_config`` replaces ``cfg.model`` (so the
    batches are built for its ``ref_size`` and config_resolved.yaml says what is trained)."""
    from .checkpoint import read_refdet_checkpoint
    from .model import RefDetModelConfig

    if not cfg.weights:
        return cfg
    try:
        ckpt = read_refdet_checkpoint(cfg.weights, trust=trust)
    except ModelError as e:
        raise ModelError(f"--weights: {e.message}", e.fix) from None
    model = RefDetModelConfig(**ckpt["model_config"])
    if model != cfg.model:
        LOG.info("--weights %s: using its model config (model.* keys of this config are ignored)", cfg.weights)
    return cfg.model_copy(update={"model": model})


def _check_saved_config(cfg: RefDetTrainConfig, run: RunDir) -> None:
    check_saved_config(RefDetTrainConfig, cfg, run, RESUME_MUTABLE, opaque=("encoder_kwargs", "lr_mult"))


def read_resume_checkpoint(run: RunDir, trust: bool = False) -> Dict[str, Any]:
    """last.pt with its resume state; a corrupt or foreign file is a ModelError (never a silent restart)."""
    from .checkpoint import read_refdet_checkpoint

    try:
        ckpt = read_refdet_checkpoint(run.last, trust=trust)
    except ModelError as e:
        raise ModelError(f"--resume: {e.message}", e.fix) from None
    if "optimizer" not in ckpt or "step" not in ckpt:
        raise ModelError(f"--resume: {run.last} holds no training state", "restore the run's own last.pt or start a "
                         "new --run-id")
    return ckpt


def _write_run_start(cfg: RefDetTrainConfig, run: RunDir, resume: bool) -> None:
    write_text_atomic(run.config_resolved, dump_config(cfg))
    warnings = []
    if cfg.model.encoder_weights == "random" and not cfg.weights:
        warnings.append("model.encoder_weights: random - the reference encoder is randomly initialised")
    update_run_meta(run, run_id=run.run_id, task="refdet", stage=cfg.stage, seed=cfg.seed, git_sha=git_sha(),
                    host=host_info(), versions=package_versions(VERSIONED), device=cfg.device, warnings=warnings,
                    resumed=resume)


def train_refdet(cfg: RefDetTrainConfig, run_id: Optional[str] = None, resume: bool = False,
                 trust_checkpoint: bool = False, progress: bool = True,
                 on_epoch: Optional[Callable[[int, Dict[str, Any]], None]] = None) -> TrainResult:
    """Train ``cfg.stage`` into ``<cfg.project>/<run_id>/`` and return the run's artifacts."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if resume and not run_id:
        raise ConfigError("--resume needs the run to continue", "pass --run-id ID (a directory under project)")
    run_id = check_run_id(run_id) if run_id is not None else new_run_id("refdet")
    train_root, val_root = resolve_data(cfg)
    cfg = adopt_checkpoint_model(cfg, trust_checkpoint)
    check_episodes(cfg, train_root)
    existing = RunDir(Path(cfg.project) / run_id)

    def on_resume(run: RunDir) -> Dict[str, Any]:
        ckpt = read_resume_checkpoint(run, trust_checkpoint)
        _check_saved_config(cfg, run)
        return ckpt

    resume, state = plan_run(existing, resume, [cfg.data], on_resume)
    if not resume:
        check_weights(cfg, trust_checkpoint)
    created = not existing.root.exists()
    run = RunDir.create(cfg.project, existing.run_id)
    hold_run(run.root)  # a new run: two launches that both found no directory; the second stops here
    _write_run_start(cfg, run, resume)
    first = int(state["epoch"]) + 1 if resume else 0
    for path in (run.train_metrics, run.val_metrics):  # epochs about to be (re)done must not appear twice
        keep_jsonl(path, lambda r, e=first: int(r.get("epoch", -1)) < e)
    from .trainer import RefDetTrainer

    try:
        trainer = RefDetTrainer(cfg, run, train_root, val_root, resume=state or None, progress=progress,
                                trust=trust_checkpoint)
        trainer.fit(on_epoch)
    except EdgekitError:
        if created and not run.last.exists():  # nothing trained: leave no half-made run behind
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    finally:
        release_run(run.root)
    vals = read_jsonl(run.val_metrics) or read_jsonl(run.train_metrics)
    return TrainResult(run.root, run.best, run.last, vals[-1] if vals else {})


__all__ = ["TrainResult", "train_refdet", "resolve_data", "check_weights", "read_resume_checkpoint", "adopt_checkpoint_model",
           "check_episodes", "RESUME_MUTABLE"]
