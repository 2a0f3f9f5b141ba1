"""`edgekit data tile`: every source object lands in a tile (whole or cut), the index maps tiles back to
the source exactly, cut boxes are the visible part, DOTA sources, the output policy, and the large-frame
synthetic generator the tiling is tested on."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.core.errors import ConfigError, DataError
from edgekit.core.geometry import clip_polygon_to_rect, polygon_area, polygon_iou
from edgekit.core.tiling import TileWindow, tile_starts, tile_windows
from edgekit.data.check import check_dataset
from edgekit.data.formats.yolo_obb import read_yolo_obb
from edgekit.data.layout import DatasetLayout
from edgekit.data.synth import generate_obb_dataset
from edgekit.data.tile import INDEX_NAME, TileSettings, cut_objects, read_tile_index, tile_dataset, to_source

FRAME = 768
SIZE, OVERLAP = 192, 64  # overlap above the largest synthetic object (54 px): each is whole in some tile


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_obb_dataset(tmp_path_factory.mktemp("big") / "ds", n_train=2, n_val=1, seed=3, progress=False,
                                frame_size=FRAME)


@pytest.fixture(scope="module")
def tiled(big: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiled") / "t"
    tile_dataset(big, out, TileSettings(size=SIZE, overlap=OVERLAP, rates=(1.0, 0.5), min_visible=0.5))
    return out


def _source_objects(big: Path) -> dict:
    layout = DatasetLayout.load(big)
    out = {}
    for split in ("train", "val"):
        for image in layout.image_paths(split):
            labels = read_yolo_obb(layout.label_path(image))
            out[image.relative_to(big).as_posix()] = [np.asarray(lb.corners).reshape(4, 2) * FRAME for lb in labels]
    return out


def _tile_boxes(tiled: Path, entry: dict) -> list:
    labels = read_yolo_obb(tiled / Path(entry["image"].replace("images/", "labels/", 1)).with_suffix(".txt"))
    return [np.asarray(lb.corners).reshape(4, 2) * (entry["width"], entry["height"]) for lb in labels]


# -- the grid --------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,size,overlap,expected", [
    (2048, 640, 128, [0, 512, 1024, 1408]), (640, 640, 128, [0]), (100, 640, 0, [0]), (1000, 640, 0, [0, 360]),
    (1152, 640, 128, [0, 512]),
])
def test_tile_starts_cover_the_frame_without_padding(length, size, overlap, expected) -> None:
    starts = tile_starts(length, size, overlap)
    assert starts == expected
    assert starts[-1] + min(size, length) == length  # the last tile ends at the edge
    assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # never less overlap than asked


@pytest.mark.parametrize("size,overlap", [(0, 0), (64, 64), (64, -1)])
def test_bad_grid_is_a_config_error(size, overlap) -> None:
    with pytest.raises(ConfigError):
        tile_windows(100, 100, size, overlap)


# -- round trip ------------------------------------------------------------------------------------
def test_tiled_dataset_passes_data_check_and_keeps_splits(tiled: Path) -> None:
    report = check_dataset(tiled)
    assert report.ok, [i.format() for i in report.errors]
    data = yaml.safe_load((tiled / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    index = read_tile_index(tiled)
    per_image = len(tile_windows(FRAME, FRAME, SIZE, OVERLAP)) + len(tile_windows(FRAME // 2, FRAME // 2, SIZE, OVERLAP))
    assert len(index["tiles"]) == 3 * per_image
    assert len(list((tiled / "images/train").iterdir())) == 2 * per_image


def test_every_source_object_appears_in_a_tile_and_whole_ones_map_back_within_1px(big: Path, tiled: Path) -> None:
    sources = _source_objects(big)
    index = read_tile_index(tiled)
    seen = {(img, k): [] for img, objs in sources.items() for k in range(len(objs))}
    for entry in index["tiles"]:
        boxes = _tile_boxes(tiled, entry)
        assert len(boxes) == entry["kept"] == len(entry["objects"])
        for obj, box in zip(entry["objects"], boxes):
            seen[(entry["source_image"], obj["source"])].append(obj["cut"])
            if not obj["cut"]:
                back = to_source(entry, box)
                assert np.abs(back - sources[entry["source_image"]][obj["source"]]).max() < 1.0
    assert sum(len(v) for v in sources.values()) > 10
    assert all(seen.values()), [k for k, v in seen.items() if not v]  # every object in some tile
    assert all(False in v for v in seen.values())  # overlap > object size: each is whole somewhere


def test_cut_boxes_are_the_visible_part_inside_the_tile(big: Path, tiled: Path) -> None:
    sources = _source_objects(big)
    cut = 0
    for entry in read_tile_index(tiled)["tiles"]:
        for obj, box in zip(entry["objects"], _tile_boxes(tiled, entry)):
            if not obj["cut"]:
                continue
            cut += 1
            assert 0.5 <= obj["visible"] < 1.0
            whole = sources[entry["source_image"]][obj["source"]] * entry["scale"] - (entry["x"], entry["y"])
            visible = clip_polygon_to_rect(whole, 0, 0, entry["width"], entry["height"])
            assert polygon_area(visible) / polygon_area(whole) == pytest.approx(obj["visible"], abs=1e-3)
            # the re-fitted box is the visible part (up to the corners a tilted box puts outside the tile)
            assert polygon_iou(box, visible) > 0.85
            assert polygon_area(box) <= polygon_area(whole) * 1.01
            assert box.min() >= 0 and box[:, 0].max() <= entry["width"] and box[:, 1].max() <= entry["height"]
    assert cut > 0


def test_cut_objects_rule_on_a_known_box() -> None:
    square = np.array([[90.0, 10.0], [110.0, 10.0], [110.0, 30.0], [90.0, 30.0]])  # 20 px, half in x < 100
    window = TileWindow(0, 0, 100, 100)
    labels, entries, dropped = cut_objects([(1, square)], window, (1.0, 1.0), min_visible=0.4)
    assert entries == [{"source": 0, "class_id": 1, "cut": True, "visible": 0.5}]
    assert np.allclose(np.asarray(labels[0].corners).reshape(4, 2).min(0) * 100, [90, 10], atol=1e-3)
    assert np.allclose(np.asarray(labels[0].corners).reshape(4, 2).max(0) * 100, [100, 30], atol=1e-3)
    assert cut_objects([(1, square)], window, (1.0, 1.0), min_visible=0.6)[1:] == ([], 1)
    assert cut_objects([(1, square + 200)], window, (1.0, 1.0), min_visible=0.6) == ([], [], 0)  # not touching


def test_skip_empty_writes_only_tiles_with_objects(big: Path, tmp_path: Path) -> None:
    result = tile_dataset(big, tmp_path / "t", TileSettings(size=SIZE, overlap=OVERLAP, skip_empty=True))
    index = read_tile_index(tmp_path / "t")
    assert index["tiles"] and all(t["kept"] > 0 for t in index["tiles"])
    assert result.skipped_empty > 0 and len(index["tiles"]) + result.skipped_empty == 3 * len(
        tile_windows(FRAME, FRAME, SIZE, OVERLAP))
    assert len(list((tmp_path / "t/images/train").iterdir())) == sum(t["split"] == "train" for t in index["tiles"])


# -- DOTA source -----------------------------------------------------------------------------------
def test_dota_source_is_tiled_with_its_classes(tmp_path: Path) -> None:
    src = tmp_path / "dota"
    (src / "images").mkdir(parents=True)
    (src / "labelTxt").mkdir()
    cv2.imwrite(str(src / "images/P0001.png"), np.full((300, 380, 3), 90, np.uint8))
    (src / "labelTxt/P0001.txt").write_text("imagesource:GoogleEarth\ngsd:0.5\n"
                                            "10 10 50 10 50 40 10 40 plane 0\n"
                                            "190 100 230 100 230 140 190 140 ship 1\n")
    result = tile_dataset(src, tmp_path / "out", TileSettings(size=200, overlap=20, min_visible=0.2))
    assert result.names == {0: "plane", 1: "ship"}
    assert check_dataset(tmp_path / "out").ok
    index = read_tile_index(tmp_path / "out")
    assert [(t["x"], t["y"]) for t in index["tiles"]] == [(0, 0), (180, 0), (0, 100), (180, 100)]
    ship = [(t["x"], t["y"], o["cut"]) for t in index["tiles"] for o in t["objects"] if o["class_id"] == 1]
    assert (180, 0, False) in ship and (0, 0, True) in ship  # whole in the right tile, cut in the left one
    assert result.notes == ["only a train split: data.yaml's val points at the train tiles"]


# -- output policy and CLI -------------------------------------------------------------------------
def test_output_policy_refuses_foreign_dirs_and_replaces_only_with_overwrite(big: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    settings = TileSettings(size=256, overlap=64)
    with pytest.raises(DataError):
        tile_dataset(big, foreign, settings)
    assert (foreign / "mine.txt").read_text() == "user data"
    tile_dataset(big, tmp_path / "t", settings)
    with pytest.raises(DataError):
        tile_dataset(big, tmp_path / "t", settings)
    tile_dataset(big, tmp_path / "t", settings, overwrite=True)
    with pytest.raises(DataError):
        tile_dataset(big, big / "inside", settings)  # inside its own source


def test_cli_tile_writes_dataset_and_index(big: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["data", "tile", str(big), str(tmp_path / "t"), "--size", "256", "--overlap", "64",
                                   "--rates", "1.0", "--min-visible", "0.7"])
    assert res.exit_code == 0, res.output
    assert "wrote tiled dataset" in res.output and (tmp_path / "t" / INDEX_NAME).is_file()
    assert read_tile_index(tmp_path / "t")["min_visible"] == 0.7
    bad = CliRunner().invoke(cli, ["data", "tile", str(big), str(tmp_path / "u"), "--size", "64", "--overlap", "64"])
    assert bad.exit_code == 2 and "--overlap" in bad.output
    bad = CliRunner().invoke(cli, ["data", "tile", str(big), str(tmp_path / "u"), "--rates", "1,x"])
    assert bad.exit_code == 2


# -- the large-frame generator ---------------------------------------------------------------------
def test_large_frames_hold_many_small_objects(big: Path) -> None:
    image = cv2.imread(str(big / "images/train/train_000000.jpg"))
    assert image.shape == (FRAME, FRAME, 3)
    boxes = [b for objs in _source_objects(big).values() for b in objs]
    lengths = [max(np.linalg.norm(b[1] - b[0]), np.linalg.norm(b[2] - b[1])) for b in boxes]
    assert min(lengths) >= 14 and max(lengths) <= 56  # 16-54 px whatever the frame size
    assert len(boxes) / 3 > 4  # scaled with the frame's area


def test_frame_size_and_imgsz_are_exclusive_on_the_cli(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["data", "synth", "obb", "--out", str(tmp_path / "x"), "--imgsz", "64",
                                   "--frame-size", "768"])
    assert res.exit_code == 2 and "not both" in res.output
    with pytest.raises(ConfigError):
        generate_obb_dataset(tmp_path / "y", n_train=1, n_val=1, frame_size=100, progress=False)
