"""ONNX file handling for export: IR-version pinning, opset rules per target, simplification.

The IR version is detected, not hardcoded: onnx 1.23 writes IR 14 by default and onnxruntime 1.31
refuses it, so we probe the installed onnxruntime with a one-node model at descending IR versions
and pin the exported file to the highest one it loads (capped further for TensorRT 8.5, whose ONNX
parser was built against onnx 1.12, IR 8). Every simplification is verified by running the graph
before and after under onnxruntime on a real feed.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from edgekit.core import vocab
from edgekit.core.atomic import atomic_path
from edgekit.core.errors import ConfigError, ModelError
from edgekit.core.parity import SIMPLIFIER_TOLERANCE, Tolerance, compare_raw

SIMPLIFIERS = vocab.SIMPLIFIERS
TARGETS = vocab.TARGETS
# TensorRT 8.5.2 (JetPack 5.1.x, the last release for Xavier NX): opset <= 17, parser built on onnx 1.12.
TRT85_MAX_OPSET = 17
TRT85_MAX_IR = 8
MIN_OPSET = 11  # Ultralytics OBB heads need >= 11 (its exporter's own floor for NMS-free detect graphs is 9)


def target_max_opset(target: str) -> Optional[int]:
    return TRT85_MAX_OPSET if target == "jetson-xavier-nx" else None


def check_opset(opset: int, target: str) -> None:
    """Reject an opset the target cannot parse, before any work is done."""
    if target not in TARGETS:
        raise ConfigError(f"unknown target '{target}'", f"choose one of {', '.join(TARGETS)}")
    limit = target_max_opset(target)
    if limit is not None and opset > limit:
        raise ConfigError(f"--opset {opset} is above what TensorRT 8.5 on {target} parses (max {limit})",
                          f"pass --opset {limit} (or lower), or --target x86")
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset} is too old for the detector head", f"pass --opset >= {MIN_OPSET}")


@functools.lru_cache(maxsize=None)
def max_runtime_ir_version() -> int:
    """The highest ONNX IR version the installed onnxruntime loads (probed once per process)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "ir_probe", [x], [y])
    for ir in range(onnx.IR_VERSION, 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = ir
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return ir
        except Exception:  # ORT raises its own Fail type for "unsupported model IR version"
            continue
    raise ModelError(f"onnxruntime {ort.__version__} loads no IR version between 7 and {onnx.IR_VERSION}",
                     "install a matching onnx/onnxruntime pair (see constraints.txt)")


def min_ir_for_opset(opset: int) -> int:
    """The lowest IR version that can carry ``opset`` (from onnx's own version table)."""
    from onnx import helper

    for _release, ir, ai_onnx, *_ in helper.VERSION_TABLE:
        if ai_onnx >= opset:
            return int(ir)
    return int(helper.VERSION_TABLE[-1][1])


def pinned_ir_version(opset: int, target: str) -> int:
    """The IR version to write: what the runtime accepts, capped by the target, floored by the opset."""
    ir = max_runtime_ir_version()
    if target == "jetson-xavier-nx":
        ir = min(ir, TRT85_MAX_IR)
    return max(ir, min_ir_for_opset(opset))


def pin_ir_version(path: Path, ir_version: int) -> int:
    """Rewrite ``path`` with ``ir_version`` (atomically); returns the previous IR version."""
    import onnx

    model = onnx.load(str(path))
    previous = int(model.ir_version)
    if previous != ir_version:
        model.ir_version = ir_version
        onnx.checker.check_model(model)
        save_onnx(model, path)
    return previous


def save_onnx(model, path: Path) -> Path:
    import onnx

    with atomic_path(path, suffix=".onnx") as tmp:
        onnx.save(model, str(tmp))
    return Path(path)


def graph_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return max((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def ort_outputs(path: Path, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Run one feed through ``path`` with a fresh onnxruntime CPU session."""
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(path) as runner:
        return runner.infer(feed)


def simplify_onnx(src: Path, dst: Path, simplifier: str, feed: Dict[str, np.ndarray],
                  ir_version: int, tol: Tolerance = SIMPLIFIER_TOLERANCE) -> Dict[str, object]:
    """Simplify ``src`` into ``dst`` and prove it: ORT outputs on ``feed`` must match before/after
    under ``tol`` (the parity rule of :mod:`edgekit.core.parity`).

    Returns a report (simplifier, version, node counts, max abs difference). A mismatch raises
    :class:`ModelError` and leaves ``dst`` unwritten.
    """
    import onnx

    if simplifier not in SIMPLIFIERS:
        raise ConfigError(f"unknown simplifier '{simplifier}'", f"choose one of {', '.join(SIMPLIFIERS)}")
    model = onnx.load(str(src))
    nodes_before = len(model.graph.node)
    simplified, version = _run_simplifier(model, simplifier)
    simplified.ir_version = ir_version
    with atomic_path(dst, suffix=".onnx") as tmp:
        onnx.save(simplified, str(tmp))
        before, after = ort_outputs(src, feed), ort_outputs(tmp, feed)
        max_abs = _check_same_outputs(before, after, tol, simplifier, src)
    return {"simplifier": simplifier, "version": version, "nodes_before": nodes_before,
            "nodes_after": len(simplified.graph.node), "max_abs_diff": max_abs, "atol": tol.atol, "rtol": tol.rtol}


def _run_simplifier(model, simplifier: str):
    if simplifier == "none":
        return model, None
    if simplifier == "onnxslim":
        import onnxslim

        return onnxslim.slim(model), onnxslim.__version__
    try:
        import onnxsim  # optional C++ extension, host only (no cp38 aarch64 wheel)
    except ImportError:
        raise ConfigError("--simplifier onnxsim needs the onnxsim package",
                          "pip install edgekit[onnxsim], or use --simplifier onnxslim") from None
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise ModelError("onnxsim could not validate its simplified graph", "use --simplifier onnxslim or none")
    return simplified, getattr(onnxsim, "__version__", "unknown")


def _check_same_outputs(before: Dict[str, np.ndarray], after: Dict[str, np.ndarray], tol: Tolerance,
                        simplifier: str, src: Path) -> float:
    if sorted(before) != sorted(after):
        raise ModelError(f"{simplifier} changed the outputs of {src.name}: {sorted(before)} -> {sorted(after)}",
                         "use --simplifier none")
    compared = compare_raw(before, after, tol)
    bad = [f"{name} shape {c['shape_ref']} -> {c['shape_got']}" if "shape_ref" in c
           else f"{name} max abs diff {c['max_abs']:.3g}" for name, c in compared.items() if not c["ok"]]
    if bad:
        raise ModelError(f"{simplifier} changed what {src.name} computes ({'; '.join(bad)})",
                         "use --simplifier none (or another simplifier) and report the model")
    return max((c.get("max_abs", 0.0) for c in compared.values()), default=0.0)


__all__ = [
    "SIMPLIFIERS", "TARGETS", "TRT85_MAX_OPSET", "TRT85_MAX_IR", "check_opset", "max_runtime_ir_version",
    "min_ir_for_opset", "pinned_ir_version", "pin_ir_version", "save_onnx", "graph_opset", "ort_outputs",
    "simplify_onnx",
]
