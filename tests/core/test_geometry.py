"""OBB geometry: conversions, exact polygon IoU, ProbIoU, NMS against brute-force references."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.core.geometry import (
    box_iou_matrix,
    convex_intersection_area,
    corners_to_xywhr,
    nms_xyxy,
    obb_iou_matrix,
    polygon_area,
    polygon_iou,
    probiou_matrix,
    regularize_xywhr,
    rotated_nms,
    xywhr_to_corners,
)

SQUARE = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], np.float64)


def random_boxes(rng: np.random.Generator, n: int, spread: float = 40.0) -> np.ndarray:
    return np.stack([
        rng.uniform(0, spread, n), rng.uniform(0, spread, n),
        rng.uniform(2, 20, n), rng.uniform(2, 20, n), rng.uniform(-math.pi, math.pi, n),
    ], 1)


def same_rectangle(a: np.ndarray, b: np.ndarray, atol: float = 1e-4) -> bool:
    """Two xywhr boxes describe the same rectangle (corner sets equal in some cyclic order)."""
    ca, cb = xywhr_to_corners(a), xywhr_to_corners(b)
    return any(np.allclose(ca, np.roll(cb, k, 0), atol=atol) for k in range(4))


@pytest.mark.parametrize(("a", "b", "expected"), [
    (SQUARE, SQUARE, 1.0),                                   # identical
    (SQUARE, SQUARE + 5, 0.0),                               # disjoint
    (SQUARE, SQUARE + [1, 0], 2 / 6),                        # half overlap: 2 / (4 + 4 - 2)
    (SQUARE, SQUARE[::-1] + [1, 1], 1 / 7),                  # quarter overlap, clockwise input
    (SQUARE, SQUARE + [2, 0], 0.0),                          # touching edge
    (SQUARE, np.array([[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 1.5]]), 0.25),  # contained
])
def test_polygon_iou_known_cases(a, b, expected):
    assert polygon_iou(a, b) == pytest.approx(expected, abs=1e-12)
    assert polygon_iou(b, a) == pytest.approx(expected, abs=1e-12)


def test_rotated_square_analytic_overlap():
    # A unit-half-width square and the same square turned 45 degrees: the overlap is a regular
    # octagon of area 8 (sqrt(2) - 1) for side 2, so IoU = octagon / (8 - octagon).
    octagon = 8 * (math.sqrt(2) - 1)
    expected = octagon / (8 - octagon)
    a, b = np.array([[0, 0, 2, 2, 0.0]]), np.array([[0, 0, 2, 2, math.pi / 4]])
    assert obb_iou_matrix(a, b)[0, 0] == pytest.approx(expected, abs=1e-12)
    assert polygon_iou(xywhr_to_corners(a)[0], xywhr_to_corners(b)[0]) == pytest.approx(expected, abs=1e-12)


def test_polygon_area_shoelace():
    assert polygon_area(SQUARE) == pytest.approx(4.0)
    assert polygon_area(SQUARE[::-1]) == pytest.approx(4.0)
    assert polygon_area(np.stack([SQUARE, SQUARE * 3])).tolist() == pytest.approx([4.0, 36.0])


def test_xywhr_to_corners_matches_ultralytics_order():
    ops = pytest.importorskip("ultralytics.utils.ops")
    boxes = random_boxes(np.random.default_rng(0), 50)
    np.testing.assert_allclose(xywhr_to_corners(boxes), ops.xywhr2xyxyxyxy(boxes), atol=1e-12)


def test_corners_round_trip_random_angles():
    boxes = random_boxes(np.random.default_rng(1), 200)
    back = corners_to_xywhr(xywhr_to_corners(boxes))
    assert back.shape == (200, 5)
    assert np.all(back[:, 2] >= back[:, 3])
    assert np.all((back[:, 4] >= -math.pi / 4) & (back[:, 4] < 3 * math.pi / 4))
    for a, b in zip(boxes, back):
        assert same_rectangle(a, b), (a, b)
    # flat (N, 8) input gives the same answer
    np.testing.assert_allclose(corners_to_xywhr(xywhr_to_corners(boxes).reshape(-1, 8)), back)


def test_corners_to_xywhr_matches_ultralytics_min_area_rect():
    ops = pytest.importorskip("ultralytics.utils.ops")
    rng = np.random.default_rng(2)
    # jittered corners: not exact rectangles, as after augmentation; the min-area rectangle decides
    corners = xywhr_to_corners(random_boxes(rng, 100)) + rng.normal(0, 0.5, (100, 4, 2))
    ours, theirs = corners_to_xywhr(corners), ops.xyxyxyxy2xywhr(corners)
    areas_ours, areas_theirs = ours[:, 2] * ours[:, 3], theirs[:, 2] * theirs[:, 3]
    np.testing.assert_allclose(areas_ours, areas_theirs, rtol=1e-5)  # cv2 works in float32
    # Both rectangles contain every corner. Jittered quads often have two minimal rectangles of
    # exactly equal area (both span the same triangle), so which one comes back may differ.
    for box, pts in zip(ours, corners):
        c, s = np.cos(box[4]), np.sin(box[4])
        local = (pts - box[:2]) @ np.array([[c, -s], [s, c]])
        assert np.all(np.abs(local) <= box[2:4] / 2 + 1e-6)
    same = sum(same_rectangle(a, b, atol=2e-2) for a, b in zip(ours, theirs))
    assert same >= 80


def test_corners_to_xywhr_empty():
    assert corners_to_xywhr(np.zeros((0, 4, 2))).shape == (0, 5)


@pytest.mark.parametrize(("box", "convention", "expected"), [
    ([0, 0, 2, 4, 0.0], "le135", [0, 0, 4, 2, math.pi / 2]),
    ([0, 0, 4, 2, math.pi], "le135", [0, 0, 4, 2, 0.0]),
    ([0, 0, 4, 2, 3 * math.pi / 4], "le135", [0, 0, 4, 2, -math.pi / 4]),
    ([0, 0, 4, 2, -math.pi / 2], "le180", [0, 0, 4, 2, math.pi / 2]),
    ([0, 0, 4, 2, 2.0], "rboxes", [0, 0, 2, 4, 2.0 - math.pi / 2]),
])
def test_regularize_table(box, convention, expected):
    np.testing.assert_allclose(regularize_xywhr(np.array([box]), convention)[0], expected, atol=1e-12)


def test_regularize_keeps_rectangles_and_matches_ultralytics():
    ops = pytest.importorskip("ultralytics.utils.ops")
    torch = pytest.importorskip("torch")
    boxes = random_boxes(np.random.default_rng(3), 300)
    for convention in ("le135", "le180", "rboxes"):
        reg = regularize_xywhr(boxes, convention)
        assert all(same_rectangle(a, b) for a, b in zip(boxes, reg)), convention
    np.testing.assert_allclose(
        regularize_xywhr(boxes, "rboxes"), ops.regularize_rboxes(torch.from_numpy(boxes)).numpy(), atol=1e-9)
    # le135 is the canonical form xyxyxyxy2xywhr returns (skip near-square boxes: angle is ambiguous)
    clear = np.abs(boxes[:, 2] - boxes[:, 3]) > 0.5
    theirs = ops.xyxyxyxy2xywhr(xywhr_to_corners(boxes[clear]))
    np.testing.assert_allclose(regularize_xywhr(boxes[clear]), theirs, atol=2e-4)


def test_regularize_rejects_unknown_convention():
    with pytest.raises(ValueError, match="convention"):
        regularize_xywhr(np.zeros((1, 5)), "oc")


def test_obb_iou_matrix_matches_single_pair_clipping():
    rng = np.random.default_rng(4)
    a, b = random_boxes(rng, 30, 30), random_boxes(rng, 25, 30)
    m = obb_iou_matrix(a, b)
    ca, cb = xywhr_to_corners(a), xywhr_to_corners(b)
    ref = np.array([[polygon_iou(p, q) for q in cb] for p in ca])
    assert (ref > 0).sum() > 50  # the table actually exercises overlaps
    np.testing.assert_allclose(m, ref, atol=1e-9)
    assert obb_iou_matrix(a[:0], b).shape == (0, 25)


def test_convex_intersection_handles_shared_edges_and_vertices():
    quads = np.stack([SQUARE, SQUARE, SQUARE])
    others = np.stack([SQUARE, SQUARE + [0, 1], np.array([[2, 2], [4, 2], [4, 4], [2, 4]], float)])
    np.testing.assert_allclose(convex_intersection_area(quads, others), [4.0, 2.0, 0.0], atol=1e-12)


def test_probiou_matches_ultralytics():
    metrics = pytest.importorskip("ultralytics.utils.metrics")
    rng = np.random.default_rng(5)
    a, b = random_boxes(rng, 20), random_boxes(rng, 15)
    ours = probiou_matrix(a, b)
    theirs = metrics.batch_probiou(a, b).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert probiou_matrix(a[:1], a[:1])[0, 0] == pytest.approx(1.0, abs=1e-3)


def test_box_iou_matrix():
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], float)
    b = np.array([[1, 0, 3, 2]], float)
    np.testing.assert_allclose(box_iou_matrix(a, b), [[2 / 6], [0.0]])


def greedy_reference(boxes, scores, thr, class_ids=None):
    """Textbook greedy NMS, one pair at a time."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for k in keep:
            same = class_ids is None or class_ids[i] == class_ids[k]
            if same and polygon_iou(xywhr_to_corners(boxes[i]), xywhr_to_corners(boxes[k])) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("class_aware", [False, True])
