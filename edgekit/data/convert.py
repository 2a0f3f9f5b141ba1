"""``edgekit data convert``: DOTA or COCO -> a YOLO dataset root (YOLO-OBB or axis-aligned YOLO).

The output is a :class:`~edgekit.data.layout.DatasetLayout` with ``data.yaml``, built under a
temporary name and renamed into place, so a failed conversion leaves nothing behind. Policy for
imperfect sources: corners outside the image are clipped, boxes that are degenerate (or vanish
when clipped) and COCO crowd regions are skipped and counted; anything else malformed stops the
conversion with a ``file:line`` message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from edgekit.core.errors import DataError
from edgekit.core.outdir import prepare_output, staged_output
from edgekit.core.vocab import CONVERT_SOURCES, CONVERT_TARGETS

from .formats.base import ERROR, GEOMETRY_CODES, Issue, quad_defect
from .formats.coco import CocoDataset, CocoImage, build_coco, find_coco_files, find_image_dir, parse_coco
from .formats.dota import DotaLabelFile, find_dota_splits, images_by_stem, parse_dota
from .formats.media import describe_size_mismatch, image_size, read_image_size
from .formats.yolo_obb import OBB, YoloBoxLabel, YoloLabel, YoloObbLabel, write_yolo_labels
from .layout import DatasetLayout

SOURCE_FORMATS = CONVERT_SOURCES  # edgekit.core.vocab
_DEGENERATE = "degenerate boxes (after clipping to the image)"
TARGET_FORMATS = CONVERT_TARGETS  # edgekit.core.vocab: (OBB, AXIS_ALIGNED)
WRITER = "data convert"  # the output marker's writer (edgekit.core.outdir)


@dataclass
class ConvertResult:
    """What a conversion wrote: the dataset root, class names, images and objects per split, skips."""

    root: Path
    format: str
    names: Dict[int, str]
    images: Dict[str, int] = field(default_factory=dict)
    objects: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, int] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def summary(self) -> str:
        splits = ", ".join(f"{s}: {self.images[s]} images / {self.objects.get(s, 0)} objects" for s in self.images)
        skipped = "; skipped " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items())) if self.skipped else ""
        return f"wrote {self.format} dataset {self.root} ({len(self.names)} classes; {splits}){skipped}"


def _clip01(value: float) -> float:
    return min(1.0, max(0.0, value))


def corners_to_label(class_id: int, corners: Sequence[float], size: Tuple[int, int], kind: str
                     ) -> Optional[YoloLabel]:
    """Pixel corners -> a normalised, clipped YOLO label; None when nothing of the box is left."""
    w, h = size
    norm = [_clip01(v / (w if i % 2 == 0 else h)) for i, v in enumerate(corners)]
    if kind == OBB:
        return None if quad_defect(norm) else YoloObbLabel(class_id, tuple(norm))  # type: ignore[arg-type]
    xs, ys = norm[0::2], norm[1::2]
    bw, bh = max(xs) - min(xs), max(ys) - min(ys)
    if bw <= 0 or bh <= 0:
        return None
    return YoloBoxLabel(class_id, ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, bw, bh))


def _split_keys(names: Sequence[str]) -> Dict[str, str]:
    """Source split name -> data.yaml key (``train2017`` -> ``train``), keeping names that would clash."""
    keys: Dict[str, str] = {}
    for name in names:
        key = next((k for k in ("train", "val", "test") if name.lower().startswith(k)), name)
        keys[name] = key if key not in keys.values() else name
    return keys


def _stop_on_fatal(issues: Sequence[Issue]) -> None:
    fatal = [i for i in issues if i.severity == ERROR and i.code not in GEOMETRY_CODES]
    if fatal:
        raise DataError(fatal[0].format(), "fix it (`edgekit data check SRC` lists every problem) and convert again")


def _class_ids(found: Sequence[str], classes: Optional[Sequence[str]]) -> Dict[str, int]:
    names = list(classes) if classes else sorted(set(found))
    if len(set(names)) != len(names):
        raise DataError(f"--classes repeats a name: {', '.join(names)}", "list each class once")
    if classes and found and not set(names) & set(found):  # every object would be skipped: background only
        raise DataError(f"--classes {','.join(names)} names none of the source's classes "
                        f"({', '.join(sorted(set(found)))})", "pass --classes names that the labels use")
    return {name: i for i, name in enumerate(names)}


# -- DOTA -----------------------------------------------------------------------------------------
def _read_dota_split(label_dir: Path, result: ConvertResult) -> Dict[str, DotaLabelFile]:
    labels = {}
    for path in sorted(label_dir.glob("*.txt")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read DOTA label file {path}: {e}", "fix or remove it, then convert again") from None
        label, issues = parse_dota(text, path)
        _stop_on_fatal(issues)
        labels[path.stem] = label
    return labels


def _convert_dota(src: Path, tmp: Path, kind: str, classes: Optional[Sequence[str]], link: bool,
                  result: ConvertResult) -> DatasetLayout:
    splits = find_dota_splits(src)
    labels = {s: _read_dota_split(label_dir, result) for s, (_, label_dir) in splits.items()}
    found = [o.class_name for per_split in labels.values() for f in per_split.values() for o in f.objects]
    class_ids = _class_ids(found, classes)
    if not class_ids:
        raise DataError(f"{src}: no objects in any label file, so the dataset would have 0 classes",
                        "label the images, or name the classes with --classes")
    _require_train_split(src, {s: s for s in splits})
    keys = _split_keys(list(splits))
    layout = DatasetLayout.create(tmp, {i: n for n, i in class_ids.items()}, list(splits))
    layout.splits = {keys[s]: d for s, d in layout.splits.items()}
    for split, (image_dir, label_dir) in splits.items():
        images = images_by_stem(image_dir)
        orphans = sorted(set(labels[split]) - set(images))
        if orphans:  # its objects would be lost without a word
            raise DataError(f"{label_dir / (orphans[0] + '.txt')}: no image {orphans[0]}.* in {image_dir} "
                            f"({len(orphans)} label files without an image)",
                            "add the images (a symlink must point at a file) or remove those label files")
        for stem, image in images.items():
            size = image_size(image)
            out: List[YoloLabel] = []
            for obj in labels[split].get(stem, DotaLabelFile()).objects:
                if obj.class_name not in class_ids:
                    result.skip(f"objects of other classes ({obj.class_name})")
                    continue
                label = corners_to_label(class_ids[obj.class_name], obj.corners, size, kind)
                if label is None:
                    result.skip(_DEGENERATE)
                else:
                    out.append(label)
            _write_image_and_labels(layout, keys[split], image, out, link, result)
    return layout


# -- COCO -----------------------------------------------------------------------------------------
def _read_coco(path: Path, result: ConvertResult) -> CocoDataset:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read COCO file {path}: {e}", "run `edgekit data check` on it") from None
    dataset, issues = build_coco(data, path)
    if any(i.severity == ERROR and i.code not in GEOMETRY_CODES for i in issues):
        # the fast parser has no line numbers: re-parse to cite the line
        _stop_on_fatal(parse_coco(path.read_text(encoding="utf-8"), path)[1])
    return dataset


def _coco_labels(dataset: CocoDataset, class_ids: Dict[str, int], kind: str, result: ConvertResult,
                 sizes: Dict[int, Tuple[int, int]]) -> Dict[int, List[YoloLabel]]:
    """image id -> its YOLO labels (crowd regions and other classes skipped and counted), normalised by
    ``sizes`` (image id -> the as-loaded width, height)."""
    names = {c.id: c.name for c in dataset.categories}
    per_image: Dict[int, List[YoloLabel]] = {i.id: [] for i in dataset.images}
    for ann in dataset.annotations:
        if ann.iscrowd:
            result.skip("crowd regions")
        elif names.get(ann.category_id) not in class_ids:
            result.skip(f"objects of other classes ({names.get(ann.category_id)})")
        else:
            x, y, w, h = ann.bbox
            label = corners_to_label(class_ids[names[ann.category_id]], (x, y, x + w, y, x + w, y + h, x, y + h),
                                     sizes[ann.image_id], kind)
            if label is None:
                result.skip(_DEGENERATE)
            else:
                per_image[ann.image_id].append(label)
    return per_image


def _convert_coco(src: Path, tmp: Path, kind: str, classes: Optional[Sequence[str]], link: bool,
                  image_dir: Optional[Path], result: ConvertResult) -> DatasetLayout:
    files = find_coco_files(src)
    datasets = {split: _read_coco(path, result) for split, path in files.items()}
    first = next(iter(datasets.values()))
    by_id = [c.name for c in sorted(first.categories, key=lambda c: c.id)]
    if not by_id:
        raise DataError(f"{first.source}: 'categories' is empty, so the dataset would have 0 classes",
                        "add the categories ({\"id\": 1, \"name\": \"plane\"}, ...) the annotations use")
    _require_train_split(src, {s: files[s].name for s in datasets})
    if classes:
        missing = [c for c in classes if c not in by_id]
        if missing:
            raise DataError(f"--classes {', '.join(missing)} not among the categories of {first.source}",
                            f"choose from: {', '.join(by_id)}")
    class_ids = {n: i for i, n in enumerate(classes or by_id)}
    keys = _split_keys(list(datasets))
    layout = DatasetLayout.create(tmp, {i: n for n, i in class_ids.items()}, list(datasets))
    layout.splits = {keys[s]: d for s, d in layout.splits.items()}
    for split, dataset in datasets.items():
        root = find_image_dir(files[split], dataset, image_dir)
        paths = {image.id: root / image.file_name for image in dataset.images}
        sizes = {image.id: _coco_image_size(files[split], image, paths[image.id]) for image in dataset.images}
        per_image = _coco_labels(dataset, class_ids, kind, result, sizes)
        for image in dataset.images:
            _write_image_and_labels(layout, keys[split], paths[image.id], per_image[image.id], link, result)
    return layout


def _coco_image_size(json_path: Path, image: CocoImage, path: Path) -> Tuple[int, int]:
    """The as-loaded size of a COCO image; DataError when it is missing, undecodable or disagrees with the json.

    The json's width/height are not trusted on their own: bboxes normalised by a wrong size land in
    the wrong place (an EXIF-rotated photo is the common case), so a mismatch stops the conversion.
    """
    where = f"{json_path}:{image.line or '?'}: image {image.id}"
    if not path.is_file():
        raise DataError(f"{where}: {path} does not exist", "pass --images DIR where the file names resolve")
    size = read_image_size(path)
    if size is None:
        raise DataError(f"{where}: {path} cannot be decoded", "replace the file or remove it from the json")
    if size != (image.width, image.height):
        raise DataError(f"{where}: json says {describe_size_mismatch(path, (image.width, image.height), size)}",
                        "fix the image's width/height in the json (or the image) so they agree")
    return size


def _require_train_split(src: Path, sources: Dict[str, str]) -> None:
    """Training needs a ``train`` split: refuse sources whose names give none (e.g. a lone ``ann.json``)."""
    keys = _split_keys(list(sources))
    if "train" not in keys.values():
        found = ", ".join(f"{v} -> '{keys[k]}'" for k, v in sources.items())
        raise DataError(f"{src}: no train split ({found}); a split's name must start with train, val or test",
                        "rename it, e.g. instances_train.json (and instances_val.json), or annotations/train.json")


def _write_image_and_labels(layout: DatasetLayout, split: str, image: Path, labels: Sequence[YoloLabel], link: bool,
                            result: ConvertResult) -> None:
    target = layout.add_image(split, image, link=link)
    write_yolo_labels(layout.label_path(target), labels)
    result.images[split] = result.images.get(split, 0) + 1
    result.objects[split] = result.objects.get(split, 0) + len(labels)


def convert_dataset(src: Union[str, Path], dst: Union[str, Path], src_format: str, dst_format: str,
                    classes: Optional[Sequence[str]] = None, *, image_dir: Optional[Path] = None,
                    overwrite: bool = False, link_images: bool = False) -> ConvertResult:
    """Convert a DOTA directory or COCO json(s) at ``src`` into a YOLO dataset root at ``dst``.

    ``classes`` picks and orders the classes written (others are skipped); by default DOTA uses
    every class name found (sorted) and COCO every category (by id). Image sizes are the as-loaded
    ones (EXIF orientation applied, as OpenCV and Ultralytics load them); a COCO json whose
    width/height disagree with its image is refused. ``link_images`` symlinks instead of copying.
    """
    src, dst = Path(src), Path(dst).absolute()
    if src_format not in SOURCE_FORMATS or dst_format not in TARGET_FORMATS:
        raise DataError(f"cannot convert {src_format} -> {dst_format}",
                        f"--from one of {', '.join(SOURCE_FORMATS)}, --to one of {', '.join(TARGET_FORMATS)}")
    if not src.exists():
        raise DataError(f"source {src} does not exist", "pass the DOTA directory or COCO json/directory")
    # --overwrite replaces only an earlier `data convert` output, never SRC, a directory holding it, or
    # anything edgekit did not write (edgekit.core.outdir); checked before any work.
    dst = prepare_output(dst, WRITER, flag="DST", sources=[src, image_dir], replace=overwrite)
    result = ConvertResult(dst, dst_format, {})
    with staged_output(dst, WRITER, flag="DST") as tmp:
        if src_format == "dota":
            layout = _convert_dota(src, tmp, dst_format, classes, link_images, result)
        else:
            layout = _convert_coco(src, tmp, dst_format, classes, link_images, image_dir, result)
        if "val" not in layout.splits and "train" in layout.splits:
            layout.splits["val"] = layout.splits["train"]
            result.notes.append("only a train split: data.yaml's val points at the train images")
        final = DatasetLayout(dst, layout.names, layout.splits)
        final.write_data_yaml(directory=tmp)
        result.names = final.names
    return result


__all__ = ["ConvertResult", "convert_dataset", "corners_to_label", "SOURCE_FORMATS", "TARGET_FORMATS"]
