"""The deploy bundle's last two files: ``export_report.json`` and ``manifest.json``.

The manifest (:class:`edgekit.core.manifest.BundleManifest`) is what the device reads: task, classes,
input name/shape/dtype, preprocessing, postprocess thresholds, every file's sha256 and provenance.
It is written last, over the finished directory, so its checksums cover everything else.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from edgekit.core.atomic import write_json_atomic

from .adapters import GraphSpec
from .context import ExportContext, ExportResults

MANIFEST_FILENAME = "manifest.json"
REPORT_FILENAME = "export_report.json"


def versions() -> Dict[str, str]:
    """Versions of what shaped the artifacts (recorded in the report and the manifest's provenance)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("edgekit", "torch", "ultralytics", "onnx", "onnxruntime", "onnxslim", "onnxsim", "numpy", "tensorrt"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_manifest_and_report(ctx: ExportContext, bundle: Path, results: ExportResults) -> Dict[str, Any]:
    """Write ``export_report.json`` (built from the step results) then ``manifest.json``; returns the report."""
    o = ctx.options
    report = results.report()
    report.update({
        "source": {"checkpoint": str(ctx.source.checkpoint), "run_id": ctx.source.run_id,
                   "run_dir": str(ctx.source.run_dir) if ctx.source.run_dir else None},
        "task": ctx.ckpt.task, "names": ctx.ckpt.names, "target": o.target,
        "options": o.model_dump(mode="json"), "versions": versions(), "host": platform.platform(),
    })
    write_json_atomic(bundle / REPORT_FILENAME, report)
    write_json_atomic(bundle / MANIFEST_FILENAME, manifest_dict(ctx, bundle, results))
    make_shareable(bundle)
    return report


def golden_tolerances() -> Dict[str, float]:
    """The device tolerances flattened for the manifest: FP32's as is, the others prefixed (``fp16_atol``)."""
    from edgekit.core.parity import DEVICE_TOLERANCES

    out: Dict[str, float] = {}
    for precision, tol in DEVICE_TOLERANCES.items():
        prefix = "" if precision == "fp32" else f"{precision}_"
        out.update({f"{prefix}{k}": v for k, v in tol.model_dump().items() if v is not None})
    return out


def manifest_dict(ctx: ExportContext, bundle: Path, results: ExportResults) -> Dict[str, Any]:
    """The validated manifest for the finished bundle directory, as JSON-ready data."""
    from edgekit.core.manifest import (
        BundleManifest,
        CalibrationEntry,
        GoldenEntry,
        Provenance,
        describe_files,
    )

    batch = ctx.options.tile_batch
    models = {role: model_entry(bundle / p.graph.filename, p.graph, p.golden_feeds[0] if p.golden_feeds else None, batch)
              for role, p in results.parity.items()}
    int8 = results.int8
    calibration = None
    if int8 is not None:
        graph_parity = results.parity[int8.role]
        models["int8_qdq"] = model_entry(bundle / int8.file, graph_parity.graph,
                                         graph_parity.golden_feeds[0] if graph_parity.golden_feeds else None, batch)
        calibration = CalibrationEntry(cache=int8.calibration_cache, sidecar=int8.calibration_sidecar,
                                       method=int8.cache_method, n_images=int8.n_calib,
                                       trt_algorithm=int8.trt_algorithm, trt_version=int8.trt_version,
                                       model=int8.role)
    names = [ctx.ckpt.names[i] for i in sorted(ctx.ckpt.names)]
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST_FILENAME)
    manifest = BundleManifest(
        task=ctx.ckpt.task, classes=names, models=models, preprocess=ctx.adapter.letterbox_spec(ctx.imgsz),
        postprocess=ctx.post, files=describe_files(bundle, files), calibration=calibration,
        golden=GoldenEntry(dir=results.golden.dir, n=results.golden.cases, tolerances=golden_tolerances()),
        provenance=Provenance(run_id=ctx.source.run_id, git_sha=git_sha(), versions=versions(),
                              source_checkpoint=str(ctx.source.checkpoint)),
        target=ctx.options.target, tiling=ctx.options.tile_plan, **results.manifest_extras,
    )
    return manifest.model_dump(mode="json")


def model_entry(path: Path, graph: GraphSpec, feed: Optional[Mapping[str, Any]] = None, batch: int = 1):
    """Inputs/outputs (static sizes or dynamic-axis names) and opset, read from the ONNX file itself.

    Inputs with dynamic axes get an engine optimisation profile fixed at the shapes export fed
    (``feed``: min = opt = max), which is what the parity gate verified; with ``batch`` > 1 (a tile
    plan's batch) a dynamic batch axis ranges from 1 to ``batch``, optimised for ``batch``.
    """
    import onnx

    from edgekit.core.manifest import ModelEntry, TensorSpec

    model = onnx.load(str(path), load_external_data=False)

    def specs(values) -> list:
        out = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "dynamic") for d in t.shape.dim]
            out.append(TensorSpec(name=v.name, shape=dims, dtype=onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name))
        return out

    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    input_specs = specs(inputs)
    profile = {}
    for spec in input_specs:
        if feed is not None and spec.name in feed and any(not isinstance(d, int) for d in spec.shape):
            shape = [int(d) for d in feed[spec.name].shape]
            profile[spec.name] = batch_profile(shape, spec.shape, batch)
    return ModelEntry(file=path.name, inputs=input_specs, outputs=specs(model.graph.output), opset=opset,
                      profile=profile, engine_precision=getattr(graph, "engine_precision", None))


def batch_profile(shape: list, dims: list, batch: int = 1):
    """The profile of one input fed at ``shape``: fixed, except a dynamic batch axis (``dims[0]`` not
    an int) of a batch > 1, which ranges over 1..``batch`` (a frame's tiles at once, or fewer).

    >>> batch_profile([1, 3, 640, 640], ["batch", 3, "height", "width"], 8).model_dump()
    {'min': [1, 3, 640, 640], 'opt': [8, 3, 640, 640], 'max': [8, 3, 640, 640]}
    """
    from edgekit.core.manifest import ShapeRange

    if batch <= 1 or not dims or isinstance(dims[0], int):
        return ShapeRange(min=list(shape), opt=list(shape), max=list(shape))
    big = [batch] + list(shape[1:])
    return ShapeRange(min=[1] + list(shape[1:]), opt=big, max=big)


def git_sha() -> Optional[str]:
    """The commit of the edgekit checkout doing the export, if it is one (provenance only)."""
    import subprocess

    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(Path(__file__).resolve().parent),
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


def make_shareable(bundle: Path) -> None:
    """Temp files are created 0600 (mkstemp); a bundle is copied to devices and read by services."""
    bundle.chmod(0o755)
    for p in bundle.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


__all__ = ["build_manifest_and_report", "manifest_dict", "model_entry", "batch_profile", "golden_tolerances", "versions", "git_sha", "make_shareable",
           "MANIFEST_FILENAME", "REPORT_FILENAME"]
