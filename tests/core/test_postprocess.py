"""Decoding raw Ultralytics outputs: hand-made tables, then parity with Ultralytics' own NMS."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from edgekit.core.config import build_config
from edgekit.core.errors import ConfigError, ModelError
from edgekit.core.geometry import regularize_xywhr
from edgekit.core.postprocess import PostprocessSpec, decode, decode_detect, decode_obb


def obb_raw(rows, nc: int = 2, anchors: int = 6) -> np.ndarray:
    """(1, 4+nc+1, A) raw output with the given (cx, cy, w, h, cls, score, angle) rows."""
    raw = np.zeros((1, 4 + nc + 1, anchors), np.float32)
    for a, (cx, cy, w, h, cls, score, angle) in enumerate(rows):
        raw[0, :4, a] = (cx, cy, w, h)
        raw[0, 4 + cls, a] = score
        raw[0, -1, a] = angle
    return raw


def test_decode_obb_conf_filter_nms_and_class_awareness():
    raw = obb_raw([
        (30, 30, 20, 8, 0, 0.9, 0.1),
        (31, 30, 20, 8, 0, 0.8, 0.1),   # same class, overlaps the first: suppressed
        (31, 30, 20, 8, 1, 0.7, 0.1),   # other class: kept (class-aware)
        (80, 80, 10, 20, 1, 0.6, 0.0),  # h > w: regularised to w >= h, angle + pi/2
        (50, 50, 10, 10, 0, 0.2, 0.0),  # below conf
    ])
    (dets,) = decode_obb(raw, PostprocessSpec(conf=0.25, iou=0.5))
    assert dets.scores.tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert dets.class_ids.tolist() == [0, 1, 1]
    np.testing.assert_allclose(dets.boxes[2], [80, 80, 20, 10, math.pi / 2], atol=1e-6)
    (agnostic,) = decode_obb(raw, PostprocessSpec(conf=0.25, iou=0.5, agnostic=True))
    assert agnostic.scores.tolist() == pytest.approx([0.9, 0.6])
    assert len(decode_obb(raw, PostprocessSpec(conf=0.25, iou=0.5, max_det=1))[0]) == 1


def test_decode_obb_accepts_unbatched_and_empty():
    raw = obb_raw([(30, 30, 20, 8, 0, 0.9, 0.1)])
    assert decode_obb(raw[0])[0] == decode_obb(raw)[0]
    (none,) = decode_obb(np.zeros((1, 7, 5), np.float32))
    assert len(none) == 0 and none.is_obb


@pytest.mark.parametrize(("fn", "shape"), [
    (decode_obb, (1, 5, 10)), (decode_obb, (10,)), (decode_detect, (1, 4, 10)), (decode_detect, (2, 1, 5, 10)),
])
def test_decode_rejects_wrong_shapes(fn, shape):
    with pytest.raises(ModelError, match="output must be"):
        fn(np.zeros(shape, np.float32))


def test_decode_detect_table():
    raw = np.zeros((5, 4), np.float32)  # nc = 1, four anchors
    raw[:, 0] = (20, 20, 10, 10, 0.9)
    raw[:, 1] = (21, 20, 10, 10, 0.8)   # suppressed
    raw[:, 2] = (60, 60, 10, 10, 0.5)
    raw[:, 3] = (90, 90, 10, 10, 0.1)   # below conf
    (dets,) = decode_detect(raw, PostprocessSpec(task="detect", iou=0.5))
    assert not dets.is_obb
    assert dets.boxes.tolist() == [[15, 15, 25, 25], [55, 55, 65, 65]]
    assert decode(raw, PostprocessSpec(task="detect", iou=0.5))[0] == dets


@pytest.mark.parametrize(("data", "key"), [({"conf": 1.5}, "conf"), ({"task": "seg"}, "task"), ({"nms": 1}, "nms")])
def test_spec_is_strict(data, key):
    with pytest.raises(ConfigError, match=key):
        build_config(PostprocessSpec, data, "manifest.json")


# --- parity with Ultralytics itself (torch model, real NMS) ---------------------------------------

@pytest.fixture(scope="module")
def ultralytics_raw():
    """Raw eval outputs of yolov8n-obb and yolov8n (random weights) at 96 px, batch 2.

    Default initialisation gives almost the same output at every anchor, so the weights are
    jittered to spread boxes; class scores are half model output, half uniform noise, so no two
    anchors tie (many saturate at 1.0, and tie order is arbitrary in torch.argsort).
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch = pytest.importorskip("torch")
    ultralytics = pytest.importorskip("ultralytics")
    torch.manual_seed(0)
    x = torch.rand(2, 3, 96, 96)
    out = {}
    for name, angle_rows in (("yolov8n-obb.yaml", 1), ("yolov8n.yaml", 0)):
        model = ultralytics.YOLO(name).model.eval()
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
            pred = model(x)
        raw = (pred[0] if isinstance(pred, (list, tuple)) else pred).float().clone()
        end = raw.shape[1] - angle_rows
        raw[:, 4:end] = 0.5 * raw[:, 4:end] + 0.5 * torch.rand_like(raw[:, 4:end])
        out[name] = raw
    return out


