"""DatasetLayout: data.yaml with an absolute path, Ultralytics' label-path rule, errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from edgekit.core.errors import DataError
from edgekit.data.layout import DatasetLayout, label_path_for
from tests.data import defect_sets as ds


def test_write_then_load_round_trip_with_absolute_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    layout = DatasetLayout.create("rel/ds", ["plane", "ship"])
    written = layout.write_data_yaml()
    data = yaml.safe_load(written.read_text())
    assert data == {"path": str(tmp_path / "rel/ds"), "train": "images/train", "val": "images/val",
                    "names": {0: "plane", 1: "ship"}}
    assert Path(data["path"]).is_absolute()
    loaded = DatasetLayout.load(tmp_path / "rel/ds")
    assert (loaded.root, loaded.names, loaded.splits) == (layout.root, layout.names, layout.splits)
    assert sorted(os.listdir(layout.root)) == ["data.yaml", "images", "labels"]  # no temporaries


def test_write_data_yaml_into_another_directory_keeps_final_path(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path / "final", {0: "a"})
    path = layout.write_data_yaml(directory=tmp_path / "building")
    assert path == tmp_path / "building/data.yaml"
    assert yaml.safe_load(path.read_text())["path"] == str(tmp_path / "final")


def test_moved_dataset_loads_from_where_it_is(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "old")
    root.rename(tmp_path / "new")
    layout = DatasetLayout.load(tmp_path / "new" / "data.yaml")
    assert layout.root == tmp_path / "new"
    assert [p.name for p in layout.image_paths("train")] == ["train_0.jpg", "train_1.jpg"]
    assert layout.label_path(layout.image_paths("val")[0]) == tmp_path / "new/labels/val/val_0.txt"


@pytest.mark.parametrize("image, label", [
    ("/d/images/train/a.jpg", "/d/labels/train/a.txt"),
    ("/d/images/x/images/train/b.png", "/d/images/x/labels/train/b.txt"),  # the LAST images/ changes
    ("/d/pics/c.jpeg", "/d/pics/c.txt"),
])
def test_label_path_follows_ultralytics(image: str, label: str) -> None:
    assert label_path_for(Path(image)) == Path(label)


@pytest.mark.parametrize("yaml_text, match", [
    (None, "does not exist"),
    ("train: images/train\n", "no 'names' key"),
    ("names: [a]\n", "names no split"),
    ("train: images/train\nnames: {0: a, 2: b}\n", "without gaps"),
    ("train: [images/train\nnames: [a]\n", r"data\.yaml:\d+: cannot parse YAML"),
    ("- a\n- b\n", "must hold a mapping"),
    ("train: images/train\nnames: 5\n", "names must be a list or a mapping"),
    ("train: images/train\nnames: abc\n", "names must be a list or a mapping"),
])
def test_load_errors_name_the_file(tmp_path: Path, yaml_text, match: str) -> None:
    if yaml_text is not None:
        (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DataError, match=match):
        DatasetLayout.load(tmp_path)


def test_unknown_split_and_missing_directory(tmp_path: Path) -> None:
    layout = DatasetLayout(tmp_path, ["a"])
    with pytest.raises(DataError, match="split 'test' is not in"):
        layout.image_paths("test")
    with pytest.raises(DataError, match="does not exist"):
        layout.image_paths("train")


def test_from_images_copies_or_links_and_refuses_duplicates(tmp_path: Path) -> None:
    a = ds.write_image(tmp_path / "src/a.jpg")
    b = ds.write_image(tmp_path / "src2/b.png")
    layout = DatasetLayout.from_images(tmp_path / "ds", ["x"], {"train": [a], "val": [b]}, link=True)
    assert layout.image_paths("train") == [tmp_path / "ds/images/train/a.jpg"]
    assert (tmp_path / "ds/images/val/b.png").resolve() == b
    copied = DatasetLayout.from_images(tmp_path / "ds2", ["x"], {"train": [a]})
    assert not copied.image_paths("train")[0].is_symlink()
    with pytest.raises(DataError, match="two images named a.jpg"):
        copied.add_image("train", a)
