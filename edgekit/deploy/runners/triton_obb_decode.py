"""The whole OBB decode as three small Triton kernels: the torch runner's fastest GPU decode.

Why kernels of our own: the torch form of the decode (:mod:`.torch_decode`) is about 110 small
kernels (top-k, ~45 ``K x K`` float64 ProbIoU and Fast-NMS ops, output assembly); inside a CUDA
graph they cost 0.33 ms on an H200, a third of the yolov8n-obb forward, and ``torch.compile`` fuses
them only down to ~0.15 ms less. Three launches over a scratch of candidates, no sort
(``benchmarks/results/triton_kernels_nvidia-h200.md`` has the measured forms):

1. **candidates** (one program per 512 anchors) - best class per anchor (first index on ties, as
   ``argmax``), ``score > conf`` compared in float32 (as numpy and torch compare a float32 array with a
   Python float); a shared counter and a prefix sum place each candidate in the scratch, and the
   class-offset span (largest ``|x|, |y|`` plus largest ``|w|, |h|`` over every candidate) is reduced
   with atomic maxima;
2. **Fast-NMS without sorting** (one program per 16 candidates) - candidate ``c`` is dropped when an
   *earlier* one (higher score, or equal score and lower anchor: numpy's stable ``argsort(-scores)``)
   overlaps it above ``iou``; the ProbIoU is :func:`edgekit.core.geometry.probiou_matrix` op for op
   in float64 with the earlier box as ``a``, FMA contraction off (``enable_fp_fusion=False``);
3. **output** (one program per 16 candidates) - each kept candidate's rank is the number of kept
   candidates earlier than it; the first ``max_det`` go to rows ``1 + rank`` of
   :data:`edgekit.core.postprocess.DECODED_OUTPUT` (``[cx, cy, w, h, angle, score, class]``, boxes
   regularised as :func:`edgekit.core.geometry.regularize_xywhr` does, in float64 op for op), row 0 is
   ``[kept, overflow, candidates, 1]`` (the 1: regularised here, so the host only reads the rows).

Where a candidate sits in the scratch does not matter (the order is decided by score and anchor
index), so the result does not depend on which program reached the counter first.

More candidates than ``limit`` (the runner's ``max_candidates``, at most ``max_nms``): ``overflow``
is set and the runner hands the raw output to the numpy decode, as the torch forms do.

Exactness: the same float64 operations in the same order as numpy; transcendental functions (cos,
sin, log, exp) come from CUDA's libdevice, whose results may differ from the host's libm in the
last bit, so the bench counts frames equal to the numpy decode rather than assuming it (the torch
form has the same property). On the CPU the kernel runs in Triton's interpreter (numpy underneath),
which is how the tests check it against :func:`~edgekit.core.postprocess.decode_obb`.

Imported lazily by the torch runner: this module needs triton (shipped with torch's CUDA wheels on
Linux); nothing on the device (Jetson) side imports it.
"""

from __future__ import annotations

import math
from typing import Any

import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

_COLS = 7
_SCRATCH_COLS = 8  # cx, cy, w, h, angle, score, class, anchor (float64)


@triton.jit
def _box(cand_ptr, idx, mask, span, AGNOSTIC: tl.constexpr):
    """One candidate block from the scratch: shifted centre, Gaussian (a, b, c), score, anchor."""
    row = cand_ptr + idx * 8
    x = tl.load(row, mask=mask, other=0.0, cache_modifier=".cg")
    y = tl.load(row + 1, mask=mask, other=0.0, cache_modifier=".cg")
    w = tl.load(row + 2, mask=mask, other=1.0, cache_modifier=".cg")
    h = tl.load(row + 3, mask=mask, other=1.0, cache_modifier=".cg")
    t = tl.load(row + 4, mask=mask, other=0.0, cache_modifier=".cg")
    s = tl.load(row + 5, mask=mask, other=0.0, cache_modifier=".cg")
    k = tl.load(row + 7, mask=mask, other=0.0, cache_modifier=".cg")
    if not AGNOSTIC:  # geometry._class_offset: xy += class * span
        cls = tl.load(row + 6, mask=mask, other=0.0, cache_modifier=".cg")
        x = x + cls * span
        y = y + cls * span
    # geometry._covariance: a = w**2 / 12, b = h**2 / 12, then the rotation
    a, b = w * w / 12, h * h / 12
    cos, sin = tl.cos(t), tl.sin(t)
    cos2, sin2 = cos * cos, sin * sin
    return x, y, a * cos2 + b * sin2, a * sin2 + b * cos2, (a - b) * cos * sin, s, k


