"""The deploy bundle's last two files: ``export_report.json`` and ``manifest.json``.

The manifest (:class:`edgekit.core.manifest.BundleManifest`) is what the device reads: task, classes,
input name/shape/dtype, preprocessing, postprocess thresholds, every file's sha256 and provenance.
It is written last, over the finished directory, so its checksums cover everything else.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from edgekit.core.atomic import write_json_atomic

from .adapters import GraphSpec

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


def build_manifest_and_report(ctx, bundle: Path, graphs: Sequence[GraphSpec]) -> None:
    o = ctx.options
    ctx.report.update({
        "source": {"checkpoint": str(ctx.source.checkpoint), "run_id": ctx.source.run_id,
                   "run_dir": str(ctx.source.run_dir) if ctx.source.run_dir else None},
        "task": ctx.ckpt.task, "names": ctx.ckpt.names, "target": o.target,
        "options": o.model_dump(mode="json"), "versions": versions(), "host": platform.platform(),
    })
    write_json_atomic(bundle / REPORT_FILENAME, ctx.report)
    write_json_atomic(bundle / MANIFEST_FILENAME, manifest_dict(ctx, bundle, graphs))
    make_shareable(bundle)


def manifest_dict(ctx, bundle: Path, graphs: Sequence[GraphSpec]) -> Dict[str, Any]:
    """The validated manifest for the finished bundle directory, as JSON-ready data."""
    from edgekit.core.manifest import (
        BundleManifest,
        CalibrationEntry,
        GoldenEntry,
        Provenance,
        describe_files,
    )

    from .golden import DEVICE_TOLERANCES

    models = {("fp32" if g.detections and i == 0 else g.role): model_entry(bundle / g.filename, g)
              for i, g in enumerate(graphs)}
    int8 = ctx.report.get("int8")
    calibration = None
    if int8:
        models["int8_qdq"] = model_entry(bundle / int8["file"], graphs[0])
        calibration = CalibrationEntry(cache=int8["calibration_cache"], sidecar=int8["calibration_sidecar"],
                                       method=int8["cache_method"], n_images=int8["n_calib"])
    tolerances = dict(DEVICE_TOLERANCES["fp32"])
    for precision in ("fp16", "int8"):
        tolerances.update({f"{precision}_{k}": v for k, v in DEVICE_TOLERANCES[precision].items() if v != float("inf")})
    names = [ctx.ckpt.names[i] for i in sorted(ctx.ckpt.names)]
    files = sorted(p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file() and p.name != MANIFEST_FILENAME)
    manifest = BundleManifest(
        task=ctx.ckpt.task, classes=names, models=models, preprocess=ctx.adapter.letterbox_spec(ctx.imgsz),
        postprocess=ctx.post, files=describe_files(bundle, files), calibration=calibration,
        golden=GoldenEntry(dir="golden", n=ctx.report["golden"]["cases"], tolerances=tolerances),
        provenance=Provenance(run_id=ctx.source.run_id, git_sha=git_sha(), versions=versions(),
                              source_checkpoint=str(ctx.source.checkpoint)),
    )
    return manifest.model_dump(mode="json")


def model_entry(path: Path, graph: GraphSpec):
    """Inputs/outputs (static sizes or dynamic-axis names) and opset, read from the ONNX file itself."""
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
    return ModelEntry(file=path.name, inputs=specs(inputs), outputs=specs(model.graph.output), opset=opset)


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


__all__ = ["build_manifest_and_report", "manifest_dict", "model_entry", "versions", "git_sha", "make_shareable",
           "MANIFEST_FILENAME", "REPORT_FILENAME"]
