"""Losses of the few-shot reference detector: box (WIoU v3 or CIoU), cls BCE, DFL, SupCon, CPE, triplet.

Each loss is a small function or ``nn.Module`` whose docstring states its formula; the formulas are
recorded in ``docs/fewshot_losses.md``. Boxes are ``(x1, y1, x2, y2)`` in any consistent unit.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-7
NEGATIVE_STRATEGIES = ("background", "cross_class", "mixed")
CPE_REWEIGHTS = ("none", "linear", "exp")


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """A zero that stays on the autograd graph of ``tensors`` (backward works, grads are 0)."""
    return sum((t.sum() * 0.0 for t in tensors), torch.zeros((), device=tensors[0].device))


def _iou_terms(pred: torch.Tensor, target: torch.Tensor):
    """IoU, squared centre distance and squared enclosing-box diagonal of paired (N, 4) xyxy boxes."""
    px1, py1, px2, py2 = pred.unbind(-1)
    tx1, ty1, tx2, ty2 = target.unbind(-1)
    inter = (torch.min(px2, tx2) - torch.max(px1, tx1)).clamp(min=0) * (torch.min(py2, ty2) - torch.max(py1, ty1)).clamp(min=0)
    union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + EPS
    rho2 = ((px1 + px2 - tx1 - tx2) ** 2 + (py1 + py2 - ty1 - ty2) ** 2) / 4
    cw = torch.max(px2, tx2) - torch.min(px1, tx1)
    ch = torch.max(py2, ty2) - torch.min(py1, ty1)
    return inter / union, rho2, cw ** 2 + ch ** 2 + EPS


class WIoUv3Loss(nn.Module):
    """Wise-IoU v3 (Tong et al. 2023): a dynamic, non-monotonic focusing IoU loss, per box.

    ``L_IoU = 1 - IoU``; ``R = exp(rho^2 / (W_g^2 + H_g^2)*)`` with ``rho`` the distance of the box centres
    and ``W_g, H_g`` the enclosing box (``*``: detached); ``L_v1 = R * L_IoU``;
    ``beta = L_IoU* / mean(L_IoU)`` where ``mean`` is a running mean, updated in training mode before use:
    ``mean <- (1 - m) * mean + m * batch_mean(L_IoU*)``; ``r = beta / (delta * alpha^(beta - delta))``;
    ``L = r * L_v1``. ``alpha=1.9, delta=3``. The running mean is a buffer, so it is checkpointed and a
    resumed run continues with it. Returns the (N,) per-box losses; weighting and reduction are the caller's.
    """

    def __init__(self, alpha: float = 1.9, delta: float = 3.0, momentum: float = 0.01) -> None:
        super().__init__()
        self.alpha, self.delta, self.momentum = float(alpha), float(delta), float(momentum)
        self.register_buffer("iou_mean", torch.tensor(1.0))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.numel() == 0:
            return pred.new_zeros((0,)) + _zero(pred)
        iou, rho2, c2 = _iou_terms(pred, target)
        l_iou = 1.0 - iou
        if self.training:
            with torch.no_grad():
                self.iou_mean.mul_(1.0 - self.momentum).add_(self.momentum * l_iou.detach().mean())
        l_v1 = torch.exp(rho2 / c2.detach()) * l_iou
        beta = l_iou.detach() / self.iou_mean
        r = beta / (self.delta * torch.pow(self.alpha, beta - self.delta))
        return r * l_v1


def ciou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-box ``1 - CIoU`` (Zheng et al. 2020), ``CIoU = IoU - rho^2/c^2 - a*v`` with
    ``v = 4/pi^2 (atan(w_t/h_t) - atan(w_p/h_p))^2`` and ``a = v / (v - IoU + 1 + eps)`` (detached).

    Ultralytics' ``bbox_iou`` is reused so the box loss matches the OBB/YOLO trainers exactly.
    """
    from ultralytics.utils.metrics import bbox_iou

    return 1.0 - bbox_iou(pred, target, xywh=False, CIoU=True).squeeze(-1)


