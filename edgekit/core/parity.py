"""Parity: the one tolerance rule, raw + decoded-detection comparison, and the golden set format.

Every "does this graph compute what that one computes" question in edgekit uses this module:
export's parity gate (PyTorch vs ONNX Runtime), the simplifier check (ONNX before vs after),
and the device (a TensorRT engine vs the golden outputs written at export).

**The rule.** Raw outputs pass when every element satisfies ``|got - ref| <= atol + rtol * R``,
R being the largest magnitude in that element's channel (axis 1; the whole tensor's for 0-1-D
outputs). A detector output mixes pixel coordinates (hundreds), scores (0-1) and angles
(radians) in one tensor: judging each element on its channel's scale keeps a 0.01 px box
difference near the origin from failing while scores keep a tight tolerance. ``atol=None``
skips the raw verdict (INT8 is judged on detections only). Decoded detections are matched one
to one (IoU >= ``min_iou``, equal classes); a leftover is *explained* when its score is within
``score_margin`` of the threshold or the other side's pre-NMS candidates hold the same box (a
decision flipped on a near-tie). Detections pass when the matched-or-explained share of all
detections on both sides is at least ``min_match_rate``.

**The golden set** (``<bundle>/golden/``): ``golden.json`` plus ``.npy`` files it names, per case:
the feed (``inputs``), the host's FP32 outputs (``fp32``) and, with INT8, the Q/DQ model's
outputs (``int8``), the bundle model role the case belongs to, the image it came from, and
the device tolerance of each precision. Numpy only; runs on the device (Python 3.8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np
from pydantic import Field

from .atomic import write_json_atomic
from .config import StrictModel
from .detections import Detections
from .errors import ModelError
from .postprocess import PostprocessSpec

Outputs = Dict[str, np.ndarray]
#: Raw outputs -> detections (one per batch item), under a postprocess spec.
Decoder = Callable[[Outputs, PostprocessSpec], List[Detections]]

GOLDEN_DIR = "golden"
GOLDEN_FILE = "golden.json"
_REEXPORT = "re-export the bundle (edgekit export ...) to rewrite its golden set"


class Tolerance(StrictModel):
    """How close a candidate must stay to a reference (see the module docstring for the rule).

    The defaults are export's parity gate (PyTorch vs ONNX Runtime FP32: float32 noise only).
    """

    atol: Optional[float] = Field(1e-4, gt=0)  # None: raw outputs are reported, not judged
    rtol: Optional[float] = Field(1e-3, ge=0)  # times the channel's largest magnitude
    min_iou: float = Field(0.9, gt=0, le=1)
    min_match_rate: float = Field(1.0, ge=0, le=1)  # matched-or-explained share of all detections
    score_margin: float = Field(0.01, ge=0)

    @property
    def judges_raw(self) -> bool:
        return self.atol is not None and self.rtol is not None


#: The device's tolerance per engine precision, against the golden outputs. Engineering defaults
#: (TensorRT FP32 on Volta has no TF32; FP16 rounds pixel coordinates to ~0.1 px at 320-640 px;
#: INT8 is judged on detections only, against the Q/DQ model's outputs), not values measured on
#: a Xavier NX.
DEVICE_TOLERANCES: Dict[str, Tolerance] = {
    "fp32": Tolerance(atol=0.05, rtol=1e-3, min_iou=0.9, min_match_rate=0.99),
    "fp16": Tolerance(atol=0.5, rtol=1e-2, min_iou=0.8, min_match_rate=0.95),
    "int8": Tolerance(atol=None, rtol=None, min_iou=0.5, min_match_rate=0.8),
}
#: Export's gate: PyTorch vs its ONNX export (the defaults of :class:`Tolerance`).
EXPORT_TOLERANCE = Tolerance()
#: A simplifier must not change what a graph computes beyond float32 reassociation noise.
SIMPLIFIER_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-4)


# ---- raw outputs ---------------------------------------------------------------------------------
def channel_scale(ref: np.ndarray) -> np.ndarray:
    """max |ref| per channel (axis 1), broadcastable to ``ref``; the whole tensor's for 0-1-D outputs."""
    a = np.abs(ref.astype(np.float64))
    if a.ndim < 2 or a.size == 0:
        return np.full(a.shape, a.max(initial=0.0))
    axes = tuple(i for i in range(a.ndim) if i != 1)
    return a.max(axis=axes, keepdims=True)


