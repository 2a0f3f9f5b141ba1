"""The RefDet training loop: episodes -> model -> criterion, AdamW with layer-wise learning rates, EMA, checkpoints.

One epoch is ``episode.episodes_per_epoch`` micro-steps; ``optim.accumulate`` micro-steps make one optimizer
step (the last micro-step of an epoch always steps, so an epoch boundary is a clean resume point). Batch
``i`` of the whole run is a pure function of ``(seed, i)`` (``episodes.py``), and last.pt holds the raw
and EMA weights, the optimizer, the criterion's running state (WIoU v3's mean) and torch's RNG: a resumed
run computes the same losses as one that was never interrupted.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from edgekit.core.atomic import write_bytes_atomic
from edgekit.core.errors import DeviceError
from edgekit.core.postprocess import PostprocessSpec, decode_detect

from ..run import RunDir, append_jsonl
from .checkpoint import checkpoint_bytes, model_from_checkpoint, read_refdet_checkpoint
from .config import RefDetTrainConfig
from .criterion import RefDetCriterion
from .episodes import EpisodeBatcher, EpisodeStream, ValVideo, build_val_set
from .model import RefDetModel
from .valmetrics import average_precision, video_st_iou

LOG = logging.getLogger(__name__)
ST_IOU_CONF = 0.25  # score a frame's best box must reach to count as "target found" in ST-IoU


def select_device(name: str) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``N``; DeviceError when CUDA is asked for and missing."""
    text = str(name).strip().lower()
    if text.isdigit():
        text = f"cuda:{text}"
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device={name} but CUDA is not available here", "pass device=cpu")
        return torch.device(text)
    if text != "cpu":
        raise DeviceError(f"device={name!r} is not a device", "pass device=cpu, cuda or a GPU index like 0")
    return torch.device("cpu")


def param_group_of(name: str) -> str:
    """Which layer-wise learning-rate group a parameter belongs to."""
    if name.startswith("encoder."):
        return "encoder"
    if name.startswith("layers."):
        return "backbone"
    if name.startswith("head."):
        return "head"
    return "fusion"  # fusion.*, query.*, ref_proj.*