def low_conf(raw: np.ndarray, nc: int, keep_fraction: float) -> float:
    """A confidence that lets ``keep_fraction`` of anchors through (random weights score ~1e-4)."""
    return float(np.quantile(raw[:, 4 : 4 + nc].max(1), 1 - keep_fraction))


@pytest.mark.parametrize("iou", [0.7, 0.3])
def test_decode_obb_matches_ultralytics_nms(ultralytics_raw, iou):
    from ultralytics.utils.nms import non_max_suppression

    raw_t = ultralytics_raw["yolov8n-obb.yaml"]
    raw = raw_t.numpy()
    nc = raw.shape[1] - 5
    conf = low_conf(raw, nc, 0.5)
    ours = decode_obb(raw, PostprocessSpec(conf=conf, iou=iou))
    theirs = non_max_suppression(raw_t, conf, iou, nc=nc, rotated=True, max_det=300)
    assert len(ours) == len(theirs) == 2
    for d, t in zip(ours, theirs):
        t = t.numpy()
        assert 5 <= len(d) < int(raw.shape[2] * 0.5)  # NMS suppressed some, kept several
        assert len(d) == len(t)
        np.testing.assert_allclose(d.scores, t[:, 4], rtol=1e-6)
        assert d.class_ids.tolist() == t[:, 5].astype(int).tolist()
        their_boxes = regularize_xywhr(np.concatenate([t[:, :4], t[:, 6:7]], 1).astype(np.float64))
        np.testing.assert_allclose(d.boxes, their_boxes, atol=1e-3)


def test_decode_detect_matches_ultralytics_nms(ultralytics_raw):
    from ultralytics.utils.nms import non_max_suppression

    raw_t = ultralytics_raw["yolov8n.yaml"]
    raw = raw_t.numpy()
    conf = low_conf(raw, raw.shape[1] - 4, 0.5)
    ours = decode_detect(raw, PostprocessSpec(task="detect", conf=conf, iou=0.5))
    theirs = non_max_suppression(raw_t, conf, 0.5, max_det=300)
    for d, t in zip(ours, theirs):
        t = t.numpy()
        assert len(d) == len(t) > 5
        np.testing.assert_allclose(d.boxes, t[:, :4], atol=1e-3)
        np.testing.assert_allclose(d.scores, t[:, 4], rtol=1e-6)
        assert d.class_ids.tolist() == t[:, 5].astype(int).tolist()


def test_decoded_rows_regularised_on_the_device_read_as_the_raw_ones():
    """DECODED_OUTPUT with header[3] = 1: boxes already regularised, except rows whose class is -(class + 1)."""
    from edgekit.core.geometry import regularize_xywhr
    from edgekit.core.postprocess import detections_from_rows

    raw = np.array([[10, 20, 4, 9, 0.3, 0.9, 2], [30, 40, 8, 3, 7.5, 0.8, 0], [5, 6, 2, 2, -0.2, 0.7, 1]], np.float32)
    plain = np.zeros((5, 7), np.float32)
    plain[0, 0], plain[1:4] = 3, raw
    want = detections_from_rows(plain)  # raw values: regularised on the host
    device = plain.copy()
    device[0, 3] = 1
    device[1:4, :5] = regularize_xywhr(raw[:, :5].astype(np.float64)).astype(np.float32)
    device[2, :5], device[2, 6] = raw[1, :5], -1  # one row left raw (an angle no OBB head gives): class 0 -> -1
    got = detections_from_rows(device)
    assert got == want and got.class_ids.tolist() == [2, 0, 1]
