"""The steps of :func:`edgekit.export.pipeline.export_model`, one function each.

Every step reads the :class:`~edgekit.export.context.ExportContext`, writes its artifacts into the
bundle being built and returns a typed result (:mod:`edgekit.export.context`); the pipeline passes
results on explicitly and builds ``export_report.json`` from them at the end. Every graph the
adapter names is exported, checked for parity and given golden data; INT8, the accuracy report
and engines are about the one detection graph.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import ModelError
from edgekit.core.parity import GOLDEN_DIR, GoldenCase, failure_line, run_parity, write_golden
from edgekit.core.vocab import TARGET_TRT_VERSION, cache_method, trt_algorithm
from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

from . import onnx_tools
from .accuracy import evaluate_onnx, int8_delta
from .adapters import GraphSpec
from .context import (
    EngineStageResult,
    ExportContext,
    ExportResults,
    GoldenResult,
    Int8Result,
    OnnxGraphResult,
    OnnxStageResult,
    ParityResult,
    write_failed_parity,
)

INT8_FILENAME = "model.int8.qdq.onnx"  # the one-graph detector's (model.onnx) Q/DQ file
PARITY_FILENAME = "onnx_parity.json"


def int8_filename(graph: GraphSpec) -> str:
    """``model.onnx`` -> ``model.int8.qdq.onnx``."""
    return f"{Path(graph.filename).stem}.int8.qdq.onnx"


def calibration_set(ctx: ExportContext):
    from edgekit.calib.dataset import CalibrationSet

    own = ctx.adapter.calibration_set(ctx)
    if own is not None:
        return own
    o = ctx.options
    calib = CalibrationSet.from_dir(ctx.images.calib_dir, ctx.adapter.letterbox_spec(ctx.imgsz), size=o.calib_size,
                                    min_images=min(o.calib_min_images, o.calib_size), seed=o.seed)
    ctx.log(f"calibration: {len(calib)} images from {ctx.images.calib_dir}")
    return calib


def export_graphs(ctx: ExportContext, work: Path, bundle: Path) -> OnnxStageResult:
    """Export, pin IR, simplify (verified) every graph of the adapter into the bundle."""
    o = ctx.options
    ir = onnx_tools.pinned_ir_version(o.opset, o.target)
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    result = OnnxStageResult(opset=o.opset, ir_version=ir, runtime_max_ir=onnx_tools.max_runtime_ir_version(),
                             dynamic=o.dynamic, imgsz=ctx.imgsz)
    for graph in ctx.graphs():
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
        result.graphs[graph.role] = OnnxGraphResult(graph.filename, written_ir, opset, simplified)
    return result


def parity_gate(ctx: ExportContext, bundle: Path, out: Path) -> Dict[str, ParityResult]:
    """PyTorch vs ONNX Runtime on real images, for every graph; writes ``onnx_parity.json``.

    The file holds the detection graph's report at the top level (as for a one-graph export) and,
    for several graphs, every graph's report under ``graphs`` by model role.
    """
    o = ctx.options
    results = {g.role: graph_parity(ctx, g, bundle) for g in ctx.graphs()}
    gate = "on" if o.parity_gate else "off (--no-parity-gate)"
    for r in results.values():
        r.report["gate"] = gate
    primary = results[ctx.detection_graph().role]
    document = dict(primary.report)
    if len(results) > 1:
        document["graphs"] = {role: r.report for role, r in results.items()}
    write_json_atomic(bundle / PARITY_FILENAME, document)
    for r in results.values():
        if not r.passed:
            line = failure_line(r.report)
            if o.parity_gate:
                kept = write_failed_parity(out, document)
                raise ModelError(f"parity gate failed for {r.graph.filename}: {line} (report: {kept})",
                                 "fix the export, or pass --no-parity-gate to keep a model that differs")
            ctx.log(f"warning: {r.graph.filename} parity outside tolerance ({line}); kept because of --no-parity-gate")
        ctx.log(f"parity {r.graph.filename}: raw max abs {r.report['raw']['max_abs']:.3g} on "
                f"{r.report['n_images']} images -> {'pass' if r.passed else 'FAIL'}")
    return results


def graph_parity(ctx: ExportContext, graph: GraphSpec, bundle: Path) -> ParityResult:
    """One graph's parity on the parity images; keeps the first ``golden_count`` feeds and their ORT outputs."""
    o = ctx.options
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    feeds = [ctx.adapter.feed(p, graph, spec)[0] for p in ctx.images.parity]
    names = [p.name for p in ctx.images.parity]
    decoder = ctx.adapter.decode if graph.detections else None
    with ctx.adapter.reference_runner(ctx.ckpt, graph) as ref, OnnxRuntimeRunner(bundle / graph.filename) as ort:
        report = run_parity(ref, ort, feeds, o.tolerance, decoder=decoder, post=ctx.post, labels=names)
        golden_feeds = feeds[: o.golden_count]
        fp32_outputs = [ort.infer(f) for f in golden_feeds]
    return ParityResult(graph, report, golden_feeds, fp32_outputs, names[: len(golden_feeds)])


