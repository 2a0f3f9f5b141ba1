"""COCO detection json: ``images`` (id, file_name, width, height), ``annotations`` (id, image_id,
category_id, bbox ``[x, y, w, h]`` in pixels, iscrowd, area) and ``categories`` (id, name); where
its images live; and the check of a COCO file with its images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import DataError

from .base import (
    ERROR,
    Issue,
    error,
    is_number,
    json_error_issue,
    line_of,
    loads_with_lines,
    record_is_usable,
)
from .media import describe_size_mismatch, read_image_size


@dataclass(frozen=True)
class CocoImage:
    id: int
    file_name: str
    width: int
    height: int
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class CocoAnnotation:
    id: int
    image_id: int
    category_id: int
    bbox: Tuple[float, float, float, float]  # x, y, w, h in pixels
    iscrowd: int = 0
    area: Optional[float] = None
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class CocoCategory:
    id: int
    name: str
    supercategory: str = ""
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class CocoDataset:
    images: Tuple[CocoImage, ...] = ()
    annotations: Tuple[CocoAnnotation, ...] = ()
    categories: Tuple[CocoCategory, ...] = ()
    source: Optional[Path] = field(default=None, compare=False)

    def to_json(self) -> Dict[str, Any]:
        return {
            "images": [{"id": i.id, "file_name": i.file_name, "width": i.width, "height": i.height}
                       for i in self.images],
            "annotations": [{"id": a.id, "image_id": a.image_id, "category_id": a.category_id,
                             "bbox": list(a.bbox), "area": a.area if a.area is not None else a.bbox[2] * a.bbox[3],
                             "iscrowd": a.iscrowd} for a in self.annotations],
            "categories": [{"id": c.id, "name": c.name, "supercategory": c.supercategory} for c in self.categories],
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list_section(data: Dict[str, Any], key: str, path: Path, issues: List[Issue]) -> List[Any]:
    section = data.get(key)
    if not isinstance(section, list):
        issues.append(error(path, line_of(data, 1), "schema", f"top-level '{key}' must be a list"))
        return []
    return section


def _build_images(raw: List[Any], path: Path, issues: List[Issue]) -> Dict[int, CocoImage]:
    images: Dict[int, CocoImage] = {}
    for entry in raw:
        line = line_of(entry)
        if not isinstance(entry, dict) or not _is_int(entry.get("id")) or not isinstance(entry.get("file_name"), str):
            issues.append(error(path, line, "schema", "image needs an integer 'id' and a string 'file_name'"))
            continue
        w, h = entry.get("width"), entry.get("height")
        if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            issues.append(error(path, line, "non-numeric", f"image {entry['id']}: width/height must be positive integers"))
            continue
        if entry["id"] in images:
            issues.append(error(path, line, "duplicate", f"image id {entry['id']} repeats line {images[entry['id']].line}"))
            continue
        images[entry["id"]] = CocoImage(entry["id"], entry["file_name"], w, h, line)
    return images


def _build_categories(raw: List[Any], path: Path, issues: List[Issue]) -> Dict[int, CocoCategory]:
    categories: Dict[int, CocoCategory] = {}
    for entry in raw:
        line = line_of(entry)
        if not isinstance(entry, dict) or not _is_int(entry.get("id")) or not isinstance(entry.get("name"), str):
            issues.append(error(path, line, "schema", "category needs an integer 'id' and a string 'name'"))
        elif entry["id"] in categories:
            issues.append(error(path, line, "duplicate", f"category id {entry['id']} repeats line {categories[entry['id']].line}"))
        else:
            categories[entry["id"]] = CocoCategory(entry["id"], entry["name"], str(entry.get("supercategory", "")), line)
    return categories


def _build_annotation(entry: Any, path: Path, images: Dict[int, CocoImage], categories: Dict[int, CocoCategory]
                      ) -> Tuple[Optional[CocoAnnotation], List[Issue]]:
    line = line_of(entry)
    if not isinstance(entry, dict) or not all(_is_int(entry.get(k)) for k in ("id", "image_id", "category_id")):
        return None, [error(path, line, "schema", "annotation needs integer 'id', 'image_id' and 'category_id'")]
    bbox = entry.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4:
        got = len(bbox) if isinstance(bbox, list) else type(bbox).__name__
        return None, [error(path, line, "field-count", f"annotation {entry['id']}: bbox needs 4 numbers [x, y, w, h], got {got}")]
    if not all(is_number(v) for v in bbox):
        return None, [error(path, line, "non-numeric", f"annotation {entry['id']}: bbox has a non-number: {bbox}")]
    issues = []
    if entry["category_id"] not in categories:
        issues.append(error(path, line, "unknown-class", f"annotation {entry['id']}: unknown category_id {entry['category_id']}"))
    image = images.get(entry["image_id"])
    if image is None:
        issues.append(error(path, line, "unknown-image", f"annotation {entry['id']}: unknown image_id {entry['image_id']}"))
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        issues.append(error(path, line, "degenerate", f"annotation {entry['id']}: degenerate bbox (w {w:g}, h {h:g})"))
    elif image is not None and (x < 0 or y < 0 or x + w > image.width or y + h > image.height):
        issues.append(error(path, line, "out-of-range",
                            f"annotation {entry['id']}: bbox {bbox} leaves the {image.width}x{image.height} image"))
    area = entry.get("area")
    crowd = entry.get("iscrowd", 0)
    return CocoAnnotation(entry["id"], entry["image_id"], entry["category_id"], tuple(bbox),  # type: ignore[arg-type]
                          int(crowd) if is_number(crowd) else 0, area if is_number(area) else None, line), issues


def build_coco(data: Any, path: Path) -> Tuple[CocoDataset, List[Issue]]:
    """Records from parsed json (plain, or :class:`LineDict` for line numbers) plus every problem found."""
    path = Path(path)
    issues: List[Issue] = []
    if not isinstance(data, dict):
        return CocoDataset(source=path), [error(path, 1, "schema", "top level must be an object with images/annotations/categories")]
    images = _build_images(_list_section(data, "images", path, issues), path, issues)
    categories = _build_categories(_list_section(data, "categories", path, issues), path, issues)
    annotations = []
    for entry in _list_section(data, "annotations", path, issues):
        annotation, found = _build_annotation(entry, path, images, categories)
        issues.extend(found)
        if annotation is not None and record_is_usable(found):
            annotations.append(annotation)
    dataset = CocoDataset(tuple(images.values()), tuple(annotations), tuple(categories.values()), path)
    return dataset, issues


def parse_coco(text: str, path: Path) -> Tuple[CocoDataset, List[Issue]]:
    """Records plus every problem, each citing its json line."""
    try:
        data = loads_with_lines(text)
    except json.JSONDecodeError as e:
        return CocoDataset(source=Path(path)), [json_error_issue(Path(path), e)]
    return build_coco(data, path)


def read_coco(path: Union[str, Path], with_lines: bool = False) -> CocoDataset:
    """A COCO file; :class:`DataError` citing ``file:line`` on bad JSON or the first invalid entry.

    Records carry their json line only ``with_lines`` (the line-tracking parser is ~7x slower than
    ``json.loads``: 0.25 s/MB here, too slow to be the default for COCO-sized files).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = loads_with_lines(text) if with_lines else json.loads(text)
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read COCO file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(json_error_issue(path, e).format(), "fix the JSON syntax") from None
    dataset, issues = build_coco(data, path)
    errors = [i for i in issues if i.severity == ERROR]
    if errors:
        if not with_lines:  # the fast parser has no line numbers: re-parse to cite the line
            errors = [i for i in parse_coco(text, path)[1] if i.severity == ERROR]
        raise DataError(errors[0].format(), "run `edgekit data check` to list every problem")
    return dataset


