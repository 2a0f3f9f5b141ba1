"""``export_model``: checkpoint -> verified ONNX -> (INT8 Q/DQ + calibration cache) -> deploy bundle.

Steps, each checked before the next: load the checkpoint (one-line error if corrupt), pick real
images from the run's dataset or ``--calib-data``, export every graph the task's adapter names, pin
the IR version, simplify (verified under ONNX Runtime), run the parity gate (PyTorch vs ONNX Runtime,
raw outputs and decoded detections), write golden data, quantize to Q/DQ INT8 and check it against
TensorRT 8.5's rules, write the host-computed calibration cache, measure FP32 vs INT8 mAP50, optionally
build a TensorRT engine, and write the manifest. The bundle is built in a temporary directory and
renamed into place, so a failed export leaves no half bundle.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from edgekit.core.errors import ConfigError, DataError
from edgekit.core.outdir import prepare_output, staged_output, temp_files_in, work_dir
from edgekit.core.postprocess import PostprocessSpec

from . import onnx_tools, stages
from .adapters import LoadedCheckpoint, get_adapter, load_checkpoint
from .context import ExportContext, ExportImages, ExportResults, Log
from .options import ExportOptions, ExportResult
from .sources import ExportSource, dataset_from_train_args, load_layout, resolve_source, split_images

STRIDE = 32
WRITER = "export"  # the bundle marker's writer (edgekit.core.outdir)


def export_model(options: ExportOptions, log: Optional[Log] = None) -> ExportResult:
    """Run the whole export; returns the bundle directory, the report and summary rows."""
    ctx = prepare(options, log or (lambda _msg: None))
    calib = stages.calibration_set(ctx) if options.int8 else None  # fail on bad calibration data before exporting
    # never replaces the checkpoint, a directory holding it, or a directory edgekit did not write; never
    # writes into (or around) the data it reads
    out = prepare_output(options.out or default_bundle_dir(ctx.source), WRITER,
                         sources=[ctx.source.checkpoint, options.calib_data, options.data])
    start = time.perf_counter()
    # staged next to --out; scratch (ours and the libraries' temp files) beside it, not in /tmp
    with staged_output(out, WRITER) as bundle, work_dir(bundle) as work, temp_files_in(work):
        onnx = stages.export_graphs(ctx, work, bundle)
        parity = stages.parity_gate(ctx, bundle, out)
        detector = parity[ctx.detection_graph().role]
        int8 = stages.int8_artifacts(ctx, bundle, calib, detector) if calib is not None else None
        golden = stages.golden(ctx, bundle, parity, int8)
        extras = ctx.adapter.manifest_extras(ctx, bundle)
        engine = stages.engine(ctx, bundle)
        results = ExportResults(onnx=onnx, parity=parity, golden=golden, engine=engine, int8=int8,
                                seconds=round(time.perf_counter() - start, 2), manifest_extras=extras)
        report = stages.write_report_and_manifest(ctx, bundle, results)
    return ExportResult(bundle_dir=out, report=report, summary_rows=stages.summary_rows(results, out))


def prepare(options: ExportOptions, log: Log) -> ExportContext:
    """Validate options, load the checkpoint and choose images: everything that can fail cheaply."""
    onnx_tools.check_opset(options.opset, options.target)
    if options.engine and options.target == "jetson-xavier-nx":
        log("note: a Xavier NX engine must be built on the device; --engine builds for this machine's GPU")
    source = resolve_source(options.source)
    log(f"loading {source.checkpoint}")
    ckpt = load_checkpoint(source.checkpoint, trust=options.trust_checkpoint)
    adapter = get_adapter(ckpt.task)
    imgsz = int(options.imgsz or ckpt.imgsz)
    if imgsz % STRIDE:
        raise ConfigError(f"--imgsz {imgsz} is not a multiple of the model stride {STRIDE}",
                          f"pass --imgsz {((imgsz + STRIDE - 1) // STRIDE) * STRIDE}")
    if options.data is not None and ckpt.task != "refdet":
        source = obb_dataset_source(options.data, source)
    images = adapter.choose_images(options, source, ckpt, imgsz) or choose_images(options, source, ckpt)
    iou = options.iou if "iou" in options.model_fields_set or adapter.default_iou is None else adapter.default_iou
    post = PostprocessSpec(conf=options.conf, iou=iou, task="obb" if ckpt.task == "obb" else "detect")
    return ExportContext(options, source, ckpt, adapter, imgsz, images, post, log)


def choose_images(options: ExportOptions, source: ExportSource, ckpt: LoadedCheckpoint) -> ExportImages:
    """Val split for parity/golden/accuracy; train split (or --calib-data) for calibration."""
    layout = load_layout(source.dataset_root or dataset_from_train_args(ckpt.train_args))
    val = split_images(layout, "val")
    labelled = [p for p in val if layout.label_path(p).is_file()] if layout is not None else []
    if options.val_size:
        labelled = labelled[: options.val_size]
    calib_dir = options.calib_data
    if calib_dir is None and layout is not None:
        for split in ("train", "val"):  # train first: val is what the INT8 accuracy report scores
            if split_images(layout, split):
                calib_dir = layout.image_dir(split)
                break
    parity = val
    if not parity and calib_dir is not None and Path(calib_dir).is_dir():
        from edgekit.calib.dataset import list_images

        parity = list_images(Path(calib_dir))
    if not parity and options.calib_data is not None:  # never tell the user to pass the flag they passed
        from edgekit.core.image_files import suffix_list

        raise DataError(f"--calib-data {options.calib_data} holds no images ({suffix_list()})",
                        "point --calib-data at a folder of images (e.g. the dataset's images/train)")
    if not parity:
        raise DataError(f"no images to verify the export of {source.checkpoint} with",
                        "pass --calib-data DIR (a folder of images), or export a run whose "
                        "reports/config_resolved.yaml names its dataset under data:")
    if options.int8 and calib_dir is None:
        raise DataError(f"--int8 needs calibration images and {source.checkpoint} names no dataset",
                        "pass --calib-data DIR (e.g. the dataset's images/train)")
    return ExportImages(parity=parity[: options.parity_images], calib_dir=Path(calib_dir) if calib_dir else None,
                        val=labelled, val_labels=[layout.label_path(p) for p in labelled] if labelled else [],
                        nc=len(layout.names) if layout is not None else len(ckpt.names))


def obb_dataset_source(data: Path, source: ExportSource) -> ExportSource:
    """``--data`` for a YOLO-OBB checkpoint: its dataset root (data.yaml), never RefDet videos."""
    from dataclasses import replace

    from edgekit.data.formats.refdet import is_refdet_root

    data = Path(data)
    if not data.exists():
        raise DataError(f"--data {data} does not exist", "pass the dataset root holding data.yaml")
    if is_refdet_root(data) or any(is_refdet_root(d) for d in data.iterdir() if d.is_dir()):
        raise DataError(f"--data {data} holds RefDet videos, but {source.checkpoint} is an OBB checkpoint",
                        "pass the YOLO-OBB dataset root (data.yaml) the checkpoint was trained on")
    if not (data / "data.yaml").is_file() and data.suffix not in (".yaml", ".yml"):
        raise DataError(f"--data {data} has no data.yaml", "pass the YOLO-OBB dataset root holding data.yaml")
    return replace(source, dataset_root=data)


def default_bundle_dir(source: ExportSource) -> Path:
    if source.run_dir is not None:
        return source.run_dir / "bundle"
    return source.checkpoint.with_name(f"{source.checkpoint.stem}_bundle")


__all__ = ["export_model", "prepare", "choose_images", "default_bundle_dir", "ExportContext", "ExportImages"]
