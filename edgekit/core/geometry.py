"""Box geometry in numpy: OBB conversions, exact polygon IoU, ProbIoU, and NMS.

Oriented boxes are ``xywhr``: centre x, centre y, width, height, rotation in radians. Conventions
follow Ultralytics 8.4 (``ultralytics/utils/ops.py``, ``ultralytics/utils/metrics.py``):

- :func:`xywhr_to_corners` returns corners in the order of ``xywhr2xyxyxyxy``.
- :func:`regularize_xywhr` (default ``"le135"``) is the canonical form that ``xyxyxyxy2xywhr``
  returns and training labels use: ``w >= h``, angle in ``[-pi/4, 3pi/4)``. It also offers
  ``"le180"`` (``w >= h``, angle in ``[0, pi)``) and ``"rboxes"`` (exactly ``regularize_rboxes``:
  angle in ``[0, pi/2)``, w/h swapped instead of ordered).
- :func:`probiou_matrix` is a numpy port of ``batch_probiou`` (what Ultralytics' OBB NMS and OBB
  mAP use); :func:`obb_iou_matrix` is the exact polygon IoU.

Polygon clipping is hand-written because shapely is not available on the Jetson (and is not a
dependency anywhere): Sutherland-Hodgman for one pair, and a vectorised convex-intersection for
many pairs (vertices inside the other box + edge crossings, sorted by angle, shoelace).
Nothing here imports torch or cv2.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

_HALF_PI = math.pi / 2
_EPS = 1e-9


def _as_float(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def xywhr_to_corners(boxes: np.ndarray) -> np.ndarray:
    """(..., 5) xywhr -> (..., 4, 2) corners, in Ultralytics ``xywhr2xyxyxyxy`` order.

    >>> xywhr_to_corners(np.array([[10.0, 10.0, 4.0, 2.0, 0.0]]))[0].tolist()
    [[12.0, 11.0], [12.0, 9.0], [8.0, 9.0], [8.0, 11.0]]
    """
    b = _as_float(boxes)
    ctr = b[..., :2]
    w, h, t = b[..., 2:3], b[..., 3:4], b[..., 4:5]
    cos, sin = np.cos(t), np.sin(t)
    vec1 = np.concatenate([w / 2 * cos, w / 2 * sin], -1)
    vec2 = np.concatenate([-h / 2 * sin, h / 2 * cos], -1)
    pts = [ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2, ctr - vec1 + vec2]
    return np.stack(pts, -2).astype(b.dtype, copy=False)


def regularize_xywhr(boxes: np.ndarray, convention: str = "le135") -> np.ndarray:
    """Canonical parameters for the same rectangles (see the module docstring for conventions).

    >>> regularize_xywhr(np.array([[0.0, 0.0, 2.0, 4.0, 0.0]])).round(4).tolist()
    [[0.0, 0.0, 4.0, 2.0, 1.5708]]
    """
    b = np.array(_as_float(boxes), copy=True).reshape(-1, 5)
    w, h, t = b[:, 2].copy(), b[:, 3].copy(), b[:, 4]  # t: the assignments below never write it in place
    if convention == "rboxes":
        swap = np.mod(t, math.pi) >= _HALF_PI
        b[:, 2], b[:, 3] = np.where(swap, h, w), np.where(swap, w, h)
        b[:, 4] = np.mod(t, _HALF_PI)
        return b.reshape(np.shape(boxes))
    if convention not in ("le135", "le180"):
        raise ValueError(f"convention must be 'le135', 'le180' or 'rboxes', got {convention!r}")
    swap = w < h
    if swap.any():  # (the per-frame decode calls this on a handful of boxes: fewer numpy calls when none swap)
        b[:, 2], b[:, 3] = np.where(swap, h, w), np.where(swap, w, h)
        t = np.where(swap, t + _HALF_PI, t)
    low = -math.pi / 4 if convention == "le135" else 0.0
    t = np.mod(t - low, math.pi) + low
    t = np.where(t >= low + math.pi, t - math.pi, t)  # float rounding can land exactly on the upper end
    b[:, 4] = t
    return b.reshape(np.shape(boxes))


def corners_to_xywhr(corners: np.ndarray, convention: str = "le135") -> np.ndarray:
    """(N, 4, 2) or (N, 8) corners (or any (N, P, 2) polygons) -> (N, 5) min-area rectangles.

    Same result as Ultralytics ``xyxyxyxy2xywhr`` (``cv2.minAreaRect``) up to float rounding, but
    vectorised in float64 numpy: the minimum-area rectangle has a side parallel to a hull edge,
    and every hull edge joins two of the points, so trying every point-pair direction finds it.

    >>> corners_to_xywhr(np.array([[0, 0, 4, 0, 4, 2, 0, 2]])).tolist()
    [[2.0, 1.0, 4.0, 2.0, 0.0]]
    """
    pts = np.asarray(corners, dtype=np.float64)
    if len(pts) == 0:
        return np.zeros((0, 5), np.float64)
    pts = pts.reshape(len(pts), -1, 2)
    n, p = pts.shape[:2]
    i, j = np.triu_indices(p, 1)
    d = pts[:, j] - pts[:, i]  # (N, K, 2) candidate side directions
    theta = np.arctan2(d[..., 1], d[..., 0])
    u = np.stack([np.cos(theta), np.sin(theta)], -1)  # (N, K, 2) unit along the side
    v = np.stack([-u[..., 1], u[..., 0]], -1)  # unit normal
    pu = np.einsum("npc,nkc->nkp", pts, u)
    pv = np.einsum("npc,nkc->nkp", pts, v)
    lu, hu, lv, hv = pu.min(-1), pu.max(-1), pv.min(-1), pv.max(-1)
    area = (hu - lu) * (hv - lv)
    area = np.where(np.hypot(d[..., 0], d[..., 1]) > _EPS, area, np.inf)  # coincident points: no direction
    k = np.argmin(area, axis=1)
    rows = np.arange(n)
    mu, mv = (lu + hu)[rows, k] / 2, (lv + hv)[rows, k] / 2
    uk, vk = u[rows, k], v[rows, k]
    ctr = mu[:, None] * uk + mv[:, None] * vk
    out = np.stack([ctr[:, 0], ctr[:, 1], (hu - lu)[rows, k], (hv - lv)[rows, k], theta[rows, k]], -1)
    return regularize_xywhr(out, convention)


def polygon_area(polygons: np.ndarray) -> np.ndarray:
    """Shoelace area of (..., P, 2) simple polygons (either orientation); returns shape (...)."""
    p = _as_float(polygons)
    x, y = p[..., 0], p[..., 1]
    return 0.5 * np.abs(np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, axis=-1))


def _signed_area(p: np.ndarray) -> float:
    x, y = p[:, 0], p[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def _clip_polygon(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of ``subject`` inside convex, counter-clockwise ``clip``."""
    out = subject
    for k in range(len(clip)):
        if len(out) == 0:
            break
        a, b = clip[k], clip[(k + 1) % len(clip)]
        edge = b - a
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])  # >= 0: inside (left of edge)
        kept = []
        for i in range(len(out)):
            cur, nxt = out[i], out[(i + 1) % len(out)]
            s_cur, s_nxt = side[i], side[(i + 1) % len(out)]
            if s_cur >= 0:
                kept.append(cur)
            if (s_cur >= 0) != (s_nxt >= 0):
                kept.append(cur + (nxt - cur) * (s_cur / (s_cur - s_nxt)))
        out = np.array(kept, dtype=np.float64).reshape(-1, 2)
    return out


