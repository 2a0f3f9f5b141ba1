"""The steps of :func:`edgekit.export.pipeline.export_model`, one function each.

Every step reads the shared :class:`~edgekit.export.pipeline.ExportContext`, writes its artifacts into
the bundle being built and records what it did in ``ctx.report`` (which becomes export_report.json).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import ModelError
from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

from . import onnx_tools
from .accuracy import evaluate_onnx, int8_delta
from .adapters import GraphSpec
from .golden import write_golden
from .parity import failure_line, run_parity

INT8_FILENAME = "model.int8.qdq.onnx"
PARITY_FILENAME = "onnx_parity.json"
# TensorRT's calibration caches know MinMax and Entropy2; a percentile Q/DQ still ships a MinMax cache.
CACHE_METHODS = {"minmax": "minmax", "entropy": "entropy", "percentile": "minmax"}

Feeds = List[Dict[str, np.ndarray]]


def calibration_set(ctx):
    from edgekit.calib.dataset import CalibrationSet

    o = ctx.options
    calib = CalibrationSet.from_dir(ctx.images.calib_dir, ctx.adapter.letterbox_spec(ctx.imgsz), size=o.calib_size,
                                    min_images=min(o.calib_min_images, o.calib_size), seed=o.seed)
    ctx.log(f"calibration: {len(calib)} images from {ctx.images.calib_dir}")
    return calib


def export_graphs(ctx, work: Path, bundle: Path) -> List[GraphSpec]:
    """Export, pin IR, simplify (verified) every graph of the adapter into the bundle."""
    o = ctx.options
    ir = onnx_tools.pinned_ir_version(o.opset, o.target)
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    graphs = ctx.adapter.graphs()
    ctx.report["onnx"] = {"opset": o.opset, "ir_version": ir, "runtime_max_ir": onnx_tools.max_runtime_ir_version(),
                          "dynamic": o.dynamic, "imgsz": ctx.imgsz, "graphs": {}}
    for graph in graphs:
        raw = work / f"{graph.role}.raw.onnx"
        ctx.log(f"exporting {graph.filename} (opset {o.opset}, imgsz {ctx.imgsz})")
        ctx.adapter.export_graph(ctx.ckpt, graph, raw, ctx.imgsz, o.opset, o.dynamic)
        written_ir = onnx_tools.pin_ir_version(raw, ir)
        feed, _ = ctx.adapter.feed(ctx.images.parity[0], graph, spec)
        simplified = onnx_tools.simplify_onnx(raw, bundle / graph.filename, o.simplifier, feed, ir)
        opset = onnx_tools.graph_opset(bundle / graph.filename)
        limit = onnx_tools.target_max_opset(o.target)
        if limit is not None and opset > limit:
            raise ModelError(f"{graph.filename} came out at opset {opset}, above {limit} for {o.target}",
                             f"pass --opset {limit}")
        ctx.report["onnx"]["graphs"][graph.role] = {"file": graph.filename, "exporter_ir_version": written_ir,
                                                    "opset": opset, "simplify": simplified}
    return graphs


def parity_gate(ctx, graph: GraphSpec, bundle: Path, out: Path) -> Tuple[Feeds, Feeds]:
    """PyTorch vs ONNX Runtime on real images; returns the golden feeds and their FP32 ORT outputs."""
    from .pipeline import write_failed_parity

    o = ctx.options
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    feeds = [ctx.adapter.feed(p, graph, spec)[0] for p in ctx.images.parity]
    names = [p.name for p in ctx.images.parity]
    decoder = ctx.adapter.decode if graph.detections else None
    with ctx.adapter.reference_runner(ctx.ckpt, graph) as ref, OnnxRuntimeRunner(bundle / graph.filename) as ort:
        parity = run_parity(ref, ort, feeds, o.tolerance, decoder=decoder, post=ctx.post, labels=names)
        golden_feeds = feeds[: o.golden_count]
        fp32_outputs = [ort.infer(f) for f in golden_feeds]
    parity["gate"] = "on" if o.parity_gate else "off (--no-parity-gate)"
    write_json_atomic(bundle / PARITY_FILENAME, parity)
    ctx.report["parity"] = {k: v for k, v in parity.items() if k != "images"}
    if not parity["passed"]:
        if o.parity_gate:
            kept = write_failed_parity(out, parity)
            raise ModelError(f"parity gate failed for {graph.filename}: {failure_line(parity)} (report: {kept})",
                             "fix the export, or pass --no-parity-gate to keep a model that differs")
        ctx.log(f"warning: parity outside tolerance ({failure_line(parity)}); kept because of --no-parity-gate")
    ctx.log(f"parity: raw max abs {parity['raw']['max_abs']:.3g} on {len(feeds)} images -> "
            f"{'pass' if parity['passed'] else 'FAIL'}")
    return golden_feeds, fp32_outputs


def int8_artifacts(ctx, graph: GraphSpec, bundle: Path, calib, golden_feeds: Feeds) -> Feeds:
    """Q/DQ model (+ TRT 8.5 check), calibration cache + sidecar, INT8 accuracy; returns INT8 golden outputs."""
    from edgekit.calib.cache import write_calibration_cache
    from edgekit.calib.qdq import quantize_qdq
    from edgekit.calib.qdq_check import assert_qdq_trt85, check_qdq_trt85

    o = ctx.options
    fp32_path, int8_path = bundle / graph.filename, bundle / INT8_FILENAME
    ctx.log(f"quantizing to {INT8_FILENAME} ({o.calib_method}, {len(calib)} images)")
    # TensorRT 8.5's rules (opset <= 17 among them) bind the Xavier NX target only (issue 4, item 1).
    qdq = quantize_qdq(fp32_path, int8_path, calib, method=o.calib_method, profile="trt",
                       float_scope=o.int8_float_scope, check_trt85=o.target == "jetson-xavier-nx")
    onnx_tools.pin_ir_version(int8_path, onnx_tools.pinned_ir_version(o.opset, o.target))
    if o.target == "jetson-xavier-nx":
        assert_qdq_trt85(int8_path)
    cache_method = CACHE_METHODS[o.calib_method]
    # Entropy ranges cost ~20 s per model: reuse the ones quantize_qdq computed on the same graph and images.
    shared = qdq.activation_ranges if qdq.method == cache_method else None
    cache, sidecar = write_calibration_cache(fp32_path, calib, cache_method, bundle, ctx.imgsz, 1, ranges=shared)
    ctx.report["int8"] = {
        "file": INT8_FILENAME, "method": o.calib_method, "profile": qdq.profile, "float_scope": o.int8_float_scope, "n_calib": qdq.n_calib,
        "calib_dir": str(ctx.images.calib_dir), "calib_data_hash": calib.data_hash(),
        "excluded_nodes": list(qdq.excluded_nodes), "trt85_violations": len(check_qdq_trt85(int8_path)),
        "calibration_cache": cache.name, "calibration_sidecar": sidecar.name, "cache_method": cache_method,
        "accuracy": int8_accuracy(ctx, fp32_path, int8_path),
    }
    with OnnxRuntimeRunner(int8_path) as runner:
        return [runner.infer(f) for f in golden_feeds]


def int8_accuracy(ctx, fp32_path: Path, int8_path: Path) -> Dict[str, Any]:
    o = ctx.options
    if not ctx.images.val:
        return {"skipped": "no labelled val split (export a run, or a checkpoint whose dataset is reachable)"}
    ctx.log(f"INT8 accuracy: FP32 vs INT8 mAP50 on {len(ctx.images.val)} val images (ONNX Runtime)")
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    args = (ctx.images.val, ctx.images.val_labels, ctx.adapter, spec, ctx.images.nc, ctx.post.iou)
    delta = int8_delta(evaluate_onnx(fp32_path, *args), evaluate_onnx(int8_path, *args), o.max_int8_drop)
    if not delta["ok"]:
        raise ModelError(f"INT8 loses {delta['map50_drop_points']:.2f} mAP50 points on the val split "
                         f"(--max-int8-drop {o.max_int8_drop})",
                         "try --calib-method minmax, more --calib-size images, or a higher --max-int8-drop")
    return delta


def golden(ctx, bundle: Path, feeds: Feeds, fp32_outputs: Feeds, int8_outputs: Optional[Feeds]) -> None:
    names = [p.name for p in ctx.images.parity[: len(feeds)]]
    write_golden(bundle, feeds, fp32_outputs, names, int8_outputs, conf=ctx.post.conf)
    ctx.report["golden"] = {"dir": "golden", "cases": len(feeds)}


def engine(ctx, bundle: Path) -> None:
    """Build a TensorRT engine only when asked and possible; otherwise say where it will be built."""
    o = ctx.options
    on_device = "the TensorRT engine is to be built on the device from this bundle (edgekit reads manifest.json)"
    if not o.engine:
        ctx.report["engine"] = {"built": False, "note": on_device}
        return
    from . import tensorrt_build

    if not tensorrt_build.tensorrt_available():
        ctx.log("tensorrt is not importable here: " + on_device)
        ctx.report["engine"] = {"built": False, "note": f"tensorrt not importable on this host; {on_device}"}
        return
    # INT8 builds from the Q/DQ graph (explicit quantization: portable from TRT 8.5 to 11).
    source = bundle / (INT8_FILENAME if o.int8 else "model.onnx")
    precision = "int8" if o.int8 else ("fp16" if o.fp16 else "fp32")
    profiles = {}
    if o.dynamic:  # a dynamic graph needs a profile; build for the export size, batch 1
        shape = (1, 3, ctx.imgsz, ctx.imgsz)
        profiles = {name: tensorrt_build.ShapeProfile(min=shape, opt=shape, max=shape)
                    for name in ctx.adapter.graphs()[0].input_names}
    build_options = tensorrt_build.EngineBuildOptions(precision=precision, profiles=profiles)
    ctx.log(f"building a {precision} TensorRT engine from {source.name}")
    result = tensorrt_build.build_engine(source, bundle / "engines", build_options)
    ctx.report["engine"] = {"built": True, "precision": precision, "source": source.name, "result": _plain(result)}


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "_asdict"):
        return {k: str(v) if isinstance(v, Path) else v for k, v in obj._asdict().items()}
    return str(obj)


def summary_rows(ctx, out: Path) -> List[Tuple[str, str]]:
    rows: List[Tuple[str, str]] = [("bundle", str(out))]
    for f in sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")):  # not the marker
        rows.append((f.name, _size(f.stat().st_size)))
    golden_dir = out / "golden"
    if golden_dir.is_dir():
        rows.append(("golden/", f"{len(list(golden_dir.glob('input_*.npy')))} inputs"))
    p = ctx.report.get("parity", {})
    det = p.get("detections") or {}
    rows.append(("parity (torch vs onnxruntime)",
                 f"{'pass' if p.get('passed') else 'FAIL'}: raw max abs {p.get('raw', {}).get('max_abs', 0):.3g}, "
                 f"detections {det.get('matched', 0)}/{det.get('n_ref', 0)} matched"))
    acc = ctx.report.get("int8", {}).get("accuracy")
    if acc and "skipped" not in acc:
        rows.append(("INT8 mAP50 (fp32 -> int8)", f"{acc['fp32']['map50']:.3f} -> {acc['int8']['map50']:.3f} "
                     f"({0.0 - acc['map50_drop_points']:+.2f} points)"))
    elif acc:
        rows.append(("INT8 mAP50", f"skipped: {acc['skipped']}"))
    eng = ctx.report.get("engine", {})
    rows.append(("engine", "built" if eng.get("built") else "not built: to be built on the device"))
    return rows


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n} B"


def write_report_and_manifest(ctx, bundle: Path, graphs: Sequence[GraphSpec]) -> None:
    from .bundle import build_manifest_and_report

    build_manifest_and_report(ctx, bundle, graphs)


__all__ = ["calibration_set", "export_graphs", "parity_gate", "int8_artifacts", "golden", "engine", "summary_rows",
           "write_report_and_manifest", "INT8_FILENAME", "PARITY_FILENAME"]