class BoxLoss(nn.Module):
    """The bbox loss, ``kind="wiou"`` (WIoU v3, default) or ``"ciou"``: per-box losses (N,)."""

    def __init__(self, kind: str = "wiou", alpha: float = 1.9, delta: float = 3.0, momentum: float = 0.01) -> None:
        super().__init__()
        if kind not in ("wiou", "ciou"):
            raise ValueError(f"box loss kind must be 'wiou' or 'ciou', got {kind!r}")
        self.kind = kind
        self.wiou = WIoUv3Loss(alpha, delta, momentum)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.wiou(pred, target) if self.kind == "wiou" else ciou_loss(pred, target)


def cls_bce_loss(logits: torch.Tensor, targets: torch.Tensor, normalizer: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Objectness/"is the target" BCE as in Ultralytics' detection loss:
    ``L = sum_j -[y_j log s(x_j) + (1 - y_j) log(1 - s(x_j))] / max(N, 1)`` with ``s`` the sigmoid and
    ``N = normalizer`` (default ``sum_j y_j``, the soft target mass), so the loss scales with targets, not anchors.
    """
    total = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="sum")
    norm = targets.sum() if normalizer is None else torch.as_tensor(normalizer, device=logits.device)
    return total / norm.clamp(min=1.0)


def dfl_loss(pred_dist: torch.Tensor, target: torch.Tensor, reg_max: int = 16) -> torch.Tensor:
    """Distribution focal loss (Li et al. 2020) per box, the one Ultralytics YOLOv8 trains with.

    ``pred_dist`` (N*4, reg_max) logits over bins ``0..reg_max-1`` per box side; ``target`` (N, 4) side
    distances in bin units. With ``t`` clamped to ``[0, reg_max - 1.01]``, ``l = floor(t)``, ``r = l + 1``:
    ``L = -[(r - t) log p_l + (t - l) log p_r]`` with ``p = softmax``, averaged over the 4 sides -> (N, 1).
    ``ultralytics.utils.loss.DFLoss`` computes exactly this and is reused; it clamps ``target`` in place,
    so a copy is passed.
    """
    from ultralytics.utils.loss import DFLoss

    return DFLoss(reg_max)(pred_dist, target.clone())


def _log_prob_rows(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log( exp(z_i.z_a/t) / sum_{a != i} exp(z_i.z_a/t) )`` for every pair; the diagonal is -inf."""
    sim = z @ z.t() / temperature
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    return sim - torch.logsumexp(sim, dim=1, keepdim=True)


def _supcon_per_anchor(z: torch.Tensor, labels: torch.Tensor, temperature: float):
    """Per-anchor SupCon loss and the mask of anchors that have at least one positive."""
    labels = labels.reshape(-1)
    pos = (labels[:, None] == labels[None, :]) & ~torch.eye(len(z), dtype=torch.bool, device=z.device)
    n_pos = pos.sum(1)
    log_prob = _log_prob_rows(z, temperature).masked_fill(~pos, 0.0)  # drops the -inf diagonal before summing
    per_anchor = -log_prob.sum(1) / n_pos.clamp(min=1)
    return per_anchor, n_pos > 0


def supcon_loss(embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                normalize: bool = True) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), mean over anchors that have a positive:
    ``L_i = -1/|P(i)| sum_{p in P(i)} log( exp(z_i.z_p/t) / sum_{a != i} exp(z_i.z_a/t) )``, ``t = 0.07``,
    ``P(i)`` = the other samples with label ``y_i``. ``z`` is L2-normalised first when ``normalize``.
    Anchors without a positive are left out (their ``1/|P(i)|`` would be 1/0 -> NaN); with none at all
    the loss is a graph-connected 0.
    """
    z = F.normalize(embeddings, dim=1) if normalize else embeddings
    if len(z) < 2:
        return _zero(embeddings)
    per_anchor, valid = _supcon_per_anchor(z, labels, temperature)
    return per_anchor[valid].mean() if bool(valid.any()) else _zero(embeddings)


def cpe_reweight(ious: torch.Tensor, func: str = "none") -> torch.Tensor:
    """FSCE's ``g(IoU)``: ``none`` -> 1, ``linear`` -> u, ``exp`` -> e^u - 1."""
    if func == "none":
        return torch.ones_like(ious)
    if func == "linear":
        return ious
    if func == "exp":
        return torch.exp(ious) - 1.0
    raise ValueError(f"CPE reweight must be one of {CPE_REWEIGHTS}, got {func!r}")


