"""Round trips for every format, readers that keep file and line, and readers that reject bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgekit.core.errors import DataError
from edgekit.data.formats import (
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
    DotaLabelFile,
    DotaObject,
    RefDetBox,
    RefDetTrack,
    RefDetVideo,
    YoloBoxLabel,
    YoloObbLabel,
    read_coco,
    read_dota,
    read_refdet_annotations,
    read_yolo_labels,
    write_coco,
    write_dota,
    write_refdet_annotations,
    write_yolo_labels,
)
from edgekit.data.formats.base import loads_with_lines, quad_defect
from tests.data import defect_sets as ds

YOLO_OBB = [YoloObbLabel(0, (0.1, 0.1, 0.4, 0.1, 0.4, 0.3, 0.1, 0.3)),
            YoloObbLabel(3, (0.512345, 0.5, 0.9, 0.6, 0.8, 0.9, 0.45, 0.8))]
YOLO_BOX = [YoloBoxLabel(1, (0.5, 0.25, 0.2, 0.125)), YoloBoxLabel(0, (0.333333, 0.4, 0.1, 0.2))]
DOTA = DotaLabelFile((DotaObject((10.5, 5.0, 40.0, 5.0, 40.0, 25.25, 10.5, 25.25), "plane", 0),
                      DotaObject((1.0, 2.0, 3.0, 2.0, 3.0, 4.0, 1.0, 4.0), "small-vehicle", 1)),
                     imagesource="GoogleEarth", gsd=0.146343590398)
COCO = CocoDataset(
    (CocoImage(1, "a.jpg", 64, 48), CocoImage(5, "sub/b.png", 100, 80)),
    (CocoAnnotation(1, 1, 3, (10.0, 5.0, 30.0, 20.0), 0, 600.0), CocoAnnotation(2, 5, 1, (0.5, 1.5, 2.0, 3.0), 1, 6.0)),
    (CocoCategory(1, "plane", "vehicle"), CocoCategory(3, "ship", "vehicle")),
)
REFDET = [RefDetVideo("v0", (RefDetTrack((RefDetBox(0, 1, 2, 30, 40), RefDetBox(1, 2, 3, 31, 41))),
                             RefDetTrack((RefDetBox(9, 5, 5, 6, 7),)))),
          RefDetVideo("v1", ())]


@pytest.mark.parametrize("labels, kind", [(YOLO_OBB, "yolo-obb"), (YOLO_BOX, "yolo"), ([], "yolo-obb")])
def test_yolo_round_trip(tmp_path: Path, labels, kind: str) -> None:
    path = write_yolo_labels(tmp_path / "labels" / "a.txt", labels)
    back = read_yolo_labels(path, kind, nc=4)
    assert back == labels
    assert [lb.line for lb in back] == list(range(1, len(labels) + 1))
    assert all(lb.source == path for lb in back)
    text = path.read_text()
    write_yolo_labels(path, back)
    assert path.read_text() == text
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temporaries left behind


def test_dota_round_trip_keeps_header(tmp_path: Path) -> None:
    path = write_dota(tmp_path / "P0001.txt", DOTA)
    assert path.read_text().splitlines()[:2] == ["imagesource:GoogleEarth", "gsd:0.146343590398"]
    back = read_dota(path)
    assert back == DOTA
    assert [o.line for o in back.objects] == [3, 4] and back.objects[0].source == path


def test_dota_reads_files_without_header_or_difficult(tmp_path: Path) -> None:
    path = ds.write_text(tmp_path / "a.txt", ["1 1 5 1 5 5 1 5 plane", "gsd:null", "2 2 6 2 6 6 2 6 ship 1"])
    label = read_dota(path)
    assert [(o.class_name, o.difficult, o.line) for o in label.objects] == [("plane", 0, 1), ("ship", 1, 3)]
    assert label.gsd is None and label.imagesource is None


def test_coco_round_trip(tmp_path: Path) -> None:
    path = write_coco(tmp_path / "instances_train.json", COCO)
    assert read_coco(path) == COCO
    assert json.loads(path.read_text())["annotations"][0]["bbox"] == [10.0, 5.0, 30.0, 20.0]


def test_refdet_round_trip(tmp_path: Path) -> None:
    path = write_refdet_annotations(tmp_path / "annotations.json", REFDET)
    back = read_refdet_annotations(path)
    assert back == REFDET
    raw = json.loads(path.read_text())
    assert raw[0]["annotations"][0]["bboxes"][0] == {"frame": 0, "x1": 1, "y1": 2, "x2": 30, "y2": 40}
    assert back[0].line == 2  # readers keep lines: json.dump(indent=2) puts the first entry on line 2


@pytest.mark.parametrize("reader, lines, kind, expected", [
    (read_yolo_labels, [ds.GOOD_OBB, "0 0.1 0.1 0.4"], "yolo-obb", r"a\.txt:2: expected 9 fields"),
    (read_yolo_labels, [ds.GOOD_OBB, ds.GOOD_OBB, "x 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3"], "yolo-obb",
     r"a\.txt:3: field 1 is not a number"),
    (read_yolo_labels, ["0 0.5 0.5 0 0.2"], "yolo", r"a\.txt:1: degenerate box"),
    (read_dota, ds.DOTA_HEADER + ["10 5 40 5 40 nan 10 25 plane 0"], None, r"a\.txt:3: field 6 is not finite"),
])
def test_readers_cite_file_and_line(tmp_path: Path, reader, lines, kind, expected: str) -> None:
    path = ds.write_text(tmp_path / "a.txt", lines)
    with pytest.raises(DataError, match=expected):
        reader(path, kind) if kind else reader(path)


@pytest.mark.parametrize("text, expected", [
    ('[{"video_id": "v", "annotations": [{"bboxes": [\n{"frame": -1, "x1": 1, "y1": 1, "x2": 5, "y2": 5}]}]}]',
     r"annotations\.json:2: frame must be a non-negative integer"),
    ('{"video_id": "v"}', r"annotations\.json:1: top level must be a list"),
    ('[\n{"video_id": "v", "annotations": []},\n{"video_id": "v", "annotations": []}]',
     r"annotations\.json:3: video_id 'v' repeats line 2"),
    ('[\n{"video_id": 3}\n]', r"annotations\.json:2: entry needs a string 'video_id'"),
])
def test_refdet_reader_rejects_with_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(DataError, match=expected):
        read_refdet_annotations(path)


@pytest.mark.parametrize("change, expected", [
    ({"images": "nope"}, r"x\.json:1: top-level 'images' must be a list"),
    ({"annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1]}]},
     r"x\.json:\d+: annotation 1: unknown image_id 7"),
])
def test_coco_reader_rejects_with_line(tmp_path: Path, change, expected: str) -> None:
    data = {**COCO.to_json(), **change}
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data, indent=1))
    with pytest.raises(DataError, match=expected):
        read_coco(path)


def test_loads_with_lines_matches_json_and_marks_object_lines() -> None:
    text = '{"a": [\n  {"b": 1},\n\n  {"c": {"d": 2}}\n]}'
    data = loads_with_lines(text)
    assert data == json.loads(text)
    assert (data.line, data["a"][0].line, data["a"][1].line, data["a"][1]["c"].line) == (1, 2, 4, 4)


@pytest.mark.parametrize("corners, defect", [
    ((0, 0, 4, 0, 4, 2, 0, 2), None),
    ((0, 0, 4, 1, 3, 5, -1, 4), None),
    ((0, 0, 1, 1, 2, 2, 3, 3), "zero area"),
    ((0, 0, 0, 0, 0, 0, 0, 0), "zero area"),
    ((0, 0, 2, 0, 4, 0, 2, 3), "collinear"),
    ((0, 0, 0, 0, 4, 2, 0, 2), "repeats"),
    ((0.1, 0.1, 0.1000001, 0.1, 0.1000001, 0.1000001, 0.1, 0.1000001), None),  # tiny but real
])
def test_quad_defect(corners, defect) -> None:
    result = quad_defect(corners)
    assert (result is None) if defect is None else (defect in result)


def test_coco_reader_keeps_lines_when_asked(tmp_path: Path) -> None:
    path = ds.write_text(tmp_path / "x.json", ds.coco_lines([ds.coco_image()], [ds.GOOD_ANNOTATION]))
    assert read_coco(path).images[0].line == 0
    dataset = read_coco(path, with_lines=True)
    assert (dataset.images[0].line, dataset.annotations[0].line, dataset.source) == (2, 5, path)
