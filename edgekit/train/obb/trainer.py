"""``DistillOBBTrainer``: Ultralytics' OBB trainer plus DINOv3 distillation and edgekit's run contract.

What it changes in Ultralytics' loop, and why each change lives where it does:

- ``setup_model``: builds the distiller (teacher + projectors) once the student exists, restoring
  trained projectors from the checkpoint being loaded (resume or the previous stage).
- ``build_optimizer``: adds the projectors as one extra param group, so they are trained, warmed
  up, scheduled and resumed with everything else.
- ``_setup_train``: hooks the live student and wraps its criterion *after* the EMA copy is made;
  ``_load_checkpoint_state`` detaches them while Ultralytics re-copies the model.
- ``optimizer_step``: all-reduces projector gradients under DDP (they are outside the DDP wrapper).
- ``save_model`` / ``final_eval``: checkpoints go to ``runs/<id>/checkpoints`` atomically, with
  projectors and stage progress under an ``edgekit`` key plain Ultralytics ignores.

Custom settings cannot travel through Ultralytics ``overrides`` (unknown keys raise), and DDP
rebuilds the trainer in fresh processes from its class and overrides only; so the run spec is a
JSON string in the environment variable ``EDGEKIT_OBB_TRAIN_SPEC`` (or passed as ``spec=``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from ultralytics.models.yolo.obb import OBBTrainer
from ultralytics.utils import DEFAULT_CFG, LOCAL_RANK, RANK
from ultralytics.utils.torch_utils import strip_optimizer, torch_distributed_zero_first, unwrap_model

from edgekit.checkpoints import guarded_loading, safe_load
from edgekit.core.atomic import atomic_path, write_bytes_atomic
from edgekit.core.errors import ConfigError

from ..run import RunDir, append_jsonl, update_run_meta
from .config import ObbTrainConfig
from .distill import DISTILL_LOSS_NAMES, Distiller, Projectors, distill_weight, probe_channels
from .monitoring import MetricSinks, write_signal_map
from .teacher import build_teacher

LOG = logging.getLogger(__name__)
ENV_SPEC = "EDGEKIT_OBB_TRAIN_SPEC"
CKPT_KEY = "edgekit"


@dataclass
class TrainSpec:
    """What one stage's trainer needs beyond Ultralytics' args (JSON, so DDP workers can rebuild it)."""

    run_dir: str
    stage_index: int
    epoch_offset: int  # global epoch number of this stage's first epoch
    config: Dict[str, Any]  # ObbTrainConfig.model_dump(mode="json")
    trust_checkpoint: bool = False  # --trust-checkpoint: load checkpoints without the allow-list

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> TrainSpec:
        text = os.environ.get(ENV_SPEC)
        if not text:
            raise ConfigError(f"{ENV_SPEC} is not set", "start training through edgekit.train.obb.train_obb")
        return cls(**json.loads(text))


def read_edgekit_state(path: Path, trust: bool = False) -> Dict[str, Any]:
    """The ``edgekit`` entry of a checkpoint, loaded safely ({} when absent or unreadable; resume uses
    ``api.read_resume_state``, which refuses instead)."""
    try:
        ckpt = safe_load(path, trust=trust)
    except Exception:  # a missing or foreign file reads as "no state"
        return {}
    state = ckpt.get(CKPT_KEY) if isinstance(ckpt, dict) else None
    return dict(state) if isinstance(state, dict) else {}


def _strip_atomic(path: Path, last: Path, stage_index: int) -> None:
    state = read_edgekit_state(path)
    if path == last or state.get("stage_index") == stage_index:
        state["stage_done"] = True
    with atomic_path(path, suffix=".pt") as tmp:
        strip_optimizer(path, s=str(tmp), updates={CKPT_KEY: state})


def finish_stage_files(last: Path, best: Path, wdir: Path, stage_name: str, stage_index: int) -> None:
    """End of a stage: optimizers stripped (atomically, marking the stage done) and ``stage_<name>.pt`` kept.

    Also what a resume runs when a kill came after the stage's last epoch but before this step.
    """
    for path in (last, best):
        if path.exists():
            _strip_atomic(path, last, stage_index)
    if last.exists():  # keep each stage's result (stage A's is overwritten by stage B)
        write_bytes_atomic(wdir / f"stage_{stage_name}.pt", last.read_bytes())


class DistillOBBTrainer(OBBTrainer):
    """OBB trainer with feature distillation from a frozen teacher kept outside ``self.model``."""

    def __init__(self, cfg=DEFAULT_CFG, overrides: Optional[dict] = None, _callbacks: Optional[dict] = None,
                 spec: Optional[TrainSpec] = None) -> None:
        # Set before super().__init__, which already runs callbacks through run_callbacks below.
        self.spec = spec or TrainSpec.from_env()
        self.tree = ObbTrainConfig.model_validate(self.spec.config)
        self.stage = self.tree.stages[self.spec.stage_index]
        self.run = RunDir(self.spec.run_dir)
        self.distiller: Optional[Distiller] = None
        self.sinks: Optional[MetricSinks] = None
        self._in_final_eval = False
        self._batch_i, self._nb = 0, 1
        with guarded_loading(self.spec.trust_checkpoint):  # resume: Ultralytics loads last.pt here
            super().__init__(cfg, overrides, _callbacks)
        stray = self.wdir  # Ultralytics made save_dir/weights; checkpoints live in the run instead
        self.wdir, self.last, self.best = self.run.checkpoints, self.run.last, self.run.best
        if RANK in {-1, 0}:
            self.wdir.mkdir(parents=True, exist_ok=True)
            if stray.is_dir() and not any(stray.iterdir()):
                stray.rmdir()
        self._run_best = read_edgekit_state(self.best).get("fitness") if RANK in {-1, 0} else None

    def train(self):
        """Ultralytics' training with every checkpoint load restricted (edgekit.checkpoints): the student,
        resume, strip_optimizer and the final validation all load through ``torch.load``. DDP workers
        rebuild this class and call train(), so they are guarded too."""
        with guarded_loading(self.spec.trust_checkpoint):
            return super().train()

    @property
    def global_epoch(self) -> int:
        return self.spec.epoch_offset + int(getattr(self, "epoch", 0) or 0)

    # -- model, optimizer, setup --------------------------------------------------------------
    def setup_model(self):
        ckpt = super().setup_model()
        if self.tree.distillation.enabled and self.distiller is None:
            self.distiller = self._build_distiller(ckpt)
        return ckpt

    def _build_distiller(self, ckpt: Optional[dict]) -> Distiller:
        layers = self.tree.distillation.layers
        channels = probe_channels(self.model, layers)
        teacher = build_teacher(self.tree.teacher, self.device)
        projectors = Projectors(layers, channels, teacher.width)
        saved = (ckpt or {}).get(CKPT_KEY, {}) or {}
        if saved.get("projectors"):
            try:
                projectors.load_state_dict(saved["projectors"])
            except RuntimeError as e:
                LOG.warning("checkpoint projectors do not fit (%s); starting them fresh", str(e).splitlines()[0])
        if RANK in {-1, 0}:
            update_run_meta(self.run, teacher={"name": self.tree.teacher.name, "source": teacher.source,
                                               "width": teacher.width, "dtype": str(teacher.dtype)})
        return Distiller(teacher, projectors.to(self.device), self.tree.distillation)

    def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
        optimizer = super().build_optimizer(model, name, lr, momentum, decay, iterations)
        if self.distiller is not None:
            group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
            group.update(param_group="distill_projector", weight_decay=decay)
            if "use_muon" in group:
                group["use_muon"] = False
            optimizer.add_param_group({"params": list(self.distiller.projectors.parameters()), **group})
        return optimizer

    def _setup_train(self):
        super()._setup_train()
        if self.distiller is not None:
            self.distiller.attach(unwrap_model(self.model))

    def _load_checkpoint_state(self, ckpt):
        if self.distiller is None:
            return super()._load_checkpoint_state(ckpt)
        with self.distiller.detached(unwrap_model(self.model)):  # ModelEMA deep-copies the model here
            return super()._load_checkpoint_state(ckpt)

    def _model_train(self):
        super()._model_train()
        if self.distiller is not None:
            self.distiller.projectors.train()

    def optimizer_step(self):
        """Ultralytics' step (unscale, clip, step, EMA) with the projectors clipped and DDP-averaged too."""
        if self.distiller is None:
            return super().optimizer_step()
        proj_params = [p for p in self.distiller.projectors.parameters() if p.grad is not None]
        if self.world_size > 1:
            import torch.distributed as dist

            for p in proj_params:  # outside the DDP wrapper: average their grads like DDP does the student's
                dist.all_reduce(p.grad)
                p.grad.div_(self.world_size)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        torch.nn.utils.clip_grad_norm_(proj_params, max_norm=10.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema:
            self.ema.update(self.model)

    def label_loss_items(self, loss_items=None, prefix="train"):
        if prefix == "val":  # validation runs the EMA student alone: no distillation terms there
            if loss_items is None:
                return [f"val/{x}" for x in self.loss_names if x not in DISTILL_LOSS_NAMES]
            loss_items = {k: v for k, v in loss_items.items() if k not in DISTILL_LOSS_NAMES}
        return super().label_loss_items(loss_items, prefix)

    # -- checkpoints ----------------------------------------------------------------------------
    def _edgekit_state(self, stage_done: bool = False) -> Dict[str, Any]:
        proj = None
        if self.distiller is not None:
            proj = {k: v.detach().float().cpu().clone() for k, v in self.distiller.projectors.state_dict().items()}
        fitness = None if self.fitness is None else float(self.fitness)
        return {"format": 1, "run_id": self.run.run_id, "stage_index": self.spec.stage_index,
                "stage_name": self.stage.name, "stage_epoch": int(self.epoch), "stage_epochs": int(self.epochs),
                "global_epoch": self.global_epoch, "fitness": fitness, "stage_done": stage_done,
                "hook_layers": list(self.tree.distillation.layers), "projectors": proj,
                "teacher": self.distiller.teacher.source if self.distiller else None}

    def save_model(self):
        """Ultralytics' checkpoint + the ``edgekit`` key, written atomically to the run's checkpoints."""
        import io

        final_last, final_best = self.last, self.best
        tmp = Path(tempfile.mkdtemp(prefix=".save.", dir=str(self.wdir)))
        self.last, self.best = tmp / "last.pt", tmp / "best.pt"
        try:
            if not super().save_model():
                return False
            ckpt = safe_load(self.last)  # the file Ultralytics just wrote
            ckpt[CKPT_KEY] = self._edgekit_state()
            buf = io.BytesIO()
            torch.save(ckpt, buf)
            data = buf.getvalue()
        finally:
            self.last, self.best = final_last, final_best
            shutil.rmtree(tmp, ignore_errors=True)
        write_bytes_atomic(self.last, data)
        period = self.tree.save_period
        if period and (self.global_epoch + 1) % period == 0:
            write_bytes_atomic(self.periodic_checkpoint(self.stage.name, self.global_epoch), data)
        fit = self.fitness
        if fit is not None and (self._run_best is None or float(fit) >= float(self._run_best)):
            write_bytes_atomic(self.best, data)
            self._run_best = float(fit)
        return True

    def periodic_checkpoint(self, stage: str, epoch: int) -> Path:
        """``checkpoints/<stage>_epoch<NNN>.pt`` (NNN: global epoch, as in the JSONL reports)."""
        return self.wdir / f"{stage}_epoch{epoch:03d}.pt"

    def final_eval(self):
        """Strip optimizers atomically, then validate the run's best checkpoint (Ultralytics' flow)."""
        with torch_distributed_zero_first(LOCAL_RANK):
            if RANK in {-1, 0}:
                finish_stage_files(self.last, self.best, self.wdir, self.stage.name, self.spec.stage_index)
        if self.best.exists():
            self.validator.args.plots = self.args.plots
            self.validator.args.compile = False
            self.metrics = self.validator(model=self.best)
            self.metrics.pop("fitness", None)
            self._in_final_eval = True
            self.epoch += 1
            try:
                self.run_callbacks("on_fit_epoch_end")
            finally:
                self.epoch -= 1
                self._in_final_eval = False

    # -- events: schedule, reports, loggers -------------------------------------------------------
    def run_callbacks(self, event: str):
        for cb in self.callbacks.get(event, []):
            module = getattr(cb, "__module__", "") or ""
            # edgekit's own sinks replace Ultralytics' integrations (W&B, MLflow, ...), avoiding double runs
            if module.startswith("ultralytics.") and module != "ultralytics.utils.callbacks.base":
                continue
            cb(self)
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler()

    def _on_on_pretrain_routine_end(self) -> None:
        if RANK in {-1, 0}:
            self.sinks = MetricSinks.open(self.tree.logging, self.run, self.tree.model_dump(mode="json"))
            self._stage_t0 = time.time()

    def _on_on_train_epoch_start(self) -> None:
        self._nb = max(len(self.train_loader), 1)
        self._batch_i = 0

    def _on_on_train_batch_start(self) -> None:
        if self.distiller is not None:
            d = self.tree.distillation
            progress = self.global_epoch + self._batch_i / self._nb
            self.distiller.weight = distill_weight(progress, d.weight, self.stage.distill_scale, d.warmup_epochs)
        self._batch_i += 1

    def save_metrics(self, metrics):
        """Ultralytics' results.csv, then the run's JSONL reports - before the epoch's checkpoint is written,
        so a kill can lose a checkpoint (and resume redoes that epoch) but never leaves one without its report."""
        super().save_metrics(metrics)
        base = {"stage": self.stage.name, "epoch": self.global_epoch, "stage_epoch": int(self.epoch)}
        train = {**base, **self.label_loss_items(self.tloss or {}, prefix="train"), **getattr(self, "lr", {}),
                 "distill_weight": self.distiller.weight if self.distiller else 0.0,
                 "epoch_time_s": round(time.time() - self.epoch_time_start, 3)}
        append_jsonl(self.run.train_metrics, train)
        append_jsonl(self.run.val_metrics, self._val_record(base))
        if self.sinks is not None:
            self.sinks.log({**train, **(self.metrics or {})}, step=self.global_epoch)
        every = self.tree.logging.signal_maps_every
        if self.distiller is not None and every and (self.global_epoch + 1) % every == 0:
            png = write_signal_map(self.run.signal_maps / f"epoch{self.global_epoch:03d}.png",
                                   self.distiller.last_signal, self.tree.distillation.layers)
            if png is not None and self.sinks is not None:
                self.sinks.log_image("signal_map", png, step=self.global_epoch)

    def _val_record(self, base: Dict[str, Any]) -> Dict[str, Any]:
        return {**base, **{k: float(v) for k, v in (self.metrics or {}).items()},
                "fitness": None if self.fitness is None else float(self.fitness)}

    def _on_on_fit_epoch_end(self) -> None:
        if RANK in {-1, 0} and self._in_final_eval:  # final_eval's validation of the best checkpoint
            base = {"stage": self.stage.name, "epoch": self.global_epoch - 1, "stage_epoch": int(self.epoch) - 1}
            append_jsonl(self.run.val_metrics, {**self._val_record(base), "final": True, "checkpoint": str(self.best)})

    def _on_on_train_end(self) -> None:
        if RANK in {-1, 0}:
            t0 = getattr(self, "_stage_t0", None)
            update_run_meta(self.run, stage_timings={self.stage.name: {
                "seconds": None if t0 is None else round(time.time() - t0, 3),
                "epochs": int(self.epochs), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}})
            if self.sinks is not None:
                if self.best.exists():
                    self.sinks.log_artifact(self.best, "checkpoints")
                # one tracker run for the whole edgekit run: only the last stage finishes it
                self.sinks.close(final=self.spec.stage_index == len(self.tree.stages) - 1)
                self.sinks = None


__all__ = ["DistillOBBTrainer", "TrainSpec", "ENV_SPEC", "CKPT_KEY", "read_edgekit_state", "finish_stage_files"]
