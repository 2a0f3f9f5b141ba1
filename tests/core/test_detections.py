"""Detections: validation, numpy-style selection, geometry helpers, exact JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.core.detections import Detections


def make(n: int = 4, obb: bool = True, targets: bool = False, seed: int = 0) -> Detections:
    rng = np.random.default_rng(seed)
    if obb:
        boxes = np.concatenate([rng.uniform(0, 100, (n, 4)), rng.uniform(-0.7, 2.3, (n, 1))], 1)
    else:
        xy = rng.uniform(0, 80, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(1, 20, (n, 2))], 1)
    return Detections(boxes, rng.uniform(0, 1, n), rng.integers(0, 5, n),
                      rng.integers(0, 3, n) if targets else None)


def test_dtypes_are_normalised():
    d = make()
    assert (d.boxes.dtype, d.scores.dtype, d.class_ids.dtype) == (np.float32, np.float32, np.int64)
    assert d.target_ids is None
    assert make(targets=True).target_ids.dtype == np.int64


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"boxes": np.zeros((2, 6))}, "boxes"),
    ({"boxes": np.zeros(5)}, "boxes"),
    ({"scores": np.zeros(3)}, "scores"),
    ({"scores": np.zeros((2, 1))}, "scores"),
    ({"class_ids": np.zeros(1)}, "class_ids"),
    ({"class_ids": np.array([0.5, 1.0])}, "class_ids"),
    ({"target_ids": np.zeros(4)}, "target_ids"),
])
def test_validation_names_the_field(kwargs, field):
    args = {"boxes": np.zeros((2, 5)), "scores": np.zeros(2), "class_ids": np.zeros(2)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"Detections.{field}"):
        Detections(**args)


def test_float_class_ids_that_are_whole_numbers_are_accepted():
    d = Detections(np.zeros((2, 4)), np.zeros(2), np.array([1.0, 2.0]))
    assert d.class_ids.tolist() == [1, 2]


def test_numpy_style_selection():
    d = make(6, targets=True)
    hi = d[d.scores > 0.5]
    assert len(hi) == int((d.scores > 0.5).sum())
    assert np.all(hi.scores > 0.5)
    assert d[1:3] == Detections(d.boxes[1:3], d.scores[1:3], d.class_ids[1:3], d.target_ids[1:3])
    one = d[2]
    assert len(one) == 1 and one.boxes[0].tolist() == d.boxes[2].tolist()
    assert len(d[np.array([0, 0, 5])]) == 3


def test_empty_and_concat():
    assert Detections.empty().boxes.shape == (0, 5)
    assert Detections.empty(obb=False).xyxy.shape == (0, 4)
    assert Detections.empty().corners().shape == (0, 4, 2)
    a, b = make(3, seed=1), make(2, seed=2)
    ab = Detections.concat([a, b])
    assert len(ab) == 5 and ab[3:] == b
    assert Detections.concat([], obb=False).boxes.shape == (0, 4)
    with pytest.raises(ValueError, match="mix"):
        Detections.concat([a, make(obb=False)])
    with pytest.raises(ValueError, match="target_ids"):
        Detections.concat([a, make(targets=True)])


def test_obb_hull_and_corners():
    d = Detections(np.array([[10, 20, 4, 2, np.pi / 2]]), np.array([1.0]), np.array([0]))
    assert d.is_obb
    np.testing.assert_allclose(d.xyxy, [[9, 18, 11, 22]], atol=1e-5)
    assert d.corners().shape == (1, 4, 2)
    np.testing.assert_allclose(d.areas, [8.0])


def test_axis_aligned_helpers():
    d = Detections(np.array([[1, 2, 5, 4]]), np.array([1.0]), np.array([0]))
    assert not d.is_obb
    assert d.corners()[0].tolist() == [[1, 2], [5, 2], [5, 4], [1, 4]]
    assert d.xywhr.tolist() == [[3, 3, 4, 2, 0]]
    assert d.xyxy.tolist() == [[1, 2, 5, 4]]


@pytest.mark.parametrize("obb", [True, False])
@pytest.mark.parametrize("targets", [True, False])
def test_json_round_trip_is_exact(obb, targets):
    d = make(7, obb=obb, targets=targets)
    back = Detections.from_json(d.to_json())
    assert back == d  # bit-identical float32
    assert back.boxes.dtype == np.float32
    assert json.loads(d.to_json())["format"] == ("xywhr" if obb else "xyxy")


def test_empty_json_round_trip_keeps_format():
    for obb in (True, False):
        e = Detections.empty(obb=obb)
        assert Detections.from_json(e.to_json()) == e


@pytest.mark.parametrize(("data", "message"), [
    ({"boxes": [], "scores": [], "class_ids": [], "colour": 1}, "unknown key 'colour'"),
    ({"boxes": [], "scores": []}, "missing key 'class_ids'"),
    ({"format": "xywh", "boxes": [], "scores": [], "class_ids": []}, "format"),
    ({"format": "xyxy", "boxes": [[0, 0, 1, 1, 0]], "scores": [1], "class_ids": [0]}, r"\(N, 4\)"),
    ({"boxes": [[0, 0, 1, 1]], "scores": [1], "class_ids": [1.5]}, "class_ids must hold integers"),
    ({"boxes": [[0, 0, 1, 1]], "scores": [1], "class_ids": [1], "target_ids": [0.25]}, "target_ids must hold integers"),
])
def test_from_dict_errors(data, message):
    with pytest.raises(ValueError, match=message):
        Detections.from_dict(data)


def test_equality():
    d = make()
    assert d == make()
    assert d != make(seed=3)
    assert d != make(targets=True)
    assert d != "not detections"
