"""The parity gate: does the exported graph compute what the PyTorch model computes, on real images?

Two runners (any backends of the runner contract) run the same real feeds. We compare the raw
outputs element-wise (against ``atol + rtol * channel range``) and the
decoded detections (matched one-to-one by IoU with equal classes, via
:func:`edgekit.core.metrics.match_detections`). The report is what ``onnx_parity.json`` holds.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ModelError
from edgekit.core.postprocess import PostprocessSpec
from edgekit.deploy.runners.base import Runner

from .options import ParityTolerance

Decoder = Callable[[Dict[str, np.ndarray], PostprocessSpec], List[Detections]]


def channel_scale(ref: np.ndarray) -> np.ndarray:
    """max |ref| per channel (axis 1), broadcastable to ``ref``; the whole tensor's for 0-1-D outputs.

    A detector output mixes pixel coordinates (hundreds), scores (0-1) and angles (radians) in
    one tensor; judging each element against its channel's range keeps a 0.01 px box difference
    from failing on a box near the origin while scores keep a tight tolerance.
    """
    a = np.abs(ref.astype(np.float64))
    if a.ndim < 2 or a.size == 0:
        return np.full(a.shape, a.max(initial=0.0))
    axes = tuple(i for i in range(a.ndim) if i != 1)
    return a.max(axis=axes, keepdims=True)


def compare_raw(ref: Dict[str, np.ndarray], got: Dict[str, np.ndarray], tol: ParityTolerance) -> Dict[str, Any]:
    """Element-wise: ``|got - ref| <= atol + rtol * channel range``; ``ok`` is the verdict per output."""
    out: Dict[str, Any] = {}
    for name, r in ref.items():
        if name not in got:
            raise ModelError(f"output '{name}' is missing from the exported graph (has {sorted(got)})",
                             "re-export; the graph's outputs must match the model's")
        g = got[name]
        if g.shape != r.shape:
            out[name] = {"ok": False, "shape_ref": list(r.shape), "shape_got": list(g.shape)}
            continue
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        allowed = tol.atol + tol.rtol * channel_scale(r)
        out[name] = {"ok": bool(np.all(diff <= allowed)), "max_abs": float(diff.max(initial=0.0)),
                     "max_rel": float((diff / np.maximum(np.abs(r), 1e-6)).max(initial=0.0)),
                     "worst_fraction_of_tolerance": float((diff / allowed).max(initial=0.0)),
                     "n_over_tolerance": int(np.count_nonzero(diff > allowed)), "shape": list(r.shape)}
    return out


def compare_detections(ref: Detections, got: Detections, tol: ParityTolerance, conf: float,
                       ref_candidates: Optional[Detections] = None,
                       got_candidates: Optional[Detections] = None) -> Dict[str, Any]:
    """Match two detection sets one-to-one (IoU >= ``min_iou``, same class) and explain the leftovers.

    A leftover is explained if its score is within ``score_margin`` of ``conf`` (thresholding noise)
    or if the other side's pre-NMS candidates hold the same box, of any class: then only a
    discontinuous decision flipped on a near-tie (NMS suppression, or the argmax between two
    classes scoring alike). The raw check has already bounded the scores and boxes themselves, so
    what this check catches is a box that the other side does not produce at all.
    """
    from edgekit.core.metrics import match_detections

    m = match_detections(ref, got, iou_thr=tol.min_iou, same_class=True)
    explained = _explained(ref, m.unmatched_a, got_candidates, tol, conf) + \
        _explained(got, m.unmatched_b, ref_candidates, tol, conf)
    unmatched = len(m.unmatched_a) + len(m.unmatched_b)
    return {"ok": unmatched == explained, "n_ref": len(ref), "n_got": len(got), "matched": int(len(m.pairs)),
            "unmatched_ref": int(len(m.unmatched_a)), "unmatched_got": int(len(m.unmatched_b)),
            "unmatched_explained": explained, "mean_iou": float(m.mean_iou), "max_score_diff": float(m.max_score_diff)}


def _explained(dets: Detections, idx: np.ndarray, other_candidates: Optional[Detections], tol: ParityTolerance,
               conf: float) -> int:
    if len(idx) == 0:
        return 0
    from edgekit.core.metrics import match_detections

    left = dets[idx]
    near_threshold = np.abs(left.scores - conf) <= tol.score_margin
    in_other = np.zeros(len(left), bool)
    if other_candidates is not None and len(other_candidates):
        pairs = match_detections(left, other_candidates, iou_thr=tol.min_iou, same_class=False).pairs
        in_other[pairs[:, 0]] = True
    return int(np.count_nonzero(near_threshold | in_other))


def run_parity(reference: Runner, candidate: Runner, feeds: Sequence[Dict[str, np.ndarray]],
               tol: ParityTolerance, decoder: Optional[Decoder] = None, post: Optional[PostprocessSpec] = None,
               labels: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run every feed through both (already active) runners and summarise; ``passed`` is the verdict."""
    post = post or PostprocessSpec()
    no_nms = post.model_copy(update={"iou": 1.0, "max_det": 100000})  # every candidate above conf
    images: List[Dict[str, Any]] = []
    for i, feed in enumerate(feeds):
        ref, got = reference.infer(feed), candidate.infer(feed)
        entry: Dict[str, Any] = {"image": labels[i] if labels else str(i), "raw": compare_raw(ref, got, tol)}
        if decoder is not None:
            entry["detections"] = compare_detections(
                decoder(ref, post)[0], decoder(got, post)[0], tol, post.conf,
                ref_candidates=decoder(ref, no_nms)[0], got_candidates=decoder(got, no_nms)[0])
        images.append(entry)
    return summarize(images, tol, reference.name, candidate.name)


