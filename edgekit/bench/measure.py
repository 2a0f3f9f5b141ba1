"""The measurement loops: the same :class:`~edgekit.deploy.detector.Detector` stages and
:class:`~edgekit.deploy.pipeline.Pipeline` the daemon runs, with clocks around them and nothing else.

Per frame (sequential) three figures nest inside each other:

* **compute**: the runner's own time (``Runner.last_inference_time()``: the backend call alone;
  a backend that offers device-side timing, e.g. CUDA events, reports that instead);
* **host latency**: the wall time of ``Detector.infer`` (input checks, host<->device copies, compute);
* **end to end**: read/decode the frame from its source + preprocess + infer + postprocess.

Throughput is measured twice over the same frames: sequentially (one frame after another, the sum
of end-to-end times) and with the pipelined runtime (read/preprocess of frame i+1 and decode of
frame i-1 overlap inference of frame i). ``benchmarks/vs_ultralytics.py`` calls these functions too,
so both report the same quantity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np

from edgekit.core.detections import Detections

from .stats import LatencyStats, WarmupPolicy, WarmupTracker, summarize

OnFrame = Optional[Callable[[], None]]  # called after each frame, outside the timed region (progress bars)


@dataclass
class FrameTiming:
    """Where one frame's time went (seconds); ``start_s`` is relative to the start of its series."""

    start_s: float
    read_s: float
    preprocess_s: float
    host_s: float
    compute_s: Optional[float]
    decode_s: float
    e2e_s: float


@dataclass
class Series:
    """One timed phase: per-frame timings, its wall-clock window and (optionally) the detections."""

    mode: str  # "sequential" | "pipelined"
    timings: List[FrameTiming] = field(default_factory=list)
    wall_s: float = 0.0
    start_unix: float = 0.0
    end_unix: float = 0.0
    detections: List[Detections] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return len(self.timings)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def stats(self) -> Dict[str, LatencyStats]:
        t = self.timings
        return {"compute": summarize([x.compute_s for x in t]), "host": summarize([x.host_s for x in t]),
                "end_to_end": summarize([x.e2e_s for x in t]), "read": summarize([x.read_s for x in t]),
                "preprocess": summarize([x.preprocess_s for x in t]), "decode": summarize([x.decode_s for x in t])}


def measure_frame(detector: Any, frames: Iterator[np.ndarray], origin: float = 0.0):
    """Read one frame and detect on it, timing each stage. Returns (FrameTiming, Detections) or None at the end."""
    t0 = time.perf_counter()
    frame = next(frames, None)
    if frame is None:
        return None
    t1 = time.perf_counter()
    feed, info = detector.prepare(frame, True)  # reuse: the feed is consumed below, before the next frame
    t2 = time.perf_counter()
    outputs = detector.infer(feed)
    t3 = time.perf_counter()
    compute = detector.runner.last_inference_time()
    dets = detector.decode(outputs, info)
    t4 = time.perf_counter()
    return FrameTiming(t0 - origin, t1 - t0, t2 - t1, t3 - t2, compute, t4 - t3, t4 - t0), dets


def warm_up(detector: Any, frames: Iterator[np.ndarray], policy: WarmupPolicy, on_frame: OnFrame = None
            ) -> WarmupTracker:
    """Run whole frames until :class:`~edgekit.bench.stats.WarmupTracker` says steady (or gives up)."""
    tracker = WarmupTracker(policy)
    start = time.perf_counter()
    if policy.min_iterations == 0 and policy.min_seconds == 0:
        tracker.steady = True  # explicitly no warm-up (e.g. --warmup 0): measure from the first call
        return tracker
    while not tracker.done:
        measured = measure_frame(detector, frames)
        if measured is None:
            break
        tracker.add(measured[0].e2e_s, time.perf_counter() - start)
        if on_frame:
            on_frame()
    return tracker


def run_sequential(detector: Any, frames: Iterator[np.ndarray], iterations: Optional[int] = None,
                   duration_s: Optional[float] = None, keep_detections: bool = False,
                   on_frame: OnFrame = None) -> Series:
    """Frames one after another until ``iterations`` frames or ``duration_s`` seconds (or the source ends)."""
    if iterations is None and duration_s is None:
        raise ValueError("give iterations or duration_s")
    series = Series("sequential", start_unix=time.time())
    origin = time.perf_counter()
    while iterations is None or series.frames < iterations:
        if duration_s is not None and time.perf_counter() - origin >= duration_s:
            break
        measured = measure_frame(detector, frames, origin)
        if measured is None:
            break
        series.timings.append(measured[0])
        if keep_detections:
            series.detections.append(measured[1])
        if on_frame:
            on_frame()
    series.wall_s = time.perf_counter() - origin
    series.end_unix = time.time()
    return series


def run_pipelined(detector: Any, frames: Iterator[np.ndarray], queue_size: int = 2, keep_detections: bool = False,
                  on_frame: OnFrame = None) -> Series:
    """Every frame of ``frames`` through :class:`~edgekit.deploy.pipeline.Pipeline`; fps over the whole run."""
    from edgekit.deploy.pipeline import Pipeline

    pipeline = Pipeline(detector, queue_size=queue_size)
    series = Series("pipelined", start_unix=time.time())
    origin = time.perf_counter()
    for result in pipeline.run(frames):
        t = result.timings
        series.timings.append(FrameTiming(time.perf_counter() - origin - t["latency_s"], t["read_s"],
                                          t["preprocess_s"], t["infer_s"], None, t["decode_s"], t["latency_s"]))
        if keep_detections:
            series.detections.append(result.detections)
        if on_frame:
            on_frame()
    series.wall_s = time.perf_counter() - origin
    series.end_unix = time.time()
    return series


def measure_batch(runner: Any, feed: Dict[str, np.ndarray], iterations: int, warmup: int = 5) -> Dict[str, Any]:
    """Compute and host latency of one batched feed (``runner.infer`` directly; no pre/postprocess)."""
    for _ in range(warmup):
        runner.infer(feed)
    host: List[float] = []
    compute: List[Optional[float]] = []
    for _ in range(iterations):
        t = time.perf_counter()
        runner.infer(feed)
        host.append(time.perf_counter() - t)
        compute.append(runner.last_inference_time())
    return {"compute": summarize(compute), "host": summarize(host)}


__all__ = ["FrameTiming", "Series", "measure_frame", "warm_up", "run_sequential", "run_pipelined", "measure_batch"]
