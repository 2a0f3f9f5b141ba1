"""``edgekit data tile``: split a YOLO-OBB or DOTA dataset of large images into overlapping tiles.

Aerial frames run to 4000 px while the model sees 640-1024: resizing a whole frame shrinks small
objects to nothing, so training uses crops at (or near) native resolution instead, as DOTA's devkit
and Ultralytics' ``split_trainval`` do. For every image, every scale ``rate`` and every tile of the
grid of :func:`edgekit.core.tiling.tile_windows`:

- each oriented box's polygon is clipped to the tile (Sutherland-Hodgman,
  :func:`edgekit.core.geometry.clip_polygon_to_rect`); objects whose visible area is at least
  ``min_visible`` of the whole are kept: whole ones with their own corners, cut ones re-fitted to
  the tightest box of the visible part in the object's own axes (:func:`fit_in_object_axes`; corners
  a tilted box still puts outside the tile are clipped to it, as Ultralytics' split does);
- the tile becomes an image of a normal edgekit dataset (``data.yaml``, train/val kept) and an
  entry of ``tiles.json``: its source image, rate, scale, offset, size and the objects kept/cut.

A point ``p`` in tile pixels is ``(p + (x, y)) / scale`` in source-image pixels (:func:`to_source`).
Written through the output policy (:mod:`edgekit.core.outdir`, writer ``data tile``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import DataError
from edgekit.core.geometry import clip_polygon_to_rect, corners_to_xywhr, polygon_area, xywhr_to_corners
from edgekit.core.outdir import prepare_output, staged_output
from edgekit.core.tiling import TileWindow, check_tile_args, tile_windows

from .formats.base import quad_defect
from .formats.yolo_obb import OBB, YoloObbLabel, read_yolo_obb, write_yolo_labels
from .layout import DatasetLayout

WRITER = "data tile"  # the output marker's writer (edgekit.core.outdir)
INDEX_NAME = "tiles.json"
INDEX_VERSION = 1
_WHOLE = 1.0 - 1e-6  # visible fraction at or above this: the object is not cut


@dataclass(frozen=True)
class TileSettings:
    """Tile side and overlap in (rate-scaled) pixels, scales, and the visible fraction an object needs."""

    size: int = 1024
    overlap: int = 200
    rates: Tuple[float, ...] = (1.0,)
    min_visible: float = 0.6
    skip_empty: bool = False  # write no tile without a kept object (large frames are mostly background)

    def check(self) -> None:
        check_tile_args(self.size, self.overlap, "--size")
        if not self.rates or any(r <= 0 for r in self.rates):
            raise DataError(f"--rates {','.join(map(str, self.rates))}: every rate must be > 0", "pass e.g. --rates 0.5,1.0")
        if not 0 < self.min_visible <= 1:
            raise DataError(f"--min-visible {self.min_visible} must be in (0, 1]", "pass e.g. --min-visible 0.6")


@dataclass
class SourceImage:
    """One source image: its split, path, and objects as (class id, (4, 2) corners in as-loaded pixels)."""

    split: str
    path: Path
    objects: List[Tuple[int, np.ndarray]]


@dataclass
class TileResult:
    """What a tiling wrote: the root, tiles and objects per split, and notes."""

    root: Path
    names: Dict[int, str]
    tiles: Dict[str, int] = field(default_factory=dict)
    kept: int = 0
    cut: int = 0
    dropped: int = 0
    skipped_empty: int = 0
    notes: List[str] = field(default_factory=list)

    def summary(self) -> str:
        splits = ", ".join(f"{s}: {n} tiles" for s, n in self.tiles.items())
        return (f"wrote tiled dataset {self.root} ({len(self.names)} classes; {splits}; {self.kept} objects kept, "
                f"{self.cut} of them cut at a tile edge, {self.dropped} dropped as less than min-visible"
                + (f"; {self.skipped_empty} empty tiles skipped" if self.skipped_empty else "") + "); "
                f"index: {self.root / INDEX_NAME}")


# -- reading the source ---------------------------------------------------------------------------
def _yolo_sources(src: Path) -> Tuple[Dict[int, str], Dict[str, str], List[SourceImage]]:
    from .formats.media import image_size

    layout = DatasetLayout.load(src)
    images: List[SourceImage] = []
    first_split_of_dir: Dict[Path, str] = {}
    aliases: Dict[str, str] = {}  # split -> the split whose tiles it shares (val: images/train)
    for split in layout.splits:
        directory = layout.image_dir(split).resolve()
        if directory in first_split_of_dir:
            aliases[split] = first_split_of_dir[directory]
            continue
        first_split_of_dir[directory] = split
        for path in layout.image_paths(split):
            label = layout.label_path(path)
            labels = read_yolo_obb(label, layout.nc) if label.is_file() else []
            w, h = image_size(path)
            objects = [(lb.class_id, np.asarray(lb.corners, np.float64).reshape(4, 2) * (w, h)) for lb in labels]
            images.append(SourceImage(split, path, objects))
    return layout.names, aliases, images


def _dota_sources(src: Path, classes: Optional[Sequence[str]]) -> Tuple[Dict[int, str], Dict[str, str], List[SourceImage]]:
    from .convert import _class_ids, _split_keys
    from .formats.dota import find_dota_splits, images_by_stem, read_dota

    splits = find_dota_splits(src)
    labels = {s: {p.stem: read_dota(p) for p in sorted(d.glob("*.txt"))} for s, (_, d) in splits.items()}
    found = [o.class_name for per in labels.values() for f in per.values() for o in f.objects]
    class_ids = _class_ids(found, classes)
    if not class_ids:
        raise DataError(f"{src}: no objects in any label file, so the dataset would have 0 classes",
                        "label the images, or name the classes with --classes")
    keys = _split_keys(list(splits))
    images: List[SourceImage] = []
    for split, (image_dir, _) in splits.items():
        for stem, path in images_by_stem(image_dir).items():
            label = labels[split].get(stem)
            objects = [(class_ids[o.class_name], np.asarray(o.corners, np.float64).reshape(4, 2))
                       for o in (label.objects if label else ()) if o.class_name in class_ids]
            images.append(SourceImage(keys[split], path, objects))
    return {i: n for n, i in class_ids.items()}, {}, images


# -- cutting one tile -----------------------------------------------------------------------------
def cut_objects(objects: Sequence[Tuple[int, np.ndarray]], window: TileWindow, scale: Tuple[float, float],
                min_visible: float) -> Tuple[List[YoloObbLabel], List[Dict[str, Any]], int]:
    """The labels of one tile, its index entries (``source``: the object's index in the source image,
    ``cut``, ``visible``), and how many objects touching it were dropped as less than ``min_visible``."""
    labels: List[YoloObbLabel] = []
    entries: List[Dict[str, Any]] = []
    dropped = 0
    size = np.array([window.width, window.height], np.float64)
    for k, (class_id, corners) in enumerate(objects):
        poly = corners * scale - (window.x, window.y)
        area = float(polygon_area(poly))
        visible = clip_polygon_to_rect(poly, 0, 0, window.width, window.height)
        if area <= 0 or len(visible) < 3:
            continue
        fraction = min(1.0, float(polygon_area(visible)) / area)
        if fraction < min_visible:
            dropped += fraction > 1e-9
            continue
        cut = fraction < _WHOLE
        quad = fit_in_object_axes(poly, visible) if cut else poly
        norm = np.clip(quad / size, 0.0, 1.0).reshape(-1)
        if quad_defect(norm.tolist()):
            dropped += 1
            continue
        labels.append(YoloObbLabel(int(class_id), tuple(float(v) for v in norm)))  # type: ignore[arg-type]
        entries.append({"source": k, "class_id": int(class_id), "cut": bool(cut), "visible": round(fraction, 4)})
    return labels, entries, dropped


def fit_in_object_axes(box: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The smallest rectangle in the axes of the (4, 2) ``box`` that holds the ``visible`` polygon.

    A cut object keeps its own orientation (the minimum-area rectangle of a clipped pentagon may
    turn by up to 45 degrees and poke far out of the tile); only its extent along its axes shrinks.
    """
    u, v = box[1] - box[0], box[3] - box[0]
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu <= 0 or nv <= 0:
        return xywhr_to_corners(corners_to_xywhr(visible[None]))[0]
    u, v = u / nu, v / nv
    pu, pv = visible @ u, visible @ v
    return np.array([lo_u * u + lo_v * v for lo_u, lo_v in
                     ((pu.min(), pv.min()), (pu.max(), pv.min()), (pu.max(), pv.max()), (pu.min(), pv.max()))])


