"""Ultralytics YOLO txt labels: oriented (``cls x1 y1 x2 y2 x3 y3 x4 y4``) and axis-aligned
(``cls cx cy w h``), coordinates normalised to [0, 1], one object a line; and the check of a
whole YOLO dataset root (data.yaml + images + labels).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import yaml

from edgekit.core.atomic import write_text_atomic
from edgekit.core.errors import DataError

from ..layout import (
    DATA_YAML,
    TRAIN_SPLITS,
    DatasetLayout,
    broken_links,
    label_dir_not_a_directory,
    train_problems,
)
from .base import ERROR, Issue, error, format_number, parse_floats, quad_defect, record_is_usable, warning
from .media import read_image_size

OBB = "yolo-obb"
AXIS_ALIGNED = "yolo"
_FIELDS = {OBB: 9, AXIS_ALIGNED: 5}
_EPS = 1e-6  # normalised coordinates written with %.6g may overshoot 0/1 by rounding


@dataclass(frozen=True)
class YoloObbLabel:
    """One oriented object: class id and four corners ``x1 y1 ... x4 y4`` normalised to [0, 1]."""

    class_id: int
    corners: Tuple[float, float, float, float, float, float, float, float]
    source: Optional[Path] = field(default=None, compare=False)
    line: int = field(default=0, compare=False)

    def to_line(self) -> str:
        return " ".join([str(self.class_id), *(format_number(v) for v in self.corners)])


@dataclass(frozen=True)
class YoloBoxLabel:
    """One axis-aligned object: class id and ``cx cy w h`` normalised to [0, 1]."""

    class_id: int
    box: Tuple[float, float, float, float]
    source: Optional[Path] = field(default=None, compare=False)
    line: int = field(default=0, compare=False)

    def to_line(self) -> str:
        return " ".join([str(self.class_id), *(format_number(v) for v in self.box)])


YoloLabel = Union[YoloObbLabel, YoloBoxLabel]


def _line_issue(path: Path, line: int, kind: str, fields: List[str], nc: Optional[int]
                ) -> Tuple[Optional[YoloLabel], List[Issue]]:
    expected = _FIELDS[kind]
    if len(fields) != expected:
        what = "cls x1 y1 x2 y2 x3 y3 x4 y4" if kind == OBB else "cls cx cy w h"
        return None, [error(path, line, "field-count", f"expected {expected} fields ({what}), got {len(fields)}")]
    values, reason = parse_floats(fields)
    if values is None:
        return None, [error(path, line, "non-numeric", str(reason))]
    cls, coords = values[0], values[1:]
    if cls != int(cls) or cls < 0:
        return None, [error(path, line, "unknown-class", f"class id {fields[0]!r} is not a non-negative integer")]
    issues = []
    if nc is not None and int(cls) >= nc:
        issues.append(error(path, line, "unknown-class", f"class id {int(cls)} is not in names (0..{nc - 1})"))
    if kind == OBB:
        bad = [f"{v:g}" for v in coords if not -_EPS <= v <= 1 + _EPS]
        if bad:
            issues.append(error(path, line, "out-of-range", f"coordinates outside [0, 1]: {', '.join(bad)}"))
        defect = quad_defect(coords)
        if defect:
            issues.append(error(path, line, "degenerate", f"degenerate box: {defect}"))
        label: YoloLabel = YoloObbLabel(int(cls), tuple(coords), path, line)  # type: ignore[arg-type]
    else:
        cx, cy, w, h = coords
        if w <= 0 or h <= 0:
            issues.append(error(path, line, "degenerate", f"degenerate box: width {w:g}, height {h:g}"))
        edges = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        if any(not -_EPS <= v <= 1 + _EPS for v in (*coords, *edges)):
            issues.append(error(path, line, "out-of-range", f"box {cx:g} {cy:g} {w:g} {h:g} leaves [0, 1]"))
        label = YoloBoxLabel(int(cls), (cx, cy, w, h), path, line)
    return label, issues


def parse_yolo_labels(text: str, path: Path, kind: str = OBB, nc: Optional[int] = None
                      ) -> Tuple[List[YoloLabel], List[Issue]]:
    """Labels of one file plus every problem found (``nc`` given: class ids must be below it)."""
    labels: List[YoloLabel] = []
    issues: List[Issue] = []
    seen: Dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields:
            continue
        label, found = _line_issue(Path(path), number, kind, fields, nc)
        issues.extend(found)
        key = " ".join(fields)
        if key in seen:
            issues.append(warning(path, number, "duplicate", f"same object as line {seen[key]}"))
        seen.setdefault(key, number)
        if label is not None and record_is_usable(found):
            labels.append(label)
    return labels, issues


def read_yolo_labels(path: Union[str, Path], kind: str = OBB, nc: Optional[int] = None) -> List[YoloLabel]:
    """Labels of one file; :class:`DataError` citing ``file:line`` on the first malformed line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read label file {path}: {e}") from None
    labels, issues = parse_yolo_labels(text, path, kind, nc)
    errors = [i for i in issues if i.severity == ERROR]
    if errors:
        raise DataError(errors[0].format(), "fix the line or run `edgekit data check` to list every problem")
    return labels


def read_yolo_obb(path: Union[str, Path], nc: Optional[int] = None) -> List[YoloObbLabel]:
    return read_yolo_labels(path, OBB, nc)  # type: ignore[return-value]