def test_rotated_nms_matches_brute_force(seed, class_aware):
    rng = np.random.default_rng(seed)
    boxes, scores = random_boxes(rng, 60, 30), rng.uniform(0, 1, 60)
    class_ids = rng.integers(0, 3, 60) if class_aware else None
    keep = rotated_nms(boxes, scores, 0.3, class_ids)
    assert keep.tolist() == greedy_reference(boxes, scores, 0.3, class_ids)
    assert 5 < len(keep) < 60  # both suppression and survival happen
    assert rotated_nms(boxes, scores, 0.3, class_ids, max_det=3).tolist() == keep[:3].tolist()


def test_fast_nms_probiou_matches_ultralytics():
    torch = pytest.importorskip("torch")
    nms_mod = pytest.importorskip("ultralytics.utils.nms")
    metrics = pytest.importorskip("ultralytics.utils.metrics")
    rng = np.random.default_rng(7)
    boxes, scores = random_boxes(rng, 80, 30), rng.uniform(0, 1, 80)
    theirs = nms_mod.TorchNMS.fast_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5,
                                       iou_func=metrics.batch_probiou)
    ours = rotated_nms(boxes, scores, 0.5, iou="probiou", fast=True)
    assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("max_det", [10, 150, 5000])
def test_fast_nms_early_stop_keeps_the_same_prefix(max_det):
    # 1100 boxes span three 512-column blocks, so the block-wise early stop is exercised
    torch = pytest.importorskip("torch")
    nms_mod = pytest.importorskip("ultralytics.utils.nms")
    metrics = pytest.importorskip("ultralytics.utils.metrics")
    rng = np.random.default_rng(9)
    boxes, scores = random_boxes(rng, 1100, 100), rng.uniform(0, 1, 1100)
    theirs = nms_mod.TorchNMS.fast_nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.4,
                                       iou_func=metrics.batch_probiou)
    assert 200 < len(theirs) < 1100
    ours = rotated_nms(boxes, scores, 0.4, iou="probiou", fast=True, max_det=max_det)
    assert ours.tolist() == theirs[:max_det].tolist()


def test_nms_empty_and_errors():
    assert rotated_nms(np.zeros((0, 5)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(ValueError, match="rows"):
        rotated_nms(np.zeros((2, 5)), np.zeros(3), 0.5)
    with pytest.raises(ValueError, match="iou"):
        rotated_nms(np.ones((2, 5)), np.ones(2), 0.5, iou="giou")


def test_nms_xyxy_matches_torchvision():
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(8)
    xy = rng.uniform(0, 50, (100, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(3, 20, (100, 2))], 1)
    scores = rng.uniform(0, 1, 100)
    classes = rng.integers(0, 2, 100)
    theirs = tv_ops.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes), 0.45)
    assert nms_xyxy(boxes, scores, 0.45, classes).tolist() == theirs.tolist()