def _candidates(raw_ptr, stride_c, n_anchors, nc, params_ptr, state_ptr, cand_ptr, limit, BLOCK_A: tl.constexpr):
    """1. One block of anchors: best class, ``score > conf``, candidates into the scratch, span maxima."""
    offs = tl.program_id(0) * BLOCK_A + tl.arange(0, BLOCK_A)
    inside = offs < n_anchors
    conf = tl.load(params_ptr).to(tl.float32)  # float32 comparison, as numpy/torch with a Python float
    best = tl.full((BLOCK_A,), float("-inf"), tl.float32)
    cls = tl.zeros((BLOCK_A,), dtype=tl.int32)
    for c in range(nc):
        s = tl.load(raw_ptr + (4 + c) * stride_c + offs, mask=inside, other=float("-inf")).to(tl.float32)
        better = s > best
        best = tl.where(better, s, best)
        cls = tl.where(better, c, cls)
    passing = inside & (best > conf)
    # places: this block's share of a counter, then a prefix sum (the order of candidates in the scratch
    # does not matter: "earlier" is decided by score and anchor index below)
    base = tl.atomic_add(state_ptr, tl.sum(passing.to(tl.int32), 0))
    rank = tl.cumsum(passing.to(tl.int32), 0) + base  # 1-based
    stored = passing & (rank <= limit)
    row = cand_ptr + (rank - 1) * 8
    x = tl.load(raw_ptr + offs, mask=passing, other=0.0).to(tl.float32)
    y = tl.load(raw_ptr + stride_c + offs, mask=passing, other=0.0).to(tl.float32)
    w = tl.load(raw_ptr + 2 * stride_c + offs, mask=passing, other=0.0).to(tl.float32)
    h = tl.load(raw_ptr + 3 * stride_c + offs, mask=passing, other=0.0).to(tl.float32)
    t = tl.load(raw_ptr + (4 + nc) * stride_c + offs, mask=passing, other=0.0).to(tl.float32)
    tl.store(row, x.to(tl.float64), mask=stored)
    tl.store(row + 1, y.to(tl.float64), mask=stored)
    tl.store(row + 2, w.to(tl.float64), mask=stored)
    tl.store(row + 3, h.to(tl.float64), mask=stored)
    tl.store(row + 4, t.to(tl.float64), mask=stored)
    tl.store(row + 5, best.to(tl.float64), mask=stored)
    tl.store(row + 6, cls.to(tl.float64), mask=stored)
    tl.store(row + 7, offs.to(tl.float64), mask=stored)
    # span maxima over every candidate (0 elsewhere): non-negative float32 bits order like the values
    max_xy = tl.max(tl.maximum(tl.abs(x), tl.abs(y)), 0)
    max_wh = tl.max(tl.maximum(tl.abs(w), tl.abs(h)), 0)
    tl.atomic_max(state_ptr + 1, max_xy.to(tl.int32, bitcast=True))
    tl.atomic_max(state_ptr + 2, max_wh.to(tl.int32, bitcast=True))


