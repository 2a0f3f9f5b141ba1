"""``edgekit predict obb MODEL SOURCE``: detections of a run, checkpoint or bundle as a predictions JSON.

Thin: options -> :mod:`edgekit.train.obb.predict`; the output directory follows edgekit.core.outdir
(checked before the model loads, written in a staging directory, renamed into place).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

WRITER = "predict"


@click.group()
def predict() -> None:
    """Run a trained model on images, a folder or a video."""


@predict.command("obb")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/predict"),
              show_default=True, help="Output directory: predictions.json (+ images/, video.mp4).")
@click.option("--conf", type=click.FloatRange(0, 1), default=0.25, show_default=True,
              help="Confidence threshold (use 0.001 for predictions meant for `edgekit eval obb`).")
@click.option("--iou", type=click.FloatRange(0, 1), default=0.7, show_default=True, help="NMS IoU threshold.")
@click.option("--imgsz", type=click.IntRange(32), default=None, help="Input side (default: the model's training size).")
@click.option("--device", default="cpu", show_default=True, help="Torch device for checkpoints (cpu, cuda).")
@click.option("--save-images", is_flag=True, help="Also write annotated images to OUT/images/.")
@click.option("--save-video", is_flag=True, help="Also write the annotated frames to OUT/video.mp4.")
@click.option("--multi-label", is_flag=True,
              help="Keep every class above --conf per box, as Ultralytics' val does (for eval; deploy keeps the best).")
@click.option("--trust-checkpoint", is_flag=True, help="Load the .pt without the class allow-list (only for trusted files).")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Sliced inference: tile size in px (0 = whole frames) [default: a bundle's tiling plan, else none].")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=None, help="Pixels shared by neighbouring tiles.")
def obb(model: Path, source: Path, out: Path, conf: float, iou: float, imgsz: Optional[int], device: str,
        save_images: bool, save_video: bool, multi_label: bool, trust_checkpoint: bool, tile: Optional[int],
        tile_overlap: Optional[int]) -> None:
    """MODEL: runs/<id>, a .pt checkpoint or a deploy bundle directory. SOURCE: an image, a folder or a video."""
    from edgekit.core.outdir import prepare_output, staged_output
    from edgekit.train.obb.predict import load_model
    from edgekit.train.obb.predict import predict as run_predict

    if multi_label and tile:
        raise click.UsageError("--multi-label decodes one whole-frame output; it cannot be combined with --tile")
    target = prepare_output(out, WRITER, sources=[model, source])
    loaded = load_model(model, imgsz=imgsz, conf=conf, iou=iou, device=device, trust=trust_checkpoint, tile=tile,
                        tile_overlap=tile_overlap)
    with staged_output(target, WRITER) as stage:
        result = run_predict(loaded, source, stage, save_images=save_images, save_video=save_video,
                             multi_label=multi_label)
        result.write(stage / "predictions.json")
    n = sum(len(i.scores) for i in result.images)
    click.echo(f"{len(result.images)} images, {n} detections -> {target / 'predictions.json'}")