def summarize(images: List[Dict[str, Any]], tol: ParityTolerance, ref_name: str, got_name: str) -> Dict[str, Any]:
    raw = [o for im in images for o in im["raw"].values()]
    dets = [im["detections"] for im in images if "detections" in im]
    raw_ok = all(o["ok"] for o in raw)
    det_ok = all(d["ok"] for d in dets)
    pairs = sum(d["matched"] for d in dets)
    expected = sum(max(d["n_ref"], d["n_got"]) for d in dets)
    return {
        "reference": ref_name, "candidate": got_name, "n_images": len(images),
        "tolerance": tol.model_dump(),
        "raw": {"ok": raw_ok, "max_abs": max((o.get("max_abs", float("inf")) for o in raw), default=0.0),
                "max_rel": max((o.get("max_rel", float("inf")) for o in raw), default=0.0),
                "worst_fraction_of_tolerance": max((o.get("worst_fraction_of_tolerance", float("inf")) for o in raw),
                                                   default=0.0)},
        "detections": {"ok": det_ok, "n_ref": sum(d["n_ref"] for d in dets), "n_got": sum(d["n_got"] for d in dets),
                       "matched": pairs, "match_rate": pairs / expected if expected else 1.0,
                       "unmatched": sum(d["unmatched_ref"] + d["unmatched_got"] for d in dets),
                       "unexplained": sum(d["unmatched_ref"] + d["unmatched_got"] - d["unmatched_explained"]
                                          for d in dets)} if dets else None,
        "passed": raw_ok and det_ok,
        "images": images,
    }


def failure_line(report: Dict[str, Any]) -> str:
    """One line saying why a parity report failed."""
    parts = []
    if not report["raw"]["ok"]:
        parts.append(f"raw max abs error {report['raw']['max_abs']:.3g} is "
                     f"{report['raw']['worst_fraction_of_tolerance']:.3g}x the tolerance (atol {report['tolerance']['atol']}"
                     f" + rtol {report['tolerance']['rtol']} x channel range)")
    det = report.get("detections")
    if det and not det["ok"]:
        parts.append(f"{det['unexplained']} of {det['n_ref'] + det['n_got']} detections unmatched and not explained "
                     "by threshold or NMS near-ties")
    return "; ".join(parts) or "no failure"


__all__ = ["compare_raw", "compare_detections", "run_parity", "summarize", "failure_line"]
