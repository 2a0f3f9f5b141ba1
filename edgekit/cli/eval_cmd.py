"""``edgekit eval obb --data DIR --predictions P.json``: mAP, per-class AP, P/R and a PR curve.

Thin: options -> :mod:`edgekit.train.obb.evaluate` (no torch); results go to ``--out`` (eval.json,
pr_curve.png, pr_curve_polygon.png), written through edgekit.core.outdir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

WRITER = "eval"


@click.group("eval")
def eval_() -> None:
    """Score predictions files against a dataset."""


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