def target_trt_version(target: str) -> Tuple[str, str]:
    """(TensorRT version, where it came from) for the target's calibration cache header.

    A target that pins TensorRT (Xavier NX: 8.5.2) gets that version. One that does not (x86) gets
    this host's TensorRT if importable; else "0", which no TensorRT accepts, so the device
    recalibrates (the sidecar check refuses it) rather than trusting a guessed version.
    """
    pinned = TARGET_TRT_VERSION.get(target)
    if pinned:
        return pinned, f"the {target} target"
    from edgekit.core.errors import DeviceError
    from edgekit.deploy.tensorrt.device import import_tensorrt  # PyPI's stub packages count as missing

    try:
        return str(import_tensorrt().__version__), "this host's tensorrt"
    except DeviceError:
        return "0", "unknown (no TensorRT pinned by the target or importable here)"


def int8_artifacts(ctx: ExportContext, bundle: Path, calib: Any, parity: ParityResult) -> Int8Result:
    """Q/DQ model (+ TRT 8.5 check), calibration cache + sidecar, INT8 accuracy, INT8 golden outputs."""
    from edgekit.calib.cache import trt_version_int
    from edgekit.calib.qdq import quantize_qdq
    from edgekit.calib.qdq_check import assert_qdq_trt85, check_qdq_trt85
    from edgekit.calib.ranges import write_calibration_cache

    o = ctx.options
    graph = parity.graph
    fp32_path, int8_path = bundle / graph.filename, bundle / int8_filename(graph)
    feeds = ctx.adapter.calibration_feeds(graph, calib)
    ctx.log(f"quantizing to {int8_path.name} ({o.calib_method}, {len(calib)} images)")
    # TensorRT 8.5's rules (opset <= 17 among them) bind the Xavier NX target only (docs/tensorrt.md, section 4).
    qdq = quantize_qdq(fp32_path, int8_path, calib, method=o.calib_method, profile="trt",
                       float_scope=o.int8_float_scope, check_trt85=o.target == "jetson-xavier-nx",
                       exclude_nodes=ctx.adapter.int8_excluded_nodes(graph, fp32_path, o.int8_float_scope),
                       feeds=feeds)
    onnx_tools.pin_ir_version(int8_path, onnx_tools.pinned_ir_version(o.opset, o.target))
    if o.target == "jetson-xavier-nx":
        assert_qdq_trt85(int8_path)
    method = cache_method(o.calib_method)  # a percentile export ships a MinMax cache
    version, version_source = target_trt_version(o.target)
    if version == "0":
        ctx.log(f"note: calibration cache for TensorRT version {version_source}; the device will recalibrate")
    # Entropy ranges cost ~20 s per model: reuse the ones quantize_qdq computed on the same graph and images.
    shared = qdq.activation_ranges if qdq.method == method else None
    cache, sidecar = write_calibration_cache(fp32_path, calib, method, bundle, ctx.imgsz, 1, trt_version=version,
                                             ranges=shared, feeds=feeds)
    with OnnxRuntimeRunner(int8_path) as runner:
        golden_outputs = [runner.infer(f) for f in parity.golden_feeds]
    return Int8Result(
        file=int8_path.name, role=graph.role, method=o.calib_method, profile=qdq.profile,
        float_scope=o.int8_float_scope, n_calib=qdq.n_calib, calib_dir=str(ctx.images.calib_dir),
        calib_data_hash=calib.data_hash(), excluded_nodes=list(qdq.excluded_nodes),
        trt85_violations=len(check_qdq_trt85(int8_path)), calibration_cache=cache.name,
        calibration_sidecar=sidecar.name, cache_method=method, trt_algorithm=trt_algorithm(o.calib_method),
        trt_version=trt_version_int(version) if "." in version else version,
        accuracy=int8_accuracy(ctx, graph, fp32_path, int8_path), golden_outputs=golden_outputs)


def int8_accuracy(ctx: ExportContext, graph: GraphSpec, fp32_path: Path, int8_path: Path) -> Dict[str, Any]:
    o = ctx.options
    if not ctx.images.val:
        return {"skipped": "no labelled val split (export a run, or a checkpoint whose dataset is reachable)"}
    ctx.log(f"INT8 accuracy: FP32 vs INT8 mAP50 on {len(ctx.images.val)} val images (ONNX Runtime)")
    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    args = (ctx.images.val, ctx.images.val_labels, ctx.adapter, spec, ctx.images.nc, ctx.post.iou)
    delta = int8_delta(evaluate_onnx(fp32_path, *args, graph=graph), evaluate_onnx(int8_path, *args, graph=graph),
                       o.max_int8_drop)
    if not delta["ok"]:
        raise ModelError(f"INT8 loses {delta['map50_drop_points']:.2f} mAP50 points on the val split "
                         f"(--max-int8-drop {o.max_int8_drop})",
                         "try --calib-method minmax, more --calib-size images, or a higher --max-int8-drop")
    return delta


