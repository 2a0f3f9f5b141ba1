"""Image sizes are the as-loaded ones (EXIF orientation applied, as OpenCV and Ultralytics load them).

Labels normalised by the stored size of a rotated photo land in the wrong place (or are dropped as
"degenerate"); a COCO json whose sizes disagree with its images is refused by convert as by check;
sources that would give a dataset without a train split or without classes are refused; 16-bit,
grayscale and 4-channel images work, undecodable ones are one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.data.check import check_dataset
from edgekit.data.convert import convert_dataset
from edgekit.data.formats.media import read_image_size
from tests.robustness._data_fixtures import read_label_values, write_coco, write_dota, write_image
from tests.robustness.conftest import assert_one_line_error, run_cli

W, H = 120, 60  # stored size; orientations 5-8 load as H x W
SWAPS = {1: False, 3: False, 6: True, 8: True}


def _loaded(orientation: int):
    return (H, W) if SWAPS[orientation] else (W, H)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_size_is_what_ultralytics_loads(tmp_path: Path, orientation: int) -> None:
    pytest.importorskip("ultralytics")
    from PIL import Image
    from ultralytics.data.utils import exif_size
    from ultralytics.utils.patches import imread

    path = write_image(tmp_path / "a.jpg", W, H, orientation)
    expected = tuple(imread(str(path)).shape[1::-1])
    assert read_image_size(path) == expected
    with Image.open(path) as im:  # the size Ultralytics' label verification uses
        assert tuple(exif_size(im)) == expected
    assert expected == ((H, W) if orientation >= 5 else (W, H))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
@pytest.mark.parametrize("to", ["yolo-obb", "yolo"])
def test_dota_labels_normalised_by_loaded_size(tmp_path: Path, orientation: int, to: str) -> None:
    image = write_image(tmp_path / "src" / "p.jpg", W, H, orientation)
    lw, lh = _loaded(orientation)
    x0, y0, x1, y1 = 10, lh - 50, 50, lh - 10  # inside the loaded image, outside the stored one when rotated
    src = write_dota(tmp_path / "dota", {"p": image}, {"p": [f"{x0} {y0} {x1} {y0} {x1} {y1} {x0} {y1} plane 0"]})
    assert check_dataset(src, "dota").ok, [i.format() for i in check_dataset(src, "dota").issues]
    result = convert_dataset(src, tmp_path / "out", "dota", to)
    assert result.objects == {"train": 1} and not result.skipped
    values = read_label_values(tmp_path / "out" / "labels" / "train" / "p.txt")[0][1:]
    if to == "yolo":
        expected = [(x0 + x1) / 2 / lw, (y0 + y1) / 2 / lh, (x1 - x0) / lw, (y1 - y0) / lh]
    else:
        expected = [x0 / lw, y0 / lh, x1 / lw, y0 / lh, x1 / lw, y1 / lh, x0 / lw, y1 / lh]
    assert values == pytest.approx(expected, abs=1e-5)


def _coco_source(tmp_path: Path, orientation: int, json_size, name: str = "instances_train.json") -> Path:
    image = write_image(tmp_path / "coco" / "images" / "train" / "p.jpg", W, H, orientation)
    write_coco(tmp_path / "coco" / "annotations" / name,
               [{"id": 7, "file_name": image.name, "width": json_size[0], "height": json_size[1]}],
               [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 10, 30, 40], "iscrowd": 0}])
    return tmp_path / "coco"


@pytest.mark.parametrize("orientation", [6, 8])
def test_coco_with_loaded_sizes_converts(tmp_path: Path, orientation: int) -> None:
    src = _coco_source(tmp_path, orientation, _loaded(orientation))
    assert check_dataset(src, "coco").ok
    convert_dataset(src, tmp_path / "out", "coco", "yolo")
    values = read_label_values(tmp_path / "out" / "labels" / "train" / "p.txt")[0][1:]
    assert values == pytest.approx([25 / H, 30 / W, 30 / H, 40 / W], abs=1e-5)


def test_coco_stored_size_of_rotated_photo_refused_by_check_and_convert(tmp_path: Path) -> None:
    src = _coco_source(tmp_path, 6, (W, H))  # the json has the stored size, training sees H x W
    report = check_dataset(src, "coco")
    assert [i.code for i in report.errors] == ["size-mismatch"] and "EXIF" in report.errors[0].message
    res = run_cli(["data", "convert", "--from", "coco", "--to", "yolo-obb", src, tmp_path / "out"], tmp_path)
    line = assert_one_line_error(res, 1, ["instances_train.json", "image 7", "EXIF", f"{H}x{W}"])
    assert ": error:" not in line
    assert not (tmp_path / "out").exists()


# -- sources that would give an untrainable dataset: one line each ------------------------------------------------
def test_lone_coco_json_without_split_name_refused(tmp_path: Path) -> None:
    src = _coco_source(tmp_path, 1, (W, H), name="ann.json")
    res = run_cli(["data", "convert", "--from", "coco", "--to", "yolo-obb", src / "annotations" / "ann.json",
                   tmp_path / "out"], tmp_path)
    assert_one_line_error(res, 1, ["ann.json", "train"])
    assert not (tmp_path / "out").exists()


def test_coco_without_categories_refused(tmp_path: Path) -> None:
    image = write_image(tmp_path / "coco" / "p.jpg", W, H)
    write_coco(tmp_path / "coco" / "train.json", [{"id": 1, "file_name": image.name, "width": W, "height": H}], [],
               categories=[])
    assert [i.code for i in check_dataset(tmp_path / "coco" / "train.json").errors] == ["no-classes"]
    res = run_cli(["data", "convert", "--from", "coco", "--to", "yolo", tmp_path / "coco" / "train.json",
                   tmp_path / "out"], tmp_path)
    assert_one_line_error(res, 1, ["train.json", "categories", "0 classes"])
    assert not (tmp_path / "out").exists()


def test_dota_without_objects_refused(tmp_path: Path) -> None:
    image = write_image(tmp_path / "p.jpg", W, H)
    src = write_dota(tmp_path / "dota", {"p": image}, {"p": []})
    res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo", src, tmp_path / "out"], tmp_path)
    assert_one_line_error(res, 1, [str(src), "0 classes", "--classes"])


# -- odd images: handled as training loads them, or refused in one line ----------------------------------------------
@pytest.mark.parametrize("mode,suffix", [("I;16", ".png"), ("L", ".png"), ("RGBA", ".png"), ("L", ".jpg")])
def test_odd_images_convert_and_check(tmp_path: Path, mode: str, suffix: str) -> None:
    image = write_image(tmp_path / f"p{suffix}", W, H, mode=mode)
    assert read_image_size(image) == (W, H)
    src = write_dota(tmp_path / "dota", {"p": image}, {"p": ["10 10 50 10 50 40 10 40 plane 0"]})
    assert check_dataset(src, "dota").ok
    convert_dataset(src, tmp_path / "out", "dota", "yolo-obb")
    assert check_dataset(tmp_path / "out").ok
    assert read_label_values(tmp_path / "out" / "labels" / "train" / "p.txt")[0][1:3] == pytest.approx([10 / W, 10 / H], abs=1e-5)


def test_undecodable_image_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    src = write_dota(tmp_path / "dota", {"p": bad}, {"p": ["10 10 50 10 50 40 10 40 plane 0"]})
    res = run_cli(["data", "check", src], tmp_path)
    assert res.rc == 1 and "Traceback" not in res.stderr and "p.png:0: error: image cannot be decoded" in res.stdout
    res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo", src, tmp_path / "out"], tmp_path)
    assert_one_line_error(res, 1, ["p.png", "cannot be decoded"])
