"""CalibrationSet: listing, deterministic subsets, errors that name the folder, exact runtime preprocessing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fakes.onnx_graphs import write_images

from edgekit.calib.dataset import CalibrationSet
from edgekit.core.errors import CalibrationError
from edgekit.core.letterbox import LetterboxSpec, preprocess

SPEC = LetterboxSpec(imgsz=32)


def test_lists_recursively_all_formats(calib_dir):
    calib = CalibrationSet.from_dir(calib_dir, SPEC, size=100)
    assert len(calib) == 10
    assert {p.suffix for p in calib.paths} == {".jpg", ".png", ".bmp"}
    assert any(p.parent.name == "nested" for p in calib.paths)


def test_subset_is_deterministic_per_seed(calib_dir):
    a = CalibrationSet.from_dir(calib_dir, SPEC, size=5, seed=0)
    b = CalibrationSet.from_dir(calib_dir, SPEC, size=5, seed=0)
    c = CalibrationSet.from_dir(calib_dir, SPEC, size=5, seed=3)
    assert a.paths == b.paths and len(a) == 5
    assert a.paths != c.paths


@pytest.mark.parametrize("n_images, min_images, expected", [
    (None, 8, "does not exist"),
    (0, 8, "found 0 images in"),
    (3, 8, "found 3 images in {dir}, need >= 8; add images or pass --calib-size 3"),
])
def test_too_few_images_refused_naming_the_folder(tmp_path, n_images, min_images, expected):
    folder = tmp_path / "imgs"
    if n_images is not None:
        write_images(folder, n_images)
        folder.mkdir(exist_ok=True)
    with pytest.raises(CalibrationError) as err:
        CalibrationSet.from_dir(folder, SPEC, size=8, min_images=min_images)
    assert expected.format(dir=folder) in str(err.value)
    assert str(folder) in str(err.value)


def test_a_file_given_as_the_folder_is_named_as_such(tmp_path):
    image = write_images(tmp_path, 1)[0]
    with pytest.raises(CalibrationError, match=f"folder {image} is a file, not a folder"):
        CalibrationSet.from_dir(image, SPEC, size=8)


def test_batches_are_exactly_the_runtime_preprocessing(calib_dir):
    calib = CalibrationSet.from_dir(calib_dir, SPEC, size=5)
    batches = list(calib.batches(2))
    assert [b.shape for b in batches] == [(2, 3, 32, 32), (2, 3, 32, 32), (1, 3, 32, 32)]
    assert [b.shape[0] for b in calib.batches(2, drop_last=True)] == [2, 2]
    expected = np.concatenate([preprocess(cv2.imread(str(p)), SPEC)[0] for p in calib.paths])
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    assert expected.dtype == np.float32


def test_unreadable_image_is_named(tmp_path):
    write_images(tmp_path, 8)
    bad = tmp_path / "img_003.jpg"
    bad.write_bytes(b"not a jpeg")
    calib = CalibrationSet.from_dir(tmp_path, SPEC, size=8)
    with pytest.raises(CalibrationError, match="img_003.jpg"):
        list(calib.batches(4))


def test_data_hash_covers_bytes_and_preprocessing(tmp_path):
    write_images(tmp_path, 8)
    calib = CalibrationSet.from_dir(tmp_path, SPEC, size=8)
    first = calib.data_hash()
    assert first == CalibrationSet.from_dir(tmp_path, SPEC, size=8).data_hash()
    assert first != CalibrationSet.from_dir(tmp_path, LetterboxSpec(imgsz=32, pad_value=0), size=8).data_hash()
    write_images(tmp_path, 1, seed=9)  # overwrites img_000.jpg with other pixels
    assert first != calib.data_hash()
