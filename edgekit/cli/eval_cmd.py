"""``edgekit eval obb|refdet``: score predictions (obb) or a model (refdet) on a dataset.

- ``eval obb --data DIR --predictions P.json``: mAP, per-class AP, P/R and a PR curve; thin over
  :mod:`edgekit.train.obb.evaluate` (no torch).
- ``eval refdet MODEL --data DIR``: runs a RefDet run, checkpoint or bundle over every video of a RefDet
  root (each with its own reference photos) and reports AP@0.5, precision, recall and ST-IoU per video
  and overall (:mod:`edgekit.train.fewshot.evaluate`, definitions in docs/refdet.md "Metrics").

Results go to ``--out`` (eval.json + PR-curve PNGs), written through edgekit.core.outdir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from edgekit.cli.params import FiniteFloatRange, bundle_runtime_options, trust_checkpoint_option

WRITER = "eval"
REFDET_WRITER = "eval refdet"


@click.group("eval")
def eval_() -> None:
    """Score predictions (obb) or a model (refdet) against a dataset."""


@eval_.command("obb")
@click.option("--data", required=True, type=click.Path(path_type=Path), help="YOLO-OBB dataset root (or its data.yaml).")
@click.option("--predictions", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="predictions.json from `edgekit predict obb` (or any file of that schema).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory (default: <predictions dir>/eval).")
def obb(data: Path, predictions: Path, out: Optional[Path]) -> None:
    """Ultralytics-comparable mAP (ProbIoU) with the exact polygon-IoU mAP beside."""
    from edgekit.core.outdir import prepare_output, staged_output
    from edgekit.core.predictions import read_predictions
    from edgekit.train.obb.evaluate import evaluate_predictions, format_table, plot_pr_curve

    target = prepare_output(out or predictions.parent / "eval", WRITER, sources=[data, predictions])
    preds = read_predictions(predictions)
    report = evaluate_predictions(preds, data, predictions.name)
    results = report.pop("_results")
    with staged_output(target, WRITER) as stage:
        plots = {k: plot_pr_curve(results[k], report["names"], stage / name)
                 for k, name in (("ultralytics", "pr_curve.png"), ("polygon", "pr_curve_polygon.png"))}
        report["plots"] = {k: (v.name if v else None) for k, v in plots.items()}
        if not any(plots.values()):
            report["notes"] = ["matplotlib is not installed: no PR-curve PNG (pip install 'edgekit[train]')"]
        (stage / "eval.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    click.echo(format_table(report))
    u, p = report["ultralytics"], report["polygon"]
    click.echo(f"mAP50 {u['map50']:.4f}  mAP50-95 {u['map50_95']:.4f}  (ProbIoU, Ultralytics' val)  |  "
               f"polygon IoU: mAP50 {p['map50']:.4f}  mAP50-95 {p['map50_95']:.4f}")
    click.echo(f"-> {target / 'eval.json'}")


@eval_.command("refdet")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="RefDet root (samples/ + annotations/), or a dataset root holding test/.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/eval-refdet"),
              show_default=True, help="Output directory: eval.json, pr_curve.png.")
@click.option("--conf", type=FiniteFloatRange(0, 1), default=0.25, show_default=True,
              help="Confidence threshold of precision, recall and ST-IoU (AP ranks every box the model scores).")
@click.option("--stride", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run every Nth frame of each video (ground truth on skipped frames is not scored).")
@click.option("--device", default="cpu", show_default=True, help="Torch device for runs and checkpoints (cpu, cuda).")
@bundle_runtime_options
@trust_checkpoint_option
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def refdet(model: Path, data: Path, out: Path, conf: float, stride: int, device: str, backend: str, precision: str,
           trust_checkpoint: bool, no_progress: bool) -> None:
    """MODEL: runs/<id>, a RefDet .pt checkpoint or a RefDet bundle directory."""
    from edgekit.core.outdir import prepare_output, staged_output
    from edgekit.train.fewshot.evaluate import format_table
    from edgekit.train.fewshot.inference import evaluate_model, write_eval_outputs

    target = prepare_output(out, REFDET_WRITER, sources=[model, data])
    report, doc = evaluate_model(model, data, conf=conf, stride=stride, device=device, trust=trust_checkpoint,
                                 backend=backend, precision=precision, progress=not no_progress)
    with staged_output(target, REFDET_WRITER) as stage:
        write_eval_outputs(report, doc, stage)
    click.echo(format_table(report))
    o = report.overall

    def fmt(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.4f}"

    click.echo(f"mAP50 {fmt(o.map50)} (mean over videos)  AP50 {fmt(o.ap50)} (all frames)  P {fmt(o.precision)}  "
               f"R {fmt(o.recall)}  ST-IoU {fmt(o.st_iou)}  at conf {conf:g}, {doc['frames']} frames")
    click.echo(f"-> {target / 'eval.json'}")
