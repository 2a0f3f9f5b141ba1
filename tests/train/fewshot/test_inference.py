"""eval refdet / predict refdet on a real synthetic RefDet set, with oracle predictors (no trained model needed).

The oracle knows every frame's ground truth (by the decoded pixels) and every video's reference photos:
it answers only for the video whose references were set as the target, so a loop that targets the
wrong video, or skips set_target, scores 0. The end-to-end test with real models is test_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError, DataError, ModelError
from edgekit.core.predictions import PredictionsFile, read_predictions
from edgekit.train.fewshot import inference
from edgekit.train.fewshot.evaluate import evaluate_videos
from edgekit.train.fewshot.inference import (
    LoadedRefDet,
    evaluate_on_data,
    load_refdet,
    read_references,
    refdet_eval_root,
)

FRAMES = 12
ENV = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}


def _digest(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from edgekit.data.synth.refdet import generate_refdet_dataset

    return generate_refdet_dataset(tmp_path_factory.mktemp("refdet") / "synth", n_train=1, n_test=2, frames=FRAMES,
                                   imgsz=64, seed=0, progress=False)


class Oracle:
    """Ground truth (shifted by ``shift`` px) for the frames of the video whose references are the target."""

    def __init__(self, root: Path, shift: float = 0.0) -> None:
        from edgekit.train.fewshot.data import RefDetDataset

        ds = RefDetDataset(root, cache_size=0)
        self.boxes: Dict[str, Tuple[str, np.ndarray]] = {}
        self.videos_of_refs: Dict[Tuple[str, ...], str] = {}
        for rec in ds.records:
            self.videos_of_refs[tuple(_digest(r) for r in ds.references(rec.video_id))] = rec.video_id
            for i in range(rec.frame_count):
                self.boxes[_digest(ds.frame(rec.video_id, i))] = (rec.video_id, rec.boxes_at(i))
        ds.close()
        self.shift, self.target, self.calls = shift, None, 0

    def set_target(self, images: List[np.ndarray]) -> None:
        assert 1 <= len(images) <= 3 and all(im.dtype == np.uint8 and im.ndim == 3 for im in images)
        self.target = self.videos_of_refs.get(tuple(_digest(im) for im in images), "unknown")

    def __call__(self, frame: np.ndarray) -> Detections:
        self.calls += 1
        video, boxes = self.boxes.get(_digest(frame), (None, np.zeros((0, 4))))
        if video != self.target or len(boxes) == 0:
            return Detections.empty(obb=True)
        b = np.asarray(boxes, np.float32)
        xywhr = np.stack([(b[:, 0] + b[:, 2]) / 2 + self.shift, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0],
                          b[:, 3] - b[:, 1], np.zeros(len(b))], 1)
        return Detections(xywhr, np.full(len(b), 0.9), np.zeros(len(b), np.int64))


def _edgekit(*args):
    return subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=120)


def _one_line_error(res, code: int, *words: str) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in res.stderr and len(lines) <= 3, res.stderr  # click usage errors print a usage line
    for word in words:
        assert word in res.stderr, res.stderr


def test_oracle_scores_one_and_shifted_oracle_scores_its_overlap(synth: Path):
    oracle = Oracle(synth / "test")
    run = evaluate_on_data(oracle, synth / "test", progress=False)
    assert run.root == synth / "test" and run.frames == 2 * FRAMES == oracle.calls
    report = evaluate_videos(run.videos, conf=0.5)
    assert len(report.per_video) == 2 and report.overall.n_gt > 0
    for m in report.per_video.values():
        assert (m.ap50, m.precision, m.recall, m.st_iou) == (1.0, 1.0, 1.0, 1.0)

    shift = Oracle(synth / "test", shift=1e6)  # far off: every frame is one-sided
    report = evaluate_videos(evaluate_on_data(shift, synth, progress=False).videos, conf=0.5)  # dataset root -> test/
    assert (report.overall.ap50, report.overall.precision, report.overall.st_iou) == (0.0, 0.0, 0.0)


def test_half_width_shift_gives_the_hand_computed_st_iou(synth: Path):
    run = evaluate_on_data(Oracle(synth / "test"), synth / "test", progress=False)
    # shift each ground-truth box by half its width: IoU (w/2 * h) / (3w/2 * h) = 1/3 in every annotated frame
    for v in run.videos:
        v.predictions = [Detections(np.c_[g[:, 0] + (g[:, 2] - g[:, 0]) / 2, g[:, 1], g[:, 2] + (g[:, 2] - g[:, 0]) / 2,
                                          g[:, 3]], np.full(len(g), 0.9), np.zeros(len(g), np.int64))
                         for g in v.ground_truth]
    report = evaluate_videos(run.videos, conf=0.5)
    assert report.overall.st_iou == pytest.approx(1 / 3, abs=1e-6)
    assert report.overall.ap50 == 0.0


def test_stride_runs_every_nth_frame(synth: Path):
    oracle = Oracle(synth / "test")
    run = evaluate_on_data(oracle, synth / "test", stride=5, progress=False)
    assert [v.frames for v in run.videos] == [[0, 5, 10], [0, 5, 10]] and oracle.calls == 6
    with pytest.raises(ConfigError, match="--stride 0"):
        evaluate_on_data(oracle, synth / "test", stride=0, progress=False)


def test_data_of_the_wrong_kind_is_one_line(tmp_path: Path):
    from edgekit.data.synth.obb import generate_obb_dataset

    obb = generate_obb_dataset(tmp_path / "obb", n_train=1, n_val=1, imgsz=64, seed=0, progress=False)
    with pytest.raises(DataError, match="is a yolo-obb dataset, not a RefDet one"):
        refdet_eval_root(obb)
    with pytest.raises(DataError, match="is not a directory"):
        refdet_eval_root(tmp_path / "missing")


def test_references_are_checked(synth: Path, tmp_path: Path):
    refs = sorted((synth / "test" / "samples").glob("*/object_images/*.jpg"))
    assert [im.shape[2] for im in read_references(refs[:3])] == [3, 3, 3]
    with pytest.raises(ConfigError, match="4 reference photos"):
        read_references(refs[:4])
    with pytest.raises(ConfigError, match="0 reference photos"):
        read_references([])
    with pytest.raises(DataError, match="does not exist"):
        read_references([tmp_path / "nope.jpg"])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot be decoded"):
        read_references([bad])


def test_model_sources_are_checked(tmp_path: Path):
    with pytest.raises(ModelError, match="does not exist"):
        load_refdet(tmp_path / "missing.pt")
    (tmp_path / "run").mkdir()
    with pytest.raises(ModelError, match="neither a run"):
        load_refdet(tmp_path / "run")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(ModelError, match="not a .pt checkpoint"):
        load_refdet(tmp_path / "m.onnx")


@pytest.fixture
def oracle_cli(monkeypatch, synth: Path):
    """The CLI with load_refdet answering the oracle (what a trained model would be)."""
    oracle = Oracle(synth / "test")

    def fake_load(source, **kwargs):
        fake_load.kwargs = kwargs
        return LoadedRefDet(oracle, str(source), "checkpoint", 64)

    monkeypatch.setattr(inference, "load_refdet", fake_load)
    return fake_load


def test_eval_refdet_cli_writes_json_png_and_table(oracle_cli, synth: Path, tmp_path: Path):
    out = tmp_path / "eval"
    res = CliRunner().invoke(cli, ["eval", "refdet", str(tmp_path / "m.pt"), "--data", str(synth), "--out", str(out),
                                   "--stride", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert oracle_cli.kwargs["conf"] == inference.EVAL_MODEL_CONF  # AP needs the low-score boxes too
    doc = json.loads((out / "eval.json").read_text())
    assert doc["overall"]["st_iou"] == 1.0 and doc["overall"]["map50"] == 1.0 and doc["stride"] == 2
    assert doc["frames"] == FRAMES and sorted(doc["per_video"]) == ["test_000_container", "test_001_ship"]
    assert (out / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "test_001_ship" in res.output and "ST-IoU 1.0000" in res.output


def test_predict_refdet_cli_writes_predictions_and_video(oracle_cli, synth: Path, tmp_path: Path):
    sample = synth / "test" / "samples" / "test_001_ship"
    refs = sorted((sample / "object_images").glob("*.jpg"))
    out = tmp_path / "pred"
    res = CliRunner().invoke(cli, ["predict", "refdet", str(tmp_path / "m.pt"), "--refs", *map(str, refs),
                                   "--video", str(sample / "drone_video.mp4"), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    preds = read_predictions(out / "predictions.json")
    assert preds.task == "refdet" and preds.names == ["target"] and preds.references == [str(r) for r in refs]
    assert [i.frame for i in preds.images] == list(range(FRAMES))
    annotated = json.loads((synth / "test" / "annotations" / "annotations.json").read_text())
    gt = {b["frame"]: b for v in annotated if v["video_id"] == "test_001_ship" for t in v["annotations"]
          for b in t["bboxes"]}
    assert {i.frame for i in preds.images if i.boxes} == set(gt)
    first = next(i for i in preds.images if i.boxes)
    cx, cy, w, h, angle = first.boxes[0]
    g = gt[first.frame]
    assert (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, angle) == pytest.approx((g["x1"], g["y1"], g["x2"], g["y2"], 0))
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == (64, 64)
    assert f"{FRAMES} frames, target found in {len(gt)}" in res.output


def test_predictions_schema_knows_refdet(tmp_path: Path):
    PredictionsFile(task="refdet", model="m", references=["a.jpg"])
    with pytest.raises(ValueError, match="task must be one of obb, refdet"):
        PredictionsFile(task="segment", model="m")
    with pytest.raises(ValueError, match="references belong to refdet"):
        PredictionsFile(task="obb", model="m", references=["a.jpg"])


def test_eval_obb_refuses_refdet_predictions(tmp_path: Path):
    from edgekit.train.obb.evaluate import evaluate_predictions

    with pytest.raises(DataError, match="holds refdet predictions"):
        evaluate_predictions(PredictionsFile(task="refdet", model="m"), tmp_path)


@pytest.mark.parametrize("case", ["four_refs", "missing_ref", "unreadable_video", "missing_video", "obb_data",
                                  "not_a_model"])
def test_cli_errors_are_one_line(case: str, synth: Path, tmp_path: Path):
    refs = sorted((synth / "test" / "samples" / "test_000_container" / "object_images").glob("*.jpg"))
    video = synth / "test" / "samples" / "test_000_container" / "drone_video.mp4"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    predict = ["predict", "refdet", model, "--out", tmp_path / "o"]
    if case == "four_refs":
        _one_line_error(_edgekit(*predict, "--refs", *refs, refs[0], "--video", video), 2, "4 reference photos")
    elif case == "missing_ref":
        _one_line_error(_edgekit(*predict, "--refs", tmp_path / "nope.jpg", "--video", video), 1, "nope.jpg")
    elif case == "unreadable_video":
        _one_line_error(_edgekit(*predict, "--refs", refs[0], "--video", broken), 1, "broken.mp4")
    elif case == "missing_video":
        _one_line_error(_edgekit(*predict, "--refs", refs[0], "--video", tmp_path / "nope.mp4"), 2, "nope.mp4")
    elif case == "obb_data":
        from edgekit.data.synth.obb import generate_obb_dataset

        obb = generate_obb_dataset(tmp_path / "obb", n_train=1, n_val=1, imgsz=64, seed=0, progress=False)
        _one_line_error(_edgekit("eval", "refdet", model, "--data", obb, "--out", tmp_path / "e"), 1,
                        "yolo-obb dataset, not a RefDet one")
    else:
        _one_line_error(_edgekit("eval", "refdet", tmp_path / "nothing", "--data", synth, "--out", tmp_path / "e"), 1,
                        "does not exist")


# -- a real (toy) two-graph RefDet bundle: ONNX Runtime through Bundle.detector() ---------------------
def _write_refdet_root(root: Path, videos: Dict[str, Tuple[tuple, List[np.ndarray], Dict[int, list]]]) -> Path:
    """A RefDet root by hand: {video_id: (target colour, frames, {frame: [x1, y1, x2, y2]})}."""
    from tests.deploy.refdet_bundles import photo

    entries = []
    for vid, (colour, frames, boxes) in videos.items():
        sample = root / "samples" / vid
        (sample / "object_images").mkdir(parents=True)
        cv2.imwrite(str(sample / "object_images" / "img_1.jpg"), photo(colour))
        writer = cv2.VideoWriter(str(sample / "drone_video.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 64))
        for f in frames:
            writer.write(f)
        writer.release()
        entries.append({"video_id": vid, "annotations": [{"bboxes": [
            dict(zip(("frame", "x1", "y1", "x2", "y2"), [i, *b])) for i, b in sorted(boxes.items())]}]})
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "annotations.json").write_text(json.dumps(entries))
    return root


def test_eval_and_predict_a_refdet_bundle(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from tests.deploy.refdet_bundles import BLUE, CELL, GREY, RED, frame_with, write_refdet_bundle

    bundle = write_refdet_bundle(tmp_path / "bundle")  # its default target is RED: eval must set each video's own
    grey = np.full((64, 64, 3), GREY, np.uint8)
    blue_at = frame_with(BLUE, (1, 2))  # the toy model boxes a (CELL-2) x (CELL-4) box in the matching cell
    both = frame_with(RED, (3, 0))
    both[CELL:2 * CELL, 2 * CELL:3 * CELL] = BLUE
    cell = [2 * CELL, CELL, 3 * CELL, 2 * CELL]  # the annotated box: the whole (1, 2) cell
    data = _write_refdet_root(tmp_path / "data", {
        "blue": (BLUE, [blue_at, blue_at, grey, both], {0: cell, 1: cell, 3: cell}),
        "red": (RED, [both, grey], {0: [0, 3 * CELL, CELL, 4 * CELL]}),
    })
    out = tmp_path / "eval"
    res = _edgekit("eval", "refdet", bundle, "--data", data, "--out", out, "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "eval.json").read_text())
    assert doc["model_kind"] == "bundle" and doc["frames"] == 6
    iou = (CELL - 2) * (CELL - 4) / CELL ** 2  # the toy box inside the annotated cell: 168 / 256
    for vid in ("blue", "red"):
        m = doc["per_video"][vid]
        assert m["ap50"] == 1.0 and m["recall"] == 1.0, (vid, m)
        assert m["st_iou"] == pytest.approx(iou, abs=1e-6), (vid, m)  # no box on the target-free frames
    assert doc["overall"]["map50"] == 1.0

    refs = [tmp_path / "data" / "samples" / "blue" / "object_images" / "img_1.jpg"]
    video = tmp_path / "data" / "samples" / "blue" / "drone_video.mp4"
    res = _edgekit("predict", "refdet", bundle, "--refs", *refs, "--video", video, "--out", tmp_path / "pred",
                   "--no-progress")
    assert res.returncode == 0, res.stderr[-3000:]
    preds = read_predictions(tmp_path / "pred" / "predictions.json")
    assert preds.conf == 0.25 and preds.imgsz == 64  # the bundle's own threshold
    assert [len(i.boxes) for i in preds.images] == [1, 1, 0, 1]
    assert preds.images[3].boxes[0] == pytest.approx([2.5 * CELL, 1.5 * CELL, CELL - 2, CELL - 4, 0.0])
    assert (tmp_path / "pred" / "video.mp4").stat().st_size > 0


def test_load_refdet_predictor_gives_a_bundle_detector_ready_to_call(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from edgekit.train.fewshot.inference import load_refdet_predictor
    from tests.deploy.refdet_bundles import BLUE, CELL, frame_with, photo, write_refdet_bundle

    det = load_refdet_predictor(write_refdet_bundle(tmp_path / "bundle"), conf=0.5)
    try:
        det.set_target([photo(BLUE)])
        found = det(frame_with(BLUE, (1, 2)))
        assert len(found) == 1 and found.xywhr[0, :2].tolist() == pytest.approx([2.5 * CELL, 1.5 * CELL])
    finally:
        det.__exit__(None, None, None)


def test_an_obb_bundle_is_not_a_refdet_model(tmp_path: Path, monkeypatch):
    import edgekit.deploy.bundle as bundle_mod

    class ObbBundle:  # what Bundle.open gives for an OBB export: only its task matters here
        task = "obb"

    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(bundle_mod.Bundle, "open", staticmethod(lambda path: ObbBundle()))
    with pytest.raises(ModelError, match="is a 'obb' bundle, not a RefDet one"):
        load_refdet(tmp_path)


def test_outputs_follow_the_output_dir_policy(oracle_cli, synth: Path, tmp_path: Path):
    sample = synth / "test" / "samples" / "test_000_container"
    predict = ["predict", "refdet", str(tmp_path / "m.pt"), "--refs", str(sample / "object_images" / "img_1.jpg"),
               "--video", str(sample / "drone_video.mp4"), "--no-progress", "--no-video"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    res = CliRunner().invoke(cli, [*predict, "--out", str(foreign)])
    assert isinstance(res.exception, DataError) and "edgekit did not write it" in str(res.exception)
    assert sorted(p.name for p in foreign.iterdir()) == ["keep.txt"]
    out = tmp_path / "pred"
    for _ in range(2):  # a re-run replaces its own earlier output
        assert CliRunner().invoke(cli, [*predict, "--out", str(out)]).exit_code == 0
    assert sorted(p.name for p in out.iterdir()) == [".edgekit-output.json", "predictions.json"]
    res = CliRunner().invoke(cli, ["eval", "refdet", str(tmp_path / "m.pt"), "--data", str(synth), "--out",
                                   str(synth / "test" / "eval"), "--no-progress"])
    assert isinstance(res.exception, DataError) and "inside the source" in str(res.exception)