def write_coco(path: Union[str, Path], dataset: CocoDataset) -> Path:
    return write_json_atomic(path, dataset.to_json())


# -- files, image directories and check ---------------------------------------------------------
def find_coco_files(path: Path) -> Dict[str, Path]:
    """split -> json: ``path`` itself, or ``path/annotations/*.json`` (``instances_val2017`` -> ``val2017``)."""
    path = Path(path)
    if path.is_file():
        return {split_name(path): path}
    files = sorted((path / "annotations").glob("*.json")) or sorted(path.glob("*.json"))
    if not files:
        raise DataError(f"{path} holds no COCO json", f"expected {path}/annotations/*.json or a .json file")
    return {split_name(f): f for f in files}


def split_name(json_path: Path) -> str:
    stem = json_path.stem
    return stem[len("instances_"):] if stem.startswith("instances_") else stem


def find_image_dir(json_path: Path, dataset: CocoDataset, image_dir: Optional[Path] = None) -> Path:
    """Where the json's ``file_name``s resolve: ``image_dir`` if given, else the candidate beside the
    json (or its parent when it sits in ``annotations/``) where most of the first 20 images exist."""
    if image_dir is not None:
        return Path(image_dir)
    here = Path(json_path).parent
    candidates = [here, here / "images"]
    if here.name == "annotations":
        split = split_name(Path(json_path))
        top = here.parent
        candidates = [top / "images" / split, top / split, top / "images", top] + candidates
    sample = [i.file_name for i in dataset.images[:20]]
    return max(candidates, key=lambda d: sum((d / name).is_file() for name in sample))


def check_coco_file(json_path: Path, image_dir: Optional[Path] = None) -> Tuple[List[Issue], int]:
    """Every problem in one COCO file and its images, and how many files were looked at."""
    json_path = Path(json_path)
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [error(json_path, 0, "unreadable-label", f"cannot read: {e}")], 1
    dataset, issues = parse_coco(text, json_path)
    if not dataset.categories and not issues:  # convert refuses it too: a dataset of 0 classes
        issues.append(error(json_path, 1, "no-classes", "'categories' is empty: a dataset needs at least one class"))
    root = find_image_dir(json_path, dataset, image_dir)
    for image in dataset.images:
        path = root / image.file_name
        if not path.is_file():
            issues.append(error(json_path, image.line, "missing-image", f"image {image.id}: {path} does not exist"))
            continue
        size = read_image_size(path)
        if size is None:
            issues.append(error(json_path, image.line, "unreadable-image", f"image {image.id}: {path} cannot be decoded"))
        elif size != (image.width, image.height):
            issues.append(error(json_path, image.line, "size-mismatch",
                                f"image {image.id}: json says "
                                f"{describe_size_mismatch(path, (image.width, image.height), size)}"))
    return issues, 1 + len(dataset.images)


__all__ = ["CocoImage", "CocoAnnotation", "CocoCategory", "CocoDataset", "build_coco", "parse_coco", "read_coco",
           "write_coco", "find_coco_files", "split_name", "find_image_dir", "check_coco_file"]
