"""RefDet metrics against hand-computed values: perfect, empty, one-sided, partial overlap, pooling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.core.detections import Detections
from edgekit.train.fewshot.evaluate import (
    Scored,
    VideoDetections,
    average_precision,
    evaluate_videos,
    format_table,
    frame_iou,
    plot_pr_curve,
    score_frame,
    st_iou,
)

BOX = [0.0, 0.0, 10.0, 10.0]
NONE = np.zeros((0, 4))


def dets(*rows) -> Detections:
    """Axis-aligned detections from (x1, y1, x2, y2, score) rows."""
    arr = np.asarray(rows, np.float32).reshape(-1, 5)
    return Detections(arr[:, :4], arr[:, 4], np.zeros(len(arr), np.int64))


def gt(*boxes) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4)


def video(name, pairs) -> VideoDetections:
    return VideoDetections(name, list(range(len(pairs))), [p for p, _ in pairs], [g for _, g in pairs])


def test_perfect_video_scores_one_everywhere():
    v = video("a", [(dets([*BOX, 0.9]), gt(BOX)), (dets([20, 20, 30, 40, 0.8]), gt([20, 20, 30, 40]))])
    m = evaluate_videos([v], conf=0.5).per_video["a"]
    assert (m.ap50, m.precision, m.recall, m.st_iou) == (1.0, 1.0, 1.0, 1.0)
    assert (m.n_frames, m.n_gt, m.n_pred, m.n_tp) == (2, 2, 2, 2)


def test_empty_video_has_undefined_metrics_not_made_up_ones():
    m = evaluate_videos([video("a", [(dets(), NONE), (dets(), NONE)])], conf=0.5).per_video["a"]
    assert (m.ap50, m.precision, m.recall, m.st_iou) == (None, None, None, None)
    assert (m.n_frames, m.n_gt, m.n_pred) == (2, 0, 0)


def test_ground_truth_without_predictions_scores_zero():
    m = evaluate_videos([video("a", [(dets(), gt(BOX)), (dets(), NONE)])], conf=0.5).per_video["a"]
    assert (m.ap50, m.precision, m.recall, m.st_iou) == (0.0, None, 0.0, 0.0)


def test_predictions_without_ground_truth_score_zero_precision_and_st_iou():
    m = evaluate_videos([video("a", [(dets([*BOX, 0.9]), NONE), (dets(), NONE)])], conf=0.5).per_video["a"]
    assert (m.ap50, m.precision, m.recall, m.st_iou) == (None, 0.0, None, 0.0)


def test_one_sided_frames_count_zero_in_st_iou():
    # frame 0: target missed; frame 1: a box where there is no target; frame 2: exact hit; frame 3: nothing
    v = video("a", [(dets(), gt(BOX)), (dets([50, 50, 60, 60, 0.8]), NONE), (dets([*BOX, 0.9]), gt(BOX)),
                    (dets(), NONE)])
    m = evaluate_videos([v], conf=0.5).per_video["a"]
    assert m.st_iou == pytest.approx(1 / 3)  # (0 + 0 + 1) / 3 frames with a box on either side
    # ranked: 0.9 TP, 0.8 FP over 2 ground-truth boxes -> recall 0.5 at precision 1, nothing further
    assert m.ap50 == pytest.approx(0.5)
    assert (m.precision, m.recall) == (0.5, 0.5)


@pytest.mark.parametrize("pred, iou, tp", [
    ([5, 0, 15, 10], 50 / 150, False),  # half the box shifted sideways: IoU 1/3, below 0.5
    ([0, 0, 10, 5], 0.5, True),  # the top half: IoU exactly 0.5 counts
    ([0, 0, 10, 8], 0.8, True),
    ([20, 20, 30, 30], 0.0, False),  # no overlap at all
])
def test_partial_overlap_frame_iou_and_match(pred, iou, tp):
    d = dets([*pred, 0.9])
    assert frame_iou(d, gt(BOX), conf=0.5) == pytest.approx(iou)
    assert score_frame(d, gt(BOX)).tp.tolist() == [tp]
    m = evaluate_videos([video("a", [(d, gt(BOX))])], conf=0.5).per_video["a"]
    assert m.st_iou == pytest.approx(iou)
    assert m.ap50 == (1.0 if tp else 0.0)


def test_st_iou_takes_the_top_scoring_box_not_the_best_overlapping_one():
    d = dets([0, 0, 10, 5, 0.9], [*BOX, 0.6])  # the top box overlaps 0.5, the exact one scores lower
    assert frame_iou(d, gt(BOX), conf=0.5) == pytest.approx(0.5)
    assert score_frame(d, gt(BOX)).tp.tolist() == [True, False]  # one ground truth: the second is a duplicate


def test_st_iou_ignores_boxes_below_conf():
    d = dets([*BOX, 0.3])
    assert frame_iou(d, gt(BOX), conf=0.5) == 0.0  # ground truth only at this threshold
    assert frame_iou(d, NONE, conf=0.5) is None  # neither side
    assert st_iou([d, dets([*BOX, 0.9])], [gt(BOX), gt(BOX)], conf=0.25) == 1.0


def test_st_iou_uses_the_best_ground_truth_box_of_a_frame():
    assert frame_iou(dets([*BOX, 0.9]), gt([20, 20, 30, 30], BOX), conf=0.5) == 1.0


def test_ap_is_all_point_interpolated():
    # ranked TP, FP, TP over 3 gt: recall 1/3 @ P 1, then 2/3 @ P 2/3 -> 1/3 * 1 + 1/3 * 2/3 = 5/9
    ap, rec, prec = average_precision(Scored(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3))
    assert ap == pytest.approx(5 / 9)
    assert rec.tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3])
    assert prec.tolist() == pytest.approx([1, 0.5, 2 / 3])
    # the envelope lifts an early dip: FP, TP, TP over 2 gt -> P 2/3 reaches recall 1 -> AP 2/3
    assert average_precision(Scored(np.array([0.9, 0.8, 0.7]), np.array([False, True, True]), 2))[0] \
        == pytest.approx(2 / 3)
    # order comes from the scores, not from the input order
    assert average_precision(Scored(np.array([0.7, 0.9]), np.array([True, False]), 1))[0] == pytest.approx(0.5)


def test_xywhr_angle_zero_rows_score_like_xyxy():
    xywhr = Detections(np.array([[5, 5, 10, 10, 0.0]]), np.array([0.9]), np.array([0]))
    assert frame_iou(xywhr, gt(BOX), conf=0.5) == pytest.approx(1.0)
    assert score_frame(xywhr, gt(BOX)).tp.tolist() == [True]


def test_overall_pools_frames_and_averages_videos():
    a = video("a", [(dets([*BOX, 0.9]), gt(BOX)), (dets([*BOX, 0.8]), gt(BOX))])  # perfect, 2 gt
    b = video("b", [(dets(), gt(BOX))])  # missed, 1 gt
    c = video("c", [(dets(), NONE)])  # nothing on either side: no ST-IoU, no AP
    report = evaluate_videos([a, b, c], conf=0.5)
    o = report.overall
    assert o.ap50 == pytest.approx(2 / 3)  # pooled: 2 TPs at precision 1 over 3 gt
    assert o.map50 == pytest.approx(0.5)  # mean of a's 1.0 and b's 0.0; c has no ground truth
    assert o.st_iou == pytest.approx(0.5)  # mean of a's 1.0 and b's 0.0; c is left out
    assert (o.precision, o.recall, o.n_frames, o.n_gt, o.n_pred, o.n_tp) == (1.0, pytest.approx(2 / 3), 4, 3, 2, 2)
    d = report.to_dict()
    assert d["overall"]["map50"] == pytest.approx(0.5) and d["per_video"]["c"]["st_iou"] is None
    assert list(d["per_video"]) == ["a", "b", "c"]


def test_duplicate_videos_and_ragged_inputs_are_refused():
    with pytest.raises(ValueError, match="twice"):
        evaluate_videos([video("a", []), video("a", [])])
    with pytest.raises(ValueError, match="2 frames"):
        VideoDetections("a", [0, 1], [dets()], [NONE])


def test_table_and_pr_curve(tmp_path: Path):
    report = evaluate_videos([video("clip_a", [(dets([*BOX, 0.9]), gt(BOX))]), video("clip_b", [(dets(), gt(BOX))])],
                             conf=0.25)
    text = format_table(report)
    lines = text.splitlines()
    assert any("clip_a" in line and "1.000" in line for line in lines)
    assert any(line.lstrip("│ ").startswith("all") and "0.500" in line for line in lines)
    assert "mAP50 over videos 0.500" in text
    png = plot_pr_curve(report, tmp_path / "pr.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_the_trainers_validation_metrics_on_one_target_per_frame(seed):
    """The trainer's small validator (valmetrics.py) and `eval refdet` must not drift apart; they differ only
    where a value is undefined (valmetrics says 0, eval says None) and with several boxes per frame."""
    from edgekit.train.fewshot import valmetrics

    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(40):
        g = rng.uniform(0, 50, 2)
        gt_f = gt([*g, *(g + rng.uniform(5, 20, 2))]) if rng.random() < 0.7 else NONE
        k = int(rng.integers(0, 4))
        centre = gt_f[0, :2] if len(gt_f) else rng.uniform(0, 50, 2)
        jitter = rng.normal(0, 3, (k, 4))
        rows = [[*(centre + jitter[i, :2]), *(centre + 12 + jitter[i, 2:]), rng.uniform(0.01, 1)] for i in range(k)]
        preds.append(dets(*rows) if rows else dets())
        gts.append(gt_f)
    conf = 0.3
    mine = evaluate_videos([video("v", list(zip(preds, gts)))], conf=conf).overall
    theirs = valmetrics.average_precision([(p.xyxy, p.scores) for p in preds], gts, conf=conf)
    assert mine.ap50 == pytest.approx(theirs["ap50"]) and mine.recall == pytest.approx(theirs["recall"])
    assert mine.precision == pytest.approx(theirs["precision"])
    assert mine.st_iou == pytest.approx(valmetrics.video_st_iou([(p.xyxy, p.scores) for p in preds], gts, conf))


def test_the_trainers_validation_metrics_are_python_numbers():
    """They go into checkpoints; a numpy scalar there makes safe_load refuse the checkpoint (weights_only)."""
    from edgekit.train.fewshot import valmetrics

    far = [20.0, 20.0, 30.0, 30.0]  # a false positive above conf: its numpy False made the sum a numpy int
    out = valmetrics.average_precision([(np.array([BOX, far]), np.array([0.9, 0.8]))], [gt(BOX)], conf=0.5)
    assert (out["precision"], out["recall"], out["ap50"]) == (0.5, 1.0, 1.0)
    assert all(type(v) in (float, int) for v in out.values()), {k: type(v) for k, v in out.items()}
