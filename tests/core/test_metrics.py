"""mAP and matching: perfect, empty, hand-computed cases, and parity with Ultralytics' ap_per_class."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from edgekit.core.detections import Detections
from edgekit.core.metrics import compute_ap, evaluate_map, match_detections


def gt_set(seed: int, n: int = 5, nc: int = 3, obb: bool = True) -> Detections:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(10, 200, (n, 2))
    wh = rng.uniform(8, 30, (n, 2))
    if obb:
        boxes = np.concatenate([xy, wh, rng.uniform(-0.7, 2.3, (n, 1))], 1)
    else:
        boxes = np.concatenate([xy, xy + wh], 1)
    return Detections(boxes, np.ones(n), rng.integers(0, nc, n))


def shifted(d: Detections, dx: float, score: float) -> Detections:
    boxes = d.boxes.copy()
    boxes[:, 0] += dx
    if not d.is_obb:
        boxes[:, 2] += dx
    return Detections(boxes, np.full(len(d), score), d.class_ids)


@pytest.mark.parametrize("obb", [True, False])
def test_perfect_predictions_score_one(obb):
    gts = [gt_set(i, obb=obb) for i in range(4)]
    preds = [shifted(g, 0.0, 0.9) for g in gts]
    r = evaluate_map(preds, gts, nc=3)
    assert r.map50 == pytest.approx(1.0) and r.map50_95 == pytest.approx(1.0)
    assert r.precision == pytest.approx(1.0) and r.recall == pytest.approx(1.0)
    assert r.n_gt.sum() == 20 and r.n_images == 4


def test_no_predictions_score_zero():
    gts = [gt_set(i) for i in range(3)]
    r = evaluate_map([Detections.empty() for _ in gts], gts, nc=3)
    assert (r.map50, r.map50_95, r.precision, r.recall) == (0.0, 0.0, 0.0, 0.0)


def test_classes_without_ground_truth_are_nan_and_left_out():
    gt = Detections(np.array([[50, 50, 20, 10, 0.0]]), np.ones(1), np.array([0]))
    fp_other_class = Detections(np.array([[150, 150, 20, 10, 0.0]]), np.array([0.3]), np.array([2]))
    r = evaluate_map([Detections.concat([gt, fp_other_class])], [gt], nc=3)
    assert r.map50 == pytest.approx(1.0)
    assert math.isnan(r.per_class_ap50[1]) and math.isnan(r.per_class_ap50[2])
    assert r.to_dict()["per_class_ap50"] == [1.0, None, None]


def test_hand_computed_case():
    # One class, two ground truths, three predictions by descending score:
    # 0.9 hits gt A (TP), 0.8 misses (FP), 0.7 hits gt B (TP).
    # recall = [.5, .5, 1], precision = [1, .5, 2/3]; envelope at recall >= r is 1 for r <= .5 and
    # 2/3 above, so COCO 101-point AP = (51 * 1 + 50 * 2/3) / 101.
    gts = Detections(np.array([[20, 20, 10, 10, 0.0], [80, 80, 10, 10, 0.0]]), np.ones(2), np.zeros(2))
    preds = Detections(np.array([[20, 20, 10, 10, 0.0], [150, 150, 10, 10, 0.0], [80, 80, 10, 10, 0.0]]),
                       np.array([0.9, 0.8, 0.7]), np.zeros(3))
    r = evaluate_map([preds], [gts], nc=1)
    expected = (51 * 1 + 50 * 2 / 3) / 101
    assert r.map50 == pytest.approx(expected)
    assert r.map50_95 == pytest.approx(expected)  # exact boxes: same at every threshold
    assert compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(expected)


def test_iou_threshold_decides():
    # a box shifted by 2 px of a 10 px square: IoU = 80 / 120 = 0.667 -> TP at .5 and .65, FP above
    gt = Detections(np.array([[20, 20, 10, 10, 0.0]]), np.ones(1), np.zeros(1))
    r = evaluate_map([shifted(gt, 2.0, 0.9)], [gt], nc=1)
    assert r.map50 == pytest.approx(1.0)
    assert r.map50_95 == pytest.approx(0.4)  # thresholds .5, .55, .6, .65 of ten


def test_wrong_class_is_a_miss():
    gt = Detections(np.array([[20, 20, 10, 10, 0.0]]), np.ones(1), np.zeros(1))
    pred = Detections(gt.boxes, np.array([0.9]), np.ones(1))
    assert evaluate_map([pred], [gt], nc=2).map50 == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"nc": 1}, "outside"),
    ({"nc": 3, "iou": "giou"}, "iou"),
    ({"nc": 3, "ap_method": "voc"}, "ap method"),
])
def test_evaluate_map_errors(kwargs, message):
    gts = [gt_set(0)]
    with pytest.raises(ValueError, match=message):
        evaluate_map([shifted(gts[0], 1.0, 0.5)], gts, **kwargs)


def test_length_mismatch():
    with pytest.raises(ValueError, match="ground-truth sets"):
        evaluate_map([Detections.empty()], [], nc=1)


def test_matches_ultralytics_ap_per_class_with_probiou():
    torch = pytest.importorskip("torch")
    um = pytest.importorskip("ultralytics.utils.metrics")
    from ultralytics.engine.validator import BaseValidator

    rng = np.random.default_rng(11)
    gts, preds = [], []
    for i in range(6):
        g = gt_set(100 + i, n=8, nc=3)
        noisy = g.boxes + np.concatenate([rng.normal(0, 2, (8, 4)), rng.normal(0, 0.1, (8, 1))], 1)
        extra = gt_set(200 + i, n=4, nc=3).boxes  # false positives
        preds.append(Detections(np.concatenate([noisy, extra]), rng.uniform(0.05, 1, 12),
                                np.concatenate([g.class_ids, rng.integers(0, 3, 4)])))
        gts.append(g)
    ours = evaluate_map(preds, gts, nc=3, iou="probiou", ap_method="ultralytics")

    validator = types.SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    tps, confs, pcls, tcls = [], [], [], []
    for p, g in zip(preds, gts):
        p = p[np.argsort(-p.scores, kind="stable")]
        iou = um.batch_probiou(torch.from_numpy(g.boxes), torch.from_numpy(p.boxes))
        tps.append(BaseValidator.match_predictions(validator, torch.from_numpy(p.class_ids),
                                                   torch.from_numpy(g.class_ids), iou).numpy())
        confs.append(p.scores)
        pcls.append(p.class_ids)
        tcls.append(g.class_ids)
    out = um.ap_per_class(np.concatenate(tps), np.concatenate(confs), np.concatenate(pcls), np.concatenate(tcls))
    p, r, ap = out[2], out[3], out[5]
    assert 0.2 < ours.map50 < 1.0  # a non-trivial case
    np.testing.assert_allclose(ours.ap, ap, atol=1e-9)
    assert ours.map50 == pytest.approx(ap[:, 0].mean(), abs=1e-9)
    assert ours.map50_95 == pytest.approx(ap.mean(), abs=1e-9)
    assert ours.precision == pytest.approx(p.mean(), abs=1e-9)
    assert ours.recall == pytest.approx(r.mean(), abs=1e-9)
    # the polygon IoU default gives a (slightly) different but close answer
    assert evaluate_map(preds, gts, nc=3).map50 == pytest.approx(ours.map50, abs=0.15)


def test_pr_curve_shapes():
    gts = [gt_set(i) for i in range(2)]
    r = evaluate_map([shifted(g, 1.0, 0.8) for g in gts], gts, nc=3)
    assert r.pr_curve.precision_at_recall.shape == (3, 1000)
    assert r.pr_curve.f1_at_conf.shape == (3, 1000)
    assert 0.0 <= r.conf_threshold <= 1.0


# --- match_detections -----------------------------------------------------------------------------

def test_match_identical_sets():
    d = gt_set(3, n=6)
    m = match_detections(d, d[::-1])
    assert m.all_matched and m.mean_iou == pytest.approx(1.0) and m.max_score_diff == 0.0
    assert sorted((int(a), int(b)) for a, b in m.pairs) == [(i, 5 - i) for i in range(6)]


def test_match_partial_and_class_rules():
    a = Detections(np.array([[20, 20, 10, 10, 0.0], [60, 60, 10, 10, 0.0], [100, 100, 10, 10, 0.0]]),
                   np.array([0.9, 0.8, 0.7]), np.array([0, 1, 0]))
    b = Detections(np.array([[21, 20, 10, 10, 0.0], [60, 60, 10, 10, 0.0]]), np.array([0.85, 0.8]),
                   np.array([0, 0]))
    m = match_detections(a, b)
    assert m.pairs.tolist() == [[0, 0]]
    assert m.unmatched_a.tolist() == [1, 2] and m.unmatched_b.tolist() == [1]
    assert m.mean_iou == pytest.approx(90 / 110)
    assert m.max_score_diff == pytest.approx(0.05, abs=1e-6)
    loose = match_detections(a, b, same_class=False)
    assert loose.pairs.tolist() == [[0, 0], [1, 1]]


def test_match_empty_sets():
    assert match_detections(Detections.empty(), Detections.empty()).mean_iou == 1.0
    m = match_detections(gt_set(1), Detections.empty())
    assert m.mean_iou == 0.0 and len(m.unmatched_a) == 5


def test_match_xyxy_against_obb():
    aa = Detections(np.array([[10, 10, 30, 20]]), np.ones(1), np.zeros(1))
    ob = Detections(np.array([[20, 15, 20, 10, 0.0]]), np.ones(1), np.zeros(1))
    assert match_detections(aa, ob).mean_iou == pytest.approx(1.0)
