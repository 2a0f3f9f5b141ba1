"""The pipelined runtime shared by ``edgekit bench`` and the daemon.

Three stages run in their own threads, joined by bounded queues: *prepare* (read the frame from
its source, check it, letterbox it into the network input), *infer* (the runner) and *decode*
(postprocess and map back to frame pixels). While frame i is inside the runner, frame i+1 is being
read and letterboxed and frame i-1 decoded. OpenCV, ONNX Runtime and TensorRT release the GIL in
their heavy calls, so the overlap is real on a multi-core CPU such as the Jetson's Carmel cores.

With an asynchronous runner (the torch runner's CUDA-graph slots) the infer stage only *submits*
frame i to the device and the decode stage *collects* it, so the device runs frame i while frame
i+1 is being submitted: the GPU never waits for the host between frames. At most the runner's
``max_in_flight`` frames are submitted and not yet collected.

The queues are small (``queue_size``, default 2): a slow consumer slows the pipeline instead of
growing memory, and the latency of each frame stays bounded. Every frame keeps its own timings
(read, preprocess, infer, decode, and the end-to-end latency from the start of its read to the end
of its decode) and :class:`PipelineStats` says the throughput over the run.

>>> with Bundle.open("bundle").detector() as det:  # doctest: +SKIP
...     for result in Pipeline(det).run(video_frames("drone.mp4")):
...         print(result.index, len(result.detections), result.timings["latency_s"])
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import EdgekitError

from .detector import Detector

_END = object()  # end of the frame stream


class _Failed:
    """An exception raised inside a stage, carried to the consumer to be re-raised there."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


@dataclass
class FrameResult:
    """One frame's detections (in frame pixels) and where its time went."""

    index: int
    detections: Detections
    frame_shape: Tuple[int, int]
    timings: Dict[str, float]  # read_s, preprocess_s, infer_s, decode_s, latency_s (all seconds)
    frame: Optional[np.ndarray] = None  # the frame itself, when the pipeline keeps frames