def golden(ctx: ExportContext, bundle: Path, parity: Dict[str, ParityResult], int8: Optional[Int8Result]) -> GoldenResult:
    """``golden/``: every graph's golden feeds with its FP32 outputs (+ the Q/DQ model's, for its graph)."""
    cases: List[GoldenCase] = []
    for role, p in parity.items():
        for i, feed in enumerate(p.golden_feeds):
            outputs = {"fp32": p.fp32_outputs[i]}
            if int8 is not None and int8.role == role:
                outputs["int8"] = int8.golden_outputs[i]
            cases.append(GoldenCase(image=p.golden_images[i], inputs=feed, outputs=outputs, role=role))
    from edgekit.core.parity import DEVICE_TOLERANCES

    write_golden(bundle / GOLDEN_DIR, cases, conf=ctx.post.conf,
                 tolerances={**DEVICE_TOLERANCES, **ctx.adapter.golden_tolerances()})
    return GoldenResult(dir=GOLDEN_DIR, cases=len(cases), roles=list(parity))


def engine(ctx: ExportContext, bundle: Path) -> EngineStageResult:
    """Build a TensorRT engine only when asked and possible; otherwise say where it will be built."""
    o = ctx.options
    on_device = "the TensorRT engine is to be built on the device from this bundle (edgekit engine build BUNDLE)"
    if not o.engine:
        return EngineStageResult(built=False, note=on_device)
    from edgekit.deploy import tensorrt as trt_build

    if not trt_build.tensorrt_available():
        ctx.log("tensorrt is not importable here: " + on_device)
        return EngineStageResult(built=False, note=f"tensorrt not importable on this host; {on_device}")
    # INT8 builds from the Q/DQ graph (explicit quantization: portable from TRT 8.5 to 11).
    graph = ctx.detection_graph()
    source = bundle / (int8_filename(graph) if o.int8 else graph.filename)
    precision = "int8" if o.int8 else ("fp16" if o.fp16 else "fp32")
    profiles = {}
    if o.dynamic:  # a dynamic graph needs a profile: the export size, batch 1 up to the tile plan's batch
        low, high = (1, 3, ctx.imgsz, ctx.imgsz), (o.tile_batch, 3, ctx.imgsz, ctx.imgsz)
        profiles = {name: trt_build.ShapeProfile(min=low, opt=high, max=high)
                    for name in graph.input_names}
    build_options = trt_build.EngineBuildOptions(precision=precision, profiles=profiles,
                                                 int8_source="qdq" if o.int8 else "auto")
    ctx.log(f"building a {precision} TensorRT engine from {source.name}")
    result = trt_build.build_engine(source, bundle / "engines", build_options, progress=ctx.log)
    return EngineStageResult(built=True, precision=precision, source=source.name, result=_plain(result))


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "_asdict"):
        return {k: str(v) if isinstance(v, Path) else v for k, v in obj._asdict().items()}
    return str(obj)


def summary_rows(results: ExportResults, out: Path) -> List[Tuple[str, str]]:
    rows: List[Tuple[str, str]] = [("bundle", str(out))]
    for f in sorted(p for p in out.iterdir() if p.is_file() and not p.name.startswith(".")):  # not the marker
        rows.append((f.name, _size(f.stat().st_size)))
    golden_dir = out / GOLDEN_DIR
    if golden_dir.is_dir():
        rows.append(("golden/", f"{len(list(golden_dir.glob('input_*.npy')))} inputs"))
    primary = results.primary_parity()
    for role, p in results.parity.items():
        det = p.report.get("detections") or {}
        label = "parity (torch vs onnxruntime)" + ("" if p is primary else f" {role}")
        rows.append((label, f"{'pass' if p.passed else 'FAIL'}: raw max abs {p.report['raw']['max_abs']:.3g}"
                     + (f", detections {det.get('matched', 0)}/{det.get('n_ref', 0)} matched" if det else "")))
    acc = results.int8.accuracy if results.int8 is not None else None
    if acc and "skipped" not in acc:
        rows.append(("INT8 mAP50 (fp32 -> int8)", f"{acc['fp32']['map50']:.3f} -> {acc['int8']['map50']:.3f} "
                     f"({0.0 - acc['map50_drop_points']:+.2f} points)"))
    elif acc:
        rows.append(("INT8 mAP50", f"skipped: {acc['skipped']}"))
    rows.append(("engine", "built" if results.engine.built else "not built: to be built on the device"))
    return rows


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n} B"


def write_report_and_manifest(ctx: ExportContext, bundle: Path, results: ExportResults) -> Dict[str, Any]:
    """Write export_report.json and manifest.json (last); returns the report."""
    from .bundle import build_manifest_and_report

    return build_manifest_and_report(ctx, bundle, results)


__all__ = ["calibration_set", "export_graphs", "parity_gate", "graph_parity", "int8_artifacts", "int8_accuracy",
           "golden", "engine", "summary_rows", "write_report_and_manifest", "target_trt_version", "int8_filename",
           "INT8_FILENAME", "PARITY_FILENAME"]
