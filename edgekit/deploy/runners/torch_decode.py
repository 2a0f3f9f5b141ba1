"""The OBB decode of :func:`edgekit.core.postprocess.decode_obb` in torch, with static shapes.

Every tensor has a shape fixed by the model output and ``max_candidates``, and no op waits for the
host (no ``nonzero``, boolean indexing or ``.item()``), so the whole decode can be captured in the
torch runner's CUDA graph after the forward: only ``max_det + 2`` rows of 7 floats cross back to
the host instead of the whole ``(4 + nc + 1, A)`` output, and the host's decode work shrinks to
reading a count. The same function runs eagerly on CPU tensors, which is how the tests check it
against the numpy decode.

Result layout (:data:`edgekit.core.postprocess.DECODED_OUTPUT`, read by
:func:`edgekit.core.postprocess.detections_from_rows`): row 0 ``[kept, overflow, candidates, 0...]``,
rows ``1..kept`` ``[cx, cy, w, h, angle, score, class]`` best score first (the raw box values; the
host regularises them exactly as the numpy decode does), then unused rows.

Equality with the numpy decode, step by step:

* best class per anchor: ``max`` over the class rows (first index on ties, as ``argmax``);
* candidates: ``score > conf``, ordered by score then anchor index (a ``topk`` over an int64 key
  made of the score's float bits and the reversed index: ties break as numpy's stable argsort);
* class-aware suppression: the same coordinate offset per class (span over every candidate) and
  the same ProbIoU formula in float64, op for op (no fused kernels, no FMA contraction);
* Fast-NMS: a candidate is dropped when any earlier candidate overlaps it above ``iou``; the first
  ``max_det`` survivors are kept.

Only the first ``max_candidates`` candidates are examined. Fast-NMS decides a candidate from the
ones before it alone, so the result is still exact unless more candidates exist *and* fewer than
``max_det`` survived among those examined: then row 0 says ``overflow`` and the runner hands the
raw output to the numpy decode instead.
"""

from __future__ import annotations

from typing import Any

from edgekit.core.postprocess import PostprocessSpec

_EPS = 1e-7  # probiou_matrix's eps (edgekit/core/geometry.py)
_COLS = 7


def gpu_decodable(spec: PostprocessSpec) -> bool:
    """Whether this decode reproduces ``spec``: OBB, ProbIoU, Fast-NMS (the Ultralytics defaults)."""
    return spec.task == "obb" and spec.obb_iou == "probiou" and spec.obb_fast_nms


def decode_obb_rows(raw: Any, spec: PostprocessSpec, max_candidates: int) -> Any:
    """One image's raw OBB output ``(4 + nc + 1, A)`` (any float dtype) -> ``(max_det + 2, 7)`` float32 rows."""
    import torch

    pred = raw.float()
    anchors = pred.shape[1]
    k = max(1, min(int(max_candidates), anchors, spec.max_nms))
    scores, classes = pred[4:pred.shape[0] - 1].max(0)
    passing = scores > spec.conf
    index = torch.arange(anchors, device=pred.device)
    # Non-negative float32 bits order like the floats; the low word breaks ties by the lower index.
    key = (scores.view(torch.int32).to(torch.int64) << 32) | (anchors - 1 - index)
    key = torch.where(passing, key, torch.full_like(key, -1))
    top_key, top = key.topk(k)
    valid = top_key >= 0
    boxes32 = torch.cat([pred[:4], pred[-1:]], 0).index_select(1, top).t()  # (k, 5) raw values
    top_scores, top_classes = scores.index_select(0, top), classes.index_select(0, top)
    shifted = boxes32.double()
    if not spec.agnostic:
        shifted = _class_offset(shifted, top_classes, pred, passing)
    over = _probiou(shifted) > spec.iou
    earlier = torch.ones(k, k, dtype=torch.bool, device=pred.device).triu(1) & valid[:, None]
    keep = valid & ~(over & earlier).any(0)
    rank = keep.long().cumsum(0) - 1
    keep = keep & (rank < spec.max_det)
    kept = keep.sum()
    count = passing.sum()
    overflow = (count > k) & (k < spec.max_nms) & (kept < spec.max_det)
    rows = torch.cat([boxes32, top_scores[:, None], top_classes[:, None].float()], 1)
    out = torch.zeros(spec.max_det + 2, _COLS, dtype=torch.float32, device=pred.device)
    dest = torch.where(keep, rank + 1, torch.full_like(rank, spec.max_det + 1))  # the last row takes the rest
    out.index_put_((dest,), rows)
    out[0, :3] = torch.stack([kept, overflow, count]).float()
    return out