def clip_polygon_to_rect(polygon: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The part of a (P, 2) polygon inside the rectangle [x0, x1] x [y0, y1] (Sutherland-Hodgman).

    Returns (K, 2) vertices (K < 3: nothing of it is inside). Used to cut oriented boxes at tile edges.

    >>> clip_polygon_to_rect(np.array([[-1, 0], [1, 0], [1, 2], [-1, 2]]), 0, 0, 4, 4).tolist()
    [[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [0.0, 2.0]]
    """
    rect = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)  # counter-clockwise in y-up terms
    if _signed_area(rect) < 0:
        rect = rect[::-1]
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    if _signed_area(poly) < 0:
        poly = poly[::-1]
    out = _clip_polygon(poly, rect)
    # Drop repeated vertices (a corner exactly on an edge is emitted twice).
    if len(out) > 1:
        keep = np.ones(len(out), bool)
        keep[1:] = np.any(np.abs(np.diff(out, axis=0)) > 1e-12, axis=1)
        out = out[keep]
        if len(out) > 1 and np.all(np.abs(out[0] - out[-1]) <= 1e-12):
            out = out[:-1]
    return out


def polygon_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Exact IoU of two convex polygons given as (P, 2) vertices (any orientation).

    >>> polygon_iou(np.array([[0, 0], [2, 0], [2, 2], [0, 2]]), np.array([[1, 0], [3, 0], [3, 2], [1, 2]]))
    0.3333333333333333
    """
    pa, pb = np.asarray(a, np.float64).reshape(-1, 2), np.asarray(b, np.float64).reshape(-1, 2)
    if _signed_area(pb) < 0:
        pb = pb[::-1]
    area_a, area_b = abs(_signed_area(pa)), abs(_signed_area(pb))
    inter_poly = _clip_polygon(pa, pb)
    inter = abs(_signed_area(inter_poly)) if len(inter_poly) >= 3 else 0.0
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def _ccw(quads: np.ndarray) -> np.ndarray:
    """Reverse the vertex order of clockwise (K, P, 2) polygons."""
    x, y = quads[..., 0], quads[..., 1]
    signed = np.sum(x * np.roll(y, -1, -1) - np.roll(x, -1, -1) * y, axis=-1)
    return np.where((signed < 0)[:, None, None], quads[:, ::-1], quads)


def _inside(points: np.ndarray, polys: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """(K, Q, 2) points inside (K, P, 2) convex CCW polygons (boundary counts) -> (K, Q) bool."""
    a, e = polys, np.roll(polys, -1, 1) - polys  # (K, P, 2)
    rel = points[:, :, None, :] - a[:, None]  # (K, Q, P, 2)
    cross = e[:, None, :, 0] * rel[..., 1] - e[:, None, :, 1] * rel[..., 0]
    return np.all(cross >= -tol[:, None, None], axis=-1)


def convex_intersection_area(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of K pairs of convex polygons, (K, P, 2) and (K, Q, 2) -> (K,).

    The intersection of convex polygons is convex, and its vertices are the vertices of each
    polygon inside the other plus the edge crossings; sorting those by angle around their mean
    gives the polygon, and the shoelace formula its area. All pairs at once, no Python loop.
    """
    a, b = _ccw(np.asarray(a, np.float64)), _ccw(np.asarray(b, np.float64))
    k = len(a)
    if k == 0:
        return np.zeros(0, np.float64)
    scale = np.maximum(np.abs(a).reshape(k, -1).max(1), np.abs(b).reshape(k, -1).max(1)) + 1.0
    tol = 1e-9 * scale * scale
    in_a, in_b = _inside(a, b, tol), _inside(b, a, tol)
    # Edge crossings: a_i + s * ea_i == b_j + t * eb_j with s, t in [0, 1].
    ea, eb = np.roll(a, -1, 1) - a, np.roll(b, -1, 1) - b
    ea4, eb4 = ea[:, :, None, :], eb[:, None, :, :]
    diff = b[:, None, :, :] - a[:, :, None, :]
    den = ea4[..., 0] * eb4[..., 1] - ea4[..., 1] * eb4[..., 0]
    crossing = np.abs(den) > tol[:, None, None] * 1e-3  # parallel edges never cross at one point
    safe = np.where(crossing, den, 1.0)
    s = (diff[..., 0] * eb4[..., 1] - diff[..., 1] * eb4[..., 0]) / safe
    t = (diff[..., 0] * ea4[..., 1] - diff[..., 1] * ea4[..., 0]) / safe
    hit = crossing & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
    cross_pts = (a[:, :, None, :] + s[..., None] * ea4).reshape(k, -1, 2)
    pts = np.concatenate([a, b, cross_pts], 1)
    valid = np.concatenate([in_a, in_b, hit.reshape(k, -1)], 1)
    count = valid.sum(1)
    centre = (pts * valid[..., None]).sum(1) / np.maximum(count, 1)[:, None]
    ang = np.arctan2(pts[..., 1] - centre[:, None, 1], pts[..., 0] - centre[:, None, 0])
    ang = np.where(valid, ang, np.inf)  # invalid points sort last...
    order = np.argsort(ang, axis=1, kind="stable")
    pts = np.take_along_axis(pts, order[..., None], 1)
    valid = np.take_along_axis(valid, order, 1)
    pts = np.where(valid[..., None], pts, pts[:, :1])  # ...and repeat the first point: zero-area terms
    area = polygon_area(pts)
    return np.where(count >= 3, area, 0.0)


def _aabb(corners: np.ndarray) -> np.ndarray:
    return np.concatenate([corners.min(-2), corners.max(-2)], -1)


def obb_iou_matrix(a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Exact (polygon) IoU between (N, 5) and (M, 5) xywhr boxes -> (N, M) float64.

    Pairs whose axis-aligned hulls do not overlap are skipped (IoU 0) before any clipping.

    >>> obb_iou_matrix(np.array([[0, 0, 2, 2, 0.0]]), np.array([[0, 0, 2, 2, np.pi / 4]])).round(4).tolist()
    [[0.7071]]
    """
    a = np.asarray(a, np.float64).reshape(-1, 5)
    b = np.asarray(b, np.float64).reshape(-1, 5)
    out = np.zeros((len(a), len(b)), np.float64)
    if len(a) == 0 or len(b) == 0:
        return out
    ca, cb = xywhr_to_corners(a), xywhr_to_corners(b)
    ha, hb = _aabb(ca), _aabb(cb)
    overlap = (
        (ha[:, None, 0] < hb[None, :, 2]) & (hb[None, :, 0] < ha[:, None, 2])
        & (ha[:, None, 1] < hb[None, :, 3]) & (hb[None, :, 1] < ha[:, None, 3])
    )
    ii, jj = np.nonzero(overlap)
    area_a, area_b = a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]
    for s in range(0, len(ii), chunk):
        i, j = ii[s : s + chunk], jj[s : s + chunk]
        inter = convex_intersection_area(ca[i], cb[j])
        union = area_a[i] + area_b[j] - inter
        out[i, j] = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.clip(out, 0.0, 1.0)


def _covariance(boxes: np.ndarray):
    """Gaussian (a, b, c) of xywhr boxes, as Ultralytics ``_get_covariance_matrix``."""
    a, b, t = boxes[:, 2] ** 2 / 12, boxes[:, 3] ** 2 / 12, boxes[:, 4]
    cos, sin = np.cos(t), np.sin(t)
    return a * cos**2 + b * sin**2, a * sin**2 + b * cos**2, (a - b) * cos * sin


def probiou_matrix(a: np.ndarray, b: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """ProbIoU (Gaussian Hellinger similarity) between (N, 5) and (M, 5) xywhr boxes -> (N, M).

    A numpy port of Ultralytics ``batch_probiou`` (same formula and eps). It is not the polygon
    IoU: identical boxes give ~1, but partial overlaps differ (it is smooth and angle-aware).
    """
    a = np.asarray(a, np.float64).reshape(-1, 5)
    b = np.asarray(b, np.float64).reshape(-1, 5)
    x1, y1 = a[:, 0:1], a[:, 1:2]
    x2, y2 = b[None, :, 0], b[None, :, 1]
    a1, b1, c1 = (v[:, None] for v in _covariance(a))
    a2, b2, c2 = (v[None, :] for v in _covariance(b))
    den = (a1 + a2) * (b1 + b2) - (c1 + c2) ** 2
    t1 = ((a1 + a2) * (y1 - y2) ** 2 + (b1 + b2) * (x1 - x2) ** 2) / (den + eps) * 0.25
    t2 = ((c1 + c2) * (x2 - x1) * (y1 - y2)) / (den + eps) * 0.5
    det = np.clip(a1 * b1 - c1**2, 0, None) * np.clip(a2 * b2 - c2**2, 0, None)
    t3 = np.log(den / (4 * np.sqrt(det) + eps) + eps) * 0.5
    bd = np.clip(t1 + t2 + t3, eps, 100.0)
    hd = np.sqrt(1.0 - np.exp(-bd) + eps)
    return 1 - hd


def box_iou_matrix(a: np.ndarray, b: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """IoU between (N, 4) and (M, 4) axis-aligned xyxy boxes -> (N, M) float64."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=-1)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=-1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + eps)


def _class_offset(boxes: np.ndarray, class_ids: Optional[np.ndarray]) -> np.ndarray:
    """Shift each class's boxes to its own region so one NMS pass never mixes classes."""
    if class_ids is None or len(boxes) == 0:
        return boxes
    span = float(np.abs(boxes[:, :2]).max() + np.abs(boxes[:, 2:4]).max()) * 2 + 1.0
    out = np.array(boxes, np.float64, copy=True)
    out[:, :2] += np.asarray(class_ids, np.float64).reshape(-1, 1) * span
    return out


def _iou_fn(kind: str):
    if kind == "polygon":
        return obb_iou_matrix
    if kind == "probiou":
        return probiou_matrix
    if kind == "xyxy":
        return box_iou_matrix
    raise ValueError(f"iou must be 'polygon' or 'probiou', got {kind!r}")


def _fast_nms_keep(boxes: np.ndarray, iou, iou_thr: float, max_det: int, block: int = 512) -> np.ndarray:
    """Fast-NMS (Ultralytics' OBB path) over score-sorted boxes: a box is dropped if ANY
    higher-scoring box overlaps it, even one that was itself dropped. Whether a box survives
    depends only on the boxes before it, so columns are decided block by block and the loop
    stops once ``max_det`` survive (low-conf decodes would otherwise cost a full N x N matrix).
    """
    n, keep = len(boxes), []
    for c0 in range(0, n, block):
        c1 = min(c0 + block, n)
        suppressed = np.zeros(c1 - c0, bool)
        for r0 in range(0, c1, 4 * block):  # rows before the block's last column, chunked for memory
            r1 = min(r0 + 4 * block, c1)
            over = iou(boxes[r0:r1], boxes[c0:c1]) > iou_thr
            above = np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :]
            suppressed |= (over & above).any(0)
        keep.extend(np.flatnonzero(~suppressed) + c0)
        if len(keep) >= max_det:
            break
    return np.asarray(keep[:max_det], np.int64)


def _nms(boxes, scores, iou_thr, class_ids, max_det, iou_kind, fast) -> np.ndarray:
    scores = np.asarray(scores, np.float64).reshape(-1)
    boxes = np.asarray(boxes, np.float64)
    if len(scores) != len(boxes):
        raise ValueError(f"boxes has {len(boxes)} rows but scores has {len(scores)}")
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    shifted = _class_offset(boxes, class_ids)[order]
    iou = _iou_fn(iou_kind)
    if fast:
        return order[_fast_nms_keep(shifted, iou, iou_thr, max_det)]
    keep, alive = [], np.ones(len(order), bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        if len(keep) >= max_det:
            break
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if len(rest):
            alive[rest[iou(shifted[i : i + 1], shifted[rest])[0] > iou_thr]] = False
    return order[np.asarray(keep, np.int64)]


def rotated_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_thr: float,
    class_ids: Optional[np.ndarray] = None,
    max_det: int = 300,
    iou: str = "polygon",
    fast: bool = False,
) -> np.ndarray:
    """Non-maximum suppression of (N, 5) xywhr boxes; returns kept indices, best score first.

    ``class_ids`` makes it class-aware (boxes of different classes never suppress each other).
    ``iou="polygon"`` is the exact overlap; ``"probiou"`` is Ultralytics' measure. ``fast=False``
    is classic greedy NMS; ``fast=True`` is Ultralytics' Fast-NMS (``TorchNMS.fast_nms``), used
    with ``iou="probiou"`` to reproduce ``non_max_suppression(..., rotated=True)`` exactly.

    >>> b = np.array([[10, 10, 8, 4, 0.3], [10.5, 10, 8, 4, 0.3], [40, 40, 8, 4, 0.0]])
    >>> rotated_nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 5)
    return _nms(b, scores, iou_thr, class_ids, max_det, iou, fast)


def nms_xyxy(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_thr: float,
    class_ids: Optional[np.ndarray] = None,
    max_det: int = 300,
) -> np.ndarray:
    """Greedy NMS of (N, 4) xyxy boxes (same result as ``torchvision.ops.nms``); kept indices."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if class_ids is not None and len(b):
        span = float(np.abs(b).max()) * 2 + 1.0
        b = b + np.asarray(class_ids, np.float64).reshape(-1, 1) * span
    return _nms(b, scores, iou_thr, None, max_det, "xyxy", False)


__all__ = [
    "xywhr_to_corners", "corners_to_xywhr", "regularize_xywhr", "polygon_area", "polygon_iou", "clip_polygon_to_rect",
    "convex_intersection_area", "obb_iou_matrix", "probiou_matrix", "box_iou_matrix", "rotated_nms",
    "nms_xyxy",
]