def build_optimizer(model: RefDetModel, cfg: RefDetTrainConfig) -> torch.optim.Optimizer:
    """AdamW over (group x decay) parameter groups; weight decay only on conv/linear weights (ndim > 1)."""
    groups: Dict[tuple, List[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((param_group_of(name), p.ndim > 1), []).append(p)
    o = cfg.optim
    param_groups = [{"params": ps, "name": f"{g}{'' if decay else '_no_decay'}", "lr_mult": o.lr_mult[g],
                     "weight_decay": o.weight_decay if decay else 0.0, "lr": o.lr0 * o.lr_mult[g]}
                    for (g, decay), ps in sorted(groups.items())]
    return torch.optim.AdamW(param_groups, lr=o.lr0, betas=(0.9, 0.999))


def lr_factor(step: int, total: int, warmup: int, lrf: float, time_share: float = 0.0) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from 1 to ``lrf`` at ``total`` steps (or at the end of
    the time budget, ``time_share`` = elapsed / budget, whichever comes first)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, max((step - warmup) / max(1, total - warmup), time_share))
    return lrf + (1 - lrf) * 0.5 * (1 + math.cos(math.pi * t))


def init_model(cfg: RefDetTrainConfig, trust: bool = False) -> tuple:
    """(model, source): from ``cfg.weights`` (a RefDet checkpoint: its own model_config) or built from ``cfg.model``."""
    if cfg.weights:
        ckpt = read_refdet_checkpoint(cfg.weights, trust=trust)
        return model_from_checkpoint(ckpt, cfg.weights), {"weights": str(cfg.weights), "stage": ckpt.get("stage")}
    return RefDetModel(cfg.model, trust=trust), {"weights": None}


class RefDetTrainer:
    """Runs ``cfg.epochs`` epochs into ``run`` (see the module docstring); ``resume``: last.pt's dict."""

    def __init__(self, cfg: RefDetTrainConfig, run: RunDir, train_root: Path, val_root: Optional[Path],
                 resume: Optional[Dict[str, Any]] = None, progress: bool = True, trust: bool = False) -> None:
        from ultralytics.utils.torch_utils import ModelEMA

        self.cfg, self.run, self.progress = cfg, run, progress
        self.device = select_device(cfg.device)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.model, self.source = init_model(cfg, trust)
        self.model.to(self.device)
        if cfg.encoder_frozen:
            self.model.encoder.requires_grad_(False)
        self.criterion = RefDetCriterion(self.model.stride, self.model.cfg.reg_max, cfg.loss, cfg.stage, cfg.use_triplet,
                                         cfg.triplet_ratio, cfg.negative_strategy).to(self.device)
        self.optimizer = build_optimizer(self.model, cfg)
        self.ema = ModelEMA(self.model, decay=cfg.optim.ema_decay, tau=cfg.optim.ema_tau) if cfg.optim.ema else None
        self.batcher = EpisodeBatcher(train_root, cfg)
        self.val_set: List[ValVideo] = build_val_set(val_root, cfg) if (val_root and cfg.validation.enabled) else []
        e = cfg.episode.episodes_per_epoch
        self.steps_per_epoch = math.ceil(e / cfg.optim.accumulate)
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.start_epoch, self.step, self.best_fitness = 0, 0, None
        self.amp = bool(cfg.optim.amp and self.device.type == "cuda")
        self.t_start = time.perf_counter()
        if resume:
            self._restore(resume)

    # -- state ------------------------------------------------------------------------------------
    @property
    def eval_model(self) -> RefDetModel:
        return self.ema.ema if self.ema is not None else self.model

    def _restore(self, ckpt: Dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt.get("train_model") or ckpt["model"])
        if self.ema is not None:
            self.ema.ema.load_state_dict(ckpt["model"])
            self.ema.updates = int(ckpt.get("ema_updates", 0))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.criterion.load_state_dict(ckpt["criterion"], strict=False)
        torch.set_rng_state(ckpt["rng"])
        self.start_epoch, self.step = int(ckpt["epoch"]) + 1, int(ckpt["step"])
        self.best_fitness = ckpt.get("best_fitness")

    def _ckpt(self, epoch: int, metrics: Dict[str, Any], resumable: bool) -> bytes:
        extra: Dict[str, Any] = {"metrics": metrics, "run_id": self.run.run_id, "best_fitness": self.best_fitness,
                                 "init": self.source, "ema": self.ema is not None}
        if resumable:
            extra.update(optimizer=self.optimizer.state_dict(), criterion=self.criterion.state_dict(),
                         rng=torch.get_rng_state(), step=self.step,
                         ema_updates=int(self.ema.updates) if self.ema is not None else 0)
            if self.ema is not None:
                extra["train_model"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return checkpoint_bytes(self.eval_model.state_dict(), self.model.cfg, self.cfg.imgsz, epoch, self.cfg.stage,
                                **extra)

    def save(self, epoch: int, metrics: Dict[str, Any], fitness: float) -> None:
        """last.pt (resumable) every epoch, epoch<NNN>.pt every ``save_interval`` epochs, best.pt on a new best."""
        is_best = self.best_fitness is None or fitness >= self.best_fitness
        if is_best:
            self.best_fitness = fitness
        data = self._ckpt(epoch, metrics, resumable=True)
        write_bytes_atomic(self.run.last, data)
        if self.cfg.save_interval and (epoch + 1) % self.cfg.save_interval == 0:
            write_bytes_atomic(self.run.checkpoints / f"epoch{epoch:03d}.pt", data)
        if is_best:
            write_bytes_atomic(self.run.best, self._ckpt(epoch, metrics, resumable=False))

    # -- training ---------------------------------------------------------------------------------
    def _tensors(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        return {k: torch.as_tensor(v).to(self.device, non_blocking=True) for k, v in batch.items()}

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if len(x) == 0:
            return x.new_zeros((0, self.model.embedding_dim))
        return self.model.embed(x)

    def micro_step(self, b: Dict[str, torch.Tensor]):
        """Forward one episode and return (loss, parts)."""
        cfg = self.cfg
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            ref_emb = self._embed(b["refs"])
            n_task = len(b["task_label"])
            summed = ref_emb.float().new_zeros((n_task, ref_emb.shape[1])).index_add(0, b["ref_task"], ref_emb.float())
            task_emb = F.normalize(summed, dim=1)  # the mean direction = normalise(sum) of the normalised refs
            raw = self.model(b["images"], task_emb[b["image_task"]])
            emb = None
            if cfg.contrastive or cfg.use_triplet:
                emb = {"ref_emb": ref_emb, "ref_label": b["task_label"][b["ref_task"]], "task_emb": task_emb,
                       "crop_emb": self._embed(b["crops"]), "crop_label": b["task_label"][b["crop_task"]],
                       "bg_emb": self._embed(b["bg_crops"]), "cross_emb": self._embed(b["cross_crops"]),
                       "cross_label": b["cross_label"]}
        return self.criterion(raw, b, emb)

    def optimizer_step(self) -> None:
        o = self.cfg.optim
        if o.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]], o.grad_clip)
        share = (time.perf_counter() - self.t_start) / self.cfg.max_time_s if self.cfg.max_time_s else 0.0
        factor = lr_factor(self.step, self.total_steps, o.warmup_steps, o.lrf, share)
        for g in self.optimizer.param_groups:
            g["lr"] = o.lr0 * g["lr_mult"] * factor
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.model)

    def _batches(self):
        """One iterator over every remaining epoch's batches: worker processes (and their frame caches) live for
        the whole run instead of restarting each epoch."""
        e = self.cfg.episode.episodes_per_epoch
        stream = EpisodeStream(self.batcher, self.start_epoch * e, (self.cfg.epochs - self.start_epoch) * e)
        if self.cfg.workers == 0:
            return (stream[i] for i in range(len(stream)))
        return iter(torch.utils.data.DataLoader(stream, batch_size=None, shuffle=False, num_workers=self.cfg.workers,
                                                pin_memory=self.device.type == "cuda", prefetch_factor=4,
                                                persistent_workers=False))

    def train_epoch(self, epoch: int, batches=None) -> Dict[str, Any]:
        from tqdm import tqdm

        cfg, acc = self.cfg, self.cfg.optim.accumulate
        e = cfg.episode.episodes_per_epoch
        self.model.train()
        self.criterion.train()
        if cfg.encoder_frozen:
            self.model.encoder.eval()
        sums: Dict[str, float] = {}
        if batches is None:  # a single epoch on its own (tests): its batches only
            batches = iter(EpisodeStream(self.batcher, epoch * e, e)[i] for i in range(e))
        bar = tqdm((next(batches) for _ in range(e)), total=e, desc=f"stage {cfg.stage} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not self.progress, dynamic_ncols=True, leave=False)
        t0 = time.perf_counter()
        for i, batch in enumerate(bar):
            loss, parts = self.micro_step(self._tensors(batch))
            (loss / acc).backward()
            if (i + 1) % acc == 0 or i + 1 == e:
                self.optimizer_step()
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix({k: f"{v / (i + 1):.3f}" for k, v in sums.items()}, refresh=False)
        bar.close()
        out: Dict[str, Any] = {k: v / e for k, v in sums.items()}
        out.update(lr={g["name"]: g["lr"] for g in self.optimizer.param_groups}, step=self.step,
                   time_s=round(time.perf_counter() - t0, 3))
        return out

    # -- validation -------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Dict[str, Any]:
        """Val loss (detection terms) and AP50/P/R/ST-IoU on the validation videos, with the EMA weights."""
        model, v = self.eval_model, self.cfg.validation
        model.eval()
        self.criterion.eval()
        spec = PostprocessSpec(task="detect", conf=v.conf, iou=v.iou, max_det=100)
        preds, gts, sums, n, st = [], [], {}, 0, []
        for video in self.val_set:
            emb = model.encode(torch.from_numpy(video.refs).to(self.device))
            vp = []
            for s in range(0, len(video.images), 16):
                images = torch.from_numpy(video.images[s:s + 16]).to(self.device)
                boxes = video.boxes[s:s + 16]
                raw = model.forward_raw(images, emb)
                _, parts = self.criterion(raw, _gt_batch(boxes, self.device))
                for k, val in parts.items():
                    sums[k] = sums.get(k, 0.0) + val * len(images)
                n += len(images)
                for d in decode_detect(model.decode_raw(raw).float().cpu().numpy(), spec):
                    vp.append((d.boxes, d.scores))
            preds += vp
            gts += video.boxes
            st.append(video_st_iou(vp, video.boxes, ST_IOU_CONF))
        out: Dict[str, Any] = {f"val_{k}": val / max(n, 1) for k, val in sums.items()}
        out["val_loss"] = sum(self.cfg.loss.model_dump()[f"{k}_weight"] * out[f"val_{k}"] for k in ("box", "cls", "dfl"))
        ap = average_precision(preds, gts, 0.5, conf=ST_IOU_CONF)
        out.update(ap50=ap["ap50"], precision=ap["precision"], recall=ap["recall"], st_iou=float(np.mean(st)) if st else 0.0,
                   val_frames=n, val_videos=len(self.val_set))
        return out

    def fit(self, on_epoch=None) -> Dict[str, Any]:
        """Train the remaining epochs; returns the last validation record (or train record without validation)."""
        last: Dict[str, Any] = {}
        self.t_start = time.perf_counter()
        batches = self._batches()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            train = self.train_epoch(epoch, batches)
            append_jsonl(self.run.train_metrics, {"epoch": epoch, "stage": self.cfg.stage, **train})
            if self.val_set:
                val = self.validate()
                fitness = val["ap50"]
                last = {"epoch": epoch, "stage": self.cfg.stage, "train_loss": train["loss"], **val}
                append_jsonl(self.run.val_metrics, last)
            else:
                fitness, last = -train["loss"], {"epoch": epoch, "stage": self.cfg.stage, "train_loss": train["loss"]}
            self.save(epoch, last, fitness)
            LOG.info("epoch %d/%d: %s", epoch + 1, self.cfg.epochs,
                     ", ".join(f"{k}={v:.4f}" for k, v in last.items() if isinstance(v, float)))
            if on_epoch is not None:
                on_epoch(epoch, last)
            if self.cfg.max_time_s and time.perf_counter() - self.t_start >= self.cfg.max_time_s:
                LOG.info("time budget max_time_s=%g reached after epoch %d", self.cfg.max_time_s, epoch + 1)
                break
        return last


def _gt_batch(boxes: List[np.ndarray], device: torch.device) -> Dict[str, torch.Tensor]:
    m = max([len(b) for b in boxes] + [1])
    gt = torch.zeros((len(boxes), m, 4))
    mask = torch.zeros((len(boxes), m, 1))
    for i, b in enumerate(boxes):
        gt[i, :len(b)] = torch.from_numpy(np.asarray(b, np.float32))
        mask[i, :len(b)] = 1.0
    return {"gt_boxes": gt.to(device), "gt_mask": mask.to(device)}


__all__ = ["RefDetTrainer", "select_device", "build_optimizer", "param_group_of", "lr_factor", "init_model"]