def write_yolo_labels(path: Union[str, Path], labels: Sequence[YoloLabel]) -> Path:
    """Write one label file atomically (an empty list writes an empty file: a background image)."""
    return write_text_atomic(path, "".join(label.to_line() + "\n" for label in labels))


write_yolo_obb = write_yolo_labels


# -- dataset check --------------------------------------------------------------------------------
_KIND_SAMPLE_FILES = 200  # label files per split read to tell OBB from axis-aligned


def detect_label_kind(layout: DatasetLayout) -> str:
    """``yolo`` when most label lines (of a sample) have 5 fields, else ``yolo-obb``.

    A majority vote, not the first line: one stray 5-field line in an OBB dataset must be one error
    for that line, not turn every other line into a field-count error.
    """
    votes = {OBB: 0, AXIS_ALIGNED: 0}
    for split in layout.splits:
        label_dir = layout.label_dir(split)
        for path in sorted(label_dir.glob("*.txt"))[:_KIND_SAMPLE_FILES] if label_dir.is_dir() else []:
            try:
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                continue
            for raw in lines:
                n = len(raw.split())
                if n in (_FIELDS[OBB], _FIELDS[AXIS_ALIGNED]):
                    votes[OBB if n == _FIELDS[OBB] else AXIS_ALIGNED] += 1
    return AXIS_ALIGNED if votes[AXIS_ALIGNED] > votes[OBB] else OBB


def _yaml_key_line(yaml_path: Path, key: str) -> int:
    text = yaml_path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"\s*{re.escape(key)}\s*:", line):
            return number
    return 0


def _data_yaml_issue(yaml_path: Path, exc: DataError) -> Issue:
    """The data.yaml problem as an issue on the line YAML's parser points at (0 when it has none)."""
    line = 0
    if yaml_path.is_file():
        try:
            yaml.safe_load(yaml_path.read_text(encoding="utf-8", errors="replace"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
    message = re.sub(rf"^{re.escape(str(yaml_path))}(:\d+)?:? ?", "", exc.format())
    return error(yaml_path, line, "bad-yaml", message)


def check_yolo_dataset(root: Path, kind: Optional[str] = None) -> Tuple[List[Issue], int]:
    """Every problem in a YOLO dataset (its root, or its yaml file), and how many files were looked at."""
    root = Path(root)
    try:
        layout = DatasetLayout.load(root)
    except DataError as e:
        yaml_path = root if root.suffix.lower() in (".yaml", ".yml") else root / DATA_YAML
        return [_data_yaml_issue(yaml_path, e)], 1
    kind = kind or detect_label_kind(layout)
    issues: List[Issue] = list(train_problems(layout))  # what training needs, the same rules as its preflight
    checked = 1
    for split in layout.splits:
        image_dir, label_dir = layout.image_dir(split), layout.label_dir(split)
        if not image_dir.is_dir():
            if split not in TRAIN_SPLITS:  # train/val: already reported by train_problems
                issues.append(error(layout.data_yaml, _yaml_key_line(layout.data_yaml, split), "missing-image",
                                    f"image directory {image_dir} of split '{split}' does not exist"))
            continue
        found, n = _check_split(layout, split, kind)
        issues.extend(found)
        checked += n
        if label_dir.exists() and not label_dir.is_dir():
            if split not in TRAIN_SPLITS:  # train/val: already reported by train_problems
                issues.append(label_dir_not_a_directory(label_dir, split))
        elif not label_dir.is_dir():
            issues.append(warning(label_dir, 0, "image-without-label", f"no label directory for split '{split}'"))
    return issues, checked


def _check_split(layout: DatasetLayout, split: str, kind: str) -> Tuple[List[Issue], int]:
    issues: List[Issue] = []
    images = layout.image_paths(split)
    label_dir = layout.label_dir(split)
    image_stems = {p.stem for p in images}
    for image in images:
        if read_image_size(image) is None:
            issues.append(error(image, 0, "unreadable-image", "image cannot be decoded"))
        label = layout.label_path(image)
        if not label.is_file() and label_dir.is_dir():
            issues.append(warning(image, 0, "image-without-label", f"no label file {label.name} (background image)"))
    labels = sorted(label_dir.glob("*.txt")) if label_dir.is_dir() else []
    label_stems = {p.stem for p in labels}
    broken = {link.stem: (link, reason) for link, reason in broken_links(layout.image_dir(split))}
    for link, reason in broken.values():
        if link.stem not in label_stems:
            issues.append(error(link, 0, "missing-image", f"{reason} symlink: the image is lost"))
    for label in labels:
        if label.stem not in image_stems:  # its objects would silently vanish from training
            link = broken.get(label.stem)
            what = (f"its image {link[0]} is a {link[1]} symlink" if link else
                    f"no image {label.stem}.* in {layout.image_dir(split)}")
            issues.append(error(label, 0, "label-without-image", what))
        try:
            text = label.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            issues.append(error(label, 0, "unreadable-label", f"cannot read label file: {e}"))
            continue
        issues.extend(parse_yolo_labels(text, label, kind, layout.nc or None)[1])  # nc 0: one no-classes error, not one per line
    return issues, len(images) + len(labels)


__all__ = ["YoloObbLabel", "YoloBoxLabel", "YoloLabel", "OBB", "AXIS_ALIGNED", "parse_yolo_labels",
           "read_yolo_labels", "read_yolo_obb", "write_yolo_labels", "write_yolo_obb", "detect_label_kind",
           "check_yolo_dataset"]
