"""The one tolerance rule, on hand-made outputs whose verdict is known, and the golden set on real files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.detections import Detections
from edgekit.core.errors import ModelError
from edgekit.core.parity import (
    DEVICE_TOLERANCES,
    GOLDEN_FILE,
    GoldenCase,
    Tolerance,
    check_golden,
    compare_detections,
    compare_raw,
    failure_line,
    read_golden,
    run_parity,
    summarize,
    write_golden,
)
from edgekit.core.postprocess import PostprocessSpec, decode

TOL = Tolerance()  # atol 1e-4, rtol 1e-3 of each channel's range


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


def test_compare_raw_shape_mismatch_nan_and_missing_output():
    assert compare_raw({"out": _raw()}, {"out": _raw()[:, :2]}, TOL)["out"]["ok"] is False
    nan = _raw().copy()
    nan[0, 1, 1] = np.nan
    assert compare_raw({"out": _raw()}, {"out": nan}, TOL)["out"]["ok"] is False
    with pytest.raises(ModelError, match="output 'out' is missing"):
        compare_raw({"out": _raw()}, {"other": _raw()}, TOL)


def test_tolerance_without_atol_reports_but_does_not_judge_raw():
    got = _raw() + 100.0
    res = compare_raw({"out": _raw()}, {"out": got}, DEVICE_TOLERANCES["int8"])["out"]
    assert res["ok"] is True and res["max_abs"] == pytest.approx(100.0)
    report = summarize([{"image": "a", "raw": {"out": res}}], DEVICE_TOLERANCES["int8"], "r", "g")
    assert report["passed"] is True and report["raw"]["judged"] is False


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


@pytest.mark.parametrize("min_match_rate,ok", [(1.0, False), (0.8, True)])
def test_min_match_rate_allows_a_share_of_lost_detections(min_match_rate, ok):
    # 5 ref, 4 got: 9 detections, 1 unexplained -> 8/9 = 0.89 matched-or-explained
    ref = [A, B, C, [60, 60, 5, 5, 0.0, 0.7, 0], [80, 20, 5, 5, 0.0, 0.7, 1]]
    tol = Tolerance(min_match_rate=min_match_rate)
    res = compare_detections(_dets(ref), _dets(ref[:4]), tol, conf=0.25)
    assert res["ok"] is ok and res["match_rate"] == pytest.approx(8 / 9)


# ---- golden set: a real OBB-like output tensor, a numpy "engine", real files -------------------------
NC = 2


def _obb_raw(shift: float = 0.0) -> np.ndarray:
    """(1, 4 + nc + 1, 3): three well-separated boxes, class scores, angles."""
    raw = np.zeros((1, 4 + NC + 1, 3), np.float32)
    raw[0, :4] = [[20, 60, 100], [20, 60, 100], [10, 12, 8], [6, 6, 6]]
    raw[0, 4] = [0.9, 0.1, 0.8]
    raw[0, 5] = [0.1, 0.7, 0.1]
    raw[0, 6] = [0.1, 0.2, 0.3]
    raw[0, 0] += shift
    return raw


class ArrayRunner:
    """A Runner-contract candidate computing outputs from the feed (images' mean shifts the boxes)."""

    name = "array"

    def __init__(self, shift: float = 0.0, drop_last: bool = False) -> None:
        self.shift, self.drop_last = shift, drop_last

    def infer(self, feed):
        raw = _obb_raw(float(feed["images"].mean()) + self.shift)
        if self.drop_last:
            raw[0, 4:6, 2] = 0.0  # the third box disappears
        return {"output0": raw}


def _decoder(outputs, post):
    return decode(outputs["output0"], post)


@pytest.fixture
def golden_dir(tmp_path: Path) -> Path:
    cases = []
    for i in range(2):
        feed = {"images": np.full((1, 3, 8, 8), 0.1 * i, np.float32)}
        ref = ArrayRunner().infer(feed)
        cases.append(GoldenCase(image=f"im{i}.jpg", inputs=feed, outputs={"fp32": ref, "int8": ref}))
    return write_golden(tmp_path / "golden", cases, conf=0.25)


def test_golden_round_trip(golden_dir):
    golden = read_golden(golden_dir)
    assert [c.image for c in golden.cases] == ["im0.jpg", "im1.jpg"] and golden.roles == ["fp32"]
    np.testing.assert_array_equal(golden.cases[1].inputs["images"], np.full((1, 3, 8, 8), 0.1, np.float32))
    assert golden.tolerance("int8").atol is None and golden.tolerance("fp16") == DEVICE_TOLERANCES["fp16"]
    assert golden.conf == 0.25


@pytest.mark.parametrize("precision,runner,min_match_rate,passed", [
    ("fp32", ArrayRunner(), None, True),
    ("fp32", ArrayRunner(shift=0.2), None, False),  # 0.2 px > 0.05 + 1e-3 x 100 px: raw fails
    ("fp16", ArrayRunner(shift=0.2), None, True),  # within FP16's 0.5 px
    ("int8", ArrayRunner(shift=2.0), None, True),  # 2 px: raw not judged; boxes still overlap at IoU >= 0.5
    ("int8", ArrayRunner(drop_last=True), None, True),  # one of three boxes lost: 8/10 = INT8's 0.8
    ("int8", ArrayRunner(drop_last=True), 0.9, False),  # ...which a stricter rate refuses
])
def test_check_golden_verdicts(golden_dir, precision, runner, min_match_rate, passed):
    golden = read_golden(golden_dir)
    if min_match_rate is not None:
        golden.tolerances[precision] = golden.tolerances[precision].model_copy(update={"min_match_rate": min_match_rate})
    report = check_golden(runner, golden, precision, _decoder)
    assert report["passed"] is passed, failure_line(report)
    assert report["precision"] == precision and report["n_images"] == 2 and report["role"] == "fp32"


def test_run_parity_between_two_runners_and_failure_line():
    feeds = [{"images": np.zeros((1, 3, 8, 8), np.float32)}]
    ok = run_parity(ArrayRunner(), ArrayRunner(), feeds, TOL, decoder=_decoder, post=PostprocessSpec())
    bad = run_parity(ArrayRunner(), ArrayRunner(drop_last=True), feeds, TOL, decoder=_decoder, post=PostprocessSpec())
    assert ok["passed"] and failure_line(ok) == "no failure"
    assert not bad["passed"] and "not explained" in failure_line(bad) and "raw max abs" in failure_line(bad)


def _corrupt(golden_dir: Path, how: str) -> str:
    meta = json.loads((golden_dir / GOLDEN_FILE).read_text())
    first = meta["cases"][0]["fp32"]["output0"]
    if how == "no_json":
        (golden_dir / GOLDEN_FILE).unlink()
        return "does not exist"
    if how == "bad_json":
        (golden_dir / GOLDEN_FILE).write_text("{not json")
        return "not valid JSON"
    if how == "no_cases":
        (golden_dir / GOLDEN_FILE).write_text(json.dumps({"cases": []}))
        return "no 'cases'"
    if how == "missing_npy":
        (golden_dir / first).unlink()
        return f"{first} is missing"
    if how == "truncated_npy":
        data = (golden_dir / first).read_bytes()
        (golden_dir / first).write_bytes(data[: len(data) // 2])
        return f"{first} is not a readable .npy"
    if how == "pickled_npy":  # an object array needs pickle: refused, never unpickled
        np.save(str(golden_dir / first), np.array([{"x": 1}], dtype=object), allow_pickle=True)
        return f"{first} is not a readable .npy"
    if how == "escaping_name":
        meta["cases"][0]["fp32"]["output0"] = "../elsewhere.npy"
        (golden_dir / GOLDEN_FILE).write_text(json.dumps(meta))
        return "invalid array file"
    if how == "bad_tolerance":
        meta["tolerances"]["fp16"]["atol"] = -1
        (golden_dir / GOLDEN_FILE).write_text(json.dumps(meta))
        return "invalid tolerance for fp16"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["no_json", "bad_json", "no_cases", "missing_npy", "truncated_npy", "pickled_npy",
                                 "escaping_name", "bad_tolerance"])
def test_broken_golden_set_is_one_line_model_error(golden_dir, how):
    text = _corrupt(golden_dir, how)
    with pytest.raises(ModelError) as err:
        read_golden(golden_dir)
    message = str(err.value)
    assert text in message and "\n" not in message and "re-export" in message, message


def test_roles_select_cases_of_a_two_graph_set(tmp_path):
    emb = GoldenCase(image="ref.jpg", inputs={"ref": np.ones((1, 3, 8, 8), np.float32)},
                     outputs={"fp32": {"embedding": np.ones((1, 4), np.float32)}}, role="reference_encoder")
    det = GoldenCase(image="frame.jpg", inputs={"images": np.zeros((1, 3, 8, 8), np.float32),
                                                "embedding": np.ones((1, 4), np.float32)},
                     outputs={"fp32": ArrayRunner().infer({"images": np.zeros(1)})}, role="detector")
    golden = read_golden(write_golden(tmp_path / "g", [emb, det]))
    assert golden.roles == ["reference_encoder", "detector"]
    assert set(golden.cases_for("detector")[0].inputs) == {"images", "embedding"}
    with pytest.raises(ValueError, match="say which one"):
        golden.cases_for()
    with pytest.raises(ModelError, match="no cases for model role 'fp32'"):
        golden.cases_for("fp32")
    report = check_golden(ArrayRunner(), golden, "fp32", _decoder, role="detector")
    assert report["passed"] and report["role"] == "detector"
