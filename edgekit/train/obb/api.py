"""``train_obb``: run every stage of a distilled YOLOv8-OBB training back to back into one run directory.

Stage A trains with the backbone frozen, stage B fine-tunes everything; each stage is one
Ultralytics training started from the previous stage's ``last.pt``. ``resume=True`` reads
``checkpoints/last.pt``'s ``edgekit`` entry and continues the interrupted stage at its next epoch
(Ultralytics resume) or starts the next stage.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

from edgekit.core.atomic import write_text_atomic
from edgekit.core.config import dump_config
from edgekit.core.errors import ConfigError, EdgekitError, ModelError

from ..run import (
    RunDir,
    TrainResult,
    append_jsonl,
    check_run_id,
    check_saved_config,
    git_sha,
    hold_run,
    host_info,
    keep_jsonl,
    new_run_id,
    plan_run,
    read_jsonl,
    release_run,
    update_run_meta,
)
from .config import ObbTrainConfig
from .preflight import check_ultralytics_keys, held_ultralytics_log, preflight, translate_stage_error

LOG = logging.getLogger(__name__)
VERSIONED = ("torch", "torchvision", "ultralytics", "timm", "numpy", "opencv-python-headless", "wandb", "mlflow",
             "tensorboard")


def plan_stages(state: Dict[str, Any], n_stages: int) -> Tuple[int, bool]:
    """(stage index to run next, whether it resumes mid-stage) from a last.pt ``edgekit`` entry.

    A stage is finished when marked so or when its last saved epoch was its final one.
    """
    if not state:
        return 0, False
    idx = int(state.get("stage_index", 0))
    done = bool(state.get("stage_done")) or int(state.get("stage_epoch", -1)) + 1 >= int(state.get("stage_epochs", 0))
    if not done and idx < n_stages:
        return idx, True
    return idx + 1, False


def resolve_dataset(cfg: ObbTrainConfig, run: Optional[RunDir] = None) -> Tuple[Path, Optional[Path]]:
    """(dataset root, data.yaml for Ultralytics regenerated inside the run; None without a run).

    DataError (naming data.yaml) when the root is not a dataset layout.
    """
    from edgekit.data.layout import DatasetLayout

    layout = DatasetLayout.load(Path(cfg.data).expanduser())
    return layout.root, (layout.write_data_yaml(directory=run.reports) if run is not None else None)


def _write_run_start(cfg: ObbTrainConfig, run: RunDir, resume: bool) -> None:
    from edgekit.train.run import package_versions

    write_text_atomic(run.config_resolved, dump_config(cfg))
    warnings = []
    if cfg.distillation.enabled and cfg.teacher.weights == "random":
        warnings.append("teacher.weights: random - the teacher is randomly initialised (tests/benchmarks only)")
    update_run_meta(run, run_id=run.run_id, seed=cfg.seed, git_sha=git_sha(), host=host_info(),
                    versions=package_versions(VERSIONED), device=cfg.device, warnings=warnings,
                    resumed=resume, cuda=_cuda_info(), python_impl=platform.python_implementation())


def _cuda_info() -> Dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"available": False}
    return {"available": True, "device": torch.cuda.get_device_name(0), "cuda": torch.version.cuda,
            "count": torch.cuda.device_count()}


@contextlib.contextmanager
def _spec_env(text: str) -> Iterator[None]:
    """Expose the stage spec to this process and to DDP workers (they inherit the environment)."""
    from .trainer import ENV_SPEC

    old = os.environ.get(ENV_SPEC)
    os.environ[ENV_SPEC] = text
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_SPEC, None)
        else:
            os.environ[ENV_SPEC] = old


def stage_overrides(cfg: ObbTrainConfig, run: RunDir, index: int, data_yaml: Path, init: str) -> Dict[str, Any]:
    """Ultralytics overrides for one stage (only keys Ultralytics knows)."""
    stage = cfg.stages[index]
    check_ultralytics_keys(cfg.ultralytics)
    return dict(**cfg.ultralytics, model=init, data=str(data_yaml), epochs=stage.epochs, imgsz=cfg.imgsz, batch=cfg.batch,
                device=cfg.device, workers=cfg.workers, seed=cfg.seed, deterministic=True, optimizer=cfg.optimizer,
                lr0=stage.lr0, freeze=stage.freeze, amp=cfg.amp, mosaic=cfg.mosaic, close_mosaic=cfg.close_mosaic,
                val=cfg.val, patience=cfg.patience, plots=False, save_period=-1, project=str(run.root / "stages"),
                name=stage.name, exist_ok=True, verbose=False)


EpochCallback = Callable[[int, Dict[str, Any]], None]


def _run_stage(cfg: ObbTrainConfig, run: RunDir, index: int, data_yaml: Path, resume: bool,
               trust_checkpoint: bool = False, on_epoch: Optional[EpochCallback] = None) -> None:
    from .trainer import DistillOBBTrainer, TrainSpec

    stage = cfg.stages[index]
    offset = sum(s.epochs for s in cfg.stages[:index])
    spec = TrainSpec(run_dir=str(run.root), stage_index=index, epoch_offset=offset,
                     config=cfg.model_dump(mode="json"), trust_checkpoint=trust_checkpoint)
    if resume:
        overrides: Dict[str, Any] = dict(resume=str(run.last), data=str(data_yaml), device=cfg.device,
                                         workers=cfg.workers)
    else:
        init = cfg.student if index == 0 else str(run.last)
        overrides = stage_overrides(cfg, run, index, data_yaml, init)
    LOG.info("stage %s (%d/%d): %s", stage.name, index + 1, len(cfg.stages), "resuming" if resume else "starting")
    update_run_meta(run, stages={stage.name: {"index": index, "epochs": stage.epochs, "freeze": stage.freeze,
                                              "lr0": stage.lr0, "distill_scale": stage.distill_scale}})
    try:
        with _spec_env(spec.to_json()), held_ultralytics_log() as release:
            trainer = DistillOBBTrainer(overrides=overrides, spec=spec)
            trainer.add_callback("on_train_start", lambda _trainer: release())
            if on_epoch is not None:  # after each epoch's validation (not the final re-validation of best.pt)
                trainer.add_callback("on_fit_epoch_end", lambda t: None if t._in_final_eval else on_epoch(
                    t.global_epoch, {k: float(v) for k, v in (t.metrics or {}).items()}))
            try:
                trainer.train()
            finally:  # a stage that raised (a pruned trial, a crash) still ends its tracker runs cleanly
                if getattr(trainer, "sinks", None) is not None:
                    trainer.sinks.close(final=True)
                    trainer.sinks = None
    except Exception as e:  # the stage boundary: Ultralytics/torch errors become one line naming the user's file
        translated = translate_stage_error(e, cfg, data_yaml)
        if translated is None or translated is e:
            raise
        raise translated from None


def _finish_interrupted_stage(cfg: ObbTrainConfig, run: RunDir, index: int, data_yaml: Path, trust: bool) -> None:
    """A kill after a stage's last epoch but before its final evaluation: do that evaluation now.

    The stage counts as finished (its last epoch is saved), so the resume goes on with the next stage;
    without this the stage would have no ``stage_<name>.pt`` and no final row in val_metrics.jsonl.
    """
    stage = cfg.stages[index]
    if any(r.get("final") and r.get("stage") == stage.name for r in read_jsonl(run.val_metrics)):
        return
    from edgekit.checkpoints import guarded_loading

    from .trainer import finish_stage_files

    LOG.info("stage %s: finishing its final evaluation (interrupted before it ran)", stage.name)
    finish_stage_files(run.last, run.best, run.checkpoints, stage.name, index)
    if not run.best.exists():
        return
    from ultralytics import YOLO

    with guarded_loading(trust), held_ultralytics_log():
        metrics = YOLO(str(run.best)).val(data=str(data_yaml), imgsz=cfg.imgsz, batch=cfg.batch, device=cfg.device,
                                           workers=cfg.workers, plots=False, verbose=False).results_dict
    epoch_in_stage = stage.epochs - 1
    offset = sum(s.epochs for s in cfg.stages[:index])
    record = {"stage": stage.name, "epoch": offset + epoch_in_stage, "stage_epoch": epoch_in_stage,
              **{k: float(v) for k, v in metrics.items() if k != "fitness"},
              "fitness": float(metrics["fitness"]) if "fitness" in metrics else None,
              "final": True, "checkpoint": str(run.best)}
    append_jsonl(run.val_metrics, record)


# Keys that may differ on --resume: where and how fast the run executes, not what it trains.
RESUME_MUTABLE = ("device", "workers", "project", "data", "logging", "teacher.cuda_graph", "save_period")


def check_resume_config(cfg: ObbTrainConfig, run: RunDir) -> None:
    """ConfigError naming the first key that differs from the run's config_resolved.yaml.

    Ultralytics resumes a stage with the arguments saved in last.pt, and finished stages are not
    rerun; so a changed config would be silently ignored while config_resolved.yaml claimed it.
    """
    check_saved_config(ObbTrainConfig, cfg, run, RESUME_MUTABLE, opaque=("model_kwargs", "ultralytics"))


def remove_stale_temps(run: RunDir) -> None:
    """Delete temporaries a killed save left in checkpoints/ (``.save.*`` dirs, ``.last.pt.*`` files)."""
    for p in run.checkpoints.glob(".*"):
        if p.is_dir() and p.name.startswith(".save."):
            shutil.rmtree(p, ignore_errors=True)
        elif p.is_file() and p.name.startswith((".last.pt.", ".best.pt.", ".stage_")):
            p.unlink()


def read_resume_state(run: RunDir, trust: bool = False) -> Dict[str, Any]:
    """last.pt's ``edgekit`` entry, loaded safely; a corrupt, foreign or unsafe last.pt is a ModelError
    (never a silent restart that would overwrite best.pt)."""
    from edgekit.checkpoints import TRUST_FLAG, safe_load

    try:
        ckpt = safe_load(run.last, trust=trust)
    except ModelError as e:
        refused = TRUST_FLAG in (e.fix or "")
        raise ModelError(f"--resume: {e.message}", e.fix if refused else
                         f"restore {run.last.name} (e.g. from {run.checkpoints.name}/stage_<name>.pt) or start a new "
                         "--run-id; the run is left as it is") from None
    state = ckpt.get("edgekit") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or "stage_index" not in state:
        raise ModelError(f"--resume: {run.last} holds no edgekit training state (not written by `edgekit train obb`)",
                         "restore the run's own last.pt or start a new --run-id")
    return dict(state)


def _check_student(cfg: ObbTrainConfig, trust: bool) -> None:
    """A student .pt is loaded safely once here, so an unsafe or corrupt one fails before the run exists."""
    from edgekit.checkpoints import safe_load

    path = Path(cfg.student).expanduser()
    if path.suffix.lower() == ".pt" and path.is_file():
        try:
            safe_load(path, trust=trust)
        except ModelError as e:
            raise ModelError(f"student={cfg.student}: {e.message}", e.fix) from None


def _plan_run(cfg: ObbTrainConfig, run_id: str, resume: bool, dataset: Path,
              trust: bool) -> Tuple[RunDir, bool, Dict[str, Any]]:
    """(run, resume?, last.pt state): every refusal happens here, before anything is written."""
    existing = RunDir(Path(cfg.project) / run_id)

    def on_resume(run: RunDir) -> Dict[str, Any]:
        state = read_resume_state(run, trust)
        check_resume_config(cfg, run)
        return state

    resume, state = plan_run(existing, resume, [dataset], on_resume)
    if not resume:
        _check_student(cfg, trust)
    return existing, resume, state


def train_obb(cfg: ObbTrainConfig, run_id: Optional[str] = None, resume: bool = False,
              trust_checkpoint: bool = False, on_epoch: Optional[EpochCallback] = None) -> TrainResult:
    """Train all stages of ``cfg`` into ``<cfg.project>/<run_id>/`` and return the run's artifacts.

    ``trust_checkpoint`` loads the student and last.pt without the class allow-list (``--trust-checkpoint``).
    ``on_epoch(global_epoch, val_metrics)`` runs after every epoch's validation (single-process training
    only: DDP workers do not carry it); an exception it raises stops training (``edgekit tune``'s pruner).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    if resume and not run_id:
        raise ConfigError("--resume needs the run to continue", "pass --run-id ID (a directory under project)")
    run_id = check_run_id(run_id) if run_id is not None else new_run_id()
    # Fail on a bad dataset, device, teacher, checkpoint or run before any run directory or report exists.
    cfg, root = preflight(cfg)
    existing, resume, state = _plan_run(cfg, run_id, resume, root, trust_checkpoint)
    if cfg.distillation.enabled:
        from .teacher import check_teacher

        check_teacher(cfg.teacher)
    created = not existing.root.exists()
    run = RunDir.create(cfg.project, existing.run_id)
    hold_run(run.root)  # a new run: two launches that both found no directory; the second stops here
    remove_stale_temps(run)
    _, data_yaml = resolve_dataset(cfg, run)
    _write_run_start(cfg, run, resume)

    start, mid_stage = plan_stages(state, len(cfg.stages)) if resume else (0, False)
    # Epochs about to be (re)done must not appear twice: a fresh start drops every earlier row of this run
    # (a kill before the first checkpoint leaves reported epochs), a resume those from its first epoch on.
    offset = sum(s.epochs for s in cfg.stages[:start])
    first_epoch = offset + (int(state.get("stage_epoch", -1)) + 1 if mid_stage else 0)
    for path in (run.train_metrics, run.val_metrics):
        keep_jsonl(path, lambda r, e=first_epoch: int(r.get("epoch", -1)) < e)
    try:
        # last.pt saved the stage's last epoch but final_eval (which marks it done) never ran: run it now.
        if resume and start > 0 and int(state.get("stage_index", -1)) == start - 1 and not state.get("stage_done"):
            _finish_interrupted_stage(cfg, run, start - 1, data_yaml, trust_checkpoint)
        for index in range(start, len(cfg.stages)):
            _run_stage(cfg, run, index, data_yaml, resume=(mid_stage and index == start),
                       trust_checkpoint=trust_checkpoint, on_epoch=on_epoch)
    except EdgekitError:  # a user error found while building (e.g. unreadable teacher weights)
        if created and not run.last.exists():  # nothing trained: leave no half-made run behind
            shutil.rmtree(run.root, ignore_errors=True)
        raise
    finally:
        release_run(run.root)
    finals = [r for r in read_jsonl(run.val_metrics) if r.get("final")]
    return TrainResult(run_dir=run.root, best=run.best, last=run.last, final_metrics=finals[-1] if finals else {})


__all__ = ["TrainResult", "train_obb", "plan_stages", "stage_overrides", "resolve_dataset", "read_resume_state"]