def _suppress(params_ptr, state_ptr, cand_ptr, keep_ptr, limit, AGNOSTIC: tl.constexpr, BLOCK_E: tl.constexpr,
              BLOCK_C: tl.constexpr):
    """2. One block of candidates c: dropped when an earlier candidate e overlaps it (Fast-NMS)."""
    n = tl.minimum(tl.load(state_ptr), limit)
    c0 = tl.program_id(0) * BLOCK_C
    if c0 < n:
        iou_thr = tl.load(params_ptr + 1)  # float64, as numpy compares the float64 ProbIoU matrix
        eps = tl.load(params_ptr + 2)  # probiou_matrix's 1e-7 in float64 (a literal would be a float32 constant)
        max_xy = tl.load(state_ptr + 1).to(tl.float32, bitcast=True)
        max_wh = tl.load(state_ptr + 2).to(tl.float32, bitcast=True)
        span = (max_xy.to(tl.float64) + max_wh.to(tl.float64)) * 2 + 1.0
        oc = c0 + tl.arange(0, BLOCK_C)
        in_c = oc < n
        xc, yc, ac, bc, cc, sc, kc = _box(cand_ptr, oc, in_c, span, AGNOSTIC)
        dropped = tl.zeros((BLOCK_C,), dtype=tl.int1)
        for e0 in range(0, n, BLOCK_E):  # an earlier (higher-scoring) candidate may sit anywhere in the scratch
            oe = e0 + tl.arange(0, BLOCK_E)
            in_e = oe < n
            xe, ye, ae, be, ce, se, ke = _box(cand_ptr, oe, in_e, span, AGNOSTIC)
            x1, y1, a1, b1, c1 = xe[:, None], ye[:, None], ae[:, None], be[:, None], ce[:, None]
            x2, y2, a2, b2, c2 = xc[None, :], yc[None, :], ac[None, :], bc[None, :], cc[None, :]
            # geometry.probiou_matrix(a=earlier, b=c), the same float64 operations in the same order
            den = (a1 + a2) * (b1 + b2) - (c1 + c2) * (c1 + c2)
            dy, dx = y1 - y2, x1 - x2
            t1 = ((a1 + a2) * (dy * dy) + (b1 + b2) * (dx * dx)) / (den + eps) * 0.25
            t2 = ((c1 + c2) * (x2 - x1) * dy) / (den + eps) * 0.5
            det = tl.maximum(a1 * b1 - c1 * c1, 0.0) * tl.maximum(a2 * b2 - c2 * c2, 0.0)
            t3 = tl.log(den / (4 * tl.sqrt(det) + eps) + eps) * 0.5
            bd = tl.minimum(tl.maximum(t1 + t2 + t3, eps), 100.0)
            probiou = 1 - tl.sqrt(1.0 - tl.exp(-bd) + eps)
            se2, sc2 = se[:, None], sc[None, :]
            earlier = (se2 > sc2) | ((se2 == sc2) & (ke[:, None] < kc[None, :]))
            hit = earlier & in_e[:, None] & (probiou > iou_thr)
            dropped = dropped | (tl.max(hit.to(tl.int32), 0) > 0)
        tl.store(keep_ptr + oc, (in_c & ~dropped).to(tl.int32), mask=in_c)