def cpe_loss(embeddings: torch.Tensor, labels: torch.Tensor, ious: torch.Tensor, iou_threshold: float = 0.7,
             temperature: float = 0.2, reweight: str = "none", normalize: bool = True) -> torch.Tensor:
    """Contrastive proposal encoding (FSCE, Sun et al. 2021) over proposal embeddings (128-d head output).

    ``L = 1/|K| sum_{i in K} g(u_i) * L_i`` with ``L_i`` the SupCon term above at ``t = 0.2`` computed
    against all proposals, ``u_i`` the proposal's IoU with its matched box, and
    ``K = {i : u_i >= phi, |P(i)| > 0}`` (``phi = iou_threshold``). FSCE divides by ``|P(i)| + 1``
    (it counts the anchor itself); here ``|P(i)|`` excludes it, as in SupCon. Empty ``K`` -> a graph-connected 0.
    """
    z = F.normalize(embeddings, dim=1) if normalize else embeddings
    if len(z) < 2:
        return _zero(embeddings)
    per_anchor, valid = _supcon_per_anchor(z, labels, temperature)
    ious = ious.reshape(-1).to(per_anchor.dtype)
    keep = valid & (ious >= iou_threshold)
    if not bool(keep.any()):
        return _zero(embeddings)
    return (per_anchor[keep] * cpe_reweight(ious[keep].detach(), reweight)).mean()


def _negative_pool(strategy: str, background: Optional[torch.Tensor], cross_class: Optional[torch.Tensor]):
    if strategy not in NEGATIVE_STRATEGIES:
        raise ValueError(f"negative strategy must be one of {NEGATIVE_STRATEGIES}, got {strategy!r}")
    pools = {"background": [background], "cross_class": [cross_class], "mixed": [background, cross_class]}[strategy]
    pools = [p for p in pools if p is not None and len(p)]
    return torch.cat(pools) if pools else None


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, background: Optional[torch.Tensor] = None,
                 cross_class: Optional[torch.Tensor] = None, strategy: str = "mixed", margin: float = 0.3,
                 normalize: bool = True) -> torch.Tensor:
    """Triplet margin loss with the hardest negative from the pool ``strategy`` picks:
    ``L = 1/N sum_i max(0, d(a_i, p_i) - min_{n in pool} d(a_i, n) + margin)``, ``d`` Euclidean (on
    L2-normalised embeddings when ``normalize``). Pools: ``background`` (embeddings of frames or regions
    without the target), ``cross_class`` (other targets' embeddings) or ``mixed`` (both together).
    ``anchor``/``positive`` are paired (N, D). An empty pool gives a graph-connected 0.
    """
    pool = _negative_pool(strategy, background, cross_class)
    if pool is None or len(anchor) == 0:
        return _zero(anchor, positive)
    if normalize:
        anchor, positive, pool = (F.normalize(t, dim=1) for t in (anchor, positive, pool))
    d_pos = (anchor - positive).norm(dim=1)
    d_neg = torch.cdist(anchor, pool).min(dim=1).values
    return F.relu(d_pos - d_neg + margin).mean()


__all__ = ["WIoUv3Loss", "BoxLoss", "ciou_loss", "cls_bce_loss", "dfl_loss", "supcon_loss", "cpe_loss",
           "cpe_reweight", "triplet_loss", "NEGATIVE_STRATEGIES", "CPE_REWEIGHTS"]
