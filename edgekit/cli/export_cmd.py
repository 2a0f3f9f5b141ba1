"""``edgekit export``: a run or checkpoint -> verified ONNX, INT8 Q/DQ, calibration cache, deploy bundle.

Thin on purpose: parse options into :class:`~edgekit.export.options.ExportOptions`, call
:func:`~edgekit.export.export_model`, print a summary table. Heavy imports happen inside.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import click

from edgekit.core.vocab import CALIB_METHODS, FLOAT_SCOPES, SIMPLIFIERS, TARGETS


@click.command("export")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--imgsz", type=int, default=None, help="Input size (multiple of 32). Default: the training size.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (<= 17 for jetson-xavier-nx).")
@click.option("--dynamic", is_flag=True, help="Dynamic batch/height/width axes.")
@click.option("--fp16", is_flag=True, help="Record/build an FP16 engine (model.onnx itself stays FP32).")
@click.option("--int8", is_flag=True, help="Also write model.int8.qdq.onnx, a calibration cache and the INT8 accuracy report.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="The dataset: RefDet videos (root, or train/ + test/) for a RefDet checkpoint, the YOLO-OBB "
                   "root (data.yaml) for an OBB one. Default: the run's dataset.")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="Folder of calibration images. Default: the run's dataset, train split.")
@click.option("--calib-method", type=click.Choice(CALIB_METHODS), default=CALIB_METHODS[0], show_default=True,
              help="How Q/DQ activation ranges are computed (percentile ships a MinMax TensorRT cache).")
@click.option("--calib-size", type=int, default=64, show_default=True, help="Calibration images to use.")
@click.option("--int8-float-scope", type=click.Choice(FLOAT_SCOPES), default=FLOAT_SCOPES[0], show_default=True,
              help="What stays float in the Q/DQ model: the whole detection head, or only its decode.")
@click.option("--simplifier", type=click.Choice(SIMPLIFIERS), default=SIMPLIFIERS[0], show_default=True)
@click.option("--target", type=click.Choice(TARGETS), default=TARGETS[0], show_default=True)
@click.option("--engine", is_flag=True, help="Build a TensorRT engine here if tensorrt is importable.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Bundle directory. Default: RUN_DIR/bundle or <checkpoint>_bundle.")
@click.option("--no-parity-gate", is_flag=True, help="Keep the export even if ONNX differs from PyTorch.")
@click.option("--max-int8-drop", type=float, default=None, help="Fail if INT8 loses more mAP50 points than this.")
@click.option("--val-size", type=int, default=None, help="Cap on val images for the INT8 accuracy report.")
@click.option("--conf", type=float, default=0.25, show_default=True, help="Confidence threshold in the manifest.")
@click.option("--quiet", is_flag=True, help="No progress lines, only the summary.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load the checkpoint without the class allow-list (it may run code): only for files you trust.")
@click.option("--tile", type=int, default=None,
              help="Declare a tiled input plan: frames are cut into SIZE-px tiles by default on the device.")
@click.option("--tile-overlap", type=int, default=None, help="Pixels shared by neighbouring tiles (with --tile).  [default: SIZE/5]")
@click.option("--tile-batch", type=int, default=None,
              help="Tiles per engine call (with --tile; > 1 needs --dynamic: the engine profile covers it).")
def export(source: Path, imgsz: Optional[int], opset: int, dynamic: bool, fp16: bool, int8: bool,
           data: Optional[Path], calib_data: Optional[Path], calib_method: str, calib_size: int, int8_float_scope: str, simplifier: str, target: str,
           engine: bool, out: Optional[Path], no_parity_gate: bool, max_int8_drop: Optional[float],
           val_size: Optional[int], conf: float, quiet: bool, trust_checkpoint: bool, tile: Optional[int],
           tile_overlap: Optional[int], tile_batch: Optional[int]) -> None:
    """Export RUN_DIR (runs/<id>/) or a CHECKPOINT (Ultralytics OBB, or RefDet with --data) to a verified deploy bundle."""
    from edgekit.export import export_model

    options = build_export_options({
        "source": source, "imgsz": imgsz, "opset": opset, "dynamic": dynamic, "fp16": fp16, "int8": int8,
        "data": data, "calib_data": calib_data, "calib_method": calib_method, "calib_size": calib_size, "int8_float_scope": int8_float_scope,
        "simplifier": simplifier,
        "target": target, "engine": engine, "out": out, "parity_gate": not no_parity_gate,
        "max_int8_drop": max_int8_drop, "val_size": val_size, "conf": conf, "trust_checkpoint": trust_checkpoint,
        "tile_plan": _tile_plan(tile, tile_overlap, tile_batch, dynamic),
    })
    log = (lambda _msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    from edgekit.core.errors import ModelError, raised_inside, translate

    try:
        result = export_model(options, log=log)
    except Exception as e:  # the stage boundary: torch/onnx/onnxruntime errors become one line naming SOURCE
        if not raised_inside(e):
            raise
        raise translate(e, source, ModelError, "check SOURCE and the flags; EDGEKIT_TRACEBACK=1 shows the traceback",
                        what="exporting") from None
    click.echo(render_table(result.summary_rows))


# ExportOptions field -> the command-line flag that sets it: errors and the config reference name the flag
# the user typed, not the internal field. Fields missing here are library-only (ExportOptions(...)).
FIELD_FLAGS: Dict[str, str] = {
    "source": "SOURCE", "imgsz": "--imgsz", "opset": "--opset", "dynamic": "--dynamic", "fp16": "--fp16",
    "int8": "--int8", "data": "--data", "calib_data": "--calib-data", "calib_method": "--calib-method", "calib_size": "--calib-size",
    "int8_float_scope": "--int8-float-scope", "simplifier": "--simplifier", "target": "--target",
    "engine": "--engine", "out": "--out", "parity_gate": "--no-parity-gate", "max_int8_drop": "--max-int8-drop",
    "val_size": "--val-size", "conf": "--conf", "trust_checkpoint": "--trust-checkpoint", "tile_plan": "--tile",
    "tile_plan.tile": "--tile", "tile_plan.overlap": "--tile-overlap", "tile_plan.batch": "--tile-batch",
}


def _tile_plan(tile: Optional[int], overlap: Optional[int], batch: Optional[int], dynamic: bool = False
               ) -> Optional[Dict[str, Any]]:
    if tile is None:
        if overlap is not None or batch is not None:
            raise click.UsageError("--tile-overlap and --tile-batch go with --tile SIZE")
        return None
    if batch is not None and batch > 1 and not dynamic:
        raise click.UsageError(f"--tile-batch {batch} needs --dynamic (a static model streams its tiles one by one)")
    return {"tile": tile, "overlap": overlap if overlap is not None else tile // 5, "batch": batch}


def build_export_options(values: Dict[str, Any]):
    """ExportOptions from the command line; a bad value is a usage error (exit 2) naming its flag."""
    from pydantic import ValidationError

    from edgekit.core.config import build_config
    from edgekit.export import ExportOptions

    try:
        return ExportOptions.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        flag = FIELD_FLAGS.get(str(first["loc"][0])) if first["loc"] else None
        if flag is None:  # not a command-line value: the library's own message
            return build_config(ExportOptions, values, source="edgekit export options")
        msg = str(first.get("msg", "invalid value"))
        msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
        raise click.BadParameter(f"{msg[:1].lower()}{msg[1:]}, got {first.get('input')!r}", param_hint=f"'{flag}'") from None


def render_table(rows: List[Tuple[str, str]]) -> str:
    """Two aligned columns; plain text so it reads the same in a terminal, a log and a CI page."""
    width = max((len(k) for k, _ in rows), default=0)
    rule = "-" * (width + 2 + max((len(v) for _, v in rows), default=0))
    return "\n".join([rule, *(f"{k.ljust(width)}  {v}" for k, v in rows), rule])
