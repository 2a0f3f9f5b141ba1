"""convert_dataset: DOTA / COCO -> YOLO-OBB / YOLO roots with data.yaml; exact label values; atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from edgekit.core.errors import DataError
from edgekit.data.check import check_dataset
from edgekit.data.convert import convert_dataset
from tests.data import defect_sets as ds

A_OBB = ["0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5", "1 0.875 0.166667 1 0.166667 1 0.333333 0.875 0.333333"]
A_BOX = ["0 0.3 0.3 0.4 0.4", "1 0.9375 0.25 0.125 0.166667"]


def dota_source(root: Path, split: str = "") -> Path:
    """A.png 80x60 (a plane, and a ship sticking out on the right), B.png 100x50."""
    base = root / split if split else root
    ds.write_image(base / "images/A.png", 80, 60)
    ds.write_image(base / "images/B.png", 100, 50)
    ds.write_text(base / "labelTxt/A.txt", ["imagesource:GoogleEarth", "gsd:0.5",
                                            "8 6 40 6 40 30 8 30 plane 0", "70 10 90 10 90 20 70 20 ship 1"])
    ds.write_text(base / "labelTxt/B.txt", ["10 10 30 10 30 20 10 20 small-vehicle 0"])
    return root


def coco_source(root: Path) -> Path:
    ds.write_image(root / "images/train2017/a.jpg", 80, 60)
    data = {
        "images": [{"id": 4, "file_name": "a.jpg", "width": 80, "height": 60}],
        "annotations": [
            {"id": 1, "image_id": 4, "category_id": 1, "bbox": [8, 6, 32, 24], "iscrowd": 0},
            {"id": 2, "image_id": 4, "category_id": 3, "bbox": [70, 10, 20, 10], "iscrowd": 0},
            {"id": 3, "image_id": 4, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "plane"}, {"id": 3, "name": "ship"}],
    }
    ds.write_text(root / "annotations/instances_train2017.json", [json.dumps(data)])
    return root


def labels_of(root: Path, split: str, stem: str):
    return (root / "labels" / split / f"{stem}.txt").read_text().splitlines()


@pytest.mark.parametrize("to, expected", [("yolo-obb", A_OBB), ("yolo", A_BOX)])
def test_dota_to_yolo_exact_values_and_data_yaml(tmp_path: Path, to: str, expected) -> None:
    src = dota_source(tmp_path / "dota")
    result = convert_dataset(src, tmp_path / "out", "dota", to)
    root = tmp_path / "out"
    assert labels_of(root, "train", "A") == expected
    assert labels_of(root, "train", "B")[0].startswith("2 ")
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data == {"path": str(root), "train": "images/train", "val": "images/train",
                    "names": {0: "plane", 1: "ship", 2: "small-vehicle"}}
    assert result.images == {"train": 2} and result.objects == {"train": 3}
    assert result.skipped == {} and result.notes
    report = check_dataset(root)
    assert report.format == to and report.issues == []


def test_dota_split_directories_and_class_selection(tmp_path: Path) -> None:
    src = dota_source(dota_source(tmp_path / "dota", "train"), "val")
    result = convert_dataset(src, tmp_path / "out", "dota", "yolo-obb", classes=["ship", "plane"])
    data = yaml.safe_load((tmp_path / "out/data.yaml").read_text())
    assert (data["train"], data["val"], data["names"]) == ("images/train", "images/val", {0: "ship", 1: "plane"})
    assert labels_of(tmp_path / "out", "val", "A") == [f"1 {A_OBB[0][2:]}", f"0 {A_OBB[1][2:]}"]
    assert labels_of(tmp_path / "out", "val", "B") == []
    assert result.skipped["objects of other classes (small-vehicle)"] == 2
    assert not result.notes


@pytest.mark.parametrize("to, expected", [
    ("yolo", A_BOX),
    ("yolo-obb", ["0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5", "1 0.875 0.166667 1 0.166667 1 0.333333 0.875 0.333333"]),
])
def test_coco_to_yolo_exact_values(tmp_path: Path, to: str, expected) -> None:
    result = convert_dataset(coco_source(tmp_path / "coco"), tmp_path / "out", "coco", to)
    root = tmp_path / "out"
    assert labels_of(root, "train2017", "a") == expected
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert (data["train"], data["names"]) == ("images/train2017", {0: "plane", 1: "ship"})
    assert result.skipped == {"crowd regions": 1}
    assert check_dataset(root).issues == []


def test_coco_classes_must_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="--classes tank not among the categories"):
        convert_dataset(coco_source(tmp_path / "coco"), tmp_path / "out", "coco", "yolo", classes=["tank"])
    assert not (tmp_path / "out").exists()


def test_failed_conversion_leaves_nothing_and_cites_line(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    ds.write_text(src / "labelTxt/B.txt", ["10 10 30 10 30 20 10 20 small-vehicle 0", "1 2 3"])
    with pytest.raises(DataError, match=r"B\.txt:2: expected 10 fields"):
        convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dota"]


def test_existing_destination_needs_overwrite(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    with pytest.raises(DataError, match="already exists"):
        convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    (tmp_path / "out/data.yaml").write_text("stale")
    convert_dataset(src, tmp_path / "out", "dota", "yolo-obb", overwrite=True)
    assert (tmp_path / "out/data.yaml").read_text() != "stale"


def test_overwrite_never_replaces_a_directory_edgekit_did_not_write(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("x")
    with pytest.raises(DataError, match="edgekit did not write it .*keep.txt"):
        convert_dataset(src, tmp_path / "out", "dota", "yolo-obb", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]


def test_unreadable_dota_image_is_an_error(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    ds.write_garbage(src / "images/B.png")
    with pytest.raises(DataError, match=r"B\.png cannot be decoded"):
        convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    assert not (tmp_path / "out").exists()


def test_undecodable_dota_label_is_an_error(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    (src / "labelTxt/B.txt").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(DataError, match=r"cannot read DOTA label file .*B\.txt"):
        convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    assert not (tmp_path / "out").exists()


def test_destination_under_a_file_is_an_error(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"afile is a file"):
        convert_dataset(src, tmp_path / "afile/out", "dota", "yolo-obb")


@pytest.mark.parametrize("src_format, dst_format", [("yolo", "dota"), ("dota", "coco")])
def test_unsupported_directions(tmp_path: Path, src_format: str, dst_format: str) -> None:
    with pytest.raises(DataError, match="cannot convert"):
        convert_dataset(tmp_path, tmp_path / "out", src_format, dst_format)


def test_boxes_that_vanish_when_clipped_are_skipped_and_counted(tmp_path: Path) -> None:
    src = dota_source(tmp_path / "dota")
    ds.write_text(src / "labelTxt/B.txt", ["110 10 130 10 130 20 110 20 plane 0",  # right of the 100px image
                                           "10 10 20 10 30 10 20 10 plane 0"])  # degenerate in the source
    result = convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    assert labels_of(tmp_path / "out", "train", "B") == []
    assert result.skipped["degenerate boxes (after clipping to the image)"] == 2
