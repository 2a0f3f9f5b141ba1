"""DOTA txt labels: ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` in absolute pixels, one object a line,
after optional ``imagesource:`` / ``gsd:`` header lines; and the check of a DOTA directory
(``images/`` + ``labelTxt/``, optionally one such pair per split directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from edgekit.core.atomic import write_text_atomic
from edgekit.core.errors import DataError

from ..layout import broken_links, list_images
from .base import ERROR, Issue, error, parse_floats, quad_defect, record_is_usable, warning
from .media import read_image_size

# DOTA v2.0 classes (a superset of v1.0 and v1.5), the default vocabulary when none is given.
DOTA_CLASSES = (
    "plane", "ship", "storage-tank", "baseball-diamond", "tennis-court", "basketball-court",
    "ground-track-field", "harbor", "bridge", "large-vehicle", "small-vehicle", "helicopter",
    "roundabout", "soccer-ball-field", "swimming-pool", "container-crane", "airport", "helipad",
)
LABEL_DIR = "labelTxt"
_HEADERS = ("imagesource:", "gsd:")


@dataclass(frozen=True)
class DotaObject:
    """One object: four corners in pixels, class name, difficult flag (0/1)."""

    corners: Tuple[float, float, float, float, float, float, float, float]
    class_name: str
    difficult: int = 0
    source: Optional[Path] = field(default=None, compare=False)
    line: int = field(default=0, compare=False)

    def to_line(self) -> str:
        return " ".join([*(repr(float(v)) for v in self.corners), self.class_name, str(self.difficult)])


@dataclass(frozen=True)
class DotaLabelFile:
    """One image's labels and its optional header (``imagesource``, ``gsd`` in metres per pixel)."""

    objects: Tuple[DotaObject, ...] = ()
    imagesource: Optional[str] = None
    gsd: Optional[float] = None
    source: Optional[Path] = field(default=None, compare=False)


def _parse_header(path: Path, number: int, text: str, out: Dict[str, object]) -> List[Issue]:
    key, value = text.split(":", 1)
    value = value.strip()
    if key == "imagesource":
        out["imagesource"] = value
        return []
    if value.lower() in ("null", "none", ""):
        return []
    try:
        out["gsd"] = float(value)
    except ValueError:
        return [error(path, number, "non-numeric", f"gsd is not a number: {value!r}")]
    return []


def _parse_object(path: Path, number: int, fields: List[str], image_size: Optional[Tuple[int, int]],
                  classes: Optional[Sequence[str]]) -> Tuple[Optional[DotaObject], List[Issue]]:
    if len(fields) not in (9, 10):
        return None, [error(path, number, "field-count",
                            f"expected 10 fields (x1 y1 ... x4 y4 class difficult), got {len(fields)}")]
    coords, reason = parse_floats(fields[:8])
    if coords is None:
        return None, [error(path, number, "non-numeric", str(reason))]
    difficult_text = fields[9] if len(fields) == 10 else "0"
    if difficult_text not in ("0", "1"):
        return None, [error(path, number, "non-numeric", f"difficult must be 0 or 1, got {difficult_text!r}")]
    issues = []
    if classes is not None and fields[8] not in classes:
        issues.append(error(path, number, "unknown-class", f"unknown class {fields[8]!r}"))
    if image_size is not None:
        w, h = image_size
        bad = [f"{v:g}" for i, v in enumerate(coords) if not 0 <= v <= (w if i % 2 == 0 else h)]
        if bad:
            issues.append(error(path, number, "out-of-range", f"coordinates outside the {w}x{h} image: {', '.join(bad)}"))
    defect = quad_defect(coords)
    if defect:
        issues.append(error(path, number, "degenerate", f"degenerate box: {defect}"))
    return DotaObject(tuple(coords), fields[8], int(difficult_text), path, number), issues  # type: ignore[arg-type]


def parse_dota(text: str, path: Path, image_size: Optional[Tuple[int, int]] = None,
               classes: Optional[Sequence[str]] = None) -> Tuple[DotaLabelFile, List[Issue]]:
    """One label file plus every problem found (``image_size`` given: corners must lie inside it)."""
    path = Path(path)
    header: Dict[str, object] = {}
    objects: List[DotaObject] = []
    issues: List[Issue] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.lower().startswith(_HEADERS):
            issues.extend(_parse_header(path, number, stripped, header))
            continue
        obj, found = _parse_object(path, number, stripped.split(), image_size, classes)
        issues.extend(found)
        if obj is not None and record_is_usable(found):
            objects.append(obj)
    label = DotaLabelFile(tuple(objects), header.get("imagesource"), header.get("gsd"), path)  # type: ignore[arg-type]
    return label, issues