def _place(params_ptr, state_ptr, cand_ptr, keep_ptr, out_ptr, limit, max_det, BLOCK_E: tl.constexpr, BLOCK_C: tl.constexpr):
    """3. One block of kept candidates: rank = kept candidates earlier than it; the first max_det into rows."""
    count = tl.load(state_ptr)
    n = tl.minimum(count, limit)
    pid = tl.program_id(0)
    oc = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    in_c = oc < n
    keep_c = tl.load(keep_ptr + oc, mask=in_c, other=0) > 0
    sc = tl.load(cand_ptr + oc * 8 + 5, mask=in_c, other=0.0)
    kc = tl.load(cand_ptr + oc * 8 + 7, mask=in_c, other=0.0)
    rank = tl.zeros((BLOCK_C,), dtype=tl.int32)
    total = tl.zeros((), dtype=tl.int32)
    for e0 in range(0, n, BLOCK_E):
        oe = e0 + tl.arange(0, BLOCK_E)
        in_e = oe < n
        keep_e = tl.load(keep_ptr + oe, mask=in_e, other=0) > 0
        se = tl.load(cand_ptr + oe * 8 + 5, mask=in_e, other=0.0)
        ke = tl.load(cand_ptr + oe * 8 + 7, mask=in_e, other=0.0)
        se2, sc2 = se[:, None], sc[None, :]
        earlier = (se2 > sc2) | ((se2 == sc2) & (ke[:, None] < kc[None, :]))
        rank += tl.sum((earlier & keep_e[:, None]).to(tl.int32), 0)
        total += tl.sum(keep_e.to(tl.int32), 0)
    out = keep_c & (rank < max_det)
    dest = out_ptr + (1 + rank) * 7
    row = cand_ptr + oc * 8
    x = tl.load(row, mask=out, other=0.0)
    y = tl.load(row + 1, mask=out, other=0.0)
    w = tl.load(row + 2, mask=out, other=0.0)
    h = tl.load(row + 3, mask=out, other=0.0)
    t = tl.load(row + 4, mask=out, other=0.0)
    # geometry.regularize_xywhr(le135) in float64, op for op: w >= h, angle in [-pi/4, 3pi/4). np.mod's
    # floored remainder is exact here without fmod (which Triton's interpreter lacks) for -pi < a < 2pi:
    # a - pi is exact on [pi, 2pi) (Sterbenz); other angles (never from an OBB head, whose angle is in
    # [-pi/4, 3pi/4]) come back raw with the class as -(class + 1), regularised on the host.
    half_pi, low = tl.load(params_ptr + 3), tl.load(params_ptr + 4)
    pi, top = tl.load(params_ptr + 5), tl.load(params_ptr + 6)  # top = low + pi, as numpy adds them
    swap = w < h
    t2 = tl.where(swap, t + half_pi, t)
    a = t2 - low
    in_range = (a > -pi) & (a < pi + pi)
    m = tl.where(a >= pi, a - pi, tl.where(a < 0, a + pi, a))
    m = tl.where(m == 0, 0.0, m)  # numpy gives +0.0 for a zero remainder
    t3 = m + low
    t3 = tl.where(t3 >= top, t3 - pi, t3)
    reg = in_range
    tl.store(dest, x.to(tl.float32), mask=out)
    tl.store(dest + 1, y.to(tl.float32), mask=out)
    tl.store(dest + 2, tl.where(reg & swap, h, w).to(tl.float32), mask=out)
    tl.store(dest + 3, tl.where(reg & swap, w, h).to(tl.float32), mask=out)
    tl.store(dest + 4, tl.where(reg, t3, t).to(tl.float32), mask=out)
    tl.store(dest + 5, tl.load(row + 5, mask=out, other=0.0).to(tl.float32), mask=out)
    cls = tl.load(row + 6, mask=out, other=0.0)
    tl.store(dest + 6, tl.where(reg, cls, -cls - 1).to(tl.float32), mask=out)
    if pid == 0:  # the header: [kept, overflow, candidates, boxes regularised here]
        tl.store(out_ptr, tl.minimum(total, max_det).to(tl.float32))
        tl.store(out_ptr + 1, (count > limit).to(tl.float32))
        tl.store(out_ptr + 2, count.to(tl.float32))
        tl.store(out_ptr + 3, 1.0)


_kernels = tuple(triton.jit(fn) for fn in (_candidates, _suppress, _place))
# Block sizes and warps (benchmarks/triton_kernels_gpu.py sweeps them on a GPU)
CONFIG = {"BLOCK_A": 512, "BLOCK_E": 64, "BLOCK_C": 16, "num_warps": 4}


