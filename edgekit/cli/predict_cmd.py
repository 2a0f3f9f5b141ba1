"""``edgekit predict obb|refdet``: detections of a run, checkpoint or bundle as a predictions JSON.

- ``predict obb MODEL SOURCE``: images, a folder or a video (:mod:`edgekit.train.obb.predict`);
- ``predict refdet MODEL --refs a.jpg [b.jpg c.jpg] --video v.mp4``: the target of 1-3 reference
  photos in every frame of a video, plus the annotated video (:mod:`edgekit.train.fewshot.inference`).

Thin: options -> library; the output directory follows edgekit.core.outdir (checked before the
model loads, written in a staging directory, renamed into place).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import click

from edgekit.cli.params import FiniteFloatRange, bundle_runtime_options, trust_checkpoint_option

WRITER = "predict"
REFDET_WRITER = "predict refdet"


@click.group()
def predict() -> None:
    """Run a trained model on images, a folder or a video."""


@predict.command("obb")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/predict"),
              show_default=True, help="Output directory: predictions.json (+ images/, video.mp4).")
@click.option("--conf", type=FiniteFloatRange(0, 1), default=0.25, show_default=True,
              help="Confidence threshold (use 0.001 for predictions meant for `edgekit eval obb`).")
@click.option("--iou", type=FiniteFloatRange(0, 1), default=0.7, show_default=True, help="NMS IoU threshold.")
@click.option("--imgsz", type=click.IntRange(32), default=None, help="Input side (default: the model's training size).")
@click.option("--device", default="cpu", show_default=True, help="Torch device for checkpoints (cpu, cuda).")
@click.option("--save-images", is_flag=True, help="Also write annotated images to OUT/images/.")
@click.option("--save-video", is_flag=True, help="Also write the annotated frames to OUT/video.mp4.")
@click.option("--multi-label", is_flag=True,
              help="Keep every class above --conf per box, as Ultralytics' val does (for eval; deploy keeps the best).")
@trust_checkpoint_option
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


@predict.command("refdet")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("more_refs", nargs=-1, type=click.Path(path_type=Path), metavar="[MORE_REFS]...")
@click.option("--refs", "refs", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Reference photo of the target; 1-3 in all: `--refs a.jpg b.jpg c.jpg` or `--refs a.jpg --refs b.jpg`.")
@click.option("--video", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The video to search.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/predict-refdet"),
              show_default=True, help="Output directory: predictions.json and video.mp4 (annotated).")
@click.option("--conf", type=FiniteFloatRange(0, 1), default=None, help="Confidence threshold [default: the model's].")
@click.option("--iou", type=FiniteFloatRange(0, 1), default=None, help="NMS IoU threshold [default: the model's].")
@click.option("--device", default="cpu", show_default=True, help="Torch device for runs and checkpoints (cpu, cuda).")
@bundle_runtime_options
@click.option("--no-video", is_flag=True, help="Write predictions.json only (no annotated video).")
@trust_checkpoint_option
@click.option("--no-progress", is_flag=True, help="No progress bar on stderr.")
def refdet(model: Path, more_refs: Tuple[Path, ...], refs: Tuple[Path, ...], video: Path, out: Path,
           conf: Optional[float], iou: Optional[float], device: str, backend: str, precision: str, no_video: bool,
           trust_checkpoint: bool, no_progress: bool) -> None:
    """MODEL: runs/<id>, a RefDet .pt checkpoint or a RefDet bundle directory.

    Paths after MODEL that belong to no option are more reference photos, so that
    `--refs a.jpg b.jpg c.jpg` reads as three.
    """
    from edgekit.core.outdir import prepare_output, staged_output
    from edgekit.train.fewshot.inference import (
        MAX_REFERENCES,
        check_video,
        load_refdet,
        predict_video,
        read_references,
    )

    photos = list(refs) + list(more_refs)
    if len(photos) > MAX_REFERENCES:
        raise click.UsageError(f"{len(photos)} reference photos given ({', '.join(map(str, photos))}); "
                               f"RefDet takes 1 to {MAX_REFERENCES}")
    read_references(photos)  # a missing or unreadable photo or video fails here, before the model loads
    if not video.is_file():
        raise click.BadParameter(f"{video} does not exist", param_hint="--video")
    check_video(video)
    target = prepare_output(out, REFDET_WRITER, sources=[model, video, *photos])
    loaded = load_refdet(model, device=device, trust=trust_checkpoint, conf=conf, iou=iou, backend=backend,
                         precision=precision)
    with staged_output(target, REFDET_WRITER) as stage:
        result = predict_video(loaded, photos, video, None if no_video else stage, progress=not no_progress)
        result.write(stage / "predictions.json")
    n = sum(len(i.scores) for i in result.images)
    seen = sum(1 for i in result.images if i.scores)
    click.echo(f"{len(result.images)} frames, target found in {seen} ({n} boxes) -> {target / 'predictions.json'}"
               + ("" if no_video else f", {target / 'video.mp4'}"))
