"""Sliced inference (edgekit.deploy.tiling): small objects of a large frame that full-frame inference
misses are found, exactly once each, across tile seams; batched and streamed tiles agree; the plumbing
through a real ONNX bundle, the pipelined runtime, the manifest's tiling plan and bench.

The exact tests use a deterministic fake runner (a Runner subclass that "detects" bright rectangles
in its input by thresholding and connected components), so the expected boxes are known to the pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np
import pytest

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError
from edgekit.core.geometry import obb_iou_matrix
from edgekit.core.letterbox import LetterboxSpec
from edgekit.core.postprocess import PostprocessSpec
from edgekit.core.tiling import TileWindow
from edgekit.deploy.detector import Detector
from edgekit.deploy.pipeline import Pipeline
from edgekit.deploy.runners.base import Runner, TensorMeta
from edgekit.deploy.tiling import TiledDetector, merge_tiles, tiled
from tests.deploy.bundles import write_test_bundle

MODEL = 640
MIN_PX = 8  # the fake model's smallest detectable side, in network pixels
ANCHORS = 256


class BrightBoxRunner(Runner):
    """Finds axis-aligned bright rectangles (all channels > 0.9) at least MIN_PX on a side: one class."""

    backend = "fake-bright"

    def __init__(self, batch_axis=1) -> None:
        super().__init__("bright-boxes")
        self.batch_axis = batch_axis
        self.calls: List[int] = []

    def _activate(self) -> Dict[str, TensorMeta]:
        return {"images": TensorMeta("images", (self.batch_axis, 3, MODEL, MODEL), np.dtype(np.float32))}

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        x = feed["images"]
        self.calls.append(len(x))
        out = np.zeros((len(x), 4 + 1 + 1, ANCHORS), np.float32)
        for b, image in enumerate(x):
            mask = (image.min(0) > 0.9).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
            boxes = [s for s in stats[1:] if s[2] >= MIN_PX and s[3] >= MIN_PX]
            for a, (left, top, w, h, _) in enumerate(boxes[:ANCHORS]):
                out[b, :, a] = (left + w / 2, top + h / 2, w, h, 0.9, 0.0)
        return {"output0": out}

    def _deactivate(self) -> None:
        pass


def fake_detector(batch_axis=1) -> Detector:
    return Detector(BrightBoxRunner(batch_axis), letterbox=LetterboxSpec(imgsz=MODEL),
                    postprocess=PostprocessSpec(conf=0.25, iou=0.7), input_name="images", output_name="output0")


def large_frame(seed: int = 0, side: int = 2048) -> Tuple[np.ndarray, np.ndarray]:
    """A dark frame with small bright rectangles, some placed across tile seams; returns (frame, xyxy)."""
    rng = np.random.default_rng(seed)
    frame = np.full((side, side, 3), 30, np.uint8)
    boxes: List[Tuple[int, int, int, int]] = []
    # across the seams of 640-px tiles with 128 px overlap (tile edges at 512, 640, 1024, 1152, 1408, 1536)
    for x0, y0 in ((630, 300), (1015, 900), (1400, 1530), (300, 1145), (1530, 505)):
        boxes.append((x0, y0, x0 + 22, y0 + 14))  # a cut view of 8-12 px: IoU < 0.5 with the whole box
    while len(boxes) < 40:
        w, h = (int(v) for v in rng.integers(12, 21, 2))
        x0, y0 = (int(v) for v in rng.integers(4, side - 30, 2))
        if all(x0 > b[2] + 4 or x0 + w < b[0] - 4 or y0 > b[3] + 4 or y0 + h < b[1] - 4 for b in boxes):
            boxes.append((x0, y0, x0 + w, y0 + h))
    for x0, y0, x1, y1 in boxes:
        frame[y0:y1, x0:x1] = 255
    return frame, np.array(boxes, np.float64)


def _xywhr(xyxy: np.ndarray) -> np.ndarray:
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, xyxy[:, 2] - xyxy[:, 0],
                     xyxy[:, 3] - xyxy[:, 1], np.zeros(len(xyxy))], 1)


def _matched(dets: Detections, truth: np.ndarray, min_iou: float = 0.9) -> int:
    if len(dets) == 0:
        return 0
    iou = obb_iou_matrix(_xywhr(truth), dets.boxes)
    return int((iou.max(1) >= min_iou).sum())


@pytest.fixture(scope="module")
def scene():
    return large_frame()


def test_full_frame_misses_the_small_objects(scene) -> None:
    frame, truth = scene
    with fake_detector() as det:
        dets = det(frame)
    assert _matched(dets, truth, 0.5) == 0  # 12-20 px shrink to 4-6 px at 640: below the model's reach


@pytest.mark.parametrize("batch_axis", ["batch", 1], ids=["batched", "streamed"])
def test_sliced_finds_every_small_object_once_and_exactly(scene, batch_axis) -> None:
    frame, truth = scene
    with TiledDetector(fake_detector(batch_axis), tile=640, overlap=128) as det:
        dets = det(frame)
        calls = list(det.detector.runner.calls)
    assert len(dets) == len(truth)  # no duplicates at seams, none missed
    assert _matched(dets, truth, 0.999) == len(truth)  # tile = model size: boxes exact to the pixel
    assert calls == ([16] if batch_axis == "batch" else [1] * 16)
    assert det.timings["tiles"] == 16 and det.runner.last_inference_time() > 0


def test_batched_and_streamed_tiles_agree(scene) -> None:
    frame, _ = scene
    with tiled(fake_detector("batch"), 640, 128) as a, tiled(fake_detector(1), 640, 128) as b, \
            tiled(fake_detector(4), 640, 128) as c:
        da, db, dc = a(frame), b(frame), c(frame)
        assert c.detector.runner.calls == [4, 4, 4, 4]
    assert da == db == dc


def test_a_static_batch_that_does_not_divide_the_tiles_is_padded(scene) -> None:
    frame, truth = scene
    with tiled(fake_detector(5), 640, 128) as det:  # 16 tiles -> 5, 5, 5, 1 (+4 padding)
        dets = det(frame)
        assert det.detector.runner.calls == [5, 5, 5, 5]
    assert len(dets) == len(truth)


def test_objects_larger_than_the_overlap_are_fused_or_taken_from_the_full_frame() -> None:
    frame = np.full((1200, 1200, 3), 30, np.uint8)
    frame[400:560, 450:760] = 255  # 310 px wide across tiles [0, 640) and [512, 1152): no tile sees it whole
    with tiled(fake_detector("batch"), 640, 128) as det:
        dets = det(frame)
    assert len(dets) == 1 and np.allclose(dets.boxes[0, :4], (605, 480, 310, 160), atol=0.5)
    with tiled(fake_detector("batch"), 640, 128, full_frame=True) as det:
        dets = det(frame)
        assert det.detector.runner.calls == [10]  # 3 x 3 tiles + the full frame, one batch
    assert len(dets) == 1
    assert obb_iou_matrix(dets.boxes, _xywhr(np.array([[450, 400, 760, 560]], np.float64)))[0, 0] > 0.95


def test_merge_drops_cut_views_when_a_neighbour_sees_the_object_whole() -> None:
    windows = [TileWindow(0, 0, 100, 100), TileWindow(80, 0, 100, 100)]
    cut = Detections(np.array([[95, 50, 10, 10, 0]], np.float32), np.array([0.95]), np.array([0]))  # 90..100: edge
    whole = Detections(np.array([[97, 50, 14, 10, 0]], np.float32), np.array([0.6]), np.array([0]))
    other_class = Detections(np.array([[95, 50, 10, 10, 0]], np.float32), np.array([0.9]), np.array([1]))
    merged = merge_tiles([cut, whole], windows, (100, 180))
    assert merged == whole  # the higher-scoring cut view does not win over the whole one
    assert len(merge_tiles([Detections.concat([cut, other_class]), whole], windows, (100, 180))) == 2


def test_tiled_detector_in_the_pipeline_matches_direct_calls(scene) -> None:
    frame, _ = scene
    small = [frame[:900, :1300].copy(), frame[1000:, 700:].copy()]
    with tiled(fake_detector("batch"), 640, 128) as det:
        direct = [det(f) for f in small]
        piped = [r.detections for r in Pipeline(det).run(iter(small))]
    assert all(a == b for a, b in zip(direct, piped)) and len(piped) == 2


def test_bad_tiling_arguments_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        TiledDetector(fake_detector(), tile=640, overlap=640)
    with pytest.raises(ConfigError):
        TiledDetector(fake_detector(), tile=640, overlap=64, batch=0)


# ---- a real ONNX bundle --------------------------------------------------------------------------
@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static-batch"])
def test_bundle_detector_tiles_through_onnxruntime(tmp_path: Path, dynamic: bool) -> None:
    pytest.importorskip("onnxruntime")
    from edgekit.deploy.bundle import Bundle

    bundle = Bundle.open(write_test_bundle(tmp_path / "b", imgsz=64, dynamic=dynamic, per_image=True))
    frame = np.zeros((160, 160, 3), np.uint8)
    with bundle.detector(tile=64, tile_overlap=16) as det:
        assert isinstance(det, TiledDetector)
        dets = det(frame)
    # the constant model "sees" a class-0 box at (32, 32) and a class-1 box at (10, 40) in every tile
    starts = [0, 48, 96]
    want0 = sorted((x + 32.0, y + 32.0) for y in starts for x in starts)
    got0 = sorted(map(tuple, dets.boxes[dets.class_ids == 0][:, :2].tolist()))
    assert got0 == want0 and int((dets.class_ids == 1).sum()) == 9
    with bundle.detector(tile=0) as det:
        assert isinstance(det, Detector) and len(det(frame)) == 2


def test_manifest_tiling_plan_is_the_bundle_default(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import json

    from edgekit.core.manifest import load_manifest
    from edgekit.deploy.bundle import Bundle

    root = write_test_bundle(tmp_path / "b", imgsz=64, dynamic=True, per_image=True)
    data = json.loads((root / "manifest.json").read_text())
    data["tiling"] = {"tile": 64, "overlap": 16, "batch": 3}
    (root / "manifest.json").write_text(json.dumps(data))
    assert load_manifest(root).tiling.batch == 3
    det = Bundle.open(root).detector()
    assert isinstance(det, TiledDetector) and (det.tile, det.overlap, det.batch) == (64, 16, 3)
    data["tiling"] = {"tile": 64, "overlap": 64}
    (root / "manifest.json").write_text(json.dumps(data))
    from edgekit.core.errors import ModelError

    with pytest.raises(ModelError):
        load_manifest(root)


def test_accuracy_evaluation_runs_through_the_tiled_detector(tmp_path: Path) -> None:
    from edgekit.bench.accuracy import evaluate_detector
    from edgekit.core.postprocess import PostprocessSpec
    from edgekit.data.layout import DatasetLayout

    frame = large_frame()[0]
    layout = DatasetLayout.create(tmp_path / "ds", ["box"])
    for split in ("train", "val"):
        cv2.imwrite(str(layout.image_dir(split) / "f.png"), frame)
    mask = (frame.min(2) > 200).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    truth = [(x, y, x + w, y + h) for x, y, w, h, _ in stats[1:]]
    s = float(frame.shape[0])
    lines = [f"0 {x0 / s} {y0 / s} {x1 / s} {y0 / s} {x1 / s} {y1 / s} {x0 / s} {y1 / s}" for x0, y0, x1, y1 in truth]
    (layout.label_dir("val") / "f.txt").write_text("\n".join(lines) + "\n")
    layout.write_data_yaml()
    with tiled(fake_detector("batch"), 640, 128) as det:
        result = evaluate_detector(det, tmp_path / "ds")
        assert det.postprocess == PostprocessSpec(conf=0.25, iou=0.7)  # restored after the run
    assert len(truth) == 40 and result["map50"] > 0.99
    with fake_detector("batch") as det:
        assert evaluate_detector(det, tmp_path / "ds")["map50"] < 0.05  # full frame at 640 misses them


def test_bench_runs_sliced(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edgekit.bench import run_bench

    root = write_test_bundle(tmp_path / "b", imgsz=64, dynamic=True, per_image=True)
    frames = [np.zeros((160, 160, 3), np.uint8)]
    report = run_bench(root, {"iterations": 3, "warmup": 0, "tile": 64, "tile_overlap": 16}, progress=False,
                       frames=frames)
    assert report.latency.end_to_end.n == 3
    assert any("sliced inference: 64-px tiles" in n for n in report.notes)
    with pytest.raises(ConfigError):
        run_bench(root, {"iterations": 1, "tile": 64, "batch": 2}, progress=False, frames=frames)