def launch(raw: Any, params: Any, state: Any, cand: Any, keep: Any, out: Any, *, num_classes: int, limit: int,
           max_det: int, agnostic: bool) -> None:
    """Decode one image's raw output ``(4 + nc + 1, A)`` (contiguous rows) into ``out`` (``(max_det + 2, 7)`` float32).

    ``params``: :func:`decode_params` on the device; ``state`` ``(3,)`` int32 zeros (counter, span
    maxima); ``cand`` ``(K, 8)`` float64 and ``keep`` ``(K,)`` int32 scratch with ``K >= limit``. Every
    argument stays the same tensor from frame to frame, so the launches can be captured in a CUDA graph.
    CPU tensors run in Triton's interpreter, which must be on (``TRITON_INTERPRET=1``) before triton is
    first imported: the tests run it in a subprocess.
    """
    on_cpu = raw.device.type == "cpu"
    if on_cpu and not isinstance(_kernels[0], InterpretedFunction):
        raise ValueError("the Triton OBB decode runs on CUDA tensors (CPU tensors only under TRITON_INTERPRET=1)")
    warps = {} if on_cpu else {"num_warps": CONFIG["num_warps"]}
    exact = {} if on_cpu else {"enable_fp_fusion": False, **warps}  # no FMA contraction in the float64 ProbIoU
    block_a, block_e, block_c = CONFIG["BLOCK_A"], CONFIG["BLOCK_E"], CONFIG["BLOCK_C"]
    candidates, suppress, place = _kernels
    candidates[(triton.cdiv(raw.shape[1], block_a),)](raw, raw.stride(0), raw.shape[1], num_classes, params, state, cand,
                                                      limit, BLOCK_A=block_a, **warps)
    blocks = (triton.cdiv(limit, block_c),)
    suppress[blocks](params, state, cand, keep, limit, AGNOSTIC=bool(agnostic), BLOCK_E=block_e, BLOCK_C=block_c, **exact)
    place[blocks](params, state, cand, keep, out, limit, max_det, BLOCK_E=block_e, BLOCK_C=block_c, **warps)


def decode_rows(raw: Any, spec: Any, max_candidates: int, params: Any) -> Any:
    """:func:`.torch_decode.decode_obb_rows`'s contract as one kernel: raw ``(4 + nc + 1, A)`` -> ``(max_det + 2, 7)``.

    The scratch and the result are allocated here, so each CUDA graph that captures this call owns its
    own (graph-pool memory: slots running at once never share them). ``params``: the float64
    ``[conf, iou, 1e-7]`` device tensor of :func:`decode_params`. Rows after the kept ones are not
    cleared (the host reads ``1 + kept`` rows).
    """
    import torch

    if raw.stride(1) != 1:
        raw = raw.contiguous()
    k = max(1, min(int(max_candidates), raw.shape[1], spec.max_nms))
    state = torch.zeros(3, dtype=torch.int32, device=raw.device)
    cand = torch.empty((k, _SCRATCH_COLS), dtype=torch.float64, device=raw.device)
    keep = torch.empty(k, dtype=torch.int32, device=raw.device)
    out = torch.empty((spec.max_det + 2, _COLS), dtype=torch.float32, device=raw.device)
    launch(raw, params, state, cand, keep, out, num_classes=raw.shape[0] - 5, limit=k, max_det=spec.max_det,
           agnostic=spec.agnostic)
    return out


def decode_params(spec: Any, device: Any) -> Any:
    """The kernels' float64 ``[conf, iou, eps, pi/2, -pi/4, pi, 3pi/4]`` (read-only: every slot may share it)."""
    import torch

    low = -math.pi / 4  # geometry.regularize_xywhr's le135 bounds, computed as it does
    return torch.tensor([spec.conf, spec.iou, 1e-7, math.pi / 2, low, math.pi, low + math.pi], dtype=torch.float64,
                        device=device)


__all__ = ["decode_params", "decode_rows", "launch"]
