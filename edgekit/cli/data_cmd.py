"""``edgekit data``: synthesise, check, convert and tile datasets.

Thin commands: validate options, call one library function (imported inside the command, so
``edgekit data --help`` stays light), print the result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Tuple

import click

from edgekit.cli.params import FiniteFloatRange
from edgekit.core.vocab import CONVERT_SOURCES, CONVERT_TARGETS, DATA_FORMATS

_CHECK_FORMATS = ("auto",) + DATA_FORMATS


def _split_classes(values: Tuple[str, ...]) -> Optional[Tuple[str, ...]]:
    """``--classes a,b --classes c`` -> ("a", "b", "c"); None when not given."""
    names = tuple(n.strip() for v in values for n in v.split(",") if n.strip())
    return names or None


def _classes_option(help_text: str):
    return click.option("--classes", multiple=True, metavar="NAMES", help=f"{help_text} (comma-separated or repeated).")


@click.group("data", context_settings={"help_option_names": ["-h", "--help"]})
def data() -> None:
    """Synthesise, check and convert datasets."""


@data.group("synth")
def synth() -> None:
    """Generate small synthetic datasets (deterministic per seed)."""


@synth.command("obb")
# --out is checked by the generator (a file, or a non-empty directory it did not write: one line, exit 1).
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset root to write (new, empty, or an earlier synthetic dataset).")
@click.option("--n-train", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--n-val", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--imgsz", type=click.IntRange(min=32), default=None, help="Image side in pixels.  [default: 320]")
@click.option("--frame-size", type=click.IntRange(min=256), default=None,
              help="Large aerial frames of this side (e.g. 2048-4096) with many small (16-54 px) objects.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--difficulty", type=click.Choice(["easy", "standard", "hard"]), default="standard", show_default=True,
              help="hard: small dense objects, look-alike classes, decoys, occlusion, blur, uneven light.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Render in this many processes (same output; 0 = in this process).")
def synth_obb(out: Path, n_train: int, n_val: int, imgsz: Optional[int], frame_size: Optional[int], seed: int,
              difficulty: str, workers: int) -> None:
    """Write an aerial OBB dataset (YOLO-OBB labels + data.yaml) to --out."""
    from edgekit.data.synth.obb import generate_obb_dataset

    if imgsz is not None and frame_size is not None:
        raise click.UsageError("pass --imgsz (normal scenes) or --frame-size (large frames, small objects), not both")
    imgsz = imgsz or 320
    large = {"frame_size": frame_size} if frame_size is not None else {}
    if frame_size is not None and difficulty != "standard":
        raise click.UsageError("--frame-size makes its own large-frame scenes: leave out --difficulty")
    root = generate_obb_dataset(out, n_train=n_train, n_val=n_val, imgsz=imgsz, seed=seed, difficulty=difficulty,
                                workers=workers, **large)
    click.echo(f"wrote {difficulty} OBB dataset {root} ({n_train} train / {n_val} val images, {frame_size or imgsz}px); "
               f"data.yaml: {Path(root) / 'data.yaml'}")


@synth.command("refdet")
# --out is checked by the generator (a file, or a non-empty directory it did not write: one line, exit 1).
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Dataset root to write (new, empty, or an earlier synthetic dataset).")
@click.option("--n-train", type=click.IntRange(min=1), default=6, show_default=True, help="Training videos.")
@click.option("--n-test", type=click.IntRange(min=1), default=2, show_default=True, help="Test videos.")
@click.option("--frames", type=click.IntRange(min=1), default=48, show_default=True, help="Frames per video.")
@click.option("--imgsz", type=click.IntRange(min=32), default=320, show_default=True, help="Frame side in pixels.")
@click.option("--fps", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True,
              help="Render videos in this many processes (same output; 0 = in this process).")
def synth_refdet(out: Path, n_train: int, n_test: int, frames: int, imgsz: int, fps: int, seed: int,
                 workers: int) -> None:
    """Write a few-shot RefDet video dataset (train/ and test/) to --out."""
    from edgekit.data.synth.refdet import generate_refdet_dataset

    root = generate_refdet_dataset(out, n_train=n_train, n_test=n_test, frames=frames, imgsz=imgsz, fps=fps, seed=seed,
                                   workers=workers)
    click.echo(f"wrote RefDet dataset {root} ({n_train} train / {n_test} test videos of {frames} frames)")


@data.command("check")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(_CHECK_FORMATS), default="auto", show_default=True)
@_classes_option("DOTA only: the class vocabulary (default: the DOTA v2.0 classes)")
@click.option("--images", "image_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="COCO only: directory the json's file_names resolve against.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(path: Path, fmt: str, classes: Tuple[str, ...], image_dir: Optional[Path],
          as_json: bool) -> None:
    """Report every problem in the dataset at PATH, one `path:line: error|warning: message` a line.

    Line 0 means the file as a whole. Exits 1 when there are errors (warnings alone exit 0).
    """
    from edgekit.data.check import check_dataset

    report = check_dataset(path, fmt, _split_classes(classes), image_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for issue in report.issues:
            click.echo(issue.format())
        click.echo(report.summary())
    if not report.ok:
        # SystemExit, not ctx.exit(1): the root runs click with standalone_mode=False, which turns
        # click's Exit into a return value that main() does not pass on.
        sys.exit(1)


@data.command("convert")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--from", "src_format", type=click.Choice(CONVERT_SOURCES), required=True)
@click.option("--to", "dst_format", type=click.Choice(CONVERT_TARGETS), required=True)
@_classes_option("Classes to write, in this order; objects of other classes are skipped")
@click.option("--images", "image_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="COCO only: directory the json's file_names resolve against.")
@click.option("--link", is_flag=True, help="Symlink images instead of copying them.")
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists (only once the new one is complete).")
def convert(src: Path, dst: Path, src_format: str, dst_format: str, classes: Tuple[str, ...],
            image_dir: Optional[Path], link: bool, overwrite: bool) -> None:
    """Convert a DOTA directory or COCO json(s) at SRC into a YOLO dataset root DST with data.yaml."""
    from edgekit.data.convert import convert_dataset

    result = convert_dataset(src, dst, src_format, dst_format, _split_classes(classes), image_dir=image_dir,
                             overwrite=overwrite, link_images=link)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(result.summary())


def _rates(value: str) -> Tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers (e.g. 0.5,1.0,1.5)") from None
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter(f"{value!r}: every rate must be > 0")
    return rates


@data.command("tile")
@click.argument("src", type=click.Path(exists=True, path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--size", type=click.IntRange(min=32), default=1024, show_default=True, help="Tile side in pixels.")
@click.option("--overlap", type=click.IntRange(min=0), default=200, show_default=True,
              help="Pixels shared by neighbouring tiles (about the largest object's size).")
@click.option("--rates", default="1.0", show_default=True, help="Image scales to tile at, comma-separated (e.g. 0.5,1.0,1.5).")
@click.option("--min-visible", type=FiniteFloatRange(0, 1, min_open=True), default=0.6, show_default=True,
              help="Keep a cut object when at least this fraction of its area is inside the tile.")
@click.option("--format", "src_format", type=click.Choice(["auto", "yolo-obb", "dota"]), default="auto", show_default=True)
@_classes_option("DOTA only: classes to write, in this order")
@click.option("--skip-empty", is_flag=True, help="Write no tile that holds no object (background-only tiles).")
@click.option("--overwrite", is_flag=True, help="Replace DST if an earlier `data tile` wrote it.")
def tile(src: Path, dst: Path, size: int, overlap: int, rates: str, min_visible: float, src_format: str,
         classes: Tuple[str, ...], skip_empty: bool, overwrite: bool) -> None:
    """Split the YOLO-OBB or DOTA dataset SRC into overlapping tiles: a YOLO-OBB dataset DST + tiles.json."""
    from edgekit.data.tile import TileSettings, tile_dataset

    if overlap >= size:
        raise click.BadParameter(f"--overlap {overlap} must be smaller than --size {size}", param_hint="--overlap")
    settings = TileSettings(size=size, overlap=overlap, rates=_rates(rates), min_visible=min_visible,
                            skip_empty=skip_empty)
    result = tile_dataset(src, dst, settings, src_format=src_format, classes=_split_classes(classes), overwrite=overwrite)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(result.summary())
