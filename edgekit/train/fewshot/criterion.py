"""The RefDet training objective: detection losses on task-aligned assignments plus the metric losses.

``L = w_box L_box + w_cls L_cls + w_dfl L_dfl + c (w_supcon L_SupCon + w_cpe L_CPE) + t w_triplet L_triplet``

- Detection (every stage): Ultralytics' ``TaskAlignedAssigner`` (one class: "this is the target") picks
  the positive anchors of each frame; box (WIoU v3 or CIoU) and DFL on them weighted by the aligned
  target score, BCE over all anchors normalised by the target-score mass, as Ultralytics' v8 loss.
  Frames without the target (negatives) have no box: every anchor learns score 0 there.
- ``c``: 0 in stage 1, 1 in stage 2, ``1 - triplet_ratio`` in stage 3 (reduced contrastive weights);
  ``t``: ``triplet_ratio`` in stage 3 with ``use_triplet``, else 0.
- SupCon: reference embeddings and query-crop embeddings (the encoder on the target's box in a query
  frame), labelled by target.
- CPE: proposal embeddings (the fusion blocks' per-location keys) of positive anchors (labelled by
  target, IoU-gated), hard background anchors (label -1, never anchors) and each target's projected
  query vector (IoU 1), so positive locations are pulled to the query the spatial attention compares with.
- Triplet: anchor = the target embedding, positive = a query crop of it, negatives = background crops
  and other targets' crops (``negative_strategy``), per target so a target is never its own negative.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import LossConfig
from .losses import BoxLoss, cls_bce_loss, cpe_loss, dfl_loss, supcon_loss, triplet_loss

BG_LABEL = -1


class RefDetCriterion(nn.Module):
    """Callable on a model's train-mode output and a batch's targets; returns (total, parts dict)."""

    def __init__(self, stride: torch.Tensor, reg_max: int, cfg: LossConfig, stage: int = 2, use_triplet: bool = False,
                 triplet_ratio: float = 0.3, negative_strategy: str = "mixed") -> None:
        from ultralytics.utils.tal import TaskAlignedAssigner

        super().__init__()
        self.cfg, self.reg_max, self.stage = cfg, int(reg_max), int(stage)
        self.register_buffer("stride", stride.detach().clone().float(), persistent=False)
        self.register_buffer("proj", torch.arange(reg_max, dtype=torch.float), persistent=False)
        self.box = BoxLoss(cfg.box)  # holds WIoU v3's running mean: checkpointed with the criterion
        self.assigner = TaskAlignedAssigner(topk=cfg.tal_topk, num_classes=1, alpha=cfg.tal_alpha, beta=cfg.tal_beta)
        self.c = 0.0 if stage == 1 else (1.0 - triplet_ratio if stage == 3 else 1.0)
        self.t = triplet_ratio if (stage == 3 and use_triplet) else 0.0
        self.negative_strategy = negative_strategy

    # -- detection --------------------------------------------------------------------------------
    def decode(self, pred_dist: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """``[N,A,4*reg_max]`` logits -> ``[N,A,4]`` xyxy boxes in grid units (expected bin of each side)."""
        from ultralytics.utils.tal import dist2bbox

        n, a, _ = pred_dist.shape
        dist = pred_dist.view(n, a, 4, self.reg_max).softmax(3).matmul(self.proj.to(pred_dist.dtype))
        return dist2bbox(dist, anchors, xywh=False)

    def detection(self, raw: Dict[str, torch.Tensor], gt_boxes: torch.Tensor, gt_mask: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Box/cls/DFL losses and the assignment. ``gt_boxes [N,M,4]`` xyxy input pixels, ``gt_mask [N,M,1]``."""
        from ultralytics.utils.tal import bbox2dist, make_anchors

        pred_dist = raw["boxes"].float().permute(0, 2, 1).contiguous()  # [N,A,4*reg_max]
        logits = raw["scores"].float().permute(0, 2, 1).contiguous()  # [N,A,1]
        anchors, strides = make_anchors(raw["feats"], self.stride, 0.5)
        anchors, strides = anchors.float(), strides.float()
        pred_boxes = self.decode(pred_dist, anchors)  # grid units
        labels = torch.zeros_like(gt_boxes[..., :1])
        _, target_boxes, target_scores, fg, _ = self.assigner(
            logits.detach().sigmoid(), (pred_boxes.detach() * strides), anchors * strides, labels, gt_boxes, gt_mask)
        norm = target_scores.sum().clamp(min=1.0)
        out = {"cls": cls_bce_loss(logits, target_scores, normalizer=norm), "fg": fg, "pred_boxes": pred_boxes,
               "strides": strides, "logits": logits}
        if bool(fg.any()):
            tb = target_boxes / strides
            weight = target_scores.sum(-1)[fg].unsqueeze(-1)
            out["box"] = (self.box(pred_boxes[fg], tb[fg]).unsqueeze(-1) * weight).sum() / norm
            ltrb = bbox2dist(anchors, tb, self.reg_max - 1)
            out["dfl"] = (dfl_loss(pred_dist[fg].view(-1, self.reg_max), ltrb[fg], self.reg_max) * weight).sum() / norm
            out["iou"] = _paired_iou(pred_boxes[fg].detach(), tb[fg])
        else:  # no positives in the batch (all negatives): graph-connected zeros, never NaN
            out["box"] = out["dfl"] = pred_dist.sum() * 0.0
            out["iou"] = pred_dist.new_zeros((0,))
        return out

    # -- metric losses ----------------------------------------------------------------------------
    def cpe(self, raw: Dict[str, torch.Tensor], det: Dict[str, torch.Tensor], image_label: torch.Tensor,
            task_first_image: torch.Tensor) -> torch.Tensor:
        keys = raw["keys"].float().permute(0, 2, 1)  # [N,A,E]
        fg = det["fg"]
        pos = keys[fg]
        pos_labels = image_label[:, None].expand_as(fg)[fg]
        bg_scores = det["logits"][..., 0].detach().masked_fill(fg, float("-inf")).flatten()
        k = min(self.cfg.cpe_negatives, int(torch.isfinite(bg_scores).sum()))
        neg = keys.reshape(-1, keys.shape[-1])[bg_scores.topk(k).indices] if k else keys.new_zeros((0, keys.shape[-1]))
        q = raw["query"].float()[task_first_image]
        emb = torch.cat([pos, neg, q])
        labels = torch.cat([pos_labels, pos_labels.new_full((len(neg),), BG_LABEL), image_label[task_first_image]])
        ious = torch.cat([det["iou"], keys.new_zeros(len(neg)), keys.new_ones(len(q))])
        return cpe_loss(emb, labels, ious, self.cfg.cpe_iou, self.cfg.cpe_temperature, self.cfg.cpe_reweight)

    def triplet(self, task_emb: torch.Tensor, crop_emb: torch.Tensor, crop_label: torch.Tensor, task_label: torch.Tensor,
                bg_emb: torch.Tensor, cross_emb: torch.Tensor, cross_label: torch.Tensor) -> torch.Tensor:
        """Mean over targets of the per-target triplet loss (anchor: the target embedding, per crop)."""
        parts = []
        for t, label in enumerate(task_label.tolist()):
            mine = crop_label == label
            if not bool(mine.any()):
                continue
            others = torch.cat([cross_emb[cross_label != label], crop_emb[crop_label != label]])
            parts.append(triplet_loss(task_emb[t:t + 1].expand(int(mine.sum()), -1), crop_emb[mine],
                                      background=bg_emb, cross_class=others, strategy=self.negative_strategy,
                                      margin=self.cfg.triplet_margin))
        return torch.stack(parts).mean() if parts else task_emb.sum() * 0.0

    def forward(self, raw: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor],
                emb: Optional[Dict[str, torch.Tensor]] = None):
        """``batch``: gt_boxes, gt_mask, image_label, task_first_image, task_label; ``emb`` (stages 2-3): ref_emb,
        ref_label, crop_emb, crop_label, task_emb, bg_emb, cross_emb, cross_label."""
        cfg = self.cfg
        det = self.detection(raw, batch["gt_boxes"], batch["gt_mask"])
        parts = {"box": det["box"], "cls": det["cls"], "dfl": det["dfl"]}
        total = cfg.box_weight * det["box"] + cfg.cls_weight * det["cls"] + cfg.dfl_weight * det["dfl"]
        if self.c > 0 and emb is not None:
            sup = supcon_loss(torch.cat([emb["ref_emb"], emb["crop_emb"]]).float(),
                              torch.cat([emb["ref_label"], emb["crop_label"]]), cfg.supcon_temperature)
            cpe = self.cpe(raw, det, batch["image_label"], batch["task_first_image"])
            parts.update(supcon=sup, cpe=cpe)
            total = total + self.c * (cfg.supcon_weight * sup + cfg.cpe_weight * cpe)
        if self.t > 0 and emb is not None:
            tri = self.triplet(emb["task_emb"].float(), emb["crop_emb"].float(), emb["crop_label"], batch["task_label"],
                               emb["bg_emb"].float(), emb["cross_emb"].float(), emb["cross_label"])
            parts["triplet"] = tri
            total = total + self.t * cfg.triplet_weight * tri
        return total, {k: float(v.detach()) for k, v in parts.items()}


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area = lambda x: (x[:, 2:] - x[:, :2]).clamp(min=0).prod(1)  # noqa: E731
    return inter / (area(a) + area(b) - inter + 1e-7)


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)


__all__ = ["RefDetCriterion", "BG_LABEL"]