def _rate_tag(rate: float) -> str:
    return f"{rate:g}".replace(".", "p")


def _tile_image(image: SourceImage, src_root: Path, tmp: Path, settings: TileSettings, result: TileResult
                ) -> List[Dict[str, Any]]:
    import cv2  # lazy: keeps `import edgekit.data` light

    pixels = cv2.imread(str(image.path), cv2.IMREAD_COLOR)  # as-loaded: EXIF applied, like image_size()
    if pixels is None:
        raise DataError(f"image {image.path} cannot be decoded", "replace the file or remove it and its labels")
    h0, w0 = pixels.shape[:2]
    suffix = ".jpg" if image.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
    entries: List[Dict[str, Any]] = []
    for rate in settings.rates:
        w, h = max(1, int(round(w0 * rate))), max(1, int(round(h0 * rate)))
        scaled = pixels if (w, h) == (w0, h0) else cv2.resize(
            pixels, (w, h), interpolation=cv2.INTER_AREA if rate < 1 else cv2.INTER_LINEAR)
        scale = (w / w0, h / h0)
        for window in tile_windows(w, h, settings.size, settings.overlap):
            labels, objects, dropped = cut_objects(image.objects, window, scale, settings.min_visible)
            if settings.skip_empty and not objects:
                result.skipped_empty += 1
                continue
            name = f"{image.path.stem}__{_rate_tag(rate)}__{window.x}_{window.y}{suffix}"
            rel = Path("images") / image.split / name
            crop = scaled[window.y:window.y1, window.x:window.x1]
            params = [cv2.IMWRITE_JPEG_QUALITY, 95] if suffix == ".jpg" else []
            if not cv2.imwrite(str(tmp / rel), crop, params):
                raise DataError(f"could not write {rel} (disk full or not writable?)", "free some space or pass another DST")
            write_yolo_labels(tmp / "labels" / image.split / Path(name).with_suffix(".txt"), labels)
            n_cut = sum(o["cut"] for o in objects)
            result.kept, result.cut, result.dropped = result.kept + len(objects), result.cut + n_cut, result.dropped + dropped
            result.tiles[image.split] = result.tiles.get(image.split, 0) + 1
            entries.append({"image": rel.as_posix(), "split": image.split, "source_image": _relative(image.path, src_root),
                            "source_size": [w0, h0], "rate": rate, "scale": list(scale), "x": window.x, "y": window.y,
                            "width": window.width, "height": window.height, "kept": len(objects), "cut": n_cut,
                            "dropped": dropped, "objects": objects})
    return entries