@dataclass
class PipelineStats:
    """Throughput of one :meth:`Pipeline.run`."""

    frames: int = 0
    bad_frames: int = 0  # frames skipped because they were not images (only with skip_bad_frames)
    first_start: Optional[float] = None
    last_done: Optional[float] = None
    bad_frame_errors: List[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        if self.first_start is None or self.last_done is None:
            return 0.0
        return self.last_done - self.first_start

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Pipeline:
    """Overlap prepare / infer / decode across consecutive frames of one detector."""

    def __init__(self, detector: Detector, queue_size: int = 2, keep_frames: bool = False,
                 skip_bad_frames: bool = False) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.detector = detector
        self.queue_size = queue_size
        self.keep_frames = keep_frames
        self.skip_bad_frames = skip_bad_frames
        self.stats = PipelineStats()

    def run(self, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
        """Yield one :class:`FrameResult` per frame of ``frames``, in order.

        An error in any stage stops the pipeline and is raised here; leaving the loop early (break,
        an exception in the caller) stops the stages and joins their threads.
        """
        self.stats = PipelineStats()
        self._async = callable(getattr(self.detector, "submit", None))
        limit = getattr(self.detector.runner, "max_in_flight", None) if self._async else None
        self._in_flight = threading.Semaphore(limit) if limit else None
        stop = threading.Event()
        prepared: queue.Queue = queue.Queue(self.queue_size)
        inferred: queue.Queue = queue.Queue(self.queue_size)
        done: queue.Queue = queue.Queue(self.queue_size)
        stages = [threading.Thread(target=self._prepare_stage, args=(iter(frames), prepared, stop), daemon=True,
                                   name="edgekit-prepare"),
                  threading.Thread(target=self._infer_stage, args=(prepared, inferred, stop), daemon=True,
                                   name="edgekit-infer"),
                  threading.Thread(target=self._decode_stage, args=(inferred, done, stop), daemon=True,
                                   name="edgekit-decode")]
        for t in stages:
            t.start()
        try:
            while True:
                item = done.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            for q in (prepared, inferred, done):
                _drain(q)
            for t in stages:
                t.join(timeout=10)
            discard = getattr(self.detector.runner, "discard_pending", None)
            if callable(discard):
                discard()  # frames submitted but never collected (an early stop) free their device slots

    # ---- stages ----------------------------------------------------------------------------------
    def _prepare_stage(self, frames: Iterator[np.ndarray], out: queue.Queue, stop: threading.Event) -> None:
        index = 0
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                frame = next(frames, _END)
                if frame is _END:
                    break
                t1 = time.perf_counter()
                if self.stats.first_start is None:
                    self.stats.first_start = t0
                try:
                    feed, info = self.detector.prepare(frame)
                except EdgekitError as e:
                    if not self.skip_bad_frames:
                        raise
                    self.stats.bad_frames += 1
                    self.stats.bad_frame_errors = (self.stats.bad_frame_errors + [f"frame {index}: {e}"])[-10:]
                    index += 1
                    continue
                timings = {"read_s": t1 - t0, "preprocess_s": time.perf_counter() - t1}
                kept = frame if self.keep_frames else None
                _put(out, (index, feed, info, kept, t0, timings), stop)
                index += 1
            _put(out, _END, stop)
        except BaseException as e:  # noqa: BLE001 - carried to the consumer and re-raised there
            _put(out, _Failed(e), stop)

    def _infer_stage(self, inp: queue.Queue, out: queue.Queue, stop: threading.Event) -> None:
        self._relay(inp, out, stop, self._infer_one)

    def _decode_stage(self, inp: queue.Queue, out: queue.Queue, stop: threading.Event) -> None:
        self._relay(inp, out, stop, self._decode_one)

    def _relay(self, inp: queue.Queue, out: queue.Queue, stop: threading.Event, work: Any) -> None:
        while not stop.is_set():
            item = _get(inp, stop)
            if item is None:
                return
            if item is _END or isinstance(item, _Failed):
                _put(out, item, stop)
                return
            try:
                result = work(item, stop)
            except BaseException as e:  # noqa: BLE001 - carried to the consumer and re-raised there
                _put(out, _Failed(e), stop)
                return
            if result is None:  # stopped while waiting
                return
            _put(out, result, stop)

    def _infer_one(self, item: Tuple[Any, ...], stop: threading.Event) -> Optional[Tuple[Any, ...]]:
        index, feed, info, frame, t0, timings = item
        if self._in_flight is not None:
            while not self._in_flight.acquire(timeout=0.1):
                if stop.is_set():
                    return None
        t = time.perf_counter()
        outputs = self.detector.submit(feed) if self._async else self.detector.infer(feed)
        timings["infer_s"] = time.perf_counter() - t  # the decode stage adds the wait in collect
        return index, outputs, info, frame, t0, timings

    def _decode_one(self, item: Tuple[Any, ...], stop: threading.Event) -> FrameResult:
        index, outputs, info, frame, t0, timings = item
        t = time.perf_counter()
        if self._async:
            outputs = self.detector.collect(outputs)
            if self._in_flight is not None:
                self._in_flight.release()
            timings["infer_s"] += time.perf_counter() - t
            t = time.perf_counter()
        dets = self.detector.decode(outputs, info)
        end = time.perf_counter()
        timings["decode_s"] = end - t
        timings["latency_s"] = end - t0
        self.stats.frames += 1
        self.stats.last_done = end
        return FrameResult(index, dets, tuple(info.orig_shape), timings, frame)


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put, waking up to notice a stop (a consumer that left must not leave a stage blocked)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return None


def _drain(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return


def run_sequential(detector: Detector, frames: Iterable[np.ndarray]) -> Iterator[FrameResult]:
    """The same results one frame at a time (no overlap): the baseline the pipeline is measured against."""
    for index, frame in enumerate(frames):
        t0 = time.perf_counter()
        dets = detector.detect(frame)
        t = detector.timings
        yield FrameResult(index, dets, tuple(frame.shape[:2]),
                          {"read_s": 0.0, "preprocess_s": t["preprocess_s"], "infer_s": t["infer_s"],
                           "decode_s": t["postprocess_s"], "latency_s": time.perf_counter() - t0})


__all__ = ["Pipeline", "PipelineStats", "FrameResult", "run_sequential"]