def read_dota(path: Union[str, Path], classes: Optional[Sequence[str]] = None) -> DotaLabelFile:
    """One label file; :class:`DataError` citing ``file:line`` on the first malformed line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read DOTA label file {path}: {e}") from None
    label, issues = parse_dota(text, path, classes=classes)
    errors = [i for i in issues if i.severity == ERROR]
    if errors:
        raise DataError(errors[0].format(), "fix the line or run `edgekit data check` to list every problem")
    return label


def write_dota(path: Union[str, Path], label: DotaLabelFile) -> Path:
    """Write one label file atomically, header lines first when set."""
    lines = []
    if label.imagesource is not None:
        lines.append(f"imagesource:{label.imagesource}")
    if label.gsd is not None:
        lines.append(f"gsd:{label.gsd!r}")
    lines.extend(obj.to_line() for obj in label.objects)
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


# -- directory layout and check -----------------------------------------------------------------
def find_dota_splits(root: Path) -> Dict[str, Tuple[Path, Path]]:
    """split -> (images dir, labelTxt dir): ``ROOT/images`` + ``ROOT/labelTxt`` (split ``train``), or
    ``ROOT/<split>/images`` + ``ROOT/<split>/labelTxt`` for each split directory (DOTA's release layout)."""
    root = Path(root)
    if (root / LABEL_DIR).is_dir():
        return {"train": (root / "images", root / LABEL_DIR)}
    splits = {d.name: (d / "images", d / LABEL_DIR) for d in sorted(root.iterdir())
              if d.is_dir() and (d / LABEL_DIR).is_dir()} if root.is_dir() else {}
    if not splits:
        raise DataError(f"{root} holds no DOTA labels",
                        f"expected {root}/{LABEL_DIR}/*.txt with {root}/images/, or <split>/{LABEL_DIR}/ per split")
    return splits


def images_by_stem(image_dir: Path) -> Dict[str, Path]:
    return {p.stem: p for p in list_images(image_dir)} if image_dir.is_dir() else {}


def check_dota_dataset(root: Path, classes: Optional[Sequence[str]] = None) -> Tuple[List[Issue], int]:
    """Every problem in a DOTA directory (classes default to :data:`DOTA_CLASSES`), and files looked at."""
    classes = list(classes) if classes else list(DOTA_CLASSES)
    issues: List[Issue] = []
    checked = 0
    for image_dir, label_dir in find_dota_splits(Path(root)).values():
        images = images_by_stem(image_dir)
        labels = sorted(label_dir.glob("*.txt"))
        checked += len(images) + len(labels)
        broken = {link.stem: (link, reason) for link, reason in broken_links(image_dir)}
        for stem, (link, reason) in broken.items():
            if not (label_dir / f"{stem}.txt").is_file():
                issues.append(error(link, 0, "missing-image", f"{reason} symlink: the image is lost"))
        for stem, image in images.items():
            if not (label_dir / f"{stem}.txt").is_file():
                issues.append(warning(image, 0, "image-without-label", f"no label file {stem}.txt in {label_dir}"))
        for label in labels:
            issues.extend(_check_label_file(label, images.get(label.stem), classes, broken.get(label.stem)))
    return issues, checked


def _check_label_file(label: Path, image: Optional[Path], classes: Sequence[str],
                      link: Optional[Tuple[Path, str]] = None) -> List[Issue]:
    issues: List[Issue] = []
    size = None
    if image is None:  # its objects would be lost: an error, not a warning
        what = f"its image {link[0]} is a {link[1]} symlink" if link else f"no image {label.stem}.* beside the labels"
        issues.append(error(label, 0, "label-without-image", what))
    else:
        size = read_image_size(image)
        if size is None:
            issues.append(error(image, 0, "unreadable-image", "image cannot be decoded"))
    try:
        text = label.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return issues + [error(label, 0, "unreadable-label", f"cannot read label file: {e}")]
    return issues + parse_dota(text, label, size, classes)[1]


__all__ = ["DotaObject", "DotaLabelFile", "DOTA_CLASSES", "parse_dota", "read_dota", "write_dota",
           "find_dota_splits", "images_by_stem", "check_dota_dataset"]
