"""The parity comparisons on hand-made outputs whose verdict is known."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.detections import Detections
from edgekit.export.options import ParityTolerance
from edgekit.export.parity import compare_detections, compare_raw

TOL = ParityTolerance()  # atol 1e-4, rtol 1e-3 of each channel's range


def _raw():
    raw = np.zeros((1, 3, 4), np.float32)
    raw[0, 0] = [1.0, 300.0, 50.0, 2.0]  # a pixel-coordinate channel (range 300)
    raw[0, 1] = [0.1, 0.9, 0.5, 0.0]  # a score channel (range 0.9)
    return raw


@pytest.mark.parametrize("channel,col,delta,ok", [
    (0, 0, 0.2, True),  # 0.2 px on a box near the origin: within 1e-3 x 300 px
    (0, 1, 0.5, False),  # 0.5 px: beyond it
    (1, 0, 5e-4, True),  # scores: within 1e-4 + 1e-3 x 0.9
    (1, 0, 5e-3, False),
    (2, 0, 5e-5, True),  # an all-zero channel still gets atol
    (2, 0, 5e-4, False),
])
def test_compare_raw_uses_each_channels_range(channel, col, delta, ok):
    got = _raw().copy()
    got[0, channel, col] += delta
    res = compare_raw({"out": _raw()}, {"out": got}, TOL)["out"]
    assert res["ok"] is ok and res["max_abs"] == pytest.approx(delta, rel=1e-3)


def test_compare_raw_shape_mismatch_fails():
    assert compare_raw({"out": _raw()}, {"out": _raw()[:, :2]}, TOL)["out"]["ok"] is False


def _dets(rows):
    arr = np.asarray(rows, np.float32).reshape(-1, 7)
    return Detections(arr[:, :5], arr[:, 5], arr[:, 6].astype(np.int64))


A = [20, 20, 10, 4, 0.3, 0.9, 0]
B = [40, 40, 8, 8, 0.0, 0.8, 1]
C = [10, 50, 6, 3, 1.0, 0.6, 0]
NEAR_CONF = [50, 10, 6, 3, 0.5, 0.255, 2]


@pytest.mark.parametrize("ref,got,got_candidates,ok", [
    ([A, B], [B, A], None, True),  # order does not matter
    ([A, B], [A], None, False),  # a box the candidate lost and cannot explain
    ([A, B, NEAR_CONF], [A, B], None, True),  # score at the threshold: noise may drop it
    ([A, B, C], [A, B], [A, B, C], True),  # C survives pre-NMS on the other side: an NMS flip
    ([A, B], [A, B, C], None, True),  # ...and the mirror case, via ref's candidates below
    ([A], [[20, 20, 10, 4, 0.3, 0.9, 1]], [[20, 20, 10, 4, 0.3, 0.9, 1]], True),  # class argmax flip
    ([A], [[25, 20, 10, 4, 0.3, 0.9, 0]], [[25, 20, 10, 4, 0.3, 0.9, 0]], False),  # moved 5 px: real
])
def test_compare_detections_explains_only_decision_flips(ref, got, got_candidates, ok):
    ref_d, got_d = _dets(ref), _dets(got)
    res = compare_detections(ref_d, got_d, TOL, conf=0.25, ref_candidates=_dets([A, B, C]),
                             got_candidates=_dets(got_candidates) if got_candidates else got_d)
    assert res["ok"] is ok, res
