"""`check_dataset` finds every planted defect (one file per defect kind), naming file and line, and
nothing else; clean sets pass; format detection."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.core.errors import DataError
from edgekit.data.check import check_dataset, detect_format
from tests.data import defect_sets as ds

DEFECT_BUILDERS = {
    "yolo-obb": ds.yolo_obb_defects,
    "dota": ds.dota_defects,
    "coco": ds.coco_defects,
    "refdet": ds.refdet_defects,
}
CLEAN_BUILDERS = {
    "yolo-obb": ds.yolo_obb_clean,
    "dota": ds.dota_clean,
    "coco": ds.coco_clean,
    "refdet": ds.refdet_clean,
}


@pytest.fixture(scope="module")
def defect_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("defects")
    return {fmt: build(base / fmt) for fmt, build in DEFECT_BUILDERS.items()}


@pytest.mark.parametrize("fmt", sorted(CLEAN_BUILDERS))
def test_clean_dataset_has_no_issues(tmp_path: Path, fmt: str) -> None:
    root = CLEAN_BUILDERS[fmt](tmp_path / fmt)
    report = check_dataset(root)
    assert report.format == fmt
    assert report.issues == [], [i.format() for i in report.issues]
    assert report.ok and report.files_checked > 0


@pytest.mark.parametrize("fmt", sorted(DEFECT_BUILDERS))
def test_every_planted_defect_is_reported_with_file_and_line(defect_sets, fmt: str) -> None:
    root, planted = defect_sets[fmt]
    report = check_dataset(root, "auto")
    assert report.format == fmt
    found = {(str(i.path.relative_to(root)), i.line, i.code, i.severity) for i in report.issues}
    missing = set(planted) - found
    assert not missing, f"not reported: {missing}"
    extra = found - set(planted)
    assert not extra, f"reported but not planted: {extra}"
    assert len(report.errors) == sum(p[3] == "error" for p in planted)
    assert not report.ok


@pytest.mark.parametrize("fmt", sorted(DEFECT_BUILDERS))
def test_issue_lines_read_path_line_severity_message(defect_sets, fmt: str) -> None:
    root, planted = defect_sets[fmt]
    lines = [i.format() for i in check_dataset(root).issues]
    for rel, line, _code, severity in planted:
        prefix = f"{root / rel}:{line}: {severity}: "
        assert any(text.startswith(prefix) for text in lines), prefix


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    ds.write_text(root / "labels/train/train_0.txt", ["0 0.5 0.5 0.2 0.2"])  # axis-aligned line
    assert check_dataset(root, "yolo-obb").issues[0].code == "field-count"
    assert check_dataset(root, "yolo-obb").issues[0].line == 1


def test_axis_aligned_yolo_dataset_is_detected_and_checked(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    for label in (root / "labels").rglob("*.txt"):
        ds.write_text(label, ["0 0.5 0.5 0.2 0.2", "1 0.95 0.5 0.2 0.2"])
    report = check_dataset(root)
    assert report.format == "yolo"
    assert {(i.line, i.code) for i in report.issues} == {(2, "out-of-range")}


@pytest.mark.parametrize("builder, target, expected", [
    (ds.yolo_obb_clean, "", "yolo-obb"),
    (ds.yolo_obb_clean, "data.yaml", "yolo-obb"),
    (ds.dota_clean, "", "dota"),
    (ds.coco_clean, "", "coco"),
    (ds.coco_clean, "annotations/instances_train.json", "coco"),
    (ds.refdet_clean, "", "refdet"),
    (ds.refdet_clean, "train", "refdet"),
    (ds.refdet_clean, "train/annotations/annotations.json", "refdet"),
])
def test_detect_format(tmp_path: Path, builder, target: str, expected: str) -> None:
    root = builder(tmp_path / "ds")
    assert detect_format(root / target) == expected
    assert check_dataset(root / target).ok


def test_unknown_layout_and_missing_path_raise(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the format"):
        check_dataset(tmp_path / "empty")
    with pytest.raises(DataError, match="does not exist"):
        check_dataset(tmp_path / "nope")


def test_missing_data_yaml_split_dir_is_an_error_on_its_yaml_line(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    (root / "data.yaml").write_text("path: x\ntrain: images/train\nval: images/missing\nnames: [plane, ship]\n")
    issues = check_dataset(root).issues
    assert [(i.path.name, i.line, i.code) for i in issues] == [("data.yaml", 3, "missing-image")]


def test_dota_classes_option_defines_vocabulary(tmp_path: Path) -> None:
    root = ds.dota_clean(tmp_path / "ds")
    report = check_dataset(root, "dota", classes=["plane"])
    assert {(i.path.name, i.line, i.code) for i in report.issues} == {
        ("P0000.txt", 4, "unknown-class"), ("P0001.txt", 4, "unknown-class")}


def test_report_json_shape(defect_sets) -> None:
    root, planted = defect_sets["coco"]
    data = check_dataset(root).to_dict()
    assert data["format"] == "coco" and data["ok"] is False
    assert data["errors"] == len(planted) and data["warnings"] == 0
    assert {"path", "line", "severity", "code", "message"} <= set(data["issues"][0])


@pytest.mark.parametrize("yaml_text, line, message", [
    ("train: images/train\nval: [images/val\nnames: [a]\n", 3, "cannot parse YAML"),  # where PyYAML stops
    ("train: images/train\nval: images/val\n", 0, "has no 'names' key"),
])
def test_broken_data_yaml_is_one_issue_on_its_line(tmp_path: Path, yaml_text: str, line: int, message: str) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    (root / "data.yaml").write_text(yaml_text)
    report = check_dataset(root)
    assert [(i.path, i.line, i.code) for i in report.issues] == [(root / "data.yaml", line, "bad-yaml")]
    assert message in report.issues[0].message and not report.issues[0].message.startswith(str(root))