def compare_raw(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], tol: Tolerance) -> Dict[str, Any]:
    """Per output: max errors and ``ok`` (``|got - ref| <= atol + rtol * channel range`` everywhere).

    An output missing from ``got`` is a :class:`ModelError` (the graphs do not correspond); a shape
    mismatch is a failed comparison. Without ``atol``/``rtol`` the errors are reported, ``ok`` is True.
    """
    out: Dict[str, Any] = {}
    for name, r in ref.items():
        if name not in got:
            raise ModelError(f"output '{name}' is missing from the candidate's outputs (has {sorted(got)})",
                             "compare graphs with the same outputs (re-export if the model changed)")
        g = np.asarray(got[name])
        if g.shape != r.shape:
            out[name] = {"ok": False, "shape_ref": list(r.shape), "shape_got": list(g.shape)}
            continue
        diff = np.abs(g.astype(np.float64) - r.astype(np.float64))
        entry = {"max_abs": float(diff.max(initial=0.0)),
                 "max_rel": float((diff / np.maximum(np.abs(r), 1e-6)).max(initial=0.0)), "shape": list(r.shape)}
        if tol.judges_raw:
            allowed = tol.atol + tol.rtol * channel_scale(r)
            entry.update(ok=bool(np.all(diff <= allowed)),  # NaN compares False: fails
                         worst_fraction_of_tolerance=float((diff / allowed).max(initial=0.0)),
                         n_over_tolerance=int(np.count_nonzero(~(diff <= allowed))))
        else:
            entry.update(ok=True, worst_fraction_of_tolerance=0.0, n_over_tolerance=0)
        out[name] = {"ok": entry.pop("ok"), **entry}
    return out


# ---- detections ----------------------------------------------------------------------------------
def accounted_rate(n_total: int, unexplained: int) -> float:
    """Share of detections (both sides) that are matched or explained; 1.0 when there are none."""
    return (n_total - unexplained) / n_total if n_total else 1.0


def compare_detections(ref: Detections, got: Detections, tol: Tolerance, conf: float,
                       ref_candidates: Optional[Detections] = None,
                       got_candidates: Optional[Detections] = None) -> Dict[str, Any]:
    """Match two detection sets one-to-one (IoU >= ``min_iou``, same class) and explain the leftovers.

    ``*_candidates`` are each side's pre-NMS detections (decode with ``iou=1``): a leftover whose
    box the other side holds among its candidates, of any class, is a near-tie flip, not a loss.
    """
    from .metrics import match_detections

    m = match_detections(ref, got, iou_thr=tol.min_iou, same_class=True)
    explained = _explained(ref, m.unmatched_a, got_candidates, tol, conf) + \
        _explained(got, m.unmatched_b, ref_candidates, tol, conf)
    unmatched = len(m.unmatched_a) + len(m.unmatched_b)
    rate = accounted_rate(len(ref) + len(got), unmatched - explained)
    return {"ok": rate >= tol.min_match_rate, "n_ref": len(ref), "n_got": len(got), "matched": int(len(m.pairs)),
            "unmatched_ref": int(len(m.unmatched_a)), "unmatched_got": int(len(m.unmatched_b)),
            "unmatched_explained": explained, "match_rate": rate, "mean_iou": float(m.mean_iou),
            "max_score_diff": float(m.max_score_diff)}


def _explained(dets: Detections, idx: np.ndarray, other_candidates: Optional[Detections], tol: Tolerance,
               conf: float) -> int:
    if len(idx) == 0:
        return 0
    from .metrics import match_detections

    left = dets[idx]
    near_threshold = np.abs(left.scores - conf) <= tol.score_margin
    in_other = np.zeros(len(left), bool)
    if other_candidates is not None and len(other_candidates):
        pairs = match_detections(left, other_candidates, iou_thr=tol.min_iou, same_class=False).pairs
        in_other[pairs[:, 0]] = True
    return int(np.count_nonzero(near_threshold | in_other))


