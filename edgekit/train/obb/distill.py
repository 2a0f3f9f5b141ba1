"""The feature-distillation engine: student taps, projectors, the masked cosine loss and its schedule.

For every hooked student layer: capture its output (forward hook), resample it bilinearly to the
teacher's patch grid, project it with a trainable 1x1 conv to the teacher's width, and take the
per-cell cosine distance ``1 - cos`` to the teacher's patch features. A mask rasterised from the
ground-truth rotated boxes splits cells into object and background; each part is averaged over
its own cell count and weighted (``obj_weight``, ``bg_weight``). The total is
``L = L_yolo + w(epoch, stage) * L_distill`` with a linear warmup of ``w``.

The hooks and the criterion wrapper are attached to the live student only after Ultralytics has
made its EMA copy, and detached around anything that deep-copies the model, so no edgekit object
ever reaches a checkpoint (plain ``ultralytics.YOLO(best.pt)`` keeps working without edgekit).

Speed (a small student is launch-bound, so kernel *count* matters more than FLOPs): a forward
pre-hook on the student's first layer starts the teacher on a side CUDA stream as soon as the
image enters the student, so it overlaps the student's forward and YOLO loss; the loss joins it
only when the features are needed. All layers' cosine terms are computed stacked, in one pass.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import DistillConfig
from .masks import obb_mask
from .teacher import PendingFeatures, Teacher

DISTILL_LOSS_NAMES = ("dino_loss", "obj_distill_loss", "bg_distill_loss")


def distill_weight(progress_epochs: float, base: float, stage_scale: float, warmup_epochs: float) -> float:
    """``base * stage_scale * ramp``: ramp rises linearly from 0 to 1 over ``warmup_epochs`` of training."""
    ramp = 1.0 if warmup_epochs <= 0 else min(1.0, max(0.0, progress_epochs / warmup_epochs))
    return float(base) * float(stage_scale) * ramp


def masked_cosine_distance(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor,
                           obj_weight: float, bg_weight: float
                           ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, obj_mean, bg_mean, distance map) for (B, C, h, w) features and a (B, h, w) 0/1 mask.

    ``obj_mean``/``bg_mean`` are ``1 - cos`` averaged over object/background cells (0 when a part is
    empty); ``total = obj_weight * obj_mean + bg_weight * bg_mean``.
    """
    dist = 1.0 - F.cosine_similarity(student.float(), teacher.float(), dim=1, eps=1e-6)  # (B, h, w)
    m = mask.to(dist.dtype)
    obj = (dist * m).sum() / m.sum().clamp(min=1.0)
    bg = (dist * (1.0 - m)).sum() / (1.0 - m).sum().clamp(min=1.0)
    return obj_weight * obj + bg_weight * bg, obj, bg, dist


