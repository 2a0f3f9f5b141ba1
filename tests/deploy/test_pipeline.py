"""The pipelined runtime: same detections as one-at-a-time, overlapped stages, clean stops and errors."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.errors import DataError  # noqa: E402
from edgekit.deploy.bundle import Bundle  # noqa: E402
from edgekit.deploy.detector import Detector  # noqa: E402
from edgekit.deploy.pipeline import Pipeline, run_sequential  # noqa: E402
from edgekit.deploy.runners.base import Runner, TensorMeta  # noqa: E402
from edgekit.deploy.sources import image_frames, video_frames  # noqa: E402
from tests.deploy.bundles import write_test_bundle  # noqa: E402

pytest.importorskip("onnxruntime")
cv2 = pytest.importorskip("cv2")


def _video(path: Path, n: int = 12, hw=(96, 160)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (hw[1], hw[0]))
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = rng.integers(0, 255, (*hw, 3), dtype=np.uint8)
        cv2.putText(frame, str(i), (10, 50), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def bundle(tmp_path):
    return Bundle.open(write_test_bundle(tmp_path / "bundle"))


def test_pipeline_equals_sequential_on_a_real_video(bundle, tmp_path):
    video = _video(tmp_path / "v.mp4")
    with bundle.detector() as det:
        want = list(run_sequential(det, video_frames(video)))
        pipe = Pipeline(det, keep_frames=True)
        got = list(pipe.run(video_frames(video)))
    assert [r.index for r in got] == list(range(12)) == [r.index for r in want]
    for a, b in zip(got, want):
        assert np.array_equal(a.detections.boxes, b.detections.boxes)
        assert np.array_equal(a.detections.class_ids, b.detections.class_ids)
        assert a.frame_shape == (96, 160) and a.frame is not None
        assert set(a.timings) == {"read_s", "preprocess_s", "infer_s", "decode_s", "latency_s"}
        assert a.timings["latency_s"] >= a.timings["infer_s"]
    assert pipe.stats.frames == 12 and pipe.stats.fps > 0


class _SleepRunner(Runner):
    """A runner whose inference takes a fixed time (sleep releases the GIL, like a real backend)."""

    backend = "sleep"

    def __init__(self, seconds: float, raw: np.ndarray) -> None:
        super().__init__("sleep")
        self.seconds, self.raw = seconds, raw

    def _activate(self):
        return {"images": TensorMeta("images", (1, 3, 64, 64), np.dtype(np.float32))}

    def _infer(self, feed):
        time.sleep(self.seconds)
        return {"output0": self.raw}

    def _deactivate(self):
        pass


class _SlowPrepareDetector(Detector):
    def prepare(self, frame, reuse=False):
        time.sleep(0.03)
        return super().prepare(frame, reuse)


def test_stages_overlap(tmp_path):
    from edgekit.core.letterbox import LetterboxSpec
    from tests.deploy.bundles import obb_raw

    frames = [np.zeros((64, 64, 3), np.uint8)] * 12
    det = _SlowPrepareDetector(_SleepRunner(0.03, obb_raw()), letterbox=LetterboxSpec(imgsz=64))
    with det:
        t = time.perf_counter()
        list(run_sequential(det, frames))
        sequential = time.perf_counter() - t
        pipe = Pipeline(det)
        t = time.perf_counter()
        results = list(pipe.run(frames))
        pipelined = time.perf_counter() - t
    assert len(results) == 12
    assert pipelined < 0.75 * sequential, (pipelined, sequential)  # ~0.5x when prepare and infer overlap


def test_a_bad_frame_stops_the_run_with_the_error(bundle):
    frames = [np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.float32)]
    with bundle.detector() as det, pytest.raises(DataError, match="dtype float32"):
        list(Pipeline(det).run(frames))


def test_bad_frames_can_be_skipped_and_counted(bundle):
    frames = [np.zeros((64, 64, 3), np.uint8), np.zeros((0, 0, 3), np.uint8), np.zeros((32, 32, 3), np.uint8)]
    with bundle.detector() as det:
        pipe = Pipeline(det, skip_bad_frames=True)
        got = list(pipe.run(frames))
    assert [r.index for r in got] == [0, 2] and pipe.stats.bad_frames == 1
    assert "frame 1: frame is empty" in pipe.stats.bad_frame_errors[0]


def test_leaving_early_stops_every_stage(bundle):
    before = threading.active_count()

    def endless():
        while True:
            yield np.zeros((64, 64, 3), np.uint8)

    with bundle.detector() as det:
        for r in Pipeline(det).run(endless()):
            if r.index == 5:
                break
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before


def test_a_source_error_reaches_the_consumer(bundle, tmp_path):
    with bundle.detector() as det, pytest.raises(DataError, match="does not exist"):
        list(Pipeline(det).run(video_frames(tmp_path / "missing.mp4")))


def test_image_folder_source(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((10, 12, 3), i, np.uint8))
    (folder / "notes.txt").write_text("x")
    frames = list(image_frames(folder))
    assert [f[0, 0, 0] for f in frames] == [0, 1, 2]
    (folder / "3.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="cannot decode image .*3.jpg"):
        list(image_frames(folder))
    with pytest.raises(DataError, match="holds no images"):
        list(image_frames(tmp_path / "imgs" / ".." / "imgs" / ".." ))


class _AsyncRunner(Runner):
    """Submit starts the work on a worker thread and returns at once (like a CUDA graph replay);
    more than ``max_in_flight`` uncollected tickets is a bug the runner reports, as the torch runner does."""

    backend = "async"
    max_in_flight = 2

    def __init__(self, raw: np.ndarray) -> None:
        super().__init__("async")
        self.raw, self.pending, self.peak = raw, [], 0
        self.rng = np.random.default_rng(0)

    def _activate(self):
        return {"images": TensorMeta("images", (1, 3, 64, 64), np.dtype(np.float32))}

    def _infer(self, feed):
        return self._collect(self._submit(feed))

    def _submit(self, feed):
        if len(self.pending) >= self.max_in_flight:
            raise RuntimeError("too many in flight")
        done, box = threading.Event(), {}
        value = float(feed["images"][0, 0, 0, 0])

        def work(delay=float(self.rng.uniform(0, 0.01))):
            time.sleep(delay)  # tickets finish out of order
            raw = self.raw.copy()
            raw[0, 0, 0] += value  # the output carries its frame: ordering is checkable
            box["out"] = {"output0": raw}
            done.set()

        threading.Thread(target=work, daemon=True).start()
        self.pending.append(done)
        self.peak = max(self.peak, len(self.pending))
        return done, box

    def _collect(self, handle):
        done, box = handle
        done.wait()
        self.pending.remove(done)
        return box["out"]

    def _discard_pending(self):
        for done in list(self.pending):
            done.wait()
        self.pending.clear()

    def _deactivate(self):
        pass


def test_async_runner_pipeline_keeps_order_and_bounds_tickets_in_flight():
    from edgekit.core.letterbox import LetterboxSpec
    from tests.deploy.bundles import obb_raw

    frames = [np.full((64, 64, 3), i, np.uint8) for i in range(20)]
    runner = _AsyncRunner(obb_raw())
    det = Detector(runner, letterbox=LetterboxSpec(imgsz=64))
    with det:
        want = [r.detections for r in run_sequential(det, frames)]
        got = list(Pipeline(det, queue_size=3).run(frames))
        assert [r.index for r in got] == list(range(20)) and runner.peak == 2
        assert [d.boxes.tolist() for d in want] == [r.detections.boxes.tolist() for r in got]
        assert len({d.boxes[0, 0] for d in want if len(d)}) > 1  # frames really differ
        for r in Pipeline(det).run(iter(frames)):  # leaving early: submitted tickets are discarded
            if r.index == 2:
                break
        assert runner.pending == []


def test_onnxruntime_pipeline_sessions_run_frames_in_parallel_in_order(tmp_path):
    video = _video(tmp_path / "v.mp4", n=10)
    bundle = Bundle.open(write_test_bundle(tmp_path / "bundle"))
    with bundle.detector("onnxruntime", pipeline_sessions=2) as det:
        assert det.runner.max_in_flight == 2
        want = list(run_sequential(det, video_frames(video)))
        got = list(Pipeline(det, queue_size=3).run(video_frames(video)))
        for r in Pipeline(det).run(video_frames(video)):  # an early stop leaves nothing running
            if r.index == 1:
                break
        assert det.runner._pending == set()
    assert [r.index for r in got] == list(range(10))
    for a, b in zip(got, want):
        assert np.array_equal(a.detections.boxes, b.detections.boxes)
