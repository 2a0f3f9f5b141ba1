"""``edgekit data check``: find every problem in a dataset, in any supported format.

:func:`check_dataset` tells the format from the path (or takes it), runs that format's check and
returns a :class:`CheckReport`: one :class:`~edgekit.data.formats.base.Issue` per problem, each naming
file and line (0 = the file as a whole), plus how many files were looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from edgekit.core.errors import DataError
from edgekit.core.vocab import DATA_FORMATS

from .formats.base import ERROR, WARNING, Issue
from .formats.coco import check_coco_file, find_coco_files
from .formats.dota import LABEL_DIR, check_dota_dataset
from .formats.refdet import check_refdet_root, find_refdet_roots, is_refdet_root
from .formats.yolo_obb import AXIS_ALIGNED, OBB, check_yolo_dataset, detect_label_kind
from .layout import DATA_YAML, DatasetLayout, train_problems

FORMATS = DATA_FORMATS  # one vocabulary (edgekit.core.vocab); the CLI offers the same


@dataclass
class CheckReport:
    """The result of a check: the format checked, every issue, files looked at."""

    path: Path
    format: str
    issues: List[Issue] = field(default_factory=list)
    files_checked: int = 0

    @property
    def errors(self) -> List[Issue]:
        return [i for i in self.issues if i.severity == ERROR]

    @property
    def warnings(self) -> List[Issue]:
        return [i for i in self.issues if i.severity == WARNING]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        return (f"{self.path} ({self.format}): checked {self.files_checked} files, "
                f"{len(self.errors)} errors, {len(self.warnings)} warnings")

    def to_dict(self) -> Dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "files_checked": self.files_checked,
                "errors": len(self.errors), "warnings": len(self.warnings), "ok": self.ok,
                "issues": [i.to_dict() for i in self.issues]}


def detect_format(path: Union[str, Path]) -> str:
    """The format of a dataset path, from its layout (and for a lone .json, its first character)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist", "pass a dataset directory or a COCO .json file")
    if path.is_file():
        if path.suffix.lower() in (".yaml", ".yml"):  # data.yaml, or a yaml of another name
            return _yolo_kind(path)
        if path.suffix.lower() == ".json":
            head = path.read_text(encoding="utf-8", errors="replace").lstrip()[:1]
            return "refdet" if head == "[" else "coco"
        raise DataError(f"cannot tell the format of {path}", "pass a dataset directory, or --format")
    if (path / DATA_YAML).is_file():
        return _yolo_kind(path)
    if is_refdet_root(path) or any(is_refdet_root(d) for d in path.iterdir() if d.is_dir()):
        return "refdet"
    if (path / LABEL_DIR).is_dir() or any((d / LABEL_DIR).is_dir() for d in path.iterdir() if d.is_dir()):
        return "dota"
    if any((path / "annotations").glob("*.json")) or any(path.glob("*.json")):
        return "coco"
    raise DataError(f"cannot tell the format of {path}",
                    "expected data.yaml (yolo-obb), labelTxt/ (dota), annotations/*.json (coco) or "
                    "samples/ + annotations/annotations.json (refdet); or pass --format")


def _yolo_kind(root: Path) -> str:
    """``yolo`` or ``yolo-obb`` from the label lines; a data.yaml that does not load is checked as yolo-obb."""
    try:
        return detect_label_kind(DatasetLayout.load(root))
    except DataError:
        return OBB


def _check_refdet(path: Path) -> Tuple[List[Issue], int]:
    if path.is_file():  # annotations.json itself: its root is two levels up
        path = path.parent.parent
    issues: List[Issue] = []
    checked = 0
    for root in find_refdet_roots(path):
        found, n = check_refdet_root(root)
        issues.extend(found)
        checked += n
    return issues, checked


def _check_coco(path: Path, image_dir: Optional[Path]) -> Tuple[List[Issue], int]:
    issues: List[Issue] = []
    checked = 0
    for json_path in find_coco_files(path).values():
        found, n = check_coco_file(json_path, image_dir)
        issues.extend(found)
        checked += n
    return issues, checked


def check_dataset(path: Union[str, Path], fmt: str = "auto", classes: Optional[Sequence[str]] = None,
                  image_dir: Optional[Path] = None) -> CheckReport:
    """Check a dataset and report every problem found.

    ``classes`` is the class vocabulary for DOTA (default: the DOTA v2.0 classes); YOLO takes it from
    data.yaml and COCO from its categories. ``image_dir`` overrides where COCO file names resolve.
    """
    path = Path(path)
    if fmt not in ("auto",) + FORMATS:
        raise DataError(f"unknown format {fmt!r}", f"use one of: auto, {', '.join(FORMATS)}")
    if not path.exists():
        raise DataError(f"{path} does not exist", "pass a dataset directory or a COCO .json file")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt in (OBB, AXIS_ALIGNED):
        issues, checked = check_yolo_dataset(path, fmt)
    elif fmt == "dota":
        issues, checked = check_dota_dataset(path, classes)
    elif fmt == "coco":
        issues, checked = _check_coco(path, image_dir)
    else:
        issues, checked = _check_refdet(path)
    return CheckReport(path, fmt, issues, checked)


def preflight_train(data: Union[str, Path]) -> DatasetLayout:
    """The dataset ``edgekit train obb`` is about to use, or the first problem that would stop it.

    Runs the rules ``edgekit data check`` applies to every YOLO dataset (:func:`train_problems`) without
    decoding images, so it is cheap enough to run before a run directory exists. Errors name the
    user's data.yaml, never the copy written into the run.
    """
    layout = DatasetLayout.load(Path(data).expanduser())
    problems = train_problems(layout)
    if problems:
        first = problems[0]
        where = f"{first.path}:{first.line}" if first.line else str(first.path)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DataError(f"{where}: {first.message}{more}",
                        f"fix the dataset; `edgekit data check {layout.data_yaml}` lists every problem")
    return layout


__all__ = ["CheckReport", "check_dataset", "detect_format", "preflight_train", "FORMATS"]