def trim_obb_rows(raw: Any, spec: PostprocessSpec, max_candidates: int) -> Any:
    """The decode's input trimmed on the device: ``(k + 1, 7)`` float32 rows of the candidates.

    Row 0 is ``[rows, overflow, candidates, 0...]``; rows ``1..rows`` are ``[cx, cy, w, h, angle,
    score, class]`` of every anchor whose best class score passes ``conf``, in anchor order: exactly
    the candidates (and order) the numpy decode examines when there are at most ``k``
    (:data:`~edgekit.core.postprocess.CANDIDATE_OUTPUT`, suppressed on the host by
    :func:`~edgekit.core.postprocess.detections_from_candidates`). A prefix sum places them (about ten
    kernels, no sort), instead of the full decode's top-k and ``k x k`` float64 ProbIoU (a hundred
    kernels and more, launch-bound; docs/runtime.md). ``overflow``: more than ``k`` candidates, so the
    host must decode the raw output.
    """
    import torch

    pred = raw.float()
    anchors = pred.shape[1]
    k = max(1, min(int(max_candidates), anchors, spec.max_nms))
    scores, classes = pred[4:pred.shape[0] - 1].max(0)
    passing = scores > spec.conf
    rank = passing.cumsum(0)  # 1-based row of each candidate
    count = rank[-1]
    dest = torch.where(passing & (rank <= k), rank, torch.full_like(rank, k + 1))  # row k + 1 takes the rest
    rows = torch.cat([pred[:4], pred[-1:], scores[None], classes[None].float()], 0).t()
    out = torch.zeros(k + 2, _COLS, dtype=torch.float32, device=pred.device)
    out.index_put_((dest,), rows)
    out[0, :3] = torch.stack([count.clamp(max=k), count > k, count]).float()
    return out[: k + 1]


def _class_offset(shifted: Any, classes: Any, pred: Any, passing: Any) -> Any:
    """geometry._class_offset: xy += class * span, span from every candidate's |xy| and |wh| maxima."""
    import torch

    mag = pred[:4].abs() * passing  # zero for anchors below conf: |x| >= 0 leaves the maxima as they are
    span = (mag[:2].amax().double() + mag[2:4].amax().double()) * 2 + 1.0
    return torch.cat([shifted[:, :2] + classes[:, None].double() * span, shifted[:, 2:]], 1)


def _covariance(boxes: Any):
    a, b, t = boxes[:, 2] * boxes[:, 2] / 12, boxes[:, 3] * boxes[:, 3] / 12, boxes[:, 4]
    cos, sin = t.cos(), t.sin()
    cos2, sin2 = cos * cos, sin * sin
    return a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin


def _probiou(boxes: Any) -> Any:
    """geometry.probiou_matrix(boxes, boxes), the same float64 operations in the same order."""
    x1, y1 = boxes[:, 0:1], boxes[:, 1:2]
    x2, y2 = boxes[None, :, 0], boxes[None, :, 1]
    a, b, c = _covariance(boxes)
    a1, b1, c1 = a[:, None], b[:, None], c[:, None]
    a2, b2, c2 = a[None, :], b[None, :], c[None, :]
    sa, sb, sc = a1 + a2, b1 + b2, c1 + c2
    den = sa * sb - sc * sc
    den_eps = den + _EPS
    # x2 - x1 is exactly -(x1 - x2) in IEEE arithmetic, so one difference serves both terms (and
    # squares alike): the same values as the numpy formula with fewer K x K kernels.
    dy, ndx = y1 - y2, x2 - x1
    t1 = (sa * (dy * dy) + sb * (ndx * ndx)) / den_eps * 0.25
    t2 = (sc * ndx * dy) / den_eps * 0.5
    det = (a1 * b1 - c1 * c1).clamp(min=0) * (a2 * b2 - c2 * c2).clamp(min=0)
    t3 = ((den / (4 * det.sqrt() + _EPS) + _EPS).log()) * 0.5
    bd = (t1 + t2 + t3).clamp(_EPS, 100.0)
    return 1 - (1.0 - (-bd).exp() + _EPS).sqrt()


__all__ = ["decode_obb_rows", "gpu_decodable", "trim_obb_rows"]
