"""What ``train obb`` needs, ``data check`` checks; what train refuses, it refuses before creating the run.

Every case runs the real CLI. A dataset train cannot use fails ``data check`` (exit 1) and ``train obb``
(exit 1, one line naming the user's yaml -- never the run's generated reports/data.yaml -- and no run
folder). A label whose image is missing or is a broken symlink is lost data: a check error.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Dict

import pytest

from tests.robustness.conftest import assert_one_line_error, run_cli

YAML_OK = "train: images/train\nval: images/val\nnames: [plane, ship, storage-tank, vehicle, bridge]\n"
TRAIN_FAST = ["imgsz=64", "batch=2", "workers=0", "teacher.weights=random", "logging.wandb=disabled",
              "stages.0.epochs=1", "stages.1.epochs=1"]


def _copy(base: Path, dst: Path, yaml_text: str = YAML_OK) -> Path:
    shutil.copytree(base, dst, symlinks=True)
    (dst / "data.yaml").write_text(yaml_text)  # no path: (it would point back at the original)
    return dst


def _no_val(root: Path) -> str:
    (root / "data.yaml").write_text(YAML_OK.replace("val: images/val\n", ""))
    return "no 'val:' key"


def _train_list(root: Path) -> str:
    (root / "data.yaml").write_text(YAML_OK.replace("train: images/train", "train: [images/train]"))
    return "'train:' is a list"


def _zero_classes(root: Path) -> str:
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: []\n")
    return "names is empty"


def _empty_train(root: Path) -> str:
    for p in (root / "images" / "train").iterdir():
        p.unlink()
    shutil.rmtree(root / "labels" / "train")
    return "has no images"


def _missing_val_dir(root: Path) -> str:
    shutil.rmtree(root / "images" / "val")
    return "does not exist"


def _labels_dir_is_a_file(root: Path) -> str:
    shutil.rmtree(root / "labels" / "train")
    (root / "labels" / "train").write_text("not a directory\n")  # Ultralytics would see only background
    return "is a file, not the label directory of split 'train'"


# case -> (edit the copy, return a phrase the error must contain)
UNTRAINABLE: Dict[str, Callable[[Path], str]] = {
    "no-val": _no_val, "train-list": _train_list, "zero-classes": _zero_classes, "empty-train": _empty_train,
    "missing-val-dir": _missing_val_dir, "labels-dir-is-a-file": _labels_dir_is_a_file,
}


@pytest.mark.parametrize("case", sorted(UNTRAINABLE))
def test_data_check_fails_what_train_refuses(base_dataset: Path, tmp_path: Path, case: str) -> None:
    root = _copy(base_dataset, tmp_path / "ds")
    phrase = UNTRAINABLE[case](root)
    res = run_cli(["data", "check", root], tmp_path)
    assert res.rc == 1 and "Traceback" not in res.stderr, res.stdout + res.stderr
    assert phrase in res.stdout or phrase in res.stderr


@pytest.mark.parametrize("case", sorted(UNTRAINABLE))
def test_train_refuses_before_creating_the_run(base_dataset: Path, tmp_path: Path, case: str) -> None:
    pytest.importorskip("ultralytics")
    root = _copy(base_dataset, tmp_path / "ds")
    phrase = UNTRAINABLE[case](root)
    runs = tmp_path / "runs"
    res = run_cli(["train", "obb", f"data={root}", f"project={runs}", *TRAIN_FAST], tmp_path)
    line = assert_one_line_error(res, 1, [str(root / "data.yaml"), phrase])
    assert "reports/data.yaml" not in res.stderr and not res.stdout.strip()
    assert not runs.exists(), line


def test_train_with_cuda_and_no_gpu_is_one_line(base_dataset: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    runs = tmp_path / "runs"
    res = run_cli(["train", "obb", f"data={base_dataset}", f"project={runs}", "device=cuda", *TRAIN_FAST], tmp_path)
    assert_one_line_error(res, 1, ["device=cuda", "device=cpu"])
    assert not runs.exists()


def test_missing_student_checkpoint_is_one_line_without_banner(base_dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("ultralytics")
    runs = tmp_path / "runs"
    res = run_cli(["train", "obb", f"data={base_dataset}", f"project={runs}", "student=missing.pt", *TRAIN_FAST],
                  tmp_path)
    assert_one_line_error(res, 1, ["student=missing.pt"])
    assert "Ultralytics" not in res.stdout + res.stderr and not runs.exists()


# -- lost data: a label whose image is gone is an error ----------------------------------------------------------
def _label_without_image(root: Path) -> Path:
    image = sorted((root / "images" / "train").iterdir())[0]
    image.unlink()
    return root / "labels" / "train" / f"{image.stem}.txt"


def _dangling_link(root: Path) -> Path:
    image = sorted((root / "images" / "train").iterdir())[0]
    image.unlink()
    image.symlink_to(root / "nowhere.jpg")
    return root / "labels" / "train" / f"{image.stem}.txt"


def _looping_link(root: Path) -> Path:
    image = sorted((root / "images" / "train").iterdir())[0]
    image.unlink()
    os.symlink(image.name, str(image))  # points at itself
    return root / "labels" / "train" / f"{image.stem}.txt"


@pytest.mark.parametrize("make, phrase", [(_label_without_image, "no image"), (_dangling_link, "dangling symlink"),
                                          (_looping_link, "looping symlink")])
def test_label_whose_image_is_lost_is_an_error(base_dataset: Path, tmp_path: Path, make, phrase: str) -> None:
    root = _copy(base_dataset, tmp_path / "ds")
    label = make(root)
    res = run_cli(["data", "check", root], tmp_path)
    assert res.rc == 1 and "Traceback" not in res.stderr, res.stdout
    errors = [line for line in res.stdout.splitlines() if ": error: " in line]
    assert errors == [f"{label}:0: error: {errors[0].split(': error: ', 1)[1]}"] and phrase in errors[0]


def test_dota_label_whose_image_is_a_dangling_link_is_an_error(tmp_path: Path) -> None:
    from tests.robustness._data_fixtures import write_dota

    src = write_dota(tmp_path / "dota", {}, {"p": ["10 10 50 10 50 40 10 40 plane 0"]})
    (src / "images" / "p.jpg").symlink_to(tmp_path / "gone.jpg")
    res = run_cli(["data", "check", src, "--format", "dota"], tmp_path)
    assert res.rc == 1 and f"{src / 'labelTxt' / 'p.txt'}:0: error: its image" in res.stdout
    res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo", src, tmp_path / "out"], tmp_path)
    assert_one_line_error(res, 1, ["p.txt", "no image"])


# -- one stray line is one error; path: is honoured ------------------------------------------------------------------
def test_one_stray_axis_aligned_line_is_one_error(base_dataset: Path, tmp_path: Path) -> None:
    root = _copy(base_dataset, tmp_path / "ds")
    first = sorted((root / "labels" / "train").iterdir())[0]
    first.write_text("0 0.5 0.5 0.2 0.2\n" + first.read_text())  # the very first line of the dataset
    res = run_cli(["data", "check", root], tmp_path)
    errors = [line for line in res.stdout.splitlines() if ": error: " in line]
    assert res.rc == 1 and errors == [f"{first}:1: error: expected 9 fields (cls x1 y1 x2 y2 x3 y3 x4 y4), got 5"]


def test_data_yaml_path_key_is_honoured(base_dataset: Path, tmp_path: Path) -> None:
    from edgekit.data.layout import DatasetLayout

    elsewhere = tmp_path / "configs" / "mine.yaml"
    elsewhere.parent.mkdir()
    elsewhere.write_text(f"path: {base_dataset}\n" + YAML_OK)
    layout = DatasetLayout.load(elsewhere)
    assert layout.root == base_dataset and layout.data_yaml == elsewhere
    assert len(layout.image_paths("train")) == 8
    res = run_cli(["data", "check", elsewhere], tmp_path)
    assert res.rc == 0, res.stdout + res.stderr
    relative = tmp_path / "rel.yaml"
    relative.write_text(f"path: {os.path.relpath(base_dataset, tmp_path)}\n" + YAML_OK)
    assert DatasetLayout.load(relative).root == base_dataset
    (tmp_path / "bad.yaml").write_text("path: /nonexistent/ds\n" + YAML_OK)
    res = run_cli(["data", "check", tmp_path / "bad.yaml"], tmp_path)
    assert res.rc == 1 and "'path: /nonexistent/ds' is not a directory" in res.stdout
