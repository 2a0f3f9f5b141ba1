"""Training-time metrics against hand-computed values: AP@0.5 and ST-IoU."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.train.fewshot.valmetrics import average_precision, st_iou, video_st_iou

B = np.array([[0, 0, 10, 10]], np.float32)


def test_ap50_hand_computed():
    # frame 1: one GT, a TP at 0.9 and a duplicate FP at 0.8; frame 2: one GT missed, an FP at 0.7.
    preds = [(np.array([[0, 0, 10, 10], [1, 1, 10, 10]], np.float32), np.array([0.9, 0.8])),
             (np.array([[50, 50, 60, 60]], np.float32), np.array([0.7]))]
    gts = [B, np.array([[20, 20, 30, 30]], np.float32)]
    r = average_precision(preds, gts)
    # PR points: (r=0.5, p=1), (0.5, 0.5), (0.5, 0.33): AP = 0.5 * 1
    assert r["ap50"] == pytest.approx(0.5)
    assert r["precision"] == pytest.approx(1 / 3) and r["recall"] == pytest.approx(0.5)
    assert average_precision([(B, np.array([0.5]))], [B])["ap50"] == pytest.approx(1.0)
    assert average_precision([(np.zeros((0, 4)), np.zeros(0))], [B])["ap50"] == 0.0


def test_st_iou_hand_computed():
    half = np.array([[0, 0, 10, 5]], np.float32)  # IoU 0.5 with B
    # frames: both (IoU 1), both (0.5), pred only (0), gt only (0), neither (skipped) -> 1.5 / 4
    assert st_iou([B, half, B, None, None], [B, B, None, B, None]) == pytest.approx(1.5 / 4)
    assert st_iou([None], [None]) == 0.0
    preds = [(np.array([[0, 0, 10, 5], [0, 0, 10, 10]], np.float32), np.array([0.3, 0.9])),
             (B, np.array([0.1]))]  # frame 2's box is under the threshold: no prediction there
    assert video_st_iou(preds, [B, np.zeros((0, 4))], conf=0.25) == pytest.approx(1.0)