def stacked_masked_cosine(students: Sequence[torch.Tensor], teacher: torch.Tensor, mask: torch.Tensor,
                          obj_weight: float, bg_weight: float
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``masked_cosine_distance`` for L student maps against one teacher map, in one stacked pass.

    Returns (total averaged over the layers, obj (L,), bg (L,), distance maps (L, B, h, w)); each
    layer's terms equal ``masked_cosine_distance``'s. Written stacked because a launch-bound step
    pays per kernel: the teacher is normalised once and the object/background means of every
    layer come from one weighted sum against a (2, cells) weight matrix. Always fp32 (autocast off:
    the per-cell weights ``1/count`` underflow in fp16).
    """
    with torch.autocast(device_type=teacher.device.type, enabled=False):
        s = F.normalize(torch.stack(list(students)).float(), dim=2, eps=1e-6)  # (L, B, C, h, w)
        t = F.normalize(teacher.float(), dim=1, eps=1e-6)  # (B, C, h, w)
        dist = 1.0 - (s * t).sum(2)  # (L, B, h, w)
        m = mask.to(dist.dtype).reshape(1, -1)
        n_obj = m.sum()
        weights = torch.cat([m / n_obj.clamp(min=1.0), (1.0 - m) / (m.numel() - n_obj).clamp(min=1.0)])
        parts = (dist.reshape(dist.shape[0], 1, -1) * weights).sum(-1)  # (L, 2): per-layer obj, bg means
        obj, bg = parts.unbind(1)
        total = (obj_weight * obj + bg_weight * bg).mean()
    return total, obj, bg, dist


class FeatureTaps:
    """Forward hooks storing the outputs of chosen ``model.model[i]`` layers of an Ultralytics model.

    ``on_input``, if given, is called with the image entering ``model.model[0]`` on every forward
    in training mode (a forward pre-hook), before any student layer runs.
    """

    def __init__(self, layers: Sequence[int], on_input: Optional[Callable[[torch.Tensor], None]] = None) -> None:
        self.layers = [int(i) for i in layers]
        self.outputs: Dict[int, torch.Tensor] = {}
        self.on_input = on_input
        self._handles: List = []

    def attach(self, model: nn.Module) -> None:
        self.detach()
        seq = model.model
        for i in self.layers:
            if not -len(seq) <= i < len(seq):
                from edgekit.core.errors import ConfigError

                raise ConfigError(f"distillation.layers: student has no layer {i} (it has {len(seq)})",
                                  "pick neck layers, e.g. [15, 18, 21] for yolov8n-obb")
            self._handles.append(seq[i].register_forward_hook(self._store(i)))
        if self.on_input is not None:
            self._handles.append(seq[0].register_forward_pre_hook(self._see_input))

    def _see_input(self, module: nn.Module, inputs) -> None:
        if module.training and inputs and isinstance(inputs[0], torch.Tensor):
            self.on_input(inputs[0])

    def _store(self, i: int):
        outputs = self.outputs

        def hook(module: nn.Module, inputs, output) -> None:
            outputs[i] = output

        return hook

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.outputs.clear()

    @property
    def attached(self) -> bool:
        return bool(self._handles)


def probe_channels(model: nn.Module, layers: Sequence[int], imgsz: int = 64) -> List[int]:
    """Output channels of ``layers``, found by one no-grad forward (BN statistics untouched: eval mode)."""
    taps = FeatureTaps(layers)
    taps.attach(model)
    was_training = model.training
    try:
        model.eval()
        p = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros(1, 3, imgsz, imgsz, device=p.device, dtype=p.dtype))
        return [int(taps.outputs[i].shape[1]) for i in taps.layers]
    finally:
        taps.detach()
        model.train(was_training)


class Projectors(nn.Module):
    """One trainable 1x1 conv per hooked layer, student width -> teacher width."""

    def __init__(self, layers: Sequence[int], in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.layers = [int(i) for i in layers]
        self.convs = nn.ModuleDict({str(i): nn.Conv2d(c, out_channels, 1) for i, c in zip(self.layers, in_channels)})

    def forward(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.convs[str(i)](x)


class Distiller:
    """Teacher + taps + projectors; computes the distillation terms for one training batch.

    ``async_teacher`` (default): start the teacher when the image enters the student (side CUDA
    stream; deferred to the loss on CPU); False runs it synchronously inside the loss.
    """

    def __init__(self, teacher: Teacher, projectors: Projectors, cfg: DistillConfig,
                 async_teacher: bool = True) -> None:
        self.teacher = teacher
        self.projectors = projectors
        self.cfg = cfg
        self.async_teacher = bool(async_teacher)
        self.taps = FeatureTaps(cfg.layers, on_input=self._start_teacher if self.async_teacher else None)
        self.weight = 0.0  # current w(epoch, stage); the trainer updates it every batch
        self.last_signal: Optional[Dict[str, torch.Tensor]] = None  # detached, for signal maps
        self._pending: Optional[PendingFeatures] = None

    def _start_teacher(self, img: torch.Tensor) -> None:
        self._pending = self.teacher.submit(img)

    def teacher_features(self, img: torch.Tensor) -> torch.Tensor:
        """The teacher's features of ``img``: the ones started by the pre-hook when it saw this very tensor."""
        pending, self._pending = self._pending, None
        if pending is not None and pending.img is img:
            return pending.result()
        return self.teacher.features(img)

    def teacher_grid(self, img_hw: Tuple[int, int]) -> Tuple[int, int]:
        """The teacher's patch grid for images of ``img_hw`` (known before its features are)."""
        th, tw = self.teacher.input_hw(img_hw)
        return th // self.teacher.patch, tw // self.teacher.patch

    def loss(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """(weighted distillation loss, its detached components) from the taps' current outputs."""
        img = batch["img"]
        grid = self.teacher_grid(tuple(img.shape[-2:]))
        # Mask and projections first: they do not need the teacher, which may still be running.
        mask = obb_mask(batch["bboxes"], batch["batch_idx"], img.shape[0], grid, tuple(img.shape[-2:]))
        projected = []
        for i in self.taps.layers:
            feat = self.taps.outputs[i]
            if tuple(feat.shape[-2:]) != grid:  # bilinear to the same size would be a copy
                feat = F.interpolate(feat, size=grid, mode="bilinear", align_corners=False)
            projected.append(self.projectors(i, feat))
        self.taps.outputs.clear()  # free the activations' references early
        t_feat = self.teacher_features(img)  # (B, C, h, w), no grad; joins the side stream here
        if tuple(t_feat.shape[-2:]) != grid:
            from edgekit.core.errors import ModelError

            raise ModelError(f"teacher {self.teacher.cfg.name} gave a {tuple(t_feat.shape[-2:])} patch grid, "
                             f"expected {grid} (input / patch size {self.teacher.patch})",
                             "use a plain ViT teacher without dynamic padding")
        dino, objs, bgs, dist = stacked_masked_cosine(projected, t_feat, mask, self.cfg.obj_weight,
                                                      self.cfg.bg_weight)
        self.last_signal = {"img": img[:1].detach(), "dist": dist.detach()[:, :1].transpose(0, 1),
                            "bboxes": batch["bboxes"].detach(), "batch_idx": batch["batch_idx"].detach()}
        means = torch.stack([dino.detach(), objs.detach().mean(), bgs.detach().mean()])
        items = dict(zip(DISTILL_LOSS_NAMES, means.unbind()))
        return self.weight * dino, items

    @contextlib.contextmanager
    def detached(self, model: nn.Module) -> Iterator[None]:
        """Temporarily remove hooks and the criterion wrapper (around deep copies of the model)."""
        had_taps = self.taps.attached
        crit = getattr(model, "criterion", None)
        wrapped = isinstance(crit, DistilledCriterion)
        if had_taps:
            self.taps.detach()
        if wrapped:
            model.criterion = crit.base
        try:
            yield
        finally:
            if wrapped:
                model.criterion = crit
            if had_taps:
                self.taps.attach(model)

    def attach(self, model: nn.Module) -> None:
        """Hook the live student and wrap its loss criterion."""
        self.taps.attach(model)
        base = getattr(model, "criterion", None) or model.init_criterion()
        if isinstance(base, DistilledCriterion):
            base = base.base
        model.criterion = DistilledCriterion(base, self)


class DistilledCriterion:
    """Ultralytics criterion wrapper: YOLO loss vector + the weighted distillation term, items merged.

    v8OBBLoss returns ``loss * batch_size`` (summed by the trainer) and detached items; the
    distillation term is scaled by the batch size the same way so ``w`` means "relative to L_yolo".
    """

    def __init__(self, base, distiller: Distiller) -> None:
        self.base = base
        self.distiller = distiller

    def __call__(self, preds, batch):
        loss, items = self.base(preds, batch)
        if not self.distiller.taps.outputs:  # e.g. a loss call without a fresh forward
            return loss, items
        d_loss, d_items = self.distiller.loss(batch)
        bs = batch["img"].shape[0]
        total = torch.cat([loss.reshape(-1), (d_loss * bs).reshape(1).to(loss.dtype)])
        return total, {**items, **d_items}

    def __getattr__(self, name: str):
        # Ultralytics pokes criterion attributes (e.g. ``update``); forward them to the YOLO loss.
        if name in ("base", "distiller"):
            raise AttributeError(name)
        return getattr(self.base, name)


__all__ = ["Distiller", "DistilledCriterion", "FeatureTaps", "Projectors", "probe_channels",
           "masked_cosine_distance", "stacked_masked_cosine", "distill_weight", "DISTILL_LOSS_NAMES"]