def _relative(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path.absolute())


def tile_dataset(src: Union[str, Path], dst: Union[str, Path], settings: TileSettings = TileSettings(), *,
                 src_format: str = "auto", classes: Optional[Sequence[str]] = None,
                 overwrite: bool = False) -> TileResult:
    """Tile the YOLO-OBB or DOTA dataset at ``src`` into a new YOLO-OBB dataset at ``dst`` (see the module doc).

    ``classes`` picks and orders DOTA classes (default: every class found, sorted). An earlier
    ``data tile`` output at ``dst`` is replaced only with ``overwrite``.
    """
    from .check import detect_format

    settings.check()
    src, dst = Path(src), Path(dst).absolute()
    if not src.exists():
        raise DataError(f"source {src} does not exist", "pass a YOLO-OBB dataset root (data.yaml) or a DOTA directory")
    fmt = detect_format(src) if src_format == "auto" else src_format
    if fmt not in (OBB, "dota"):
        raise DataError(f"{src} is a {fmt} dataset; data tile reads yolo-obb or dota",
                        "convert it first (edgekit data convert ... --to yolo-obb)")
    dst = prepare_output(dst, WRITER, flag="DST", sources=[src], replace=overwrite)
    names, aliases, images = _yolo_sources(src) if fmt == OBB else _dota_sources(src, classes)
    splits = sorted({i.split for i in images} | set(aliases), key=lambda s: (s != "train", s != "val", s))
    if "train" not in splits:
        raise DataError(f"{src}: no train split (found {', '.join(splits) or 'none'})", "add a train split")
    result = TileResult(dst, names)
    with staged_output(dst, WRITER, flag="DST") as tmp:
        layout = DatasetLayout.create(tmp, names, [s for s in splits if s not in aliases])
        index: List[Dict[str, Any]] = []
        for image in images:
            index.extend(_tile_image(image, src, tmp, settings, result))
        split_dirs = {s: f"images/{aliases.get(s, s)}" for s in splits}
        if "val" not in split_dirs:
            split_dirs["val"] = split_dirs["train"]
            result.notes.append("only a train split: data.yaml's val points at the train tiles")
        DatasetLayout(dst, layout.names, split_dirs).write_data_yaml(directory=tmp)
        write_json_atomic(tmp / INDEX_NAME, {
            "version": INDEX_VERSION, "source": str(src.absolute()), "source_format": fmt, "size": settings.size,
            "overlap": settings.overlap, "rates": list(settings.rates), "min_visible": settings.min_visible,
            "names": {str(k): v for k, v in names.items()}, "tiles": index})
    return result


# -- reading it back ------------------------------------------------------------------------------
def read_tile_index(root: Union[str, Path]) -> Dict[str, Any]:
    """``ROOT/tiles.json`` of a tiled dataset."""
    path = Path(root) / INDEX_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read tile index {path}: {e}", "point at a dataset written by `edgekit data tile`") from None
    if data.get("version") != INDEX_VERSION:
        raise DataError(f"{path}: tile index version {data.get('version')!r} is not {INDEX_VERSION}",
                        "re-run edgekit data tile with this edgekit")
    return data


def to_source(entry: Dict[str, Any], points: np.ndarray) -> np.ndarray:
    """(..., 2) points in a tile's pixels -> the source image's pixels, by the tile's index entry."""
    return (np.asarray(points, np.float64) + (entry["x"], entry["y"])) / np.asarray(entry["scale"], np.float64)


__all__ = ["TileSettings", "TileResult", "SourceImage", "tile_dataset", "cut_objects", "read_tile_index", "to_source",
           "WRITER", "INDEX_NAME"]