def compare_outputs(ref: Outputs, got: Outputs, tol: Tolerance, decoder: Optional[Decoder] = None,
                    post: Optional[PostprocessSpec] = None, label: str = "") -> Dict[str, Any]:
    """One input's comparison: raw outputs, and decoded detections when a decoder is given."""
    entry: Dict[str, Any] = {"image": label, "raw": compare_raw(ref, got, tol)}
    if decoder is not None:
        post = post or PostprocessSpec()
        no_nms = post.model_copy(update={"iou": 1.0, "max_det": 100000})  # every candidate above conf
        entry["detections"] = compare_detections(
            decoder(ref, post)[0], decoder(got, post)[0], tol, post.conf,
            ref_candidates=decoder(ref, no_nms)[0], got_candidates=decoder(got, no_nms)[0])
    return entry


def run_parity(reference: Any, candidate: Any, feeds: Sequence[Mapping[str, np.ndarray]], tol: Tolerance,
               decoder: Optional[Decoder] = None, post: Optional[PostprocessSpec] = None,
               labels: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run every feed through two active runners (the Runner contract) and :func:`summarize`."""
    images = [compare_outputs(reference.infer(dict(feed)), candidate.infer(dict(feed)), tol, decoder, post,
                              labels[i] if labels else str(i)) for i, feed in enumerate(feeds)]
    return summarize(images, tol, reference.name, candidate.name)


def summarize(images: List[Dict[str, Any]], tol: Tolerance, ref_name: str, got_name: str) -> Dict[str, Any]:
    """The report over per-image entries; ``passed`` is the verdict (``onnx_parity.json``'s layout)."""
    raw = [o for im in images for o in im["raw"].values()]
    dets = [im["detections"] for im in images if "detections" in im]
    raw_ok = all(o["ok"] for o in raw)
    n_total = sum(d["n_ref"] + d["n_got"] for d in dets)
    unexplained = sum(d["unmatched_ref"] + d["unmatched_got"] - d["unmatched_explained"] for d in dets)
    det_ok = accounted_rate(n_total, unexplained) >= tol.min_match_rate
    return {
        "reference": ref_name, "candidate": got_name, "n_images": len(images),
        "tolerance": tol.model_dump(),
        "raw": {"ok": raw_ok, "judged": tol.judges_raw,
                "max_abs": max((o.get("max_abs", float("inf")) for o in raw), default=0.0),
                "max_rel": max((o.get("max_rel", float("inf")) for o in raw), default=0.0),
                "worst_fraction_of_tolerance": max((o.get("worst_fraction_of_tolerance", float("inf")) for o in raw),
                                                   default=0.0)},
        "detections": {"ok": det_ok, "n_ref": sum(d["n_ref"] for d in dets), "n_got": sum(d["n_got"] for d in dets),
                       "matched": sum(d["matched"] for d in dets), "match_rate": accounted_rate(n_total, unexplained),
                       "unmatched": sum(d["unmatched_ref"] + d["unmatched_got"] for d in dets),
                       "unexplained": unexplained} if dets else None,
        "passed": raw_ok and det_ok,
        "images": images,
    }


def failure_line(report: Mapping[str, Any]) -> str:
    """One line saying why a parity report failed."""
    parts = []
    tol = report["tolerance"]
    if not report["raw"]["ok"]:
        parts.append(f"raw max abs error {report['raw']['max_abs']:.3g} is "
                     f"{report['raw']['worst_fraction_of_tolerance']:.3g}x the tolerance (atol {tol['atol']}"
                     f" + rtol {tol['rtol']} x channel range)")
    det = report.get("detections")
    if det and not det["ok"]:
        parts.append(f"{det['unexplained']} of {det['n_ref'] + det['n_got']} detections unmatched and not explained "
                     f"by threshold or NMS near-ties (matched-or-explained {det['match_rate']:.3g} < "
                     f"{tol['min_match_rate']})")
    return "; ".join(parts) or "no failure"


# ---- the golden set ------------------------------------------------------------------------------
@dataclass
class GoldenCase:
    """One golden input: the feed, reference outputs per precision ("fp32", "int8"), its model role."""

    image: str
    inputs: Dict[str, np.ndarray]
    outputs: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    role: str = "fp32"  # the bundle model role (manifest ``models`` key) this case feeds

    def reference(self, precision: str) -> Dict[str, np.ndarray]:
        """The outputs an engine of ``precision`` is compared with (INT8: the Q/DQ model's, if written)."""
        if precision == "int8" and self.outputs.get("int8"):
            return self.outputs["int8"]
        return self.outputs["fp32"]


@dataclass
class GoldenSet:
    """A bundle's golden set, loaded (see :func:`read_golden`)."""

    root: Path
    cases: List[GoldenCase]
    tolerances: Dict[str, Tolerance]
    conf: float = 0.25
    reference: str = ""

    @property
    def roles(self) -> List[str]:
        return list(dict.fromkeys(c.role for c in self.cases))

    def tolerance(self, precision: str, role: Optional[str] = None) -> Tolerance:
        """The device tolerance of ``precision``; a graph may have its own under ``"<role>:<precision>"``
        (RefDet's reference encoder: an L2-normalised embedding, far tighter than a detector's boxes)."""
        if role is not None and f"{role}:{precision}" in self.tolerances:
            return self.tolerances[f"{role}:{precision}"]
        if precision not in self.tolerances:
            raise ModelError(f"{self.root / GOLDEN_FILE} has no tolerance for precision '{precision}'",
                             f"use one of {', '.join(self.tolerances)}, or {_REEXPORT}")
        return self.tolerances[precision]

    def cases_for(self, role: Optional[str] = None) -> List[GoldenCase]:
        """The cases of ``role``; without one, of the only role (a set of several roles needs one)."""
        if role is None:
            if len(self.roles) > 1:
                raise ValueError(f"golden set has roles {self.roles}; say which one to check")
            return list(self.cases)
        cases = [c for c in self.cases if c.role == role]
        if not cases:
            raise ModelError(f"{self.root / GOLDEN_FILE} has no cases for model role '{role}' (has {self.roles})",
                             _REEXPORT)
        return cases


_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def _npy_name(prefix: str, index: int, tensor: str) -> str:
    return f"{prefix}_{index:03d}.{_SAFE.sub('_', tensor)}.npy"


def write_golden(golden_dir: Union[str, Path], cases: Sequence[GoldenCase], conf: float = 0.25,
                 reference: str = "onnxruntime CPU (host)",
                 tolerances: Optional[Mapping[str, Tolerance]] = None) -> Path:
    """Write ``cases`` as a golden set into ``golden_dir`` (created); returns the directory.

    Export builds the bundle in a temporary directory, so plain writes suffice for the arrays;
    ``golden.json`` is written last (atomically) and names every file.
    """
    root = Path(golden_dir)
    root.mkdir(parents=True, exist_ok=True)
    entries: List[Dict[str, Any]] = []
    for i, case in enumerate(cases):
        entry: Dict[str, Any] = {"image": case.image, "model": case.role, "inputs": {}, "fp32": {}, "int8": {}}
        for key, arrays in [("inputs", case.inputs), ("fp32", case.outputs.get("fp32", {})),
                            ("int8", case.outputs.get("int8", {}))]:
            for name, arr in arrays.items():
                file = _npy_name("input" if key == "inputs" else key, i, name)
                np.save(str(root / file), np.ascontiguousarray(arr), allow_pickle=False)
                entry[key][name] = file
        entries.append(entry)
    tols = dict(tolerances or DEVICE_TOLERANCES)
    write_json_atomic(root / GOLDEN_FILE, {
        "reference": reference, "postprocess_conf": conf, "cases": entries,
        "tolerances": {p: t.model_dump() for p, t in tols.items()},
        "note": "raw outputs compare as |device - reference| <= atol + rtol * (largest |reference| in that channel) "
                "(null = raw not judged); detections match one-to-one at IoU >= min_iou with equal classes, and "
                "the matched-or-explained share of them must reach min_match_rate",
    })
    return root


def _golden_error(path: Path, what: str) -> ModelError:
    return ModelError(f"golden file {path} {what}", _REEXPORT)


def _load_array(root: Path, name: Any) -> np.ndarray:
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise _golden_error(root / GOLDEN_FILE, f"names an invalid array file {name!r}")
    path = root / name
    if not path.is_file():
        raise _golden_error(path, "is missing")
    try:
        return np.load(str(path), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:  # truncated, not .npy, or an object (pickled) array
        raise _golden_error(path, f"is not a readable .npy array ({str(e).splitlines()[0][:120]})") from None


def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise ModelError(f"golden set {path} does not exist", _REEXPORT)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise _golden_error(path, f"is not valid JSON ({str(e)[:120]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list) or not data["cases"]:
        raise _golden_error(path, "holds no 'cases' list")
    return data


def _read_tolerances(path: Path, raw: Any) -> Dict[str, Tolerance]:
    tols = dict(DEVICE_TOLERANCES)
    if raw is None:
        return tols
    if not isinstance(raw, dict):
        raise _golden_error(path, "has a 'tolerances' entry that is not an object")
    for precision, values in raw.items():
        try:
            tols[str(precision)] = Tolerance.model_validate(values)
        except ValueError as e:
            raise _golden_error(path, f"has an invalid tolerance for {precision}: "
                                      f"{str(e).splitlines()[-1].strip()[:120]}") from None
    return tols


def read_golden(golden_dir: Union[str, Path]) -> GoldenSet:
    """Load a golden set (``golden.json`` and every array it names); a missing or corrupt file is a
    one-line :class:`ModelError` naming it."""
    root = Path(golden_dir)
    path = root / GOLDEN_FILE
    data = _read_json(path)
    cases: List[GoldenCase] = []
    for i, entry in enumerate(data["cases"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("inputs"), dict) or not entry["inputs"] \
                or not isinstance(entry.get("fp32"), dict) or not entry["fp32"]:
            raise _golden_error(path, f"case {i} needs non-empty 'inputs' and 'fp32' objects")
        outputs = {"fp32": {k: _load_array(root, v) for k, v in entry["fp32"].items()}}
        if isinstance(entry.get("int8"), dict) and entry["int8"]:
            outputs["int8"] = {k: _load_array(root, v) for k, v in entry["int8"].items()}
        cases.append(GoldenCase(image=str(entry.get("image", i)), role=str(entry.get("model", "fp32")),
                                inputs={k: _load_array(root, v) for k, v in entry["inputs"].items()}, outputs=outputs))
    conf = data.get("postprocess_conf", 0.25)
    if not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0.0 <= conf <= 1.0:
        raise _golden_error(path, f"has an invalid postprocess_conf {conf!r}")
    return GoldenSet(root=root, cases=cases, tolerances=_read_tolerances(path, data.get("tolerances")),
                     conf=float(conf), reference=str(data.get("reference", "")))


def check_golden(runner: Any, golden: GoldenSet, precision: str, decoder: Optional[Decoder] = None,
                 role: Optional[str] = None, post: Optional[PostprocessSpec] = None) -> Dict[str, Any]:
    """Run ``golden``'s feeds (of ``role``) through an active runner and compare with the golden outputs
    of ``precision`` under that precision's device tolerance (INT8: detections only).

    ``post`` defaults to the golden set's confidence threshold with the default NMS; pass the
    bundle manifest's postprocess spec to decode as the device does. Returns :func:`summarize`'s
    report plus ``precision`` and ``role``; ``report["passed"]`` is the verdict.
    """
    post = post or PostprocessSpec(conf=golden.conf)
    cases = golden.cases_for(role)
    tol = golden.tolerance(precision, cases[0].role)
    images = [compare_outputs(case.reference(precision), runner.infer(dict(case.inputs)), tol, decoder, post,
                              case.image) for case in cases]
    report = summarize(images, tol, f"golden:{precision}", getattr(runner, "name", type(runner).__name__))
    report.update(precision=precision, role=cases[0].role)
    return report


__all__ = [
    "Tolerance", "DEVICE_TOLERANCES", "EXPORT_TOLERANCE", "SIMPLIFIER_TOLERANCE", "Decoder", "Outputs",
    "channel_scale", "compare_raw", "compare_detections", "compare_outputs", "accounted_rate", "run_parity",
    "summarize", "failure_line", "GoldenCase", "GoldenSet", "GOLDEN_DIR", "GOLDEN_FILE", "write_golden",
    "read_golden", "check_golden",
]
