"""Prometheus metrics of one daemon (its own registry, so several can live in one process)."""

from __future__ import annotations

from typing import Any, Callable, Dict

STAGES = ("capture", "infer", "publish")
LATENCY_STAGES = ("read", "preprocess", "infer", "decode", "end_to_end")
# Frame latencies on a Jetson run from ~2 ms (decode) to ~1 s (a stalled camera read).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class DaemonMetrics:
    """Counters, histograms and gauges; gauges read the service's state when scraped."""

    def __init__(self, read_state: Callable[[], Dict[str, Any]]) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = CollectorRegistry()
        r = self.registry
        self.frames = Counter("edgekit_frames", "Frames that left each stage", ["stage"], registry=r)
        self.dropped = Counter("edgekit_frames_dropped", "Frames dropped at each stage", ["stage"], registry=r)
        self.bad_frames = Counter("edgekit_bad_frames", "Unreadable frames skipped", registry=r)
        self.latency = Histogram("edgekit_stage_latency_seconds", "Per-frame time in each stage", ["stage"],
                                 buckets=BUCKETS, registry=r)
        self.model = Info("edgekit_model", "The model being served", registry=r)
        self.reloads = Counter("edgekit_model_reloads", "Model reload attempts", ["result"], registry=r)
        self._state = read_state
        gauges = {
            "edgekit_fps": ("Frames per second over the last seconds", lambda s: s["fps"]),
            "edgekit_ready": ("1 when warmed up and serving", lambda s: 1.0 if s["ready"] else 0.0),
            "edgekit_subscribers": ("Connected WebSocket subscribers", lambda s: s["subscribers"]),
            "edgekit_source_reconnects": ("Times the live source was reopened", lambda s: s["reconnects"]),
            "edgekit_source_losses": ("Times the live source stalled or ended", lambda s: s["losses"]),
        }
        for name, (doc, fn) in gauges.items():
            Gauge(name, doc, registry=r).set_function(self._reader(fn))
        depth = Gauge("edgekit_queue_depth", "Items waiting in each bounded queue", ["queue"], registry=r)
        for q in ("capture", "publish"):
            depth.labels(q).set_function(self._reader(lambda s, q=q: s["queues"][q]))
        for stage in STAGES:  # present from the first scrape, even at zero
            self.frames.labels(stage)
            self.dropped.labels(stage)
        for stage in LATENCY_STAGES:
            self.latency.labels(stage)

    def _reader(self, fn: Callable[[Dict[str, Any]], float]) -> Callable[[], float]:
        return lambda: float(fn(self._state()))

    def observe_frame(self, timings: Dict[str, float]) -> None:
        self.frames.labels("infer").inc()
        for key, stage in (("read_s", "read"), ("preprocess_s", "preprocess"), ("infer_s", "infer"),
                           ("decode_s", "decode"), ("latency_s", "end_to_end")):
            if key in timings:
                self.latency.labels(stage).observe(timings[key])

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

__all__ = ["DaemonMetrics", "STAGES", "LATENCY_STAGES", "CONTENT_TYPE"]
