"""Synthetic OBB generator: layout, determinism, label validity, labels match pixels, balance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgekit.core.errors import ConfigError
from edgekit.data.synth import OBB_CLASS_NAMES, generate_obb_dataset, obb_label_lines, render_obb_scene

IMGSZ = 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_obb_dataset(tmp_path_factory.mktemp("obb") / "ds", n_train=6, n_val=3, imgsz=IMGSZ,
                                seed=7, progress=False)


def _labels(root: Path) -> list:
    rows = []
    for txt in sorted((root / "labels").rglob("*.txt")):
        rows += [line.split() for line in txt.read_text().splitlines() if line.strip()]
    return rows


def _tree(root: Path) -> dict:
    # data.yaml names its root; the output marker records when it was written: neither is dataset content
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name not in ("data.yaml", ".edgekit-output.json")}


def test_layout_and_data_yaml(dataset: Path) -> None:
    data = yaml.safe_load((dataset / "data.yaml").read_text())
    assert Path(data["path"]) == dataset and Path(data["path"]).is_absolute()
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    assert data["names"] == dict(enumerate(OBB_CLASS_NAMES))
    for split, n in (("train", 6), ("val", 3)):
        images = sorted((dataset / "images" / split).glob("*.jpg"))
        assert len(images) == n
        for img in images:
            assert (dataset / "labels" / split / f"{img.stem}.txt").is_file()
            assert cv2.imread(str(img)).shape == (IMGSZ, IMGSZ, 3)
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")], "temporary dir left behind"


def test_same_seed_same_bytes_other_seed_differs(dataset: Path, tmp_path: Path) -> None:
    again = generate_obb_dataset(tmp_path / "again", n_train=6, n_val=3, imgsz=IMGSZ, seed=7, progress=False)
    other = generate_obb_dataset(tmp_path / "other", n_train=6, n_val=3, imgsz=IMGSZ, seed=8, progress=False)
    assert _tree(again) == _tree(dataset)
    assert _labels(other) != _labels(dataset)


def test_val_split_does_not_depend_on_n_train(dataset: Path, tmp_path: Path) -> None:
    bigger = generate_obb_dataset(tmp_path / "bigger", n_train=9, n_val=3, imgsz=IMGSZ, seed=7, progress=False)
    val = {k: v for k, v in _tree(dataset).items() if "/val/" in k}
    assert val == {k: v for k, v in _tree(bigger).items() if "/val/" in k}


def test_labels_are_valid_rotated_rectangles(dataset: Path) -> None:
    rows = _labels(dataset)
    assert rows
    for row in rows:
        assert len(row) == 9
        assert 0 <= int(row[0]) < len(OBB_CLASS_NAMES)
        corners = np.array(row[1:], float).reshape(4, 2)
        assert corners.min() >= 0.0 and corners.max() <= 1.0
        sides = np.roll(corners, -1, 0) - corners
        lengths = np.linalg.norm(sides, axis=1)
        assert lengths.min() * IMGSZ > 4, "degenerate box"
        assert np.allclose(lengths[0], lengths[2], atol=1e-4) and np.allclose(lengths[1], lengths[3], atol=1e-4)
        assert abs(np.dot(sides[0], sides[1])) < 1e-4, "box corners are not a rectangle"


def test_ultralytics_accepts_every_label(dataset: Path) -> None:
    from ultralytics.data.utils import verify_image_label

    for img in sorted((dataset / "images").rglob("*.jpg")):
        label = dataset / "labels" / img.parent.name / f"{img.stem}.txt"
        out = verify_image_label((str(img), str(label), "", False, len(OBB_CLASS_NAMES), 0, 0, False))
        assert out[0] is not None and out[8] == 0, f"ultralytics rejected {label}: {out[-1]}"
        assert len(out[3]) == len(label.read_text().splitlines())  # one 4-corner segment per object


def test_written_labels_are_the_rendered_objects(dataset: Path) -> None:
    scene = render_obb_scene(np.random.default_rng([7, 1, 2]), IMGSZ)
    written = (dataset / "labels" / "val" / "val_000002.txt").read_text().splitlines()
    assert written == obb_label_lines(scene.objects, IMGSZ)


@pytest.mark.parametrize("seed", range(6))
def test_pixels_inside_boxes_differ_from_background(seed: int) -> None:
    scene = render_obb_scene(np.random.default_rng(seed), 160, keep_background=True)
    diff = np.abs(scene.image.astype(np.float32) - scene.background.astype(np.float32)).mean(axis=2)
    inside = np.zeros(diff.shape, np.uint8)
    for spec in scene.objects:
        box = np.zeros(diff.shape, np.uint8)
        cv2.fillPoly(box, [np.round(spec.corners()).astype(np.int32)], 1)
        # Every object changes the pixels under it (planes and tanks fill less of their box).
        assert diff[box > 0].mean() > 20, f"object {spec.class_id} is not visible in its box"
        inside |= box
    assert diff[inside > 0].mean() > 5 * diff[inside == 0].mean()  # outside: shadows, blur spill


def test_scenes_have_balanced_classes_counts_and_scales() -> None:
    classes: Counter = Counter()
    counts, sizes = [], []
    for seed in range(80):
        scene = render_obb_scene(np.random.default_rng(seed), IMGSZ)
        counts.append(len(scene.objects))
        classes.update(spec.class_id for spec in scene.objects)
        sizes += [spec.length / IMGSZ for spec in scene.objects]
    total = sum(classes.values())
    assert set(classes) == set(range(len(OBB_CLASS_NAMES)))
    assert all(0.12 < classes[c] / total < 0.28 for c in classes), classes
    assert min(counts) >= 1 and max(counts) <= 8 and np.mean(counts) >= 3
    assert min(sizes) >= 0.08 and max(sizes) <= 0.35


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 0}, "n_train=0"),
        ({"n_val": 0}, "n_val=0"),
        ({"imgsz": 32}, "imgsz=32"),
    ],
)
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        generate_obb_dataset(tmp_path / "bad", **{"n_train": 2, "n_val": 1, "imgsz": 64, **kwargs}, progress=False)
    assert not (tmp_path / "bad").exists()


def test_progress_bar_can_be_silenced(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    generate_obb_dataset(tmp_path / "quiet", n_train=1, n_val=1, imgsz=64, progress=False)
    assert "synth obb" not in capsys.readouterr().err
    generate_obb_dataset(tmp_path / "loud", n_train=1, n_val=1, imgsz=64, progress=True)
    assert "synth obb" in capsys.readouterr().err
